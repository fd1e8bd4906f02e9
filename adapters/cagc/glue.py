"""The VEM glue ``02-vem.patch`` adds to CAGC's ``train.py``.

``train.py`` passes ``args`` to every function involved, so the glue lives in ``args.vem_glue``.
"""
from __future__ import annotations

from vem_plugins.messages import tell
from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime


def add_options(parser):
    """vem-plugins' flags with CAGC's defaults: unclamped Langevin samples (the StyleGAN2 student
    has no tanh) and the paper's MI weight for StyleGAN2 (its FFHQ step size: :func:`attach`)."""
    options.add_options(parser, ebm_range=None, lambda_mi=0.05)


class Glue:
    """The runtime and the teacher image of the current step.

    The estimator stays on CAGC's first device, also when CAGC replicates its generators over
    several GPUs: its Langevin chain and spectral-norm vectors are per-step state that
    ``nn.DataParallel`` replicas would not share.
    """

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.teacher = None


def attach(args, device):
    """Build the runtime once options and devices are known; CAGC trains on FFHQ, so the
    Langevin step is the paper's FFHQ value unless ``--ebm_step_size`` is given."""
    args.vem_glue = Glue(Runtime(args, device, dataset="ffhq"))


def capture_teacher(args, teacher_img):
    """Keep the teacher image (same latent and mixing, before the face mask), detached."""
    if args.vem_glue.runtime.enabled:
        args.vem_glue.teacher = teacher_img.detach()


def add_mi_term(args, total_loss, student_img):
    """The estimator's step, then ``total_loss + lambda * term`` (``total_loss`` when disabled)."""
    glue = args.vem_glue
    teacher, glue.teacher = glue.teacher, None
    return glue.runtime.add_term(total_loss, student=student_img, teacher=teacher)


def log_text(args) -> str:
    """The MI terms for CAGC's per-iteration log line, in its ``name: value`` style (``G_mi``,
    ``G_energy_gap``, ...; '' when disabled)."""
    values = args.vem_glue.runtime.log_values(prefix="G_")
    return "".join(f" {key}: {round(float(value), 3)}" for key, value in values.items())


def checkpoint_entries(args) -> dict:
    """Entries for CAGC's checkpoint dict: ``{'vem': state}`` ({} when disabled)."""
    runtime = args.vem_glue.runtime
    return {"vem": runtime.state_dict()} if runtime.enabled else {}


def restore(args, ckpt):
    """With ``--load_train_state``: restore the estimator from the checkpoint resumed from."""
    runtime = args.vem_glue.runtime
    if not runtime.enabled:
        return
    if "vem" in ckpt:
        runtime.load_state_dict(ckpt["vem"])
    else:
        tell(f"{args.ckpt} holds no estimator state; the estimator starts afresh")
