"""Adapter for https://github.com/lychenyoko/content-aware-gan-compression (CAGC).

Content-aware compression of StyleGAN2 (Liu et al., CVPR 2021).

Use::

    vem-plugins install cagc
    cd third_party/cagc
    python prune.py --ckpt Model/full_size_model/256px_full_size.pt --remove_ratio 0.7
    python train.py --path <FFHQ image folder> --ckpt Model/pruned_model/<pruned>.pth \\
        --teacher_ckpt Model/full_size_model/256px_full_size.pt --vem     # or --mi vid|crd

GPUs and the other defaults are set in ``train_hyperparams.py`` as upstream documents; GPUs that
are absent are dropped (CPU when there is none). CAGC replicates its networks with
``nn.DataParallel`` over several GPUs; the estimator stays on the first one.

Teachers: CAGC prunes and distils a pretrained StyleGAN2 in rosinality's checkpoint format (a
dict with ``'g_ema'`` and ``'d'``): the FFHQ 256 px model ``256px_full_size.pt`` linked from
CAGC's README, or NVIDIA's official FFHQ StyleGAN2 converted with rosinality's
``convert_weight.py --disc`` (NVIDIA's weights and FFHQ are licensed for non-commercial use).
Checkpoints that also hold an ``argparse.Namespace`` (rosinality's own training runs) need
``torch.load(..., weights_only=False)`` on torch >= 2.6. :func:`write_random_checkpoints` makes
random stand-ins in CAGC's formats for dry runs; the tests use them.

With ``--vem`` (:mod:`vem_plugins.adapters.cagc.glue`): in ``G_Loss_BackProp`` the estimator takes
its own step, then ``--lambda_mi`` x its term joins ``total_loss`` before ``backward()``. t is the
teacher's image for the same latent and style mixing, captured in ``KD_loss`` before the face mask
and detached; real images are not used. The lazy regularisation steps (R1, path length) and the
EMA update are untouched. The StyleGAN2 student has no tanh, so Langevin samples are not clamped
(``--ebm_range`` defaults to ``none`` here); the Langevin step 50 (unless ``--ebm_step_size`` is
given) and ``--lambda_mi 0.05`` follow the paper's FFHQ setting. The training log gains ``G_mi``
(the weighted term), ``G_energy_gap``, ``G_ebm_loss`` and ``G_mi_skipped``; the estimator and its optimiser are saved
under ``'vem'`` in CAGC's checkpoint dict and restored by ``--load_train_state True``; ``g`` and
``g_ema`` are unchanged.

Compatibility on torch 2.x, NumPy 2, Python 3.11, offline and on CPU
(:mod:`vem_plugins.adapters.cagc.compat`; ``op/`` is not patched): the CUDA ops' JIT build at
import, hard-coded ``cuda:0``, torchvision's ``value_range``, scikit-image's removed
``compare_ssim`` and an unused IPython import in ``lpips/``, ``type=bool`` flags
(``--content_aware_KD False`` now means False), ragged NumPy arrays in ``prune.py``. FID runs
before every checkpoint save, has statistics for 256 and 1024 px only and needs the Inception
weights (``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``): ``--no_fid`` skips
it, and a failure is logged with what is missing instead of losing the checkpoint. Without the
face-parsing weights ``Util/face_parsing/pretrained_model/79999_iter.pth`` KD falls back to the
whole image with a warning (``prune.py`` needs them). LPIPS KD needs torchvision's VGG16
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``), or ``--kd_lpips_lambda 0``. Requirements
beyond the venv: ``scipy``, ``tqdm``, ``scikit-image`` (and ``ninja`` for the CUDA ops on a GPU).
"""
from __future__ import annotations

from pathlib import Path

import importlib.resources

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, patch_series
from vem_plugins.authoring.compat import FACE_PARSING

PARSING_WEIGHTS = FACE_PARSING.location
FID_STATS = "Evaluation/inception_ffhq_embed/self_ffhq_{}_inception_embeddings_eval_mode.pkl"

ADAPTER = Adapter(
    name="cagc",
    url="https://github.com/lychenyoko/content-aware-gan-compression",
    commit="64fd76b88a66e4699bad05515c8167c1289cbb85",
    **patch_series(importlib.resources.files("vem_plugins.patches") / "cagc"),
    requirements=("scipy", "tqdm", "scikit-image"),
    entry_points=("train.py", "prune.py"),
    assets={
        PARSING_WEIGHTS: "content-aware pruning (prune.py stops) and content-aware KD (train.py "
                         "distils on the whole image instead)",
        FID_STATS.format(256): "FID at 256 px during training (logged as failed; checkpoints "
                               "are still saved)",
        FID_STATS.format(1024): "FID at 1024 px during training (logged as failed; checkpoints "
                                "are still saved)",
        "doc/Teaser.gif": "only the README's animation",
    },
    smoke=Smoke(
        dataset="unconditional", size=16, count=16,
        command=("bash", "-c",
                 "{python} -c 'from vem_plugins.adapters.cagc import adapter; "
                 "adapter.write_random_checkpoints(\"{out}\", 16)' && root=$PWD && cd {out} && "
                 "{python} $root/train.py --path {data}/train --size 16 --iter 2 --batch_size 2 "
                 "--channel_multiplier 1 --ckpt student.pt --teacher_ckpt teacher.pt "
                 "--content_aware_KD False --kd_lpips_lambda 0 --model_save_freq 1 "
                 "--val_sample_freq 100 --n_sample 4 --no_fid --vem --ebm_width 8 --ebm_blocks 2"),
        log="{out}/Exp_*/*_training_log.out"),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)


def write_random_checkpoints(out_dir, size: int, width: int = 32):
    """Random teacher and "pruned" student in CAGC's formats, for dry runs without FFHQ weights.

    Run it from the CAGC checkout (it imports upstream's ``model``). Writes ``teacher.pt`` and
    ``student.pt`` into ``out_dir``, both ``{'g', 'd', 'g_ema'}`` as ``prune.py`` reads and
    writes them. The teacher is ``width`` channels wide, half that at the last resolution as in
    StyleGAN2; the student has half the teacher's channels; both carry the full-size
    discriminator, as ``prune.py`` keeps it.
    """
    import numpy as np
    import torch

    from vem_plugins.adapters.cagc import compat as cagc_compat
    cagc_compat.fix_imports()
    from model import Discriminator, Generator  # upstream's, from the working directory
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = 2 * int(np.log2(size)) - 2
    teacher = [width] * (layers - 2) + [width // 2] * 2
    d = Discriminator(size, channel_multiplier=1).state_dict()
    for name, shape in (("teacher", teacher), ("student", [w // 2 for w in teacher])):
        g = Generator(size, 512, 8, generator_net_shape=shape).state_dict()
        torch.save({"g": g, "d": d, "g_ema": g}, out / f"{name}.pt")
