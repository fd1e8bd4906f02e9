"""The links from installed checkouts to the prepared data (see :mod:`vem_plugins.data.catalog`).

The upstream scripts read fixed paths relative to their checkout (``database/horse2zebra``);
each folder or file they read there becomes a symbolic link to the one prepared copy under the
data root. What a user put there is never replaced: an existing file or folder, or a link that
points somewhere that exists. A dangling link (a data root since moved) is replaced.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vem_plugins.data.catalog import Dataset

LINKED = "linked"


def link(dataset: Dataset, root: Path, checkouts: dict[str, list[Path]]) -> list[tuple[Path, str]]:
    """Link every path of ``dataset`` that the installed checkouts' scripts read; each path
    with what happened (:data:`LINKED` or why not)."""
    done = []
    for path, want in _paths(dataset, root, checkouts):
        done.append((path, _link(path, want)))
    return done


def states(dataset: Dataset, root: Path, checkouts: dict[str, list[Path]]) -> dict:
    """``{(adapter, checkout): state}``: :data:`LINKED` when all its paths are, else the first
    path that is not and why (or the flag to give, for an upstream with no fixed path)."""
    out = {}
    for use in dataset.uses:
        for checkout in checkouts.get(use.adapter, []):
            out[use.adapter, checkout] = next(
                (f"{path.relative_to(checkout)}: {state}"
                 for path, want in _paths(dataset, root, {use.adapter: [checkout]})
                 if (state := _state(path, want)) != LINKED),
                LINKED if use.links else f"no fixed path: give {use.flag.format(root=root)}")
    return out


def _paths(dataset, root, checkouts):
    for use in dataset.uses:
        for checkout in checkouts.get(use.adapter, []):
            for path, target in use.links.items():
                yield checkout / path, root / dataset.name / target


def _state(path: Path, want: Path) -> str:
    if path.is_symlink():
        if Path(os.readlink(path)) == want:
            return LINKED
        return "a link to somewhere else, left alone" if path.exists() else "a dangling link"
    return "your own copy, left alone" if path.exists() else "not linked"


def _link(path: Path, want: Path) -> str:
    state = _state(path, want)
    if state not in ("not linked", "a dangling link"):
        return state
    new = path.with_name(f".{path.name}.vem-link-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new.unlink(missing_ok=True)
        new.symlink_to(want)
        os.replace(new, path)  # a dangling link is replaced in one step
    except OSError as exc:
        with contextlib.suppress(OSError):
            new.unlink(missing_ok=True)
        return f"not linked ({exc.strerror or exc})"
    return LINKED
