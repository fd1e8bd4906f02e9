"""The compatibility toolkit adapters' ``compat`` modules are written with.

* :data:`WEIGHTS`, the one table of the pretrained-weight files upstream code loads (file name,
  download address, what it is for, where it goes), :meth:`Weights.path` and
  :func:`missing_weights`, the one message for weights that are not there;
* :func:`replace_once`, the one way to replace a function, method or module attribute of upstream
  by a wrapper of it, exactly once however often a fix runs (and :func:`wrap_once` for wrapper
  factories that are also called directly);
* :func:`tell` (from :mod:`vem_plugins.messages`), the one way to tell the user something while
  upstream code runs.

Importing this module imports neither torch nor upstream code (CAT's first fix must run before
torch is imported), so an adapter's declaration may take names from it.
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import types
from collections.abc import MutableMapping
from typing import Callable, NamedTuple

from vem_plugins.messages import tell

__all__ = ["numpy_aliases", "Weights", "VGG16", "INCEPTION", "DRN_CITYSCAPES", "FACE_PARSING", "WEIGHTS",
           "missing_weights", "replace_once", "wrap_once", "tell"]


class Weights(NamedTuple):
    """One pretrained-weight file that upstream code loads."""

    #: the file's name
    file: str
    #: where to download it (a direct link, or the page upstream's README points to)
    url: str
    #: how messages name it: "<what> needs the <label> weights <file>"
    label: str
    #: what it is for, in which upstreams
    purpose: str
    #: where upstream looks for it: None for torch's hub cache (``$TORCH_HOME/hub/checkpoints``,
    #: where upstream downloads it at first use), else a path relative to the upstream checkout
    location: str | None = None
    #: the upstream option that overrides ``location``, if any
    flag: str | None = None
    #: the checksum its publisher gives, to verify a downloaded copy by
    #: (:mod:`vem_plugins.data.weights`): ``"sha256:<hex>"``, possibly a prefix (torch hub's files
    #: carry the first 8 hex digits of their sha256 in their name), or ``"git-blob:<sha1>"`` (a file
    #: in upstream's repository, named by its git object id); None when none is published
    checksum: str | None = None
    #: the adapters whose paper runs load it
    adapters: tuple[str, ...] = ()

    def path(self, root: str | os.PathLike | None = None) -> str:
        """Where upstream looks for the file: ``torch.hub.get_dir()/checkpoints/<file>`` (which
        honours ``TORCH_HOME`` at call time), or ``location`` inside the checkout ``root``
        (relative to the working directory when ``root`` is None)."""
        if self.location is None:
            import torch
            return os.path.join(torch.hub.get_dir(), "checkpoints", self.file)
        return os.path.join(root, self.location) if root is not None else self.location


VGG16 = Weights(
    file="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    label="ImageNet VGG16",
    purpose="torchvision's ImageNet VGG16: OMGD's style and feature distillation losses "
            "(utils/vgg.py; --random_vgg does without), CAGC's LPIPS KD (--kd_lpips_lambda > 0)",
    checksum="sha256:397923af", adapters=("omgd", "cagc"))

INCEPTION = Weights(
    file="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
    label="FID Inception",
    purpose="pytorch-fid's Inception for FID, in every upstream's evaluation (OMGD, GAN "
            "Compression, CAT, GCC, CAGC, DMAD); --no_fid (GCC: --no_eval) does without",
    checksum="sha256:6726825d", adapters=("omgd", "gan-compression", "cat", "gcc", "cagc"))

DRN_CITYSCAPES = Weights(
    file="drn-d-105_ms_cityscapes.pth",
    url="http://go.yf.io/drn-cityscapes-models",
    label="DRN-D-105 Cityscapes",
    purpose="the segmentation network of the Cityscapes mIoU (pix2pix on cityscapes, BtoA); "
            "--no_mIoU does without. GCC and DMAD default to "
            "database/cityscapes/drn-d-105_ms_cityscapes.pth",
    location="drn-d-105_ms_cityscapes.pth", flag="--drn_path",
    adapters=("omgd", "gan-compression", "cat"))

FACE_PARSING = Weights(
    file="79999_iter.pth",
    url="https://github.com/lychenyoko/content-aware-gan-compression/raw/master/"
        "Util/face_parsing/pretrained_model/79999_iter.pth",
    label="face-parsing",
    purpose="CAGC's BiSeNet face parsing: content-aware pruning (prune.py) and content-aware KD "
            "(train.py distils on the whole image without it)",
    location="Util/face_parsing/pretrained_model/79999_iter.pth",
    checksum="git-blob:a125015ae1683490d4e23d15295b1a4e7cb829d2", adapters=("cagc",))

#: Every pretrained-weight file the built-in adapters know about.
WEIGHTS: tuple[Weights, ...] = (VGG16, INCEPTION, DRN_CITYSCAPES, FACE_PARSING)


def missing_weights(weights: Weights, what: str, path: str | os.PathLike | None = None) -> str:
    """The message for ``weights`` that ``what`` needs and that are not there.

    :param path: where they were looked for; by default :meth:`Weights.path` (give it for
        weights inside a checkout, or those at a path from ``weights.flag``).
    """
    where = weights.path() if path is None else os.fspath(path)
    needs = f"{what} needs the {weights.label} weights {weights.file}"
    if weights.location is None:
        return (f"{needs}: they are not at {where} and could not be downloaded from "
                f"{weights.url}. Download that file on a machine with internet access and put it "
                f"at that path (set TORCH_HOME to use another cache directory).")
    if weights.flag:
        return (f"{needs}: those at {weights.flag} {where} do not exist. Download them from "
                f"{weights.url} and give their path with {weights.flag}.")
    return (f"{needs}: they are not at {where}. Download them from {weights.url} and put them "
            f"at that path.")


# -- replacing upstream functions once ------------------------------------------------------------

_MARK = "__vem_plugins_replaced__"


def _key(make) -> str:
    """What identifies a replacement: its factory's module and qualified name (stable across
    re-imports, unlike the object; a ``functools.partial`` counts as the function it binds)."""
    make = getattr(make, "func", make)
    return f"{make.__module__}.{make.__qualname__}"


def _made_by(function, key: str) -> bool:
    return key in getattr(function, _MARK, ())


def _mark(replacement, original, key: str):
    """Give ``replacement`` the name and docstring of ``original`` (for a function) and record
    that ``key``'s factory made it, on top of the factories that made ``original``."""
    if isinstance(replacement, types.FunctionType) and callable(original):
        functools.update_wrapper(replacement, original)
    setattr(replacement, _MARK, frozenset(getattr(original, _MARK, ())) | {key})
    return replacement


