"""Runtime compatibility fixes for CAT on torch 2.x, NumPy 2, SciPy >= 1.18, CPU, offline.

Fourteen Snap-authored CAT files (``trainer.py``, ``distill.py``, ``distillers/*.py``, ...) grant no
licence to copy or modify them, so ``01-compat.patch`` adds lines only to the other files; the
two lines it appends to a module (or, for ``data/__init__.py``, puts first) are ::

    from vem_plugins.adapters.cat.compat import fix as _vem_plugins_fix  # vem-plugins
    _vem_plugins_fix(globals())

and :func:`fix` replaces what no longer works by functions of ours (:func:`_fixes` lists them per
module). What the distillers need is done from ``options/distill_options.py``, which imports the
distiller package before any distiller runs; the distiller files themselves stay untouched.

The fixes:

* CAT's top-level ``profile.py`` shadows the standard library's ``profile`` module, which
  ``cProfile`` imports; torch 2.x imports ``cProfile`` (``torchvision`` -> ``torch._dynamo``), so
  every entry point failed at import. The standard module is loaded first, under its name, by the
  first lines of ``data/__init__.py`` (every entry point imports ``data`` before torchvision);
* ``model_profiling(use_cuda=True)`` and ``torch.cuda.synchronize()`` during pruning assume a GPU:
  without CUDA, profiling runs on CPU and the synchronisation is skipped;
* the inception distiller and the teachers' models (``train.py``) gain ``--no_fid`` and
  ``--no_mIoU`` and build their evaluation networks only when wanted and available (as in
  :mod:`~vem_plugins.adapters.gan_compression.compat`, whose metric fixes CAT shares:
  Inception weights, ``np.int``, ``sqrtm(disp=False)``, nan when a metric is off);
* ``utils.util`` loads checkpoints without ``map_location``;
* resuming a pruned student (``--prune_continue --restore_student_G_path ...``) loaded the pruned
  checkpoints into the unpruned student before pruning and failed: they are now loaded after
  pruning (``trainer.py`` calls ``load_networks(restore_pretrain=False)`` there), and the
  pretrained weights (used only to initialise the unpruned student) only before.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import types

from vem_plugins.authoring.compat import replace_once


def use_stdlib_profile() -> None:
    """Load the standard library's ``profile`` under its name before CAT's ``profile.py`` can be."""
    module = sys.modules.get("profile")
    path = os.path.join(sysconfig.get_paths()["stdlib"], "profile.py")
    if module is not None and getattr(module, "__file__", None) == path:
        return
    spec = importlib.util.spec_from_file_location("profile", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile"] = module
    spec.loader.exec_module(module)


def fix(namespace: dict) -> None:
    """Apply the fixes for the upstream module whose ``globals()`` these are (see :func:`_fixes`).

    Only ``data``'s fix may run before torch is imported; the others import it (lazily, so that
    importing this module does not).
    """
    name = namespace["__name__"]
    if name == "data":
        use_stdlib_profile()
        return
    for apply in _fixes().get(name, ()):
        apply(namespace)


def _gc():
    return importlib.import_module("vem_plugins.adapters.gan_compression.compat")


# -- CUDA assumptions ------------------------------------------------------------------------------

def _torch_without_required_cuda():
    """``torch`` as one upstream module sees it, except that ``cuda.synchronize()`` needs no GPU."""
    import torch

    class Cuda(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch.cuda, name)

        @staticmethod
        def synchronize(device=None):
            if torch.cuda.is_available():
                torch.cuda.synchronize(device)

    class Torch(types.ModuleType):
        cuda = Cuda("torch.cuda")

        def __getattr__(self, name):
            return getattr(torch, name)

    return Torch("torch")


def fix_model_profiling(namespace: dict) -> None:
    """``utils/model_profiling.py``: profile on CPU when there is no CUDA."""
    namespace["torch"] = _torch_without_required_cuda()
    replace_once(namespace, "model_profiling", _profiling_without_cuda)


def _profiling_without_cuda(profiling):
    import torch
    signature = inspect.signature(profiling)

    def model_profiling(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        bound.arguments["use_cuda"] = bound.arguments["use_cuda"] and torch.cuda.is_available()
        return profiling(*bound.args, **bound.kwargs)

    return model_profiling


def fix_common(namespace: dict) -> None:
    """``utils/common.py``: pruning synchronises CUDA only when there is CUDA."""
    namespace["torch"] = _torch_without_required_cuda()


# -- the distillers (files we must not edit), fixed from options/distill_options.py -----------------

@contextlib.contextmanager
def _unset(opt, *names):
    """Hide some ``--restore_*`` options from one ``load_networks`` call."""
    saved = {name: getattr(opt, name, None) for name in names}
    for name in names:
        setattr(opt, name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(opt, name, value)


def resume_after_pruning(cls) -> None:
    """With ``--prune_continue``, load the pruned networks' checkpoints after pruning.

    ``setup()`` calls ``load_networks()`` before pruning, ``trainer.py`` calls
    ``load_networks(restore_pretrain=False)`` after it; upstream loaded everything both times.
    """
    replace_once(cls, "load_networks", _pruned_loaded_after_pruning)


def _pruned_loaded_after_pruning(load):
    def load_networks(self, verbose=True, teacher_only=False, restore_pretrain=True):
        if not getattr(self.opt, "prune_continue", False):
            return load(self, verbose, teacher_only, restore_pretrain)
        if restore_pretrain:
            hidden = ("restore_student_G_path", "restore_A_path", "restore_O_path")
        else:
            hidden = ("restore_pretrained_G_path",)
        with _unset(self.opt, *hidden):
            return load(self, verbose, teacher_only, restore_pretrain)

    return load_networks


def fix_distillers(namespace: dict) -> None:
    """``options/distill_options.py``: evaluation flags and nets, resume, for the inception path."""
    gc = _gc()
    base = importlib.import_module("distillers.base_inception_distiller").BaseInceptionDistiller
    gc.optional_metric_nets_in_init(base)
    inception = importlib.import_module("distillers.inception_distiller").InceptionDistiller
    gc.eval_flags_in_options(inception)
    resume_after_pruning(inception)


@functools.cache
def _fixes() -> dict:
    gc = _gc()
    return {
        "metric": (gc.fix_metric_package,),
        "utils": (gc.fix_utils_package,),
        "utils.model_profiling": (fix_model_profiling,),
        "utils.common": (fix_common,),
        "models.cycle_gan_model": (gc.fix_model_class("CycleGANModel"),),
        "models.pix2pix_model": (gc.fix_model_class("Pix2PixModel"),),
        "options.distill_options": (fix_distillers,),
    }
