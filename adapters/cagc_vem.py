"""The VEM glue ``02-vem.patch`` adds to CAGC's ``train.py``.

``train.py`` passes ``args`` to every function involved, so the glue lives in ``args.vem_glue``.
"""
from __future__ import annotations

import warnings

from torch import nn

from vem_plugins import options
from vem_plugins.runtime import Runtime


def add_options(parser):
    """vem-plugins' flags with CAGC's defaults: unclamped Langevin samples (the StyleGAN2 student
    has no tanh), and the paper's FFHQ step size and MI weight."""
    options.add_options(parser, ebm_range=None, ebm_step_size=50.0, lambda_mi=0.05)


class _Replicated(nn.DataParallel):
    """``nn.DataParallel`` whose state dict has the wrapped module's keys, so an estimator state
    loads whatever the number of GPUs."""

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        return self.module.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)


class Glue:
    """The runtime, the teacher image of the current step, and CAGC's GPU list.

    :param runtime: the :class:`~vem_plugins.runtime.Runtime`.
    :param device_ids: GPU ids to replicate the estimator's networks over as CAGC replicates its
        generators and discriminator (None: no ``nn.DataParallel``).
    """

    def __init__(self, runtime: Runtime, device_ids=None):
        self.runtime, self.device_ids = runtime, device_ids
        self.teacher = None
        self.replicated = False

    def replicate(self):
        """Wrap the estimator's networks in ``nn.DataParallel`` once they exist."""
        estimator = self.runtime.plugin.estimator
        if self.replicated or not self.device_ids or estimator is None:
            return
        for name, child in list(estimator.named_children()):
            setattr(estimator, name, _Replicated(child, device_ids=self.device_ids))
        self.replicated = True


def attach(args, device, gpu_device_ids):
    """Build the runtime once options and devices are known."""
    args.vem_glue = Glue(Runtime(args, device), gpu_device_ids if args.distributed else None)


def capture_teacher(args, teacher_img):
    """Keep the teacher image (same latent and mixing, before the face mask), detached."""
    if args.vem_glue.runtime.enabled:
        args.vem_glue.teacher = teacher_img.detach()


def add_mi_term(args, total_loss, student_img):
    """The estimator's step, then ``total_loss + lambda * term`` (``total_loss`` when disabled)."""
    glue = args.vem_glue
    if not glue.runtime.enabled:
        return total_loss
    teacher, glue.teacher = glue.teacher, None
    glue.runtime.update(student=student_img, teacher=teacher)
    glue.replicate()
    return total_loss + glue.runtime.student_loss(student=student_img, teacher=teacher)


def log_text(args) -> str:
    """The MI terms for CAGC's per-iteration log line ('' when disabled)."""
    runtime = args.vem_glue.runtime
    if not runtime.enabled:
        return ""
    values = {"mi": 0.0, **runtime.log_values()}
    return "".join(f" {'MI_Loss' if key == 'mi' else 'MI_' + key}: {round(float(value), 3)}"
                   for key, value in values.items())


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
        warnings.warn(f"vem-plugins: {args.ckpt} holds no estimator state; it starts afresh")
