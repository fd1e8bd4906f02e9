"""An adapter's patch series and added files, turned into the tree a patched checkout holds.

Patches are zero-context, insertion-only unified diffs (``@@ -N,0 +M,K @@`` hunks of ``+``
lines): they carry our calls and no upstream text. Zero-context hunks match anywhere, so
``git apply`` alone proves little; what makes applying them safe is that every file a patch
touches must have, at the pin, the sha256 the adapter records, and that no hunk may land
anywhere but where it says (git's "offset" relocation is an error here).

:func:`build` applies the whole series, in order and cumulatively, to a scratch index holding
the pin, adds the added files, and returns a commit of the result. It never touches a
working tree, so a series that fails leaves every checkout as it was; the installer then moves
the working tree to that commit in one step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import PurePosixPath

from vem_plugins.errors import InstallError
from vem_plugins.install.git import git, make_commit, scratch_index, tree_files

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FILE_HEADER = ("index ", "new file mode ")
#: git's words when it failed to write (a full disk, a read-only folder), not to apply.
_NO_WRITE = re.compile(r"No space left|Disk quota|Read-only file system|Permission denied|"
                       r"unable to (create|write)|Operation not permitted", re.I)


@dataclasses.dataclass
class Hunk:
    """One insertion: its header ``@@ -N,0 +M,K @@``, the old line ``N`` it follows, and the
    inserted lines as bytes with their line ends (none after a ``\\ No newline`` marker)."""

    header: str
    start: int
    lines: list[bytes] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FilePatch:
    """The part of a patch for one file: its path, whether it creates the file, its hunks."""

    path: str
    new: bool
    hunks: list[Hunk] = dataclasses.field(default_factory=list)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hunk_header(line: str) -> tuple[str, int, int, int, int] | None:
    """``(header, old start, old count, new start, new count)`` of a unified diff's hunk header
    line (a count left out is 1), or None for any other line. The one reader of hunk headers:
    :func:`parse` and :mod:`vem_plugins.install.refresh` (on ``git diff`` output) use it."""
    m = _HUNK.match(line)
    if m is None:
        return None
    return (m[0], int(m[1]), 1 if m[2] is None else int(m[2]),
            int(m[3]), 1 if m[4] is None else int(m[4]))


def parse(name: str, text: str) -> list[FilePatch]:
    """The files and hunks of patch ``name`` (``text`` decoded with ``surrogateescape``, so
    the inserted lines come back as the patch's bytes); raise unless it is zero-context and
    insertion-only (text before the first file header, like a commit message, is allowed)."""
    files: list[FilePatch] = []
    in_header = False
    new = False
    expect = 0  # '+' lines still due in the current hunk
    for line in text.split("\n"):
        if expect:
            if line.startswith("+"):
                files[-1].hunks[-1].lines.append((line[1:] + "\n").encode("utf-8",
                                                                          "surrogateescape"))
                expect -= 1
                continue
            hunk = files[-1].hunks[-1].header
            raise InstallError(f"patch {name}: hunk {hunk} of {files[-1].path} has a context or "
                               "removed line; patches must be zero-context and insertion-only")
        if line.startswith("diff --git ") or (not in_header and line.startswith("--- ")):
            in_header, new = True, False
            if not line.startswith("--- "):
                continue
        if in_header:
            if line.startswith("--- "):
                new = line == "--- /dev/null"
            elif line.startswith("+++ "):
                if not line.startswith("+++ b/"):
                    raise InstallError(f"patch {name} deletes or renames {line[4:]}; "
                                       "patches may only insert lines")
                files.append(FilePatch(line[6:].split("\t")[0].rstrip("\r"), new))
                in_header = False
            elif line.startswith(_FILE_HEADER):
                new = new or line.startswith("new file mode ")
            else:
                raise InstallError(f"patch {name}: {line!r} — patches may only insert lines "
                                   "(no deletions, renames, mode changes or binary files)")
            continue
        h = hunk_header(line)
        if h and files:
            header, start, old_count, _, expect = h
            if old_count:
                raise InstallError(f"patch {name}: hunk {header} of {files[-1].path} has context "
                                   "or removed lines; patches must be zero-context (git diff -U0) "
                                   "and insertion-only")
            files[-1].hunks.append(Hunk(header, start))
        elif line.startswith("\\") and files and files[-1].hunks and files[-1].hunks[-1].lines:
            inserted = files[-1].hunks[-1].lines
            inserted[-1] = inserted[-1].removesuffix(b"\n")  # "\ No newline at end of file"
        # anything else (a signature) is ignored, as git does
    if not files:
        raise InstallError(f"patch {name} contains no diff")
    return files


def build(repo, adapter, pin: str) -> str:
    """Commit (a child of ``pin`` in ``repo``) whose tree is the pin plus ``adapter``'s
    patches and added files; raises :class:`InstallError` naming the patch, file and hunk
    when the series does not apply."""
    pin_files = set(tree_files(repo, pin))
    created: set[str] = set()
    verified: set[str] = set()
    with scratch_index(repo) as scratch:
        git(repo, "read-tree", pin, extra_env=scratch)
        for patch in adapter.patches:
            data = patch.read_bytes()
            files = parse(patch.name, data.decode("utf-8", "surrogateescape"))
            for f in files:
                if f.new:
                    if f.path in pin_files | created:
                        raise InstallError(f"patch {patch.name} creates {f.path}, which already "
                                           "exists")
                    created.add(f.path)
                elif f.path in pin_files:
                    if f.path not in verified:
                        _verify_hash(repo, adapter, pin, f.path, patch.name)
                        verified.add(f.path)
                elif f.path not in created:
                    raise InstallError(f"patch {patch.name} modifies {f.path}, which is not in "
                                       f"{adapter.name}'s tree at {pin[:12]}")
            _apply(repo, scratch, patch.name, data, files)
        for path, source in sorted(adapter.added_files.items()):
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts or pure.parts[0] == ".git" \
                    or str(pure) != path:
                raise InstallError(f"adapter {adapter.name}: added file {path!r} is not a plain "
                                   "relative path inside the checkout")
            if path in pin_files | created:
                raise InstallError(f"adapter {adapter.name}: added file {path} would replace "
                                   "upstream's file; patch it instead")
            blob = git(repo, "hash-object", "-w", "--stdin", input=source.read_bytes(),
                       binary=True).decode().strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}",
                extra_env=scratch)
        tree = git(repo, "write-tree", "--missing-ok", extra_env=scratch).strip()
    return make_commit(repo, tree, pin, f"vem-plugins: {adapter.name} {adapter.version}")


def _verify_hash(repo, adapter, pin, path, patch_name):
    actual = sha256(git(repo, "cat-file", "blob", f"{pin}:{path}", binary=True))
    wanted = adapter.file_hashes.get(path)
    if wanted is None:
        raise InstallError(f"patch {patch_name} modifies {path}, but adapter {adapter.name} "
                           f"records no sha256 for it in file_hashes (at the pin it is {actual})")
    if wanted != actual:
        raise InstallError(f"{path} at the pin has sha256 {actual}, not the {wanted} that adapter "
                           f"{adapter.name} records; patch {patch_name} was written for other "
                           "contents")


def _apply(repo, scratch, name, data, files):
    """``git apply --cached --unidiff-zero`` one patch onto the scratch index."""
    rc, _, err = git(repo, "apply", "--cached", "--unidiff-zero", "-v", "-", input=data,
                     binary=True, extra_env=scratch, check=False)

    def hunk(path, number=None, line=None):
        for f in files:
            if f.path == path:
                for i, h in enumerate(f.hunks, 1):
                    if i == number or h.start == line:
                        return h.header
        return "?"

    current = None
    for msg in err.splitlines():
        if m := re.match(r"Checking patch (.+)\.\.\.$", msg):
            current = m[1]
        elif rc == 0 and (m := re.match(r"Hunk #(\d+) succeeded at (\d+) \(offset (-?\d+)",
                                        msg)):
            raise InstallError(f"patch {name} does not apply: {current}, hunk "
                               f"{hunk(current, number=int(m[1]))} lies past the file's end "
                               f"(git would move it {abs(int(m[3]))} lines, to line {m[2]})")
    if rc:
        errors = [m.removeprefix("error: ") for m in err.splitlines() if m.startswith("error: ")]
        if trouble := [m for m in err.splitlines() if _NO_WRITE.search(m)]:
            raise InstallError(f"cannot write to {repo}/.git while applying patch {name} "
                               f"({trouble[0].removeprefix('error: ').removeprefix('fatal: ')})")
        for msg in errors:
            if m := re.match(r"patch failed: (.+):(\d+)$", msg):
                raise InstallError(f"patch {name} does not apply: {m[1]}, hunk "
                                   f"{hunk(m[1], line=int(m[2]))} ({errors[-1]})")
        raise InstallError(f"patch {name} does not apply: {errors[0] if errors else err.strip()}")
