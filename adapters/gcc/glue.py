"""The VEM glue ``02-vem.patch`` adds to GCC: flags, estimators, the student term, saving."""
from __future__ import annotations

import functools
import os

import torch

from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime


def add_options(parser):
    """vem-plugins' flags on GCC's parser (paper defaults: images in [-1, 1], tanh outputs)."""
    options.add_options(parser)


def attach(model, opt):
    """Give the student its estimator(s) once GCC has built student and teacher.

    Called after ``init_distillation``, i.e. after pruning, so the pruning bisection's throw-away
    models never get one, nor does the teacher. The estimators stay off the ``nn.Module`` tree:
    they are in no generator state dict and no MACs count.
    """
    if not options.enabled(opt):
        return
    if not opt.online_distillation:
        raise ValueError("--vem: GCC distils only with --online_distillation (the GCC stage, "
                         "scripts/<model>/train.sh)")
    keys = ("A", "B") if "cyclegan" in opt.model else ("",)
    model.vem_runtimes = {key: Runtime(opt, model.device) for key in keys}
    save_models = model.save_models

    @functools.wraps(save_models)
    def save_with_estimators(epoch, save_dir, fid=None, isbest=False, direction="AtoB"):
        save_models(epoch, save_dir, fid=fid, isbest=isbest, direction=direction)
        stem = f"model_best_{direction}" if isbest else f"model_{epoch}"
        for key, runtime in model.vem_runtimes.items():
            runtime.save(os.path.join(save_dir, f"{stem}_vem{key}.pth"))

    model.save_models = save_with_estimators


def add_mi_term(model, student, teacher, real=None, direction=""):
    """The estimator's step, then ``model.loss_G += lambda * term``; right before ``backward()``.
    The values join ``logger.log`` as ``G_mi``, ``G_energy_gap``, ... (``G_A_mi``, ``G_B_mi``, ...
    for CycleGAN's two generators).

    :param model: the GCC student model (nothing happens unless :func:`attach` equipped it).
    :param student: the student output, with its graph.
    :param teacher: the teacher output for the same input (detached here).
    :param real: the paired real target, or None (unpaired or unconditional data).
    :param direction: CycleGAN's generator (``"A"``: A->B, ``"B"``: B->A), else ``""``.
    """
    runtimes = getattr(model, "vem_runtimes", None)
    if not runtimes:
        return
    model.loss_G = runtimes[direction].add_term(
        model.loss_G, student=student, teacher=teacher, real=real, log_to=model,
        prefix=f"G_{direction}_" if direction else "G_")


_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def from_imagenet_norm(*images):
    """SRGAN's ``backward_G`` holds ImageNet-normalised images: map them back to [-1, 1]."""
    return tuple((x * _IMAGENET_STD.to(x) + _IMAGENET_MEAN.to(x)) * 2 - 1 for x in images)
