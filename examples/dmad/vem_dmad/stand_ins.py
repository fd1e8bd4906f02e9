"""Random checkpoints in DMAD's formats, for the smoke recipe and the tests.

DMAD's distillation stage (``prune.py --finetune``) starts from a mask-search checkpoint
(``--load_path``) and distils from a pretrained generator (``--pretrain_path``). Offline there
are no trained ones, and training them takes DMAD's whole first stage, so :func:`write` builds
both with DMAD's own classes and saves them untrained, as ``save_models`` does.
"""
from __future__ import annotations

import os
import sys


def write(out: str, args: str) -> None:
    """Save ``<out>/stand_ins/mask/model_0.pth`` (a mask-search model) and
    ``<out>/stand_ins/teacher/model_0.pth`` (a generator of ``--pretrain_ngf`` channels) for
    DMAD's flags ``args`` (``--model pix2pix|mobilepix2pix --mask``...), the same for the same
    flags (the pruned student's architecture depends on the mask). Run from DMAD's root."""
    import torch

    torch.manual_seed(0)
    sys.argv = ["prune.py", *args.split(), "--checkpoints_dir", out, "--name", "stand_ins"]
    from models import MaskMobilePix2Pix, MaskPix2Pix, MobilePix2Pix, Pix2Pix
    from options import options

    opt = options.parse()
    opt.isTrain = True
    mobile = opt.model == "mobilepix2pix"
    mask = (MaskMobilePix2Pix.MaskMobilePix2PixModel if mobile else MaskPix2Pix.MaskPix2PixModel)
    mask(opt).save_models(0, os.path.join(out, "stand_ins", "mask"), fid=0.0)
    opt.mask, opt.ngf = False, opt.pretrain_ngf
    teacher = MobilePix2Pix.MobilePix2PixModel if mobile else Pix2Pix.Pix2PixModel
    teacher(opt).save_models(0, os.path.join(out, "stand_ins", "teacher"), fid=0.0)
