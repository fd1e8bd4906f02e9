"""OMGD on today's stack: runtime replacements for the upstream code that breaks there.

OMGD pins Python 3.7 and torch 1.7 and assumes CUDA and internet access. ``01-compat.patch``
adds one call per upstream module into this file; each call replaces, at import time, the
upstream functions that fail on Python 3.11 / torch 2.x / NumPy 2 / SciPy >= 1.18, on CPU
(``--gpu_ids -1``) or several GPUs, or offline. Where OMGD used to run (one GPU, online, weights
downloadable) nothing it computes changes; the new flags ``--no_fid`` and ``--no_mIoU`` only add
behaviour.

What is replaced, and why:

* ``trainer.py`` imports ``wandb`` unconditionally although only ``--project`` uses it
  (:func:`wandb_fallback`).
* ``utils.util.load_network`` / ``load_optimizer`` call ``torch.load`` without ``map_location``,
  so a checkpoint written on a GPU cannot be restored on CPU (:func:`fix_utils`).
* ``utils.vgg.Vgg16`` (a *training* loss) and the FID Inception download their weights at first
  use; offline they now fail with a message naming the file and where it goes (the new flag
  ``--random_vgg`` builds the VGG16 with seeded random weights instead, for trying the
  pipeline without the download, :func:`random_vgg`), and the Inception
  (evaluation only) is skipped instead of crashing training, as is the mIoU without its DRN file
  (:func:`fix_utils`, :func:`create_metric_models`). ``--no_fid``/``--no_mIoU`` skip them on
  purpose; then the FID statistics are not needed (:func:`check_real_stats`) and CycleGAN's
  student learns from the latest teacher, as no best-FID one exists
  (:func:`best_teacher_without_fid`).
* ``metric``: ``np.int`` in the Cityscapes mIoU code (removed in NumPy 1.24) and
  ``scipy.linalg.sqrtm(..., disp=False)`` (removed in SciPy 1.18) (:func:`fix_metric`).
* ``calc_CD_loss`` moves the adaptors with ``.cuda()`` and always goes through
  ``replicate``/``parallel_apply``: it crashes on CPU; and on several GPUs the activation hooks
  never match the ``DataParallel``-prefixed layer names, so it crashed there too
  (:func:`fix_multiteacher`, :func:`fix_cycleganbest`).
"""
from __future__ import annotations

import functools
import os
import sys
import types

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import parallel_apply, replicate

from vem_plugins.adapters.lineage import load_network, load_optimizer, scipy_linalg
from vem_plugins.authoring.compat import (DRN_CITYSCAPES, INCEPTION, VGG16, missing_weights,
                                          tell)


def log_file(opt) -> str | None:
    """Where a training run's messages also go: ``<log_dir>/log.txt`` (None when testing)."""
    log_dir = getattr(opt, "log_dir", None) if getattr(opt, "isTrain", False) else None
    return os.path.join(log_dir, "log.txt") if log_dir else None


# -- trainer.py ---------------------------------------------------------------------------------
def wandb_fallback() -> None:
    """Let ``import wandb`` succeed without wandb; using it (``--project``) says what to install."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        stub = types.ModuleType("wandb", "Placeholder: wandb is not installed.")

        def __getattr__(name):
            raise ImportError("OMGD's --project logs to Weights & Biases: pip install wandb "
                              "(or drop --project)")

        stub.__getattr__ = __getattr__
        sys.modules["wandb"] = stub


# -- options/distill_options.py -----------------------------------------------------------------
def add_options(parser):
    """The evaluation switches ``test.py`` already has, for training (``DistillOptions``)."""
    parser.add_argument("--no_fid", action="store_true",
                        help="skip FID during training (logged as nan; no Inception weights "
                             "needed; CycleGAN's student then learns from the latest teacher)")
    parser.add_argument("--no_mIoU", action="store_true",
                        help="skip the Cityscapes mIoU (no DRN weights needed; logged as nan)")
    parser.add_argument("--random_vgg", action="store_true",
                        help="seeded random weights for the VGG16 of the style/feature losses "
                             "instead of ImageNet's (no download; for trying, not for results)")
    return parser


# -- utils/__init__.py --------------------------------------------------------------------------
def needs_weights(init, weights, what: str):
    """Wrap a constructor that downloads ``weights`` so that failing offline names the file."""
    @functools.wraps(init)
    def wrapper(*args, **kwargs):
        try:
            return init(*args, **kwargs)
        except OSError as exc:  # urllib's URLError is an OSError
            if os.path.exists(weights.path()):
                raise
            raise RuntimeError(missing_weights(weights, what)) from exc
    return wrapper


def fix_utils() -> None:
    """Patch OMGD's ``utils`` package (called from its ``__init__``)."""
    import utils.util
    import utils.vgg
    utils.util.load_network = load_network
    utils.util.load_optimizer = load_optimizer
    utils.vgg.Vgg16.__init__ = needs_weights(
        utils.vgg.Vgg16.__init__, VGG16, "OMGD's distillation loss (torchvision's ImageNet VGG16)")


