"""``vem-plugins data prepare`` and ``data list``: turn the official archives into the layouts
the upstream scripts load, under the data root (see :mod:`vem_plugins.data.catalog`).

``prepare`` recognises and verifies what it is given (:mod:`vem_plugins.data.archives`), then
writes ``<root>/<dataset>`` as one atomic step: everything goes to a staging folder
``<root>/.<dataset>.partial-<pid>``, the marker ``.vem-plugins-ready.json`` (source, counts,
time) is written last, and the folder is renamed into place. ``list`` calls a dataset ready only
with its marker, so an interrupted ``prepare`` never looks ready.

Interrupted (a kill, Ctrl-C): the staging folder stays, every file in it whole (each is written
to ``.incoming/`` and renamed into place); the next ``prepare`` of the same files *resumes* it,
skipping what was written, and says so, or removes it when given other files. Refused (bad
input, a full disk, a root it cannot write): the staging folder is removed, so nothing
half-made remains, and the same command starts over once the cause is fixed. A dataset already
prepared whole is not read again: ``prepare`` only (re)links the checkouts (run it again after
installing an adapter). One prepared from part of an archive (``--allow-partial``) is rebuilt
and then replaced in two renames.

What is written, per kind (the catalog's ``layouts`` say it for users):

* aligned pairs, unaligned images and CelebA: the released files, byte for byte (the upstream
  loaders resize and crop themselves; GCC's SAGAN centre-crops CelebA to 160 before its 64 px
  resize, so a pre-resized copy would be wrong);
* Cityscapes: what upstream's ``datasets/prepare_cityscapes_dataset.py`` and
  ``datasets/get_trainIds.py`` write, the same pixels and names;
* FFHQ: 256 px PNGs made as CAGC's loader resizes (PIL bilinear), so it reads the same pixels
  as from the 1024 px originals without decoding them at every step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from PIL import Image
from tqdm import tqdm

from vem_plugins import __version__
from vem_plugins.data import archives, catalog, links
from vem_plugins.data.archives import Match, Source
from vem_plugins.data.catalog import DATASETS, Dataset
from vem_plugins.errors import UsageError, VemPluginsError
from vem_plugins.install.exclusive import alive

MARKER = ".vem-plugins-ready.json"
_FINGERPRINT = ".vem-plugins-partial.json"
_INCOMING = ".incoming"

# Cityscapes labelIds -> trainIds, as datasets/get_trainIds.py maps them (255: ignored).
_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
              25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


@dataclasses.dataclass
class Prepared:
    path: Path
    marker: dict
    links: list[tuple[Path, str]]  # each checkout path and what happened (links.LINKED or why)


def prepare(name: str, paths: list[Path], root: Path, checkouts: dict[str, list[Path]],
            allow_partial: bool = False, say=print, warn=print) -> Prepared:
    """Prepare dataset ``name`` from ``paths`` (archives or folders) under ``root`` and link
    ``checkouts`` (``{adapter: [checkout, ...]}``) to it. ``say`` and ``warn`` take a line."""
    dataset = catalog.get(name)
    target = root / name
    marker = read_marker(target)
    if marker and marker.get("complete"):
        say(f"{name} is already prepared in {target} (from {', '.join(marker['from'])}); "
            f"not read again")
    elif target.exists() and not marker:
        raise UsageError(f"{target} exists but was not made by vem-plugins data prepare; move "
                         f"it away or choose another --root")
    else:
        with archives.opened(paths) as sources:
            m = archives.identify(name, sources)
            if problem := archives.verify_counts(m, allow_partial):
                warn(problem)
            archives.verify_checksums(m)
            marker = _build(dataset, m, sources, root, say)
        say(f"prepared {name} in {target}: " + ", ".join(
            f"{n:,} files in {folder}/" for folder, n in marker["layouts"].items()))
    return Prepared(target, marker, links.link(dataset, root, checkouts))


def read_marker(folder: Path) -> dict | None:
    """The marker of a prepared dataset, or None (absent, damaged, or another dataset's)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("dataset") == folder.name else None


def status(root: Path, checkouts: dict[str, list[Path]]) -> list[dict]:
    """Every dataset: the official archives, what each adapter's scripts read, whether it is
    prepared under ``root`` and linked into each installed checkout (for ``data list``)."""
    rows = []
    for dataset in DATASETS.values():
        states = links.states(dataset, root, checkouts)
        rows.append({
            "name": dataset.name, "path": str(root / dataset.name),
            "prepared": read_marker(root / dataset.name),
            "releases": [{"name": r.name, "url": r.url, "refused": r.refuse, "note": r.note,
                          "counts_source": r.counts_source,
                          "archives": [{"file": a.file, "md5": a.md5, "size": a.size,
                                        "counts": {g: x.count for g, x in a.groups.items()}}
                                       for a in r.archives]}
                         for r in dataset.releases],
            "layouts": dataset.layouts,
            "uses": [{"adapter": u.adapter, "paths": sorted(u.links),
                      "flag": u.flag.format(root=root), "loads": u.loads, "scripts": u.scripts,
                      "checkouts": [{"dir": str(c), "state": states[u.adapter, c]}
                                    for c in checkouts.get(u.adapter, [])]}
                     for u in dataset.uses]})
    return rows


# --- the atomic build ----------------------------------------------------------------------

class _Staging:
    """The staging folder. Each file is written whole to ``.incoming/`` and renamed into place,
    so after an interruption every file present is complete and a rerun may keep it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._incoming = folder / _INCOMING
        self._written = 0

    def has(self, rel: str) -> bool:
        return (self.folder / rel).exists()

    def write(self, rel: str, data: bytes) -> None:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        part = self._incoming / str(self._written)
        self._written += 1
        part.write_bytes(data)
        os.replace(part, path)


def _build(dataset: Dataset, m: Match, sources: list[Source], root: Path, say) -> dict:
    mine = root / f".{dataset.name}.partial-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = _claim(dataset.name, _fingerprint(m), root, mine, say)
        _WRITERS[dataset.kind](dataset, m, staging)
        marker = {"dataset": dataset.name, "release": m.release.name,
                  "from": [str(s.path.absolute()) for s in sources], "counts": m.counts(),
                  "expected": m.expected(), "complete": m.complete,
                  "layouts": {folder: _count(mine / folder) for folder in dataset.layouts},
                  "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "vem_plugins": __version__}
        _publish(mine, root / dataset.name, marker)
        return marker
    except OSError as exc:
        _discard(mine)
        raise UsageError(_os_problem(exc, dataset.name, root)) from None
    except VemPluginsError:
        _discard(mine)
        raise


def _claim(name: str, fingerprint: str, root: Path, mine: Path, say) -> _Staging:
    """Make ``mine`` the staging folder: resume an interrupted prepare of the same files,
    remove one of other files, refuse while another prepare of ``name`` runs."""
    resumed = False
    for old in sorted(root.glob(f".{name}.partial-*")) + sorted(root.glob(f".{name}.old-*")):
        pid = old.name.rsplit("-", 1)[1]
        if pid != str(os.getpid()) and alive(pid):
            raise UsageError(f"another prepare of {name} is running (pid {pid}); wait for it, or "
                             f"remove {old} if there is none")
        if ".old-" in old.name:  # a ready copy moved aside just before its replacement
            if (root / name).exists():
                shutil.rmtree(old)
            else:
                old.rename(root / name)
        elif not resumed and _read_fingerprint(old) == fingerprint:
            old.rename(mine)
            resumed = True
            say(f"resuming the interrupted prepare of {name} (pid {pid}): "
                f"{_count(mine):,} files were written")
        else:
            shutil.rmtree(old)
            say(f"removed an unfinished prepare of {name} (pid {pid}) from other files; "
                f"starting over")
    if not resumed:
        mine.mkdir()
        (mine / _FINGERPRINT).write_text(json.dumps({"fingerprint": fingerprint}))
    shutil.rmtree(mine / _INCOMING, ignore_errors=True)
    (mine / _INCOMING).mkdir()
    return _Staging(mine)


def _publish(staging: Path, target: Path, marker: dict) -> None:
    os.sync()  # every file on disk before the marker says they are there
    (staging / _INCOMING).rmdir()
    (staging / _FINGERPRINT).unlink()
    (staging / f"{MARKER}.part").write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(staging / f"{MARKER}.part", staging / MARKER)
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():  # a partial dataset prepared before: replaced in two renames
        target.rename(aside)
    staging.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def _fingerprint(m: Match) -> str:
    files = [[str(f.source.path.absolute()), f.top, f.groups] for f in m.found]
    return hashlib.sha256(json.dumps([m.release.name, files]).encode()).hexdigest()


def _read_fingerprint(folder: Path) -> str | None:
    try:
        return json.loads((folder / _FINGERPRINT).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _discard(folder: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)


def _count(folder: Path) -> int:
    """Files below ``folder``, but for vem-plugins' own (their names start with a dot)."""
    total = 0
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        total += sum(not f.startswith(".") for f in files)
    return total


def _os_problem(exc: OSError, name: str, root: Path) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left under {root} while preparing {name}{where}; removed the "
                f"unfinished copy: free space or choose another --root, then run the same "
                f"command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write under {root}: {exc.strerror}{where}; make it writable or "
                f"choose another --root, then run the same command again")
    return f"cannot prepare {name} under {root}: {exc.strerror or exc}{where}"


