"""Runtime compatibility fixes for GAN-Compression on torch 2.x, NumPy 2, SciPy >= 1.18, CPU, offline.

GAN-Compression (pinned in 2024, written for torch 1.4) breaks on today's stack in a handful of
places. We do not ship changed upstream lines: ``01-compat.patch`` appends two lines to the end of
each affected upstream module, ::

    from vem_plugins.adapters.gan_compression.compat import fix as _vem_plugins_fix  # vem-plugins
    _vem_plugins_fix(globals())

and :func:`fix` replaces, in that module's own namespace, what no longer works by a function of
ours (:data:`FIXES` lists them per module). Patching at the end of the defining module means every
importer, whatever the entry point (train.py, distill.py, train_supernet.py, test.py, export.py),
sees the fixed version. CAT inherits GAN-Compression's metric code, so
:mod:`vem_plugins.adapters.cat.compat` reuses the metric fixes below.

The fixes:

* evaluation nets (FID Inception, Cityscapes DRN) are built only when wanted and available:
  ``--no_fid`` / ``--no_mIoU`` are honoured everywhere (upstream half-implements them), and missing
  weights (the Inception file is downloaded at model construction; the DRN file is a local
  ``--drn_path``) switch that metric off with a message naming the file instead of crashing
  training; the metric is then logged as ``nan``;
* ``distillers/resnet_distiller.py`` and ``supernets/resnet_supernet.py`` compute the feature
  distillation loss through ``replicate``/``parallel_apply``/``gather``, which fails without a GPU:
  on CPU it is computed directly (GPU runs keep upstream's code);
* ``SuperConvTranspose2d`` calls ``_output_padding`` with the pre-1.12 signature (upstream issue
  #110), which breaks the supernet stage on every device;
* ``np.int`` (removed in NumPy 1.24) in the mIoU code and ``scipy.linalg.sqrtm(..., disp=False)``
  (removed in SciPy 1.18) in the FID code;
* ``utils.util.load_network``/``load_optimizer`` call ``torch.load`` without ``map_location``, so a
  checkpoint written on a GPU cannot be read on CPU.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from vem_plugins.adapters import lineage
from vem_plugins.authoring.compat import (DRN_CITYSCAPES, INCEPTION, missing_weights,
                                          numpy_aliases, replace_once, tell, wrap_once)


def fix(namespace: dict) -> None:
    """Apply the fixes for the upstream module whose ``globals()`` these are (see :data:`FIXES`)."""
    for apply in FIXES.get(namespace["__name__"], ()):
        apply(namespace)


# -- evaluation networks: built only when wanted and available --------------------------------

class MissingWeights(RuntimeError):
    """Pretrained weights an evaluation network needs are neither cached nor downloadable."""


class Disabled(nn.Module):
    """Stands in for an evaluation network that is switched off or whose weights are missing."""

    def __init__(self, metric: str, reason: str):
        super().__init__()
        self.metric, self.reason = metric, reason

    def forward(self, *args, **kwargs):
        raise RuntimeError(f"{self.metric} evaluation is off: {self.reason}")


def fid_weights(url, *args, progress=True, **kwargs):
    """Upstream's ``load_state_dict_from_url`` for the FID Inception, failing with the file's name.

    The weights come from torch's hub cache (``$TORCH_HOME/hub/checkpoints/``) or are downloaded
    there; offline without the file this raises :class:`MissingWeights`, which switches FID off.
    """
    try:
        return torch.hub.load_state_dict_from_url(url, progress=progress, map_location="cpu",
                                                  weights_only=True)
    except OSError as exc:  # URLError, HTTPError, socket errors
        weights = INCEPTION._replace(file=os.path.basename(url), url=url)
        raise MissingWeights(f"{missing_weights(weights, 'FID')} ({exc})") from exc


class _Optional:
    """An evaluation network's class that builds :class:`Disabled` when it is off or unavailable.

    Class attributes (e.g. ``InceptionV3.BLOCK_INDEX_BY_DIM``) read through to the real class.
    """

    def __init__(self, real, metric: str, reason: str | None):
        self.real, self.metric, self.reason = real, metric, reason

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __call__(self, *args, **kwargs):
        if self.reason is None:
            try:
                return self.real(*args, **kwargs)
            except MissingWeights as exc:
                self.reason = str(exc)
        return Disabled(self.metric, self.reason)


def _off_reasons(opt) -> dict[str, tuple[str, str | None]]:
    """Per evaluation-net class: the metric, and why it is off for these options (None: on)."""
    if getattr(opt, "no_mIoU", False):
        drn = "--no_mIoU"
    elif not os.path.exists(getattr(opt, "drn_path", "") or ""):
        drn = (missing_weights(DRN_CITYSCAPES, "The Cityscapes mIoU",
                               getattr(opt, "drn_path", None)) + " Or pass --no_mIoU.")
    else:
        drn = None
    return {"InceptionV3": ("FID", "--no_fid" if getattr(opt, "no_fid", False) else None),
            "DRNSeg": ("Cityscapes mIoU", drn)}


@contextlib.contextmanager
def _optional_metric_nets(namespace: dict, opt):
    """While upstream code in ``namespace`` builds evaluation networks, make them optional."""
    saved = {}
    for name, (metric, reason) in _off_reasons(opt).items():
        if name in namespace:
            saved[name] = namespace[name]
            namespace[name] = _Optional(saved[name], metric, reason)
    try:
        yield
    finally:
        namespace.update(saved)


def _drop_disabled(net):
    """None for a (possibly DataParallel-wrapped) :class:`Disabled`, printing why; else ``net``."""
    inner = getattr(net, "module", net)
    if isinstance(inner, Disabled):
        tell(f"{inner.metric} evaluation is skipped (logged as nan): {inner.reason}")
        return None
    return net


@wrap_once
def optional_metric_models(create):
    """Wrap ``metric.create_metric_models(opt, device)``: unavailable networks come back as None."""
    def create_metric_models(opt, device):
        with _optional_metric_nets(create.__globals__, opt):
            nets = create(opt, device)
        return tuple(_drop_disabled(net) for net in nets)

    return create_metric_models


def optional_metric_nets_in_init(cls) -> None:
    """Wrap ``cls.__init__(self, opt)`` so that its ``inception_model``/``drn_model`` are optional."""
    replace_once(cls, "__init__", _optional_nets_in_init)


def _optional_nets_in_init(init):
    def __init__(self, opt, *args, **kwargs):
        with _optional_metric_nets(init.__globals__, opt):
            init(self, opt, *args, **kwargs)
        for name in ("inception_model", "drn_model"):
            if hasattr(self, name):
                setattr(self, name, _drop_disabled(getattr(self, name)))

    return __init__


@wrap_once
def nan_without_model(metric):
    """Wrap a metric function taking ``model``: ``nan`` when upstream passes None (metric off)."""
    signature = inspect.signature(metric)

    def wrapper(*args, **kwargs):
        if signature.bind(*args, **kwargs).arguments.get("model") is None:
            return float("nan")
        return metric(*args, **kwargs)

    return wrapper


def add_eval_flags(parser) -> None:
    """Add ``--no_fid``/``--no_mIoU`` where upstream's options lack them (CAT's train/distill)."""
    if "--no_fid" not in parser._option_string_actions:
        parser.add_argument("--no_fid", action="store_true",
                            help="skip FID evaluation (no Inception weights needed) [vem-plugins]")
    if "--no_mIoU" not in parser._option_string_actions:
        parser.add_argument("--no_mIoU", action="store_true",
                            help="skip Cityscapes mIoU evaluation (no DRN weights needed) [vem-plugins]")


def eval_flags_in_options(cls) -> None:
    """Make ``cls.modify_commandline_options`` add ``--no_fid``/``--no_mIoU`` when missing."""
    replace_once(cls, "modify_commandline_options", _with_eval_flags)


def _with_eval_flags(setter):
    def modify_commandline_options(parser, is_train=True):
        parser = setter(parser, is_train)
        add_eval_flags(parser)
        return parser

    return modify_commandline_options


# -- NumPy 2 and SciPy 1.18 --------------------------------------------------------------------

def _module(name: str):
    return sys.modules.get(name)


def fix_metric_package(namespace: dict) -> None:
    """``metric/__init__.py``: weights, NumPy/SciPy, optional evaluation nets, nan when off."""
    inception = _module("metric.inception")
    if inception is not None:
        inception.load_state_dict_from_url = fid_weights
    fid_score = _module("metric.fid_score")
    if fid_score is not None:
        fid_score.linalg = lineage.scipy_linalg()
    numpy_aliases("metric.cityscapes_mIoU", "metric.mIoU_score")
    for name in ("get_fid", "get_cityscapes_mIoU", "get_mIoU"):
        if name in namespace:
            replace_once(namespace, name, nan_without_model)
    if "create_metric_models" in namespace:
        replace_once(namespace, "create_metric_models", optional_metric_models)


def fix_model_class(class_name: str):
    def apply(namespace: dict) -> None:
        cls = namespace[class_name]
        optional_metric_nets_in_init(cls)
        eval_flags_in_options(cls)
    return apply


# -- CPU -----------------------------------------------------------------------------------------

@wrap_once
def _single_device_distill_loss(original, adaptor_kwargs):
    """``calc_distill_loss`` without ``replicate``/``parallel_apply``/``gather`` when on CPU."""
    def calc_distill_loss(self):
        if self.gpu_ids:
            return original(self)
        losses = []
        for i, netA in enumerate(self.netAs):
            n = self.mapping_layers[i]
            Sacts = [self.Sacts[key] for key in sorted(self.Sacts) if n in key]
            Tacts = [self.Tacts[key] for key in sorted(self.Tacts) if n in key]
            loss = sum(F.mse_loss(netA(Sact, **adaptor_kwargs(netA)), Tact)
                       for Sact, Tact in zip(Sacts, Tacts))
            setattr(self, "loss_G_distill%d" % i, loss)
            losses.append(loss)
        return sum(losses)

    return calc_distill_loss


def _fix_distill_loss(class_name: str, adaptor_kwargs):
    def apply(namespace: dict) -> None:
        replace_once(namespace[class_name], "calc_distill_loss",
                     functools.partial(_single_device_distill_loss, adaptor_kwargs=adaptor_kwargs))
    return apply


# -- torch >= 1.12 -------------------------------------------------------------------------------

def fix_super_modules(namespace: dict) -> None:
    """``SuperConvTranspose2d.forward`` calls ``_output_padding`` without ``num_spatial_dims``."""
    parameters = inspect.signature(nn.ConvTranspose2d._output_padding).parameters
    if "num_spatial_dims" not in parameters:
        return

    def _output_padding(self, input, output_size, stride, padding, kernel_size,
                        num_spatial_dims=2, dilation=None):
        return nn.ConvTranspose2d._output_padding(self, input, output_size, stride, padding,
                                                  kernel_size, num_spatial_dims, dilation)

    namespace["SuperConvTranspose2d"]._output_padding = _output_padding


# -- checkpoints ---------------------------------------------------------------------------------

def load_network(net, load_path, verbose=True):
    """:func:`lineage.load_network` that leaves a :class:`Disabled` evaluation net alone."""
    return net if isinstance(net, Disabled) else lineage.load_network(net, load_path, verbose)


def fix_utils_package(namespace: dict) -> None:
    """``utils/__init__.py``: checkpoint loaders of ``utils.util`` (a file we must not edit)."""
    import importlib
    util = importlib.import_module(namespace["__name__"] + ".util")
    util.load_network, util.load_optimizer = load_network, lineage.load_optimizer


FIXES = {
    "metric": (fix_metric_package,),
    "utils": (fix_utils_package,),
    "models.modules.super_modules": (fix_super_modules,),
    "models.cycle_gan_model": (fix_model_class("CycleGANModel"),),
    "models.pix2pix_model": (fix_model_class("Pix2PixModel"),),
    "distillers.resnet_distiller": (_fix_distill_loss("ResnetDistiller", lambda netA: {}),),
    "supernets.resnet_supernet": (
        _fix_distill_loss("ResnetSupernet", lambda netA: {"config": {"channel": netA.out_channels}}),),
}