# -- metric/__init__.py -------------------------------------------------------------------------
def to_tensor(self, pic, label):
    """``metric.cityscapes_mIoU.ToTensor.__call__`` without ``np.int`` (removed in NumPy 1.24)."""
    img = np.array(pic, dtype=np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    img = torch.from_numpy(img).permute(2, 0, 1).contiguous().float() / 255
    return img, torch.from_numpy(np.array(label, dtype=np.int64))


def create_metric_models(opt, device):
    """``metric.create_metric_models`` honouring ``--no_fid``/``--no_mIoU``; missing weights skip.

    Returns ``(inception, drn)``, either None when that metric is off; the metric is then
    logged as nan. Upstream's version downloads the Inception weights and crashes offline.
    """
    from metric.cityscapes_mIoU import DRNSeg
    from metric.inception import InceptionV3
    from utils import util

    inception = None
    if getattr(opt, "no_fid", False):
        tell("--no_fid: FID is not computed (logged as nan)", log_file(opt))
    else:
        try:
            inception = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
        except OSError:
            tell(missing_weights(INCEPTION, "FID") + " FID is skipped (logged as nan).",
                 log_file(opt))
    drn = None
    if "cityscapes" in opt.dataroot and opt.direction == "BtoA":
        if getattr(opt, "no_mIoU", False):
            tell("--no_mIoU: the Cityscapes mIoU is not computed (logged as nan)", log_file(opt))
        elif not os.path.isfile(opt.drn_path):
            tell(missing_weights(DRN_CITYSCAPES, "The Cityscapes mIoU", opt.drn_path)
                 + " mIoU is skipped (logged as nan).", log_file(opt))
        else:
            drn = DRNSeg("drn_d_105", 19, pretrained=False)
            util.load_network(drn, opt.drn_path, verbose=False)
            if len(opt.gpu_ids) > 0:
                drn = nn.DataParallel(drn, opt.gpu_ids)
            drn = drn.to(device).eval()
    return inception, drn


def nan_without_model(metric, model_arg: int):
    """``metric`` returning nan when its model (positional argument ``model_arg``) is None."""
    @functools.wraps(metric)
    def wrapper(*args, **kwargs):
        return float("nan") if args[model_arg] is None else metric(*args, **kwargs)
    return wrapper


def fix_metric(namespace: dict) -> None:
    """Patch OMGD's ``metric`` package; ``namespace`` is its ``globals()``."""
    sys.modules["metric.fid_score"].linalg = scipy_linalg()
    sys.modules["metric.cityscapes_mIoU"].ToTensor.__call__ = to_tensor
    namespace["create_metric_models"] = create_metric_models
    namespace["get_fid"] = nan_without_model(namespace["get_fid"], 1)
    namespace["get_cityscapes_mIoU"] = nan_without_model(namespace["get_cityscapes_mIoU"], 2)


# -- distillers ---------------------------------------------------------------------------------
def record_activations(net: nn.Module, mem: dict, layers) -> None:
    """Upstream's forward hooks for the CD loss: ``mem[layer + device] = output``."""
    def hook(name, module, inputs, output):
        mem[name + str(output.device)] = output

    for name, module in net.named_modules():
        if name in layers:
            module.register_forward_hook(functools.partial(hook, name))


def cd_loss(teacher_flag: str):
    """``calc_CD_loss``; ``replicate``/``parallel_apply`` only when there are several GPUs."""
    def calc_CD_loss(self):
        losses = []
        layers = self.mapping_layers[getattr(self.opt, teacher_flag)]
        for netA, n in zip(self.netAs, layers):
            netA.to(self.device)
            inputs = tuple(self.Sacts[key] for key in sorted(self.Sacts) if n in key)
            if len(self.gpu_ids) > 1:
                Sacts = parallel_apply(replicate(netA, self.gpu_ids), inputs)
            else:
                Sacts = [netA(x) for x in inputs]
            Tacts = [self.Tacts[key] for key in sorted(self.Tacts) if n in key]
            for source, target in zip(Sacts, Tacts):
                source = source.mean(dim=(2, 3), keepdim=False)
                target = target.detach().mean(dim=(2, 3), keepdim=False)
                losses.append(torch.mean(torch.pow(source - target, 2)))
        return sum(losses)
    return calc_CD_loss


def hook_data_parallel(setup, teacher: str, teacher_flag: str):
    """After ``setup``, hook the CD layers inside ``DataParallel`` nets (upstream's names miss)."""
    @functools.wraps(setup)
    def wrapper(self, opt, verbose=True):
        setup(self, opt, verbose)
        if self.opt.lambda_CD > 0:
            layers = self.mapping_layers[getattr(self.opt, teacher_flag)]
            for net, mem in ((getattr(self, teacher), self.Tacts), (self.netG_student, self.Sacts)):
                if isinstance(net, nn.DataParallel):
                    record_activations(net.module, mem, layers)
    return wrapper


def check_real_stats(init, flags):
    """Before ``__init__`` loads the FID statistics: a clear error, or none needed with --no_fid."""
    @functools.wraps(init)
    def wrapper(self, opt):
        for flag in flags:
            path = getattr(opt, flag)
            if path is not None and os.path.isfile(path):
                continue
            if not opt.no_fid:
                raise FileNotFoundError(
                    f"--{flag} {path}: no such file. FID needs the real images' Inception "
                    f"statistics (GAN Compression's real_stat/<dataset>_<A|B>.npz; its old "
                    f"hanlab.mit.edu links are dead, the files are in the Hugging Face repo "
                    f"mit-han-lab/gan-compression). Pass --no_fid to train without FID.")
            unused = os.path.join(opt.log_dir, "real_stat_unused.npz")
            np.savez(unused, mu=np.zeros(0), sigma=np.zeros((0, 0)))
            setattr(opt, flag, unused)
        init(self, opt)
    return wrapper


def best_teacher_without_fid(evaluate_model):
    """With FID off the best-FID teacher is never saved: save the current one as the best."""
    @functools.wraps(evaluate_model)
    def wrapper(self, step):
        metrics = evaluate_model(self, step)
        if self.inception_model is None:
            best = os.path.join(self.save_dir, "best_net_G_teacher_A.pth")
            self.save_net(self.netG_teacher_A, best)
        return metrics
    return wrapper


def random_vgg(init):
    """``--random_vgg``: the distiller's VGG16 (style and feature losses) gets seeded random
    weights instead of ImageNet's, so runs need no download (``vem-plugins try``). Random
    convolutional features still carry colour and texture; results are not the paper's."""
    @functools.wraps(init)
    def wrapper(self, opt):
        if not getattr(opt, "random_vgg", False):
            return init(self, opt)
        import utils.vgg
        models = utils.vgg.models

        def vgg16(**_):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return models.vgg16(weights=None)

        utils.vgg.models = types.SimpleNamespace(vgg16=vgg16)
        try:
            init(self, opt)
        finally:
            utils.vgg.models = models
        tell("--random_vgg: OMGD's VGG16 losses use seeded random weights, not ImageNet's "
             f"{VGG16.file}: for trying the pipeline, not for results", log_file(opt))
    return wrapper


def _fix_distiller(cls, teacher: str, teacher_flag: str, stats) -> None:
    cls.calc_CD_loss = cd_loss(teacher_flag)
    cls.setup = hook_data_parallel(cls.setup, teacher, teacher_flag)
    cls.__init__ = random_vgg(check_real_stats(cls.__init__, stats))


def fix_multiteacher(cls) -> None:
    """Patch ``MultiTeacherDistiller`` (pix2pix; called below the class)."""
    _fix_distiller(cls, "netG_teacher_w", "teacher_netG_w", ("real_stat_path",))


def fix_cycleganbest(cls) -> None:
    """Patch ``CycleganBestDistiller`` (CycleGAN; called below the class)."""
    _fix_distiller(cls, "netG_teacher_A", "teacher_netG", ("real_stat_A_path", "real_stat_B_path"))
    cls.evaluate_model = best_teacher_without_fid(cls.evaluate_model)
