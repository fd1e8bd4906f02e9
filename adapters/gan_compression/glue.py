"""VEM inside GAN-Compression's distillers: what the lines of ``02-vem.patch`` call.

All of it sits in ``distillers/base_resnet_distiller.py:BaseResnetDistiller``, which both the
distill stage (``distill.py``, ``ResnetDistiller``) and the once-for-all stage
(``train_supernet.py``, ``ResnetSupernet``, also used for finetuning) inherit:

* :func:`add_options` in ``modify_commandline_options``: ``--vem``, ``--mi``, ``--lambda_mi``,
  ``--ebm_*`` and ``--restore_vem_path``; the energy net is 16 channels wide for unpaired data
  (CycleGAN) and 64 for paired data, as in the paper;
* :func:`attach` at the end of ``__init__``: one :class:`~vem_plugins.method.runtime.Runtime` per run, so
  the supernet stage trains ONE energy model for all the sub-networks it samples (the energy
  model sees images, whose channel count does not depend on the sub-network);
* :func:`add_student_term` in ``backward_G``, between upstream's loss sum and its ``backward()``:
  the EBM step on this iteration's tensors, then the weighted MI term added to the student loss.
  t is the paired target ``real_B`` for aligned (pix2pix) data and the detached teacher output
  ``Tfake_B`` for unaligned (CycleGAN) data, where ``real_B`` is an unrelated image;
* :func:`save` at the end of ``save_networks``: the estimator (energy model, its own Adam, the
  step count) goes to ``<checkpoints>/<epoch>_vem.pth`` beside upstream's files, never into
  upstream's optimizer list, so upstream's ``--restore_O_path`` layout and its learning-rate
  schedules are unchanged; ``--restore_vem_path`` restores it (in :func:`attach`).

The energy model is not an attribute upstream iterates over (``model_names``, ``netAs``,
``optimizers``), so it is outside the student's parameter count, its checkpoint and export.
CAT's adapter (:mod:`vem_plugins.adapters.cat.glue`) reuses these functions.
"""
from __future__ import annotations

import os

from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime


def add_options(parser):
    """Add vem-plugins' flags (``--restore_vem_path`` among them) to upstream's parser."""
    known, _ = parser.parse_known_args()
    unpaired = getattr(known, "dataset_mode", None) == "unaligned"
    return options.add_options(parser, **({"ebm_width": 16} if unpaired else {}))


def attach(model, opt) -> None:
    """Give ``model`` its runtime (a no-op one without ``--vem``/``--mi``) and restore it.

    The estimator does not depend on upstream's networks, so ``--restore_vem_path`` is loaded
    here, whatever upstream restores later (and however often: CAT's ``load_networks`` runs
    twice with ``--prune_continue``).
    """
    model.vem = Runtime(opt, model.device)


def student_term(model):
    """The estimator's step, then the weighted MI term for the student (None without
    ``--vem``); the values join upstream's loss log as ``G_mi``, ``G_energy_gap``, ... (``G_``:
    ``get_current_losses`` asserts on names without a ``G_``/``D_`` prefix)."""
    if not model.vem.enabled:
        return None  # upstream's attributes untouched
    real = model.real_B if model.opt.dataset_mode == "aligned" else None
    return model.vem.step(student=model.Sfake_B, teacher=model.Tfake_B, real=real, log_to=model,
                          prefix="G_")


def add_student_term(model, loss_G):
    """``loss_G`` plus the MI term; ``loss_G`` itself (the same object) without ``--vem``."""
    term = student_term(model)
    return loss_G if term is None else loss_G + term


def checkpoint_path(model, epoch) -> str:
    return os.path.join(model.save_dir, "%s_vem.pth" % epoch)


def save(model, epoch) -> None:
    """Write the estimator beside upstream's ``<epoch>_net_G.pth`` (nothing without ``--vem``)."""
    model.vem.save(checkpoint_path(model, epoch))