def wrap_once(make: Callable) -> Callable:
    """Decorate a wrapper factory ``make(original, *args)`` so that it returns ``original``
    unchanged when ``original`` already is (or wraps) one of its products.

    For factories that fixes also call directly; :func:`replace_once` recognises their products
    too.
    """
    key = _key(make)

    @functools.wraps(make)
    def once(original, *args, **kwargs):
        if _made_by(original, key):
            return original
        replacement = make(original, *args, **kwargs)
        return original if replacement is original else _mark(replacement, original, key)

    return once


def replace_once(owner, name: str, make: Callable) -> bool:
    """Replace ``owner.name`` by ``make(original)`` unless ``make`` already replaced it.

    :param owner: a class, a module (or any object whose attribute it is), or a module's
        namespace (``globals()``, a mapping: ``owner[name]`` is replaced).
    :param make: takes the function found there and returns its replacement (which may call it).
        On a class, ``make`` gets a staticmethod's or classmethod's underlying function and
        returns a plain function, which is put back as a staticmethod or classmethod; an
        inherited method is replaced on ``owner`` itself.
    :return: whether it replaced (False: ``make`` had already replaced it, here or on a base
        class, or returned the original unchanged).

    "Already replaced" is recorded on the replacement, keyed by ``make``'s module and qualified
    name: running a fix twice, or re-importing the upstream module that calls it, wraps once,
    while a different fix of the same function still wraps it further. A replacement function
    gets the original's name and docstring (``functools.wraps``).
    """
    if isinstance(owner, MutableMapping):
        current, kind = owner[name], None
    elif isinstance(owner, type):
        current = inspect.getattr_static(owner, name)
        kind = type(current) if isinstance(current, (staticmethod, classmethod)) else None
        if kind is not None:
            current = current.__func__
    else:
        current, kind = getattr(owner, name), None
    key = _key(make)
    if _made_by(current, key):
        return False
    replacement = make(current)
    if replacement is current:
        return False
    replacement = _mark(replacement, current, key)
    if kind is not None:
        replacement = kind(replacement)
    if isinstance(owner, MutableMapping):
        owner[name] = replacement
    else:
        setattr(owner, name, replacement)
    return True


class _NumPyWithAliases(types.ModuleType):
    """``numpy`` plus the aliases NumPy 1.24 removed; they always meant the Python builtins."""

    int, float, bool, object, complex, str = int, float, bool, object, complex, str

    def __getattr__(self, name):
        import numpy
        return getattr(numpy, name)


def numpy_aliases(*modules: str) -> None:
    """Give the loaded upstream ``modules`` (by name) a ``np`` that still has ``np.int`` and
    the other aliases NumPy 1.24 removed (upstream's mIoU code uses them)."""
    for name in modules:
        if name in sys.modules:
            sys.modules[name].np = _NumPyWithAliases("numpy")
