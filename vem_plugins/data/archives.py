"""What users give ``--from``: a zip, a tar (any compression) or an extracted folder; which
official archive it is, and whether it is whole.

Nothing is extracted by member path: ``prepare`` reads members into memory and writes files it
names itself, so no member can land outside the data root. Members with an absolute path or
``..`` are refused all the same (no official archive has them), and links in archives are
skipped. An archive is recognised by its structure, not its file name: the regular expressions
of :mod:`~vem_plugins.data.catalog` over member paths, below the archive's top folder (which a
user may have renamed) or at the top; the top folder's name settles look-alikes with the same
structure (horse2zebra and summer2winter_yosemite).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from vem_plugins.data.catalog import DATASETS, Archive, Release, get
from vem_plugins.errors import UsageError

#: What a damaged or truncated zip or tar raises while it is read.
BROKEN = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)
_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


class Source:
    """The regular files of one ``--from``, by path relative to it, in storage order."""

    def __init__(self, path: Path):
        self.path = path
        self.label = path.name  # what a top folder is called when members sit at the top
        for suffix in _SUFFIXES:
            if path.name.endswith(suffix):
                self.label = path.name[:-len(suffix)]
        self._zip = self._tar = None
        self.members: dict[str, object] = {}
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        try:
            if path.is_dir():
                self._list_folder()
            elif zipfile.is_zipfile(path):
                self._zip = zipfile.ZipFile(path)
                self._list_zip()
            elif path.name.endswith(".zip"):
                raise zipfile.BadZipFile("no zip directory at its end")
            else:
                self._tar = tarfile.open(path, "r:*")
                self._list_tar()
        except BROKEN as exc:
            self.close()
            raise UsageError(f"{path} is not a whole zip or tar archive (truncated or damaged? "
                             f"{_reason(exc)})") from None
        except OSError as exc:
            self.close()
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.order = {name: i for i, name in enumerate(self.members)}

    def _add(self, name: str, handle) -> None:
        name = name.removeprefix("./")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts:
            raise UsageError(f"{self.path} has a member outside its folder ({name}): not an "
                             f"official archive, refused")
        self.members[name] = handle

    def _list_folder(self) -> None:
        for folder, dirs, files in os.walk(self.path):
            dirs.sort()
            for file in sorted(files):
                full = Path(folder, file)
                if full.is_file():
                    self._add(full.relative_to(self.path).as_posix(), full)

    def _list_zip(self) -> None:
        for info in self._zip.infolist():
            if not info.is_dir() and not stat.S_ISLNK(info.external_attr >> 16):
                self._add(info.filename, info)

    def _list_tar(self) -> None:
        for member in tqdm(self._tar, desc=f"listing {self.path.name}", unit=" files",
                           disable=None, leave=False):
            if member.isfile():
                self._add(member.name, member)

    def read(self, name: str) -> bytes:
        handle = self.members[name]
        try:
            if self._zip:
                return self._zip.read(handle)
            if self._tar:
                return self._tar.extractfile(handle).read()
            return handle.read_bytes()
        except BROKEN as exc:
            raise UsageError(f"{self.path} is damaged at {name} ({_reason(exc)})") from None
        except OSError as exc:
            raise UsageError(f"cannot read {name} in {self.path}: {exc.strerror or exc}") \
                from None

    def top_folders(self) -> list[str]:
        """Where an archive's members may sit: at the top, or in the folder holding most."""
        tops = Counter(name.split("/", 1)[0] for name in self.members if "/" in name)
        return [""] + [f"{top}/" for top, _ in tops.most_common(1)]

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle:
                handle.close()


@contextlib.contextmanager
def opened(paths):
    """The :class:`Source` of each path, closed afterwards."""
    sources = []
    try:
        for path in paths:
            sources.append(Source(Path(path)))
        yield sources
    finally:
        for source in sources:
            source.close()


@dataclasses.dataclass
class Found:
    """The members of one official archive found in one source."""
    archive: Archive
    source: Source | None
    top: str  # the folder the members sit in ('' at the top)
    groups: dict[str, list[str]]  # group -> member names, sorted

    @property
    def total(self) -> int:
        return sum(map(len, self.groups.values()))

    @property
    def named(self) -> bool:
        """The folder the members sit in is called as in the official archive."""
        name = self.top.rstrip("/") or (self.source.label if self.source else "")
        return bool(self.archive.top) and name == self.archive.top

    def relative(self, name: str) -> str:
        return name[len(self.top):]


@dataclasses.dataclass
class Match:
    """One release, looked for in the sources: one :class:`Found` per archive."""
    release: Release
    found: list[Found]

    @property
    def total(self) -> int:
        return sum(f.total for f in self.found)

    def counts(self) -> dict[str, int]:
        return {group: len(names) for f in self.found for group, names in f.groups.items()}

    def expected(self) -> dict[str, int]:
        return {group: g.count for f in self.found for group, g in f.archive.groups.items()}

    @property
    def complete(self) -> bool:
        return self.counts() == self.expected()


def find(archive: Archive, sources: list[Source]) -> Found:
    """The source and top folder holding the most of ``archive``'s members."""
    patterns = {group: re.compile(g.pattern) for group, g in archive.groups.items()}
    best = Found(archive, None, "", {group: [] for group in patterns})
    for source in sources:
        for top in source.top_folders():
            groups = {group: [] for group in patterns}
            for name in source.members:
                if name.startswith(top):
                    for group, pattern in patterns.items():
                        if pattern.fullmatch(name[len(top):]):
                            groups[group].append(name)
                            break
            found = Found(archive, source, top, {g: sorted(n) for g, n in groups.items()})
            if (found.total, found.named) > (best.total, best.named):
                best = found
    return best


