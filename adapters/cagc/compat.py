"""CAGC on torch 2.x, NumPy 2, offline and on CPU: runtime fixes that ``01-compat.patch`` calls.

Each function replaces or wraps one piece of CAGC (or of an API it uses) at runtime; the patch
only adds the calls. Nothing touches ``op/``, which is under NVIDIA's non-commercial licence.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vem_plugins.adapters.cagc.adapter import FID_STATS
from vem_plugins.authoring.compat import (FACE_PARSING, INCEPTION, VGG16, missing_weights,
                                          replace_once, tell)


def _native_fused_leaky_relu(input, bias=None, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        input = input + bias.view(1, -1, *[1] * (input.ndim - 2))
    return F.leaky_relu(input, negative_slope) * scale


def _guard_cuda_ops():
    """Import CAGC's ``op`` package without its import-time CUDA build failing.

    ``op/fused_act.py`` and ``op/upfirdn2d.py`` JIT-compile CUDA kernels when imported, which
    fails without CUDA (or without a matching toolkit). Without CUDA the build is skipped and
    their own CPU paths run; if it fails with CUDA, pure-PyTorch versions run on every device.
    """
    if "op" in sys.modules:
        return
    from torch.utils import cpp_extension
    build, failures = cpp_extension.load, []

    def load(name, *args, **kwargs):
        if not torch.cuda.is_available():
            return None
        try:
            return build(name, *args, **kwargs)
        except Exception as exc:  # a toolchain problem: fall back to PyTorch ops
            failures.append(f"{name}: {exc}")
            return None

    cpp_extension.load = load
    try:
        import op
    finally:
        cpp_extension.load = build
    if failures:
        tell("CAGC's CUDA ops did not build (" + "; ".join(failures) +
             "); using pure-PyTorch versions (slower)")
        fused, upfirdn = sys.modules["op.fused_act"], sys.modules["op.upfirdn2d"]

        def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
            return upfirdn.upfirdn2d_native(input, kernel, up, up, down, down,
                                            pad[0], pad[1], pad[0], pad[1])

        fused.fused_leaky_relu = op.fused_leaky_relu = _native_fused_leaky_relu
        upfirdn.upfirdn2d = op.upfirdn2d = upfirdn2d


def _accept_range(make_grid):
    """torchvision renamed ``make_grid(range=)`` to ``value_range=`` (``save_image`` passes it)."""
    @functools.wraps(make_grid)
    def wrapper(*args, range=None, **kwargs):
        if range is not None:
            kwargs.setdefault("value_range", range)
        return make_grid(*args, **kwargs)
    wrapper.vem_compat = True
    return wrapper


def _lpips_imports():
    """``lpips/`` imports ``skimage.measure.compare_ssim`` (gone since scikit-image 0.19) and
    ``IPython.embed`` (never called)."""
    with contextlib.suppress(ImportError):  # without scikit-image, lpips' own import names it
        import skimage.measure
        import skimage.metrics
        if not hasattr(skimage.measure, "compare_ssim"):
            skimage.measure.compare_ssim = skimage.metrics.structural_similarity
    if "IPython" not in sys.modules and importlib.util.find_spec("IPython") is None:
        stub = types.ModuleType("IPython", "vem-plugins stand-in for CAGC's unused IPython import")

        def embed(*args, **kwargs):
            raise RuntimeError("IPython is not installed (pip install ipython)")

        stub.embed = embed
        sys.modules["IPython"] = stub


def fix_imports():
    """Import-time fixes: ``train.py`` and ``prune.py`` call this before importing ``model``."""
    import torchvision.utils
    _guard_cuda_ops()
    if not getattr(torchvision.utils.make_grid, "vem_compat", False):
        torchvision.utils.make_grid = _accept_range(torchvision.utils.make_grid)
    _lpips_imports()


def present_devices(ids, primary):
    """The configured GPU ids that exist and the primary device (CPU when there is no GPU)."""
    count = torch.cuda.device_count()
    if not count:
        return [0], "cpu"
    present = [i for i in ids if i < count] or [0]
    if not (primary.startswith("cuda") and int(primary.partition(":")[2] or 0) < count):
        primary = f"cuda:{present[0]}"
    return present, primary


def _lpips_on_present_device(init):
    """LPIPS is built with ``use_gpu=True``: use a GPU only if there is one, and name the weights
    file when torchvision cannot download VGG16."""
    def __init__(self, *args, **kwargs):
        kwargs["use_gpu"] = kwargs.get("use_gpu", True) and torch.cuda.is_available()
        try:
            init(self, *args, **kwargs)
        except OSError as exc:
            raise RuntimeError(missing_weights(VGG16, "LPIPS KD (--kd_lpips_lambda > 0)")
                               + " Or pass --kd_lpips_lambda 0.") from exc
    return __init__


def fix_train(hyperparams, lpips):
    """Fixes for ``train.py`` once ``train_hyperparams`` and ``lpips`` are imported.

    :param hyperparams: CAGC's ``train_hyperparams`` module (GPU ids and primary device; the GPUs
        that are absent are dropped, CPU when there is none).
    :param lpips: CAGC's ``lpips`` package.
    """
    ids, primary = present_devices(hyperparams.gpu_device_ids, hyperparams.primary_device)
    if (ids, primary) != (hyperparams.gpu_device_ids, hyperparams.primary_device):
        tell(f"train_hyperparams.py asks for GPUs {hyperparams.gpu_device_ids} and "
             f"{hyperparams.primary_device}; using {ids if primary != 'cpu' else 'no GPU'} and "
             f"{primary}")
        hyperparams.gpu_device_ids, hyperparams.primary_device = ids, primary
    replace_once(lpips.PerceptualLoss, "__init__", _lpips_on_present_device)


def str2bool(text: str) -> bool:
    """What upstream meant by ``type=bool``: ``False``/``0``/``no``/empty are False."""
    value = text.strip().lower()
    if value in ("", "0", "false", "f", "no", "n", "off"):
        return False
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def add_options(parser):
    """``type=bool`` flags as booleans (``--content_aware_KD False`` was True), and ``--no_fid``."""
    for action in parser._actions:
        if action.type is bool:
            action.type = str2bool
    parser.add_argument("--no_fid", action="store_true",
                        help="skip the FID evaluation before each checkpoint save (logged)")


def _missing_fid_files(root: Path, size: int) -> list[str]:
    missing = []
    if size not in (256, 1024):
        missing.append(f"FFHQ statistics for {size} px (CAGC has them for 256 and 1024 px only)")
    elif not (root / FID_STATS.format(size)).exists():
        missing.append(f"{root / FID_STATS.format(size)} (in CAGC's GitHub repository)")
    if not Path(INCEPTION.path()).exists():
        missing.append(f"{INCEPTION.path()} ({INCEPTION.url})")
    return missing


def guarded_fid(get_fid_score, args):
    """CAGC's ``Get_Model_FID_Score`` for training: skipped with ``--no_fid``; a failure is
    reported rather than raised, so the checkpoint saved right after it is never lost. The text
    returned lands in the training log (``Evaluated FID: skipped (--no_fid)``)."""
    root = Path(sys.modules[get_fid_score.__module__].__file__).parents[1]

    @functools.wraps(get_fid_score)
    def run(*a, **kw):
        if args.no_fid:
            return "skipped (--no_fid)"
        try:
            return get_fid_score(*a, **kw)
        except Exception as exc:  # evaluation must never cost the checkpoint
            missing = _missing_fid_files(root, args.size)
            text = f"failed ({type(exc).__name__}: {exc})" + \
                (f"; missing: {'; '.join(missing)}" if missing else "")
            tell("FID " + text)
            return text
    return run


@contextlib.contextmanager
def _no_backbone_download(parsing_module):
    """BiSeNet downloads ImageNet ResNet-18 weights that ``79999_iter.pth`` then overwrites."""
    resnet = sys.modules[parsing_module.BiSeNet.__module__].Resnet18
    init_weight = resnet.init_weight
    resnet.init_weight = lambda self: None
    try:
        yield
    finally:
        resnet.init_weight = init_weight


def _parsing_weights(module) -> Path:
    """Where CAGC looks for the face-parsing weights: ``Util/`` is ``module``'s folder."""
    return Path(module.__file__).parents[1] / FACE_PARSING.location