# --- the writers, one per kind of dataset ------------------------------------------------

def _jobs(m: Match, verb: str, name: str):
    """Each wanted member as (found, group, member name), in each source's storage order (a
    compressed tar is read in one pass), with a progress bar."""
    jobs = [(f, group, member) for f in m.found for group, members in f.groups.items()
            for member in members]
    jobs.sort(key=lambda job: (id(job[0].source), job[0].source.order[job[2]]))
    return tqdm(jobs, desc=f"{verb} {name}", unit=" files", disable=None)


def _copy(dataset: Dataset, m: Match, staging: _Staging) -> None:
    folder = {"aligned": "aligned/{group}", "unaligned": "unaligned/{group}",
              "celeba": "images"}[dataset.kind]
    for f, group, member in _jobs(m, "copying", dataset.name):
        rel = f"{folder.format(group=group)}/{PurePosixPath(member).name}"
        if not staging.has(rel):
            data = f.source.read(member)
            archives.image(data, member, f.source, f.archive.size)
            staging.write(rel, data)


def _ffhq(dataset: Dataset, m: Match, staging: _Staging) -> None:
    for f, _, member in _jobs(m, "resizing", dataset.name):
        rel = f"images256/{PurePosixPath(member).name}"
        if not staging.has(rel):
            img = archives.image(f.source.read(member), member, f.source, f.archive.size,
                                 decode=True)
            out = io.BytesIO()
            img.convert("RGB").resize((256, 256), Image.BILINEAR).save(out, format="PNG")
            staging.write(rel, out.getvalue())