def match(release: Release, sources: list[Source]) -> Match:
    return Match(release, [find(archive, sources) for archive in release.archives])


def identify(name: str, sources: list[Source]) -> Match:
    """The release of dataset ``name`` the sources hold; refused in one line when they hold
    another dataset's archive, a look-alike, or not all of a release's archives."""
    dataset = get(name)
    given = ", ".join(str(s.path) for s in sources)
    matches = [match(release, sources) for release in dataset.releases]
    chosen = max(matches, key=lambda m: (any(f.named and f.total for f in m.found),
                                         m.complete, m.total))
    other = _other_dataset(name, sources, chosen)
    if other:
        raise UsageError(f"{given} looks like {_files(other.release)} (dataset "
                         f"{_dataset_of(other.release)}), not {name}: "
                         f"vem-plugins data prepare {_dataset_of(other.release)} --from ...")
    if not chosen.total:
        wanted = " or ".join(_files(r) for r in dataset.releases if not r.refuse)
        raise UsageError(f"{given} holds none of the files of {wanted}, which {name} is "
                         f"prepared from")
    if chosen.release.refuse:
        raise UsageError(f"{given} is {_files(chosen.release)}, refused for {name}: "
                         f"{chosen.release.refuse}")
    missing = [f.archive.file for f in chosen.found if not f.total]
    if missing:
        raise UsageError(f"{name} needs {_files(chosen.release)}; {', '.join(missing)} is not "
                         f"among {given} (give --from once for each, or a folder holding all)")
    return chosen


def _other_dataset(name: str, sources: list[Source], chosen: Match) -> Match | None:
    """Another dataset's release that the sources hold rather than ``chosen``: one whose top
    folder they name, or, when ``chosen`` is not whole, one they hold more files of."""
    if any(f.named and f.total for f in chosen.found):
        return None
    tops = {top.rstrip("/") or s.label for s in sources for top in s.top_folders()}
    best = chosen
    for other, dataset in DATASETS.items():
        for release in dataset.releases if other != name else ():
            named = any(a.top in tops for a in release.archives if a.top)
            if named or not chosen.complete:
                m = match(release, sources)
                if named and any(f.named and f.total for f in m.found):
                    return m
                if m.total > best.total:
                    best = m
    return None if best is chosen else best


def verify_counts(m: Match, allow_partial: bool) -> str | None:
    """Refuse an archive with fewer files than the official one (unless ``allow_partial``: then
    a warning saying how many are missing) or more (it is not the official one)."""
    given = ", ".join(sorted({str(f.source.path) for f in m.found}))
    counts, expected = m.counts(), m.expected()
    over = [g for g in counts if counts[g] > expected[g]]
    if over:
        more = ", ".join(f"{counts[g]:,} {g} files (the official {expected[g]:,})" for g in over)
        raise UsageError(f"{given} holds {more}: not {_files(m.release)}")
    short = [g for g in counts if counts[g] < expected[g]]
    if not short:
        return None
    have = ", ".join(f"{counts[g]:,} of {expected[g]:,} {g}" for g in short)
    missing = sum(expected[g] - counts[g] for g in short)
    if not allow_partial:
        raise UsageError(f"{given} holds {have} files of {_files(m.release)} ({missing:,} "
                         f"missing: truncated or incomplete?); --allow-partial prepares what "
                         f"is there")
    return (f"a partial dataset: {have} files ({missing:,} missing); results will not be "
            f"comparable with the paper's")


def verify_checksums(m: Match) -> None:
    """Check the md5 of each archive file that has a published one, when the archive is whole
    (a partial one cannot match)."""
    for f in m.found:
        if not (f.archive.md5 and m.complete and f.source.path.is_file()):
            continue
        digest = hashlib.md5()
        with open(f.source.path, "rb") as stream, \
                tqdm(total=f.source.path.stat().st_size, desc=f"checking {f.source.path.name}",
                     unit="B", unit_scale=True, disable=None, leave=False) as bar:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                bar.update(len(block))
        if digest.hexdigest() != f.archive.md5:
            raise UsageError(f"{f.source.path} has md5 {digest.hexdigest()}, the official "
                             f"{f.archive.file} {f.archive.md5} ({f.archive.md5_source}): "
                             f"damaged or altered; download it again")


def image(data: bytes, name: str, source: Source, size: tuple[int, int] | None,
          decode: bool = False) -> Image.Image:
    """The image in ``data``, of the official pixel size when one is known; its header only is
    read unless ``decode``."""
    try:
        img = Image.open(io.BytesIO(data))
        if decode:
            img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"{name} in {source.path} is not a readable image ({exc})") from None
    if size and img.size != size:
        raise UsageError(f"{name} in {source.path} is {img.size[0]}x{img.size[1]}, the official "
                         f"archive's images {size[0]}x{size[1]}: not the official archive")
    return img


def _dataset_of(release: Release) -> str:
    return next(d.name for d in DATASETS.values() if release in d.releases)


def _files(release: Release) -> str:
    return " + ".join(a.file for a in release.archives)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
