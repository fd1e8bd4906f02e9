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
    model.vem_log_names = []


def log_names(values: dict) -> dict:
    """vem-plugins' values under names upstream logs: ``G_`` + name, no digits.

    ``get_current_losses`` asserts on names without a ``G_``/``D_`` prefix and hides names with
    digits from the console. ``skipped`` (estimator steps skipped as non-finite) becomes
    ``G_mi_skipped``; the others keep theirs: ``G_mi`` (the weighted term), ``G_energy_gap``,
    ``G_ebm_loss`` (VEM), ``G_vid_nll`` (VID), ``G_crd_loss``/``G_crd_estimate`` (CRD).
    """
    return {"G_" + ("mi_skipped" if key == "skipped" else key): value
            for key, value in values.items()}


def _log(model) -> None:
    values = log_names(model.vem.log_values())
    for name in model.vem_log_names:
        values.setdefault(name, 0.0)  # a term skipped as non-finite added nothing
    for name, value in values.items():
        setattr(model, "loss_" + name, value)
        if name not in model.loss_names:
            model.loss_names.append(name)
            model.vem_log_names.append(name)


def student_term(model):
    """The EBM step, then the weighted MI term for the student (None without ``--vem``)."""
    vem = model.vem
    if not vem.enabled:
        return None
    real = model.real_B if model.opt.dataset_mode == "aligned" else None
    tensors = dict(student=model.Sfake_B, teacher=model.Tfake_B, real=real)
    first = not vem.modules()
    vem.update(**tensors)
    term = vem.student_loss(**tensors)
    if first:
        count = sum(p.numel() for m in vem.modules() for p in m.parameters())
        print(f"vem-plugins: the {model.opt.mi or 'vem'} estimator has {count / 1e6:.3f} M "
              f"parameters (trained beside the student, not part of it)", flush=True)
    _log(model)
    return term


def add_student_term(model, loss_G):
    """``loss_G`` plus the MI term; ``loss_G`` itself (the same object) without ``--vem``."""
    term = student_term(model)
    return loss_G if term is None else loss_G + term


def checkpoint_path(model, epoch) -> str:
    return os.path.join(model.save_dir, "%s_vem.pth" % epoch)


def save(model, epoch) -> None:
    """Write the estimator beside upstream's ``<epoch>_net_G.pth`` (nothing without ``--vem``)."""
    model.vem.save(checkpoint_path(model, epoch))
