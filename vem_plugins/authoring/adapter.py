"""What an adapter declares: an upstream repository at a pinned commit plus our patch series.

An adapter is a package: this declaration (data) in its ``adapter`` module, the calls its
patches make in ``glue``, its compatibility fixes in ``compat``. Built-in adapters
(``adapters/<name>/``, installed as :mod:`vem_plugins.adapters`) and third-party ones are laid out
alike and register alike, through the ``register_adapters`` hook of a module named in the
``vem_plugins`` entry-point group.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from importlib.resources.abc import Traversable
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Smoke:
    """How to run upstream's own training for a couple of iterations on CPU with tiny data.

    ``command`` is an argv list run from the checkout's root; ``{python}``, ``{data}`` and
    ``{out}`` are replaced by the interpreter, the generated dataset's root and a scratch output
    directory.

    :param dataset: ``"aligned"`` (A|B side by side), ``"unaligned"`` (trainA/trainB) or
        ``"unconditional"`` (one folder of images).
    :param size: image side in pixels.
    :param count: images per split.
    :param command: argv template.
    :param log: path template (same placeholders) of the loss log the MI terms must reach.
    """

    dataset: str
    command: tuple[str, ...]
    size: int = 64
    count: int = 8
    log: str = "{out}/log.txt"


@dataclasses.dataclass(frozen=True)
class Tryout:
    """How ``vem-plugins try`` trains the adapter on the built-in paired dataset
    (:mod:`vem_plugins.commands.toy_pairs`, aligned A|B pairs under ``train/`` and ``val/``).

    ``command`` is an argv template run from the checkout's root, with ``{python}``, ``{data}``,
    ``{out}`` and ``{epochs}`` replaced; it must write a run record (``--vem_record``) into
    ``{out}``. The run with VEM appends ``vem``; the other runs the command as it is.

    :param command: argv template.
    :param vem: flags appended for the run with VEM.
    :param batch_size: the batch size ``command`` trains with (for the progress bars).
    :param size: image side of the generated pairs, in pixels.
    """

    command: tuple[str, ...]
    vem: tuple[str, ...] = ("--vem",)
    batch_size: int = 4
    size: int = 64


@dataclasses.dataclass(frozen=True)
class Adapter:
    """One upstream codebase and how vem-plugins modifies it.

    :param name: the name users type (``vem-plugins install NAME``).
    :param url: upstream git URL.
    :param commit: the pinned full commit SHA; install verifies HEAD equals it.
    :param patches: ordered patch files (zero-context, insertion-only unified diffs).
    :param file_hashes: sha256 of every upstream file a patch touches, at the pin, by path.
    :param added_files: files we add to the checkout: destination path -> source file.
    :param requirements: extra pip requirements of the upstream code on today's stack.
    :param entry_points: upstream scripts that gain ``--vem``.
    :param assets: large upstream blobs that may be left out of the checkout, path -> what
        their absence disables.
    :param smoke: how to smoke-test the adapter, or None.
    :param tryout: how ``vem-plugins try`` runs it, or None.
    :param version: the adapter's own version, written to the lock file.
    """

    name: str
    url: str
    commit: str
    patches: tuple[Traversable, ...] = ()
    file_hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    added_files: dict[str, Traversable] = dataclasses.field(default_factory=dict)
    requirements: tuple[str, ...] = ()
    entry_points: tuple[str, ...] = ()
    assets: dict[str, str] = dataclasses.field(default_factory=dict)
    smoke: Smoke | None = None
    tryout: Tryout | None = None
    version: str = "0"


def patch_series(folder) -> dict:
    """``patches`` and ``file_hashes`` of an adapter from its patch folder: the ``*.patch`` files
    in name order (``01-compat.patch``, ``02-vem.patch``, ...) and ``file_hashes.json``, which
    ``vem-plugins refresh`` rewrites. Use as ``Adapter(..., **patch_series(folder))``."""
    folder = Path(str(folder))
    return {"patches": tuple(sorted(folder.glob("*.patch"))),
            "file_hashes": json.loads((folder / "file_hashes.json").read_text())}


def requirement_modules(requirements) -> dict[str, list[str] | None]:
    """For each pip requirement (``"scipy"``, ``"opencv-python-headless>=4"``), the top-level
    modules its installed distribution provides, or None when it is not installed.

    pip names are not import names (opencv-python-headless provides ``cv2``, scikit-image
    ``skimage``, pyyaml ``yaml``), so the installed distributions' metadata maps one to the other.
    """
    provides: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(_normalise(dist), []).append(module)
    found = {}
    for requirement in requirements:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        name = name[1] if name else requirement
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            found[requirement] = None
            continue
        found[requirement] = sorted(m for m in provides.get(_normalise(name), [])
                                    if m.isidentifier() and not m.startswith("_"))
    return found


def missing_requirements(adapter: Adapter) -> list[str]:
    """The ``requirements`` of ``adapter`` not installed in this Python environment. Reads
    metadata only, importing nothing, so ``install`` and ``try`` can ask before any work;
    ``vem-plugins check`` also imports the modules of those that are installed."""
    return [r for r, modules in requirement_modules(adapter.requirements).items()
            if modules is None]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
