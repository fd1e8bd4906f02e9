"""Regenerate an adapter's patch files from edits made in its checkout (``vem-plugins refresh``).

The workflow, like ``quilt refresh``: ``vem-plugins install NAME`` gives a checkout of the pin
with the adapter's patches applied; the author inserts lines into upstream files there; refresh
turns the checkout's difference from the pin back into the patch series, records the sha256 of
every file the series touches (``file_hashes``), and marks the checkout as installed from the new
series.

How lines map to patch files: every inserted line that came from a patch stays in that patch
(matched by its text, in order); every new line goes to the *target* patch — ``--patch NAME``,
by default the last patch of the series (``01-vem.patch`` for an empty one). A target that is not
in the series yet is created and placed by file name. Each patch is then written as the
zero-context, insertion-only diff from the pin plus the patches before it, so the series applies
in order exactly as before.

Refresh refuses — writing nothing — when the checkout changes or removes any upstream line
(a patch may only insert lines: change upstream behaviour at run time from the adapter's Python
module instead), changes a binary file, or deletes a file the adapter adds. Before writing, the
new series is applied to the pin the way ``install`` does and must give exactly the checkout.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import tempfile
from pathlib import Path

from vem_plugins.install import git as gitops, checkout as installer, patchset
from vem_plugins.errors import InstallError

DEFAULT_PATCH = "01-vem.patch"
HASHES = "file_hashes.json"


@dataclasses.dataclass
class RefreshResult:
    """What :func:`refresh` did.

    :ivar patches: ``(name, what happened)`` per patch of the new series.
    :ivar file_hashes: the ``file_hashes`` the adapter must declare.
    :ivar hashes_file: the ``file_hashes.json`` rewritten, or None (then paste ``file_hashes``).
    :ivar copied_back: added files edited in the checkout, copied to their sources.
    :ivar untracked: files in the checkout that are no part of the adapter.
    :ivar new_patch: a patch file created here, which the declaration must list.
    """

    adapter: str
    dest: Path
    patch_dir: Path
    patches: list[tuple[str, str]]
    file_hashes: dict[str, str]
    hashes_file: Path | None
    copied_back: list[str]
    untracked: list[str]
    new_patch: str | None

    def summary(self) -> str:
        lines = [f"refreshed {self.adapter}'s patches in {self.patch_dir} from {self.dest}:"]
        width = max((len(n) for n, _ in self.patches), default=0)
        lines += [f"  {name:<{width}}  {what}" for name, what in self.patches]
        lines += [f"  copied your edit of added file {p} back to its source"
                  for p in self.copied_back]
        if self.hashes_file:
            lines.append(f"file_hashes: {len(self.file_hashes)} file(s), written to "
                         f"{self.hashes_file}")
        else:
            lines.append("file_hashes for the Adapter declaration (replace the old dict):")
            lines.append("    file_hashes=" + format_hashes(self.file_hashes, indent=4) + ",")
        if self.new_patch:
            lines.append(f"new patch file {self.new_patch}: make sure the Adapter's patches list "
                         "it (the new-adapter template lists patches/*.patch in name order)")
        if self.untracked:
            lines.append("not part of the adapter (declare in added_files to ship): "
                         + ", ".join(self.untracked))
        return "\n".join(lines)


def format_hashes(hashes: dict[str, str], indent: int = 0) -> str:
    """A ``file_hashes`` dict as Python source, one file per line."""
    pad = " " * indent
    body = "".join(f"{pad}    {path!r}: {sha!r},\n" for path, sha in sorted(hashes.items()))
    return "{\n" + body + pad + "}" if hashes else "{}"


def declared_in(adapter_name: str) -> Path | None:
    """The folder of the module whose ``register_adapters`` hook registers ``adapter_name``."""
    from vem_plugins.plugins import plugin_manager

    for impl in plugin_manager().hook.register_adapters.get_hookimpls():
        names = []
        impl.function(**{arg: lambda a: names.append(a.name) for arg in impl.argnames})
        if adapter_name in names:
            return Path(inspect.getfile(impl.function)).parent
    return None


def patch_folder(adapter) -> Path:
    """Where the adapter's patch files live: the folder of its patches, else ``patches/``
    beside the module that declares it."""
    parents = {Path(str(p)).parent for p in adapter.patches}
    if len(parents) > 1:
        raise InstallError(f"{adapter.name}'s patches live in several folders "
                           f"({', '.join(map(str, sorted(parents)))}); pass --patches DIR")
    if parents:
        return parents.pop()
    home = declared_in(adapter.name)
    if home is None:
        raise InstallError(f"cannot tell where {adapter.name}'s patch files belong; pass "
                           "--patches DIR")
    return home / "patches"


def refresh(adapter, dest, patch: str | None = None, patch_dir=None) -> RefreshResult:
    """Rewrite ``adapter``'s patch series (and ``file_hashes.json``, when its patch folder has
    one) from the checkout ``dest``; see the module docstring. Raises :class:`InstallError`,
    having written nothing, when the edits cannot become insertion-only patches."""
    dest = Path(dest).absolute()
    with installer.working_on(dest):
        return _refresh(adapter, dest, patch, patch_dir)


def _refresh(adapter, dest, patch, patch_dir) -> RefreshResult:
    st = installer.status(adapter, dest)
    if not st.exists:
        raise InstallError(f"{adapter.name} is not installed in {dest}; run: vem-plugins install "
                           f"{adapter.name} --dir {dest}, then edit upstream's files there")
    if st.commit != adapter.commit:
        raise InstallError(f"{dest} is a checkout of {st.commit[:12]}, but {adapter.name} now "
                           f"pins {adapter.commit[:12]}: refresh works against the checkout's pin "
                           "only; move it first with vem-plugins install")
    if st.head != st.commit:
        raise InstallError(f"HEAD of {dest} moved off the pin {st.commit[:12]} (commits of "
                           "yours?): refresh reads edits from the working tree only; check out "
                           "the pin again, keeping your edits in the working tree")
    pin, skip = adapter.commit, gitops.skip_worktree(dest)
    patch_dir = Path(patch_dir).absolute() if patch_dir else patch_folder(adapter)
    old_names = [p.name for p in adapter.patches]
    target = patch or (old_names[-1] if old_names else DEFAULT_PATCH)
    if "/" in target or not target.endswith(".patch"):
        raise InstallError(f"--patch {target}: give a file name ending in .patch, like "
                           "02-vem.patch")
    if target not in old_names and (patch_dir / target).exists():
        raise InstallError(f"{patch_dir / target} exists but is not in {adapter.name}'s patch "
                           "series; add it to the Adapter's patches, or choose another --patch")
    names = sorted(old_names + [target], key=_order(old_names)) if target not in old_names \
        else old_names
    index = {name: i for i, name in enumerate(names, 1)}

    inserted, preambles = _series(adapter)
    work = _worktree_insertions(dest, pin, skip)
    added = _added_files(adapter, dest)
    tagged: dict[str, tuple[list[bytes], list[int]]] = {}
    for path in sorted(set(work) | set(inserted)):
        pin_lines = _lines(gitops.git(dest, "cat-file", "blob", f"{pin}:{path}", binary=True))
        wlines, is_new = work.get(path, (pin_lines, [False] * len(pin_lines)))
        expected = _simulate(pin_lines, inserted.get(path, {}), old_names)
        tagged[path] = (wlines, _tags(expected, wlines, is_new, index, target))

    texts = {name: preambles.get(name, b"") + b"".join(
        _file_diff(path, lines, tags, index[name]) for path, (lines, tags) in tagged.items())
        for name in names}
    texts = {name: text for name, text in texts.items() if b"\n@@ " in text}
    hashes = {path: patchset.sha256(gitops.git(dest, "cat-file", "blob", f"{pin}:{path}",
                                               binary=True))
              for path, (_, tags) in tagged.items() if any(tags)}
    commit = _verify(adapter, dest, pin, skip, texts, hashes, added)

    # everything checked: write
    patch_dir.mkdir(parents=True, exist_ok=True)
    report = []
    for name in names:
        path = patch_dir / name
        old = path.read_bytes() if name in old_names and path.exists() else None
        if name not in texts:
            if old is not None:
                path.unlink()
            report.append((name, "removed (no lines left)" if old is not None else "empty"))
        elif old == texts[name]:
            report.append((name, "unchanged"))
        else:
            _write(path, texts[name])
            report.append((name, ("written: " if old is not None else "created: ")
                           + _describe(texts[name])))
    for rel, src in added.items():
        _write(Path(str(src)), (dest / rel).read_bytes())
    hashes_file = patch_dir / HASHES
    if hashes_file.exists():
        # one file per line and none indented: no line in patches/ looks like a diff's context
        text = json.dumps(dict(sorted(hashes.items())), indent=0) + "\n"
        if hashes_file.read_text() != text:
            _write(hashes_file, text.encode())
    final = dataclasses.replace(adapter, patches=tuple(patch_dir / n for n in names if n in texts),
                                file_hashes=hashes)
    lock = st.lock or {}
    installer.record(dest, final, lock.get("source") or adapter.url, commit,
                      lock.get("skipped_assets") or {})
    return RefreshResult(adapter.name, dest, patch_dir, report, hashes,
                         hashes_file if hashes_file.exists() else None, sorted(added),
                         [p for p in st.untracked if p not in adapter.added_files],
                         target if target not in old_names and target in texts else None)


# --- reading the series and the checkout -----------------------------------------------------

def _order(old_names):
    """Sort key placing a new patch among the existing ones by name, keeping their order."""
    def key(name):
        if name in old_names:
            return (old_names.index(name), 0)
        later = [i for i, n in enumerate(old_names) if n > name]
        return (later[0] if later else len(old_names), -1)
    return key


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) if b"\r" not in data else \
        re.findall(rb"[^\n]*\n|[^\n]+$", data)


def _series(adapter) -> tuple[dict[str, dict[str, list]], dict[str, bytes]]:
    """Per file, per patch name: the insertions ``(after old line N, [lines])`` of each patch
    (parsed and validated as install does, by :func:`patchset.parse`); and each patch's text
    before its first file (its description)."""
    inserted: dict[str, dict[str, list]] = {}
    preambles = {}
    for patch in adapter.patches:
        data = patch.read_bytes()
        first = re.search(rb"^(diff --git |--- )", data, re.M)
        if first and first.start():
            preambles[patch.name] = data[:first.start()]
        for f in patchset.parse(patch.name, data.decode("utf-8", "surrogateescape")):
            if f.new:
                raise InstallError(f"patch {patch.name} creates a file: refresh keeps patches to "
                                   "insertions into upstream's files; ship new files as the "
                                   "Adapter's added_files instead")
            for h in f.hunks:
                by_patch = inserted.setdefault(f.path, {})
                by_patch.setdefault(patch.name, []).append((h.start, h.lines))
    return inserted, preambles


def _simulate(pin_lines, by_patch, order) -> list[tuple[bytes, str | None]]:
    """The file after the series: ``(line, patch name or None for upstream's)``."""
    lines = [(line, None) for line in pin_lines]
    for name in order:
        for start, block in sorted(by_patch.get(name, []), key=lambda h: -h[0]):
            lines[start:start] = [(line, name) for line in block]
    return lines


def _worktree_insertions(dest, pin, skip) -> dict[str, tuple[list[bytes], list[bool]]]:
    """Per upstream file edited in the checkout: its lines and which are insertions. Raises,
    listing every place, when an upstream line was changed or removed."""
    with gitops.scratch_index(dest, pin, skip) as scratch:
        out = gitops.git(dest, "diff", "--minimal", "-U0", "--no-color", "--no-ext-diff",
                         "--no-renames", "--no-textconv", pin, extra_env=scratch, binary=True)
    found: dict[str, tuple[list[bytes], list[bool]]] = {}
    problems, old_path, path = [], None, None
    for raw in out.split(b"\n"):
        line = raw.decode("utf-8", "surrogateescape")
        if line.startswith(("--- ", "+++ ")):
            name = line[6:].split("\t")[0] if line[4:6] in ("a/", "b/") else None
            if line.startswith("--- "):
                old_path = name
                continue
            path = name
            if path is None:
                problems.append(f"  {old_path}: deleted")
            elif path not in found:
                wlines = _lines((Path(dest) / path).read_bytes())
                found[path] = (wlines, [False] * len(wlines))
        elif line.startswith("Binary files "):
            problems.append(f"  {line}: a binary file changed")
        elif (h := patchset.hunk_header(line)) and path is not None:
            _, old, removed, new, count = h
            if removed:
                span = f"{old}" if removed == 1 else f"{old}-{old + removed - 1}"
                problems.append(f"  {path}:{span}: {removed} upstream line(s) "
                                f"{'changed' if count else 'removed'}")
            else:
                for i in range(new - 1, new - 1 + count):
                    found[path][1][i] = True
    if problems:
        raise InstallError(
            "refresh refused, nothing written: patches may only insert lines, and your edits "
            "change upstream's:\n" + "\n".join(dict.fromkeys(problems)) + f"\nsee them with: "
            f"git -C {dest} diff {pin[:12]}. Put the upstream lines back as they were and make "
            "the change at run time instead: a function in your adapter's module that replaces "
            "upstream's function or method, called from one inserted line "
            "(e.g. `my_adapter_compat.fix(Model)` after the class).")
    return found


def _added_files(adapter, dest) -> dict[str, object]:
    """Added files edited in the checkout -> their source (to copy the edit back to)."""
    edited = {}
    for rel, src in adapter.added_files.items():
        here = Path(dest) / rel
        if not here.exists():
            raise InstallError(f"refresh refused, nothing written: you deleted {rel}, a file "
                               f"{adapter.name} adds; remove it from the Adapter's added_files "
                               "instead (or restore it)")
        if here.read_bytes() != src.read_bytes():
            if not isinstance(src, Path):
                raise InstallError(f"you edited {rel}, an added file whose source {src} is not a "
                                   "plain file; copy your edit there yourself")
            edited[rel] = src
    return edited


def _tags(expected, wlines, is_new, index, target) -> list[int]:
    """Which patch each line of the checkout's file belongs to (0: upstream's line). Inserted
    lines keep the patch they came from, matched by text in order; a line edited in place keeps
    the patch of the line it replaces; other new lines go to ``target``."""
    old = [name for _, name in expected if name is not None]
    positions = [i for i, flag in enumerate(is_new) if flag]
    tags = [0] * len(wlines)
    matcher = difflib.SequenceMatcher(None, [line for line, name in expected if name is not None],
                                      [wlines[i] for i in positions], autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        for k in range(b2 - b1):
            source = a1 + min(k, a2 - a1 - 1) if op in ("equal", "replace") else None
            tags[positions[b1 + k]] = index[old[source] if source is not None else target]
    return tags


def _file_diff(path, lines, tags, j) -> bytes:
    """The zero-context diff of one file from stage ``j-1`` (lines tagged < j) to stage ``j``."""
    hunks, old, new, i = [], 0, 0, 0
    while i < len(lines):
        if tags[i] == j:
            block = []
            while i < len(lines) and tags[i] >= j:
                if tags[i] == j:
                    block.append(lines[i])
                i += 1
            count = f",{len(block)}" if len(block) != 1 else ""
            hunks.append(f"@@ -{old},0 +{new + 1}{count} @@\n".encode()
                         + b"".join(b"+" + line if line.endswith(b"\n")
                                    else b"+" + line + b"\n\\ No newline at end of file\n"
                                    for line in block))
            new += len(block)
            continue
        if tags[i] < j:
            old += 1
            new += 1
        i += 1
    if not hunks:
        return b""
    name = path.encode("utf-8", "surrogateescape")
    return (b"diff --git a/%s b/%s\n--- a/%s\n+++ b/%s\n" % (name, name, name, name)
            + b"".join(hunks))


def _verify(adapter, dest, pin, skip, texts, hashes, added) -> str:
    """Apply the new series to the pin as install would; it must give exactly the checkout.
    Returns the commit holding the result."""
    with tempfile.TemporaryDirectory(prefix="vem-plugins-refresh-") as tmp:
        paths = []
        for name, text in texts.items():
            (Path(tmp) / name).write_bytes(text)
            paths.append(Path(tmp) / name)
        trial = dataclasses.replace(
            adapter, patches=tuple(paths), file_hashes=hashes,
            added_files={**adapter.added_files, **{rel: Path(dest) / rel for rel in added}})
        try:
            commit = patchset.build(dest, trial, pin)
        except InstallError as exc:
            raise InstallError(f"refresh made a series that does not apply ({exc}); nothing "
                               "written — please report this") from None
    differ = gitops.changed(dest, commit, skip)
    if differ:
        raise InstallError("refresh could not reproduce the checkout from the new series "
                           f"({', '.join(sorted(differ))} differ); nothing written — please "
                           "report this")
    return commit


def _describe(text: bytes) -> str:
    files = re.findall(rb"^\+\+\+ b/(.+)$", text, re.M)
    plus = sum(1 for line in text.split(b"\n") if line.startswith(b"+") and
               not line.startswith(b"+++ "))
    return f"{len(files)} file(s), +{plus} line(s)"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