def parsing_net_or_none(get_parsing_net, args):
    """``Get_Parsing_Net`` for KD: without the face-parsing weights, warn and return no net, so
    CAGC distils on the whole image (the log's status then reads ``Content Aware: False``)."""
    module = sys.modules[get_parsing_net.__module__]
    weights = _parsing_weights(module)

    @functools.wraps(get_parsing_net)
    def run(device):
        if not weights.exists():
            tell(missing_weights(FACE_PARSING, "Content-aware KD", weights)
                 + " Distilling on the whole image instead.")
            args.content_aware_KD = False
            return None, None
        with _no_backbone_download(module):
            return get_parsing_net(device)
    return run


def fix_prune(score_fn, device: str) -> str:
    """Fixes for ``prune.py``: the parsing net it builds, and its hard-coded ``cuda:0``.

    :param score_fn: CAGC's ``Get_Content_Aware_Pruning_Score`` (its module builds the parsing net).
    :param device: the configured device.
    :return: the device to use (CPU when there is no GPU).
    """
    module = sys.modules[score_fn.__module__]
    replace_once(module, "Get_Parsing_Net", functools.partial(_parsing_net_required, module))
    return device if torch.cuda.is_available() else "cpu"


def _parsing_net_required(module, get_parsing_net):
    """``Get_Parsing_Net`` for pruning: the face-parsing weights are required, and named."""
    weights = _parsing_weights(module)

    def run(dev):
        if not weights.exists():
            raise FileNotFoundError(missing_weights(FACE_PARSING, "Content-aware pruning", weights))
        with _no_backbone_download(module):
            return get_parsing_net(dev)
    return run


def layerwise_scores(grad_score_list):
    """``prune.py`` stacks per-batch lists of per-layer scores, and StyleGAN2's layers differ in
    width: NumPy >= 1.24 refuses that ragged array. Each batch becomes a 1-D object array, so the
    stack and its sum over batches work per layer as they did on older NumPy."""
    batches = []
    for scores in grad_score_list:
        batch = np.empty(len(scores), dtype=object)
        for i, layer in enumerate(scores):
            batch[i] = np.asarray(layer)
        batches.append(batch)
    return batches
