"""Run-time compatibility fixes for DMAD; ``01-compat.patch`` calls them (upstream lines stay).

Each fix says what breaks; where upstream worked, results are unchanged.
"""
from __future__ import annotations

import math
import os
import re

from vem_plugins.authoring.compat import INCEPTION, missing_weights, replace_once, tell


def fix_parser(parser):
    """``options/options.py`` adds ``--unmask_last_upconv`` twice (same type, default and help),
    which makes ``argparse`` raise at import on every Python version: ignore the repeat."""
    add_argument = parser.add_argument

    def add_once(*flags, **kwargs):
        known = parser._option_string_actions
        if flags and all(flag in known for flag in flags):
            return known[flags[0]]
        return add_argument(*flags, **kwargs)

    parser.add_argument = add_once
    return parser


def add_options(parser):
    """``--no_fid``: skip evaluation (FID/mIoU) — upstream has no switch, and evaluation needs
    the Inception (or DRN) weights and the dataset's real statistics."""
    parser.add_argument("--no_fid", action="store_true",
                        help="skip FID/mIoU evaluation (logged as nan; checkpoints are still "
                             "saved) [vem-plugins]")
    return parser


def fix_evaluation(namespace: dict) -> None:
    """Make ``train.py``'s and ``prune.py``'s evaluation functions (in ``namespace``, the
    script's globals) never stop training: with ``--no_fid``, or when what they need is missing
    (the Inception weights cannot be downloaded offline, ``real_stat_B.npz`` or the DRN model
    are not there), they log why and return nan. With nan the "best" model is never chosen, so
    the final ``combine_best_model`` falls back to the last saved epoch (upstream would crash
    on a missing file)."""
    for name, nan in (("test_pix2pix_fid", math.nan), ("test_pix2pix_mIoU", math.nan),
                      ("test_cyclegan_fid", (math.nan, math.nan))):
        if name in namespace:
            namespace[name] = _never_fatal(namespace[name], nan)
    replace_once(namespace["util"], "combine_best_model", _last_epoch_if_unevaluated)


def _never_fatal(evaluate, nan):
    def guarded(model, opt):
        if getattr(opt, "no_fid", False):
            return nan
        try:
            return evaluate(model, opt)
        except OSError as exc:
            tell(f"evaluation skipped, training goes on: {missing(exc)}")
            return nan
    return guarded


def missing(exc: OSError) -> str:
    """What an evaluation lacked, with where it goes."""
    if getattr(exc, "filename", None):
        return f"{exc.filename} is missing ({exc.strerror}); it comes with DMAD's README " \
               "downloads (real statistics, DRN model), or pass --no_fid"
    return f"{missing_weights(INCEPTION, 'FID')} ({exc}) Or pass --no_fid."


def _last_epoch_if_unevaluated(combine):
    def combine_best_model(best_AtoB_epoch, best_BtoA_epoch, source_path, target_path, type):
        saved = sorted(int(m[1]) for f in os.listdir(source_path)
                       if (m := re.fullmatch(r"model_(\d+)\.pth", f)))
        if saved:
            def exists(epoch):
                return os.path.exists(os.path.join(source_path, f"model_{epoch}.pth"))
            best_AtoB_epoch = best_AtoB_epoch if exists(best_AtoB_epoch) else saved[-1]
            best_BtoA_epoch = best_BtoA_epoch if exists(best_BtoA_epoch) else saved[-1]
        return combine(best_AtoB_epoch, best_BtoA_epoch, source_path, target_path, type)
    return combine_best_model