def _cityscapes(dataset: Dataset, m: Match, staging: _Staging) -> None:
    """As upstream's prepare_cityscapes_dataset.py: colour label maps and photos in sorted
    order, N.jpg = photo | labels, each resized to 256x256; and get_trainIds.py's trainIds."""
    gt, photos = m.found
    lut = [_TRAIN_IDS.get(i, 255) for i in range(256)]
    for split in ("val", "train"):
        colors = gt.groups[f"gtFine_color/{split}"]
        label_ids = {_scene(n): n for n in gt.groups[f"gtFine_labelIds/{split}"]}
        shots = photos.groups[f"leftImg8bit/{split}"]
        scenes = {_scene(n) for n in colors}
        unmatched = sorted((scenes ^ {_scene(n) for n in shots}) | (scenes - set(label_ids)))
        if unmatched:
            raise UsageError(f"cityscapes {split}: {unmatched[0]} lacks its photo, colour or "
                             f"labelIds image ({len(unmatched)} such); give both archives whole")
        table = []
        for i, (color, shot) in enumerate(tqdm(list(zip(colors, shots)), unit=" pairs",
                                               desc=f"combining cityscapes {split}",
                                               disable=None)):
            rel_color, rel_shot = gt.relative(color), photos.relative(shot)
            trainids = rel_color.replace("_color", "_trainIds")
            table.append(f"{i} {trainids} {rel_shot}\n")
            if not staging.has(f"aligned/{split}/{i}.jpg"):
                pair = Image.new("RGB", (512, 256))
                pair.paste(_small(gt, color), (256, 0))
                pair.paste(_small(photos, shot), (0, 0))
                out = io.BytesIO()
                pair.save(out, format="JPEG", subsampling=0, quality=100)
                staging.write(f"aligned/{split}/{i}.jpg", out.getvalue())
            if not staging.has(f"origin/{trainids}"):
                labels = label_ids[_scene(color)]
                img = archives.image(gt.source.read(labels), labels, gt.source, gt.archive.size,
                                     decode=True)
                out = io.BytesIO()
                img.convert("L").point(lut).save(out, format="PNG")
                staging.write(f"origin/{trainids}", out.getvalue())
        staging.write(f"origin/{split}_table.txt", "".join(table).encode())


def _scene(member: str) -> str:
    """``aachen_000000_000019`` of any Cityscapes file name."""
    return "_".join(PurePosixPath(member).name.split("_")[:3])


def _small(f: archives.Found, member: str) -> Image.Image:
    img = archives.image(f.source.read(member), member, f.source, f.archive.size, decode=True)
    return img.convert("RGB").resize((256, 256), Image.BICUBIC)  # Pillow's default, upstream's


_WRITERS = {"aligned": _copy, "unaligned": _copy, "celeba": _copy, "cityscapes": _cityscapes,
            "ffhq": _ffhq}
