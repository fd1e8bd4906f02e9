"""GCC on torch 2.x, offline and on CPU: runtime fixes that ``01-compat.patch`` calls.

Each function replaces or wraps one piece of GCC at runtime; the patch only adds the calls.
"""
from __future__ import annotations

import functools
import inspect
import os

import torch

from vem_plugins.authoring.compat import INCEPTION, numpy_aliases


class _FloatBetasAdam(torch.optim.Adam):
    """Adam that accepts ``betas=(0, 0.9)``: torch 2.x rejects an int beyond a float."""

    def __init__(self, params, *args, betas=(0.9, 0.999), **kwargs):
        super().__init__(params, *args, betas=tuple(float(b) for b in betas), **kwargs)


def _with_float_betas(init):
    """``init`` with ``torch.optim.Adam`` accepting int betas while it runs."""
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        adam, torch.optim.Adam = torch.optim.Adam, _FloatBetasAdam
        try:
            init(self, *args, **kwargs)
        finally:
            torch.optim.Adam = adam
    __init__.vem_compat = True
    return __init__


def _accept_lottery_path(prune):
    """``utils/prune_util.prune`` passes ``lottery_path=``, which pix2pix's ``prune`` lacks."""
    @functools.wraps(prune)
    def wrapper(self, threshold, lottery_path=None):
        return prune(self, threshold)
    return wrapper


def fix_models(sagan, pix2pix):
    """Fix GCC's model classes when ``models`` is imported.

    :param sagan: GCC's ``models.SAGAN`` module (``SAGANModel`` builds Adams with int betas).
    :param pix2pix: GCC's ``models.Pix2Pix`` module (``prune()`` without ``lottery_path``).
    """
    model = sagan.SAGANModel
    if not getattr(model.__init__, "vem_compat", False):
        model.__init__ = _with_float_betas(model.__init__)
    model = pix2pix.Pix2PixModel
    if "lottery_path" not in inspect.signature(model.prune).parameters:
        model.prune = _accept_lottery_path(model.prune)


def add_options(parser):
    """Flags GCC's parser lacks: an evaluation switch, and ``--generator_only``, which GCC's
    SRGAN code reads (SRResNet pre-training, content loss only) but never defines, so that every
    ``--model srgan`` run stopped at option parsing."""
    parser.add_argument("--no_eval", action="store_true",
                        help="skip the in-training evaluation (FID; mIoU for cityscapes, PSNR/SSIM "
                             "for SRGAN); model_<epoch>.pth is saved in its place")
    parser.add_argument("--generator_only", action="store_true",
                        help="SRGAN: train the generator alone with the content loss (SRResNet)")


def missing_eval_files(opt) -> list[str]:
    """Evaluation prerequisites absent on this machine, each with where it goes."""
    missing = []
    weights = INCEPTION.path()
    if "cityscapes" not in opt.dataroot and opt.model != "srgan" and not os.path.exists(weights):
        missing.append(f"the FID Inception weights {weights} (download {INCEPTION.url})")
    stats = {"sagan": ["real_stat.npz"], "cyclegan": ["real_stat_A.npz", "real_stat_B.npz"]}
    for name in stats.get(opt.model, []):
        path = os.path.join(opt.dataroot, name)
        if not os.path.exists(path):
            missing.append(f"{path} (make it with PYTHONPATH=. python metric/get_real_stat.py "
                           f"--dataroot {opt.dataroot} --output_path {path} ...)")
    return missing


def _no_metric(opt):
    """What GCC's ``test`` returns, for an evaluation that did not happen."""
    count = {"cyclegan": 2, "srgan": 8}.get(opt.model, 1)
    return float("nan") if count == 1 else [float("nan")] * count


def fix_metric():
    """GCC's Cityscapes mIoU converts label maps with ``np.int`` (gone since NumPy 1.24)."""
    numpy_aliases("metric.mIoU_score")


def guarded_test(test):
    """GCC's ``train.test``, skippable (``--no_eval``), unable to lose a checkpoint, and able to
    convert Cityscapes label maps on NumPy >= 1.24.

    Upstream saves checkpoints only inside ``test`` (when the metric improves) and after the last
    epoch, and an evaluation error ends training. Here a skipped or failed evaluation is logged,
    ``model_<epoch>.pth`` is saved in its place, and training goes on.
    """
    @functools.wraps(test)
    def run(model, opt, logger, epoch, best_performance):
        fix_metric()
        if opt.no_eval:
            logger.info("evaluation skipped (--no_eval) at epoch %d", epoch)
        else:
            try:
                return test(model, opt, logger, epoch, best_performance)
            except Exception as exc:  # evaluation must never end training
                missing = missing_eval_files(opt)
                logger.warning("evaluation failed at epoch %d (%s: %s)%s; training continues "
                               "(--no_eval skips evaluation)", epoch, type(exc).__name__, exc,
                               "; missing: " + "; ".join(missing) if missing else "")
        model.save_models(epoch, os.path.join(opt.checkpoints_dir, opt.name, "checkpoints"))
        return _no_metric(opt)
    return run
