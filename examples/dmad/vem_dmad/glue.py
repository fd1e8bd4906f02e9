"""What ``02-vem.patch`` calls: every line of logic lives here, never in DMAD's files.

Hook points (one inserted line each):

* ``options/options.py`` (the module-level parser): :func:`add_options`;
* ``Pix2PixModel.backward_G`` and ``MobilePix2PixModel.backward_G``, right before
  ``self.loss_G.backward()``: :func:`add_mi_term` — the estimator's step (the EBM step), then
  lambda * (E(t,s) - E(t~,s)) with t = ``real_B`` (paired data, as in the paper);
* their ``save_models``: :func:`save`.

DMAD builds its teachers (``--pretrain_path``) and discriminator copies from the same classes
and options, so the runtime is made at a model's first training step, never in ``__init__``:
only the model that trains gets one. It is not a network of the model: DMAD's MACs/parameter
profile (``thop`` on ``netG``), printouts and checkpoints are the same with and without --vem.
"""
from __future__ import annotations

import os

from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime

CHECKPOINT = "latest_vem.pth"


def add_options(parser):
    """vem-plugins' flags (--vem, --mi, --lambda_mi, --ebm_*, --restore_vem_path)."""
    return options.add_options(parser)


def runtime(model) -> Runtime:
    """``model``'s runtime, made (and restored from --restore_vem_path) on first use."""
    if getattr(model, "vem", None) is None:
        model.vem = Runtime(model.opt, model.device)  # restores --restore_vem_path
    return model.vem


def add_mi_term(model, loss, student, real=None, teacher=None):
    """``loss`` plus the MI term, after the estimator's own step; ``loss`` itself without --vem.
    The terms join DMAD's loss log as ``G_mi``, ``G_energy_gap``, ``G_ebm_loss`` and
    ``G_mi_skipped`` (steps skipped as non-finite)."""
    return runtime(model).add_term(loss, student=student, teacher=teacher, real=real,
                                   log_to=model, prefix="G_")


def save(model, save_dir) -> None:
    """Write the estimator to ``<experiment>/latest_vem.pth``, beside ``model_best.pth``: DMAD
    deletes its per-epoch ``checkpoints/`` folder at the end of training."""
    vem = getattr(model, "vem", None)
    if vem is not None and vem.enabled:
        vem.save(os.path.join(os.path.dirname(os.path.normpath(save_dir)), CHECKPOINT))
