"""Install an adapter's upstream repository at its pin, patched; report drift; revert.

A checkout made here is a plain clone detached at the pinned commit. Its working tree holds
the pin plus the adapter's patches and added files; its index stays at the pin, so ``git
status`` and ``git diff`` inside it show exactly what vem-plugins changed. What the working
tree *should* hold is recorded twice: as a commit (a child of the pin, kept reachable by the
ref ``refs/vem-plugins/installed``) and in the lock file ``.vem-plugins.lock.json`` (adapter
and vem-plugins versions, URL, SHA, sha256 of every patch and added file, time). Any
difference between that commit and the working tree is a user edit.

Rules every command follows:

* nothing is written until everything has been checked: the patch series is applied to a
  scratch index first (:func:`vem_plugins.install.patchset.build`), then the working tree moves in
  one ``git read-tree -m -u`` step;
* a fresh clone is made in a hidden folder next to ``dest`` and renamed into place at the
  end, so an error or an interruption leaves no half-made checkout;
* an edit to a file vem-plugins manages (patched or added) is never overwritten without
  ``force``, and with ``force`` it is first saved to ``<dest>.user-edits-<time>.patch``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from vem_plugins import __version__
from vem_plugins.install import git as gitops, patchset
from vem_plugins.errors import GitError, InstallError

__all__ = ["InstallError", "InstallResult", "Status", "install", "status", "diff", "uninstall"]

LOCK = ".vem-plugins.lock.json"
REF = "refs/vem-plugins/installed"
#: Added to the checkout's .git/info/exclude: our lock file, and the bytecode caches that
#: running upstream leaves behind (so they never count as the user's files).
EXCLUDES = ("/" + LOCK, "__pycache__/")


@dataclasses.dataclass
class InstallResult:
    """What :func:`install` or :func:`uninstall` did.

    :ivar action: ``installed``, ``upgraded``, ``repaired``, ``unchanged``, ``reverted``,
        ``pristine`` (nothing to revert) or ``removed``.
    :ivar backup: the .patch file holding the user's edits saved before overwriting them.
    :ivar kept: edited files left as they were (not managed by the adapter).
    :ivar warnings: things the user must know (e.g. assets left out and what that disables).
    """

    action: str
    adapter: str
    dest: Path
    commit: str
    patches: list[str] = dataclasses.field(default_factory=list)
    backup: Path | None = None
    kept: list[str] = dataclasses.field(default_factory=list)
    skipped_assets: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def summary(self, show=str) -> str:
        """What happened, in a sentence or two for the user; ``show`` formats paths."""
        short, dest, backup = self.commit[:7], show(self.dest), self.backup and show(self.backup)
        lines = {
            "installed": f"installed {self.adapter} at {short} in {dest} "
                         f"({_count(self.patches, 'patch')} applied)",
            "upgraded": f"upgraded {self.adapter} in {dest} to the adapter's current patches "
                        f"({_count(self.patches, 'patch')}, pin {short})",
            "repaired": f"restored {self.adapter}'s patched files in {dest}",
            "unchanged": f"{self.adapter} is already installed in {dest} and unmodified; "
                         "nothing to do",
            "reverted": f"reverted {self.adapter} in {dest} to upstream's pristine tree "
                        f"at {short}",
            "removed": f"removed {dest}",
            "pristine": f"{self.adapter} in {dest} is not patched; nothing to revert",
        }
        out = [lines[self.action]]
        if self.backup:
            out.append(f"your edits were saved to {backup} "
                       f"(replay them with: git -C {dest} apply {self.backup})")
        if self.kept:
            out.append("kept your edits to files the adapter does not manage: "
                       + ", ".join(self.kept))
        return "\n".join(out)


@dataclasses.dataclass
class Status:
    """The state of one checkout (see :func:`status`).

    :ivar commit: the pin the checkout was made at (the lock's, else the adapter's).
    :ivar patches: ``(patch name, state)`` for the adapter's patches and installed ones.
    :ivar added: files the adapter added to the checkout.
    :ivar edited: files that differ from pin + patches: path -> ``modified``/``deleted``.
    :ivar untracked: files that are neither upstream's nor the adapter's.
    :ivar outdated: the adapter's pin, patches or added files changed since install.
    """

    adapter: str
    dest: Path
    exists: bool
    pin: str
    commit: str | None = None
    head: str | None = None
    installed: bool = False
    patches: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    added: list[str] = dataclasses.field(default_factory=list)
    edited: dict[str, str] = dataclasses.field(default_factory=dict)
    untracked: list[str] = dataclasses.field(default_factory=list)
    skipped_assets: dict[str, str] = dataclasses.field(default_factory=dict)
    outdated: bool = False
    lock: dict | None = None

    @property
    def state(self) -> str:
        """``not installed``, ``off the pin``, ``pristine``, ``edited``, ``outdated`` or
        ``installed``."""
        if not self.exists:
            return "not installed"
        if self.head != self.commit:
            return "off the pin"
        if self.edited:
            return "edited"
        if not self.installed:
            return "pristine"
        return "outdated" if self.outdated else "installed"


def fingerprint(adapter) -> dict:
    """What identifies an adapter's change: the pin and the sha256 of each patch and added file."""
    return {
        "commit": adapter.commit,
        "patches": [{"name": p.name, "sha256": patchset.sha256(p.read_bytes())}
                    for p in adapter.patches],
        "added_files": {path: patchset.sha256(src.read_bytes())
                        for path, src in sorted(adapter.added_files.items())},
    }


def install(adapter, dest: Path, source: str | None = None, force: bool = False,
            progress=True, skip_assets: bool = False) -> InstallResult:
    """Clone ``adapter``'s upstream into ``dest`` at the pin and apply its patches; on an
    existing checkout, do nothing when it is current, else upgrade it to the adapter's patches.

    :param source: where to clone from instead of ``adapter.url``: a local clone, a bare
        mirror, a git bundle file or another URL (git's ``url.<base>.insteadOf`` rewriting
        applies to URLs as usual).
    :param force: overwrite edits to managed files, after saving them to a .patch file.
    :param progress: draw git's progress (clone, fetch, checkout) as bars on stderr.
    :param skip_assets: leave the adapter's declared large assets out (sparse checkout).
        Assets the source lacks are left out in any case, with a warning.
    """
    dest = Path(dest).absolute()
    if source is not None and not re.match(r"^[\w+.-]+://|^[\w.-]+@[\w.-]+:", source):
        path = Path(source).expanduser()  # a local clone, bare mirror or bundle file
        if not path.exists():
            raise InstallError(f"--from {source}: no such file or directory")
        source = str(path.absolute())
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return _fresh_install(adapter, dest, source, progress, skip_assets)
    lock = _open(adapter, dest)
    return _update(adapter, dest, lock, source, force, progress, skip_assets)


def status(adapter, dest: Path) -> Status:
    """Pin vs HEAD, each patch applied or not, files edited after patching, untracked files."""
    dest = Path(dest).absolute()
    if not dest.exists():
        return Status(adapter.name, dest, exists=False, pin=adapter.commit)
    lock = _open(adapter, dest)
    base, expected = _recorded(adapter, dest, lock)
    skip = gitops.skip_worktree(dest)
    edited = gitops.changed(dest, expected, skip)
    return Status(
        adapter.name, dest, exists=True, pin=adapter.commit, commit=base, head=gitops.head(dest),
        installed=lock is not None, patches=_patch_states(adapter, lock, edited),
        added=gitops.touched(dest, base, expected, added_only=True), edited=edited,
        untracked=gitops.untracked(dest, expected),
        skipped_assets={k: why for k, why in adapter.assets.items()
                        if any(_under(f, k) for f in skip)},
        outdated=lock is not None and not _same(lock, fingerprint(adapter)), lock=lock)


def diff(adapter, dest: Path) -> str:
    """The change in the checkout against upstream's pin, as a unified diff (the applied
    patches and added files, plus any later edits to tracked files)."""
    dest = _existing(adapter, dest)
    lock = _open(adapter, dest)
    base, expected = _recorded(adapter, dest, lock)
    return gitops.worktree_diff(dest, expected, base, gitops.skip_worktree(dest))


def uninstall(adapter, dest: Path, remove: bool = False, force: bool = False) -> InstallResult:
    """Revert the checkout to upstream's pristine tree at the pin, or delete it (``remove``).

    Refuses, without ``force``, to overwrite edits to patched or added files; with ``remove``
    also to delete edited, untracked or ignored files. With ``force`` the edits and untracked
    files are first saved to a .patch file next to the checkout (ignored files are not).
    """
    dest = _existing(adapter, dest)
    lock = _open(adapter, dest)
    base, expected = _recorded(adapter, dest, lock)
    _require_on_pin(dest, base)
    skip = gitops.skip_worktree(dest)
    edits = gitops.changed(dest, expected, skip)
    if remove:
        extra = gitops.untracked(dest, expected)
        ignored = [p for p in gitops.untracked(dest, expected, ignored=True)
                   if p != LOCK and "__pycache__/" not in "/" + p]
        at_risk = sorted(edits) + extra
        if (at_risk or ignored) and not force:
            what = [f"edited {_few(sorted(edits))}"] if edits else []
            what += [f"untracked {_few(extra)}"] if extra else []
            what += [f"ignored {_few(ignored)}"] if ignored else []
            raise InstallError(f"{dest} holds files uninstall --remove would delete ("
                               + "; ".join(what) + "); rerun with --force to delete them after "
                               "saving edits and untracked files to a .patch file")
        backup = _backup(dest, expected, at_risk, skip) if at_risk else None
        shutil.rmtree(dest)
        warnings = [f"deleted {len(ignored)} ignored path(s): {_few(ignored)}"] if ignored else []
        return InstallResult("removed", adapter.name, dest, base, backup=backup,
                             warnings=warnings)
    if lock is None:
        return InstallResult("pristine", adapter.name, dest, base, kept=sorted(edits))
    managed = set(gitops.touched(dest, base, expected))
    backup = _overwrite_edits(adapter, dest, expected, edits, managed, force, skip)
    gitops.switch(dest, expected, base, skip)
    (dest / LOCK).unlink()
    gitops.git(dest, "update-ref", "-d", REF)
    return InstallResult("reverted", adapter.name, dest, base, backup=backup,
                         kept=sorted(p for p in edits if p not in managed))


# --- install steps -------------------------------------------------------------------------

def _fresh_install(adapter, dest, source, progress, skip_assets) -> InstallResult:
    """Clone, verify, patch and lock in a hidden folder next to ``dest``, then rename it."""
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-{os.getpid()}-", dir=dest.parent))
    try:
        origin = _clone(adapter, source, tmp, progress)
        skipped, warnings = _choose_assets(tmp, adapter, adapter.commit, skip_assets)
        target = patchset.build(tmp, adapter, adapter.commit)
        _checkout(tmp, adapter.commit, skipped, progress)
        gitops.switch(tmp, adapter.commit, target, gitops.skip_worktree(tmp))
        record(tmp, adapter, origin, target, skipped)
        umask = os.umask(0o022)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break
        raise
    return InstallResult("installed", adapter.name, dest, adapter.commit,
                         patches=[p.name for p in adapter.patches], skipped_assets=skipped,
                         warnings=warnings)


def _update(adapter, dest, lock, source, force, progress, skip_assets) -> InstallResult:
    """Bring an existing checkout to the adapter's current pin and patches."""
    base, expected = _recorded(adapter, dest, lock)
    _require_on_pin(dest, base)
    skip = gitops.skip_worktree(dest)
    edits = gitops.changed(dest, expected, skip)
    current = lock is not None and _same(lock, fingerprint(adapter))
    managed = set(gitops.touched(dest, base, expected))
    skipped = {k: why for k, why in adapter.assets.items() if any(_under(f, k) for f in skip)}
    warnings = []
    if skip_assets and adapter.commit == base and adapter.assets.keys() - skipped.keys():
        warnings.append("--skip-assets only applies when cloning or moving to a new pin: this "
                        "checkout keeps its assets (uninstall --remove, then install, to leave "
                        "them out)")
    if current:
        target = expected
        if not edits.keys() & managed:
            return InstallResult("unchanged", adapter.name, dest, base,
                                 patches=[p.name for p in adapter.patches], kept=sorted(edits),
                                 skipped_assets=skipped, warnings=warnings)
    else:
        if adapter.commit != base:
            _fetch_pin(adapter, dest, source, progress)
            skipped, warnings = _choose_assets(dest, adapter, adapter.commit, skip_assets, skip)
        target = patchset.build(dest, adapter, adapter.commit)
        managed |= set(gitops.touched(dest, adapter.commit, target))
        managed |= set(gitops.touched(dest, expected, target))
    backup = _overwrite_edits(adapter, dest, expected, edits, managed, force, skip)
    if adapter.commit == base:
        gitops.switch(dest, expected, target, skip)
    else:  # a new pin: back to the old pin, check out the new one, patch it
        gitops.switch(dest, expected, base, skip)
        _checkout(dest, adapter.commit, skipped, progress)
        gitops.switch(dest, adapter.commit, target, gitops.skip_worktree(dest))
    record(dest, adapter, source or (lock or {}).get("source") or adapter.url, target, skipped)
    action = "installed" if lock is None else "repaired" if current else "upgraded"
    return InstallResult(action, adapter.name, dest, adapter.commit,
                         patches=[p.name for p in adapter.patches], backup=backup,
                         kept=sorted(p for p in edits if p not in managed),
                         skipped_assets=skipped, warnings=warnings)


def _clone(adapter, source, tmp, progress) -> str:
    """Clone ``source`` (or the adapter's URL) into ``tmp`` without a checkout; make sure the
    pinned commit is there. Returns what was cloned."""
    origin = source or adapter.url
    try:
        gitops.git_progress(None, "clone", "--no-checkout", origin, str(tmp), show=progress)
    except GitError as exc:
        reason = _reason(exc)
        if source is None:
            raise InstallError(
                f"cannot clone {adapter.url} ({reason}); if it is unreachable, pass --from "
                f"with a local clone, bare mirror or git bundle that has commit "
                f"{adapter.commit[:12]}, or point git at a mirror: git config --global "
                f"url.<mirror>.insteadOf {adapter.url}") from None
        raise InstallError(f"cannot clone --from {source} ({reason})") from None
    if not gitops.commit_exists(tmp, adapter.commit):
        with contextlib.suppress(GitError):  # not fetchable by id: said just below
            gitops.git_progress(tmp, "fetch", "origin", adapter.commit, show=progress)
    if not gitops.commit_exists(tmp, adapter.commit):
        raise InstallError(f"the pinned commit {adapter.commit} of {adapter.name} is not in "
                           f"{origin} (history rewritten, or an incomplete mirror); pass --from "
                           "with a mirror or bundle that has it")
    return origin


def _fetch_pin(adapter, dest, source, progress):
    """Fetch a new pin into an existing checkout (from ``source``, else its origin)."""
    for args in (("fetch", source or "origin", adapter.commit), ("fetch", source or "origin")):
        if gitops.commit_exists(dest, adapter.commit):
            return
        with contextlib.suppress(GitError):  # said below, with what to do
            gitops.git_progress(dest, *args, show=progress)
    if not gitops.commit_exists(dest, adapter.commit):
        raise InstallError(f"the pinned commit {adapter.commit} of {adapter.name} is not in "
                           f"{dest} and could not be fetched from {source or 'its origin'}; "
                           "pass --from with a mirror or bundle that has it")


def _choose_assets(repo, adapter, commit, requested, already=()):
    """Which declared assets to leave out: all with ``requested``, and in any case those whose
    blobs the source lacks (with a warning). Missing blobs that are no declared asset are an
    error: the checkout would not be the pinned tree."""
    missing = [p for p in gitops.missing_blobs(repo, commit) if p not in already]

    def asset(path):
        return next((k for k in adapter.assets if _under(path, k)), None)

    strays = [p for p in missing if asset(p) is None]
    if strays:
        raise InstallError(f"the source lacks {len(strays)} file(s) of {adapter.name}'s tree at "
                           f"{commit[:12]} that the adapter does not declare as optional assets "
                           f"({_few(strays)}); use a complete mirror or bundle (--from)")
    by_asset: dict[str, list[str]] = {}
    for path in missing:
        by_asset.setdefault(asset(path), []).append(path)
    warnings = [f"the source lacks {', '.join(paths)}: left out of the checkout, which disables "
                f"{adapter.assets[key]}" for key, paths in by_asset.items()]
    skipped = {k: adapter.assets[k] for k in by_asset}
    skipped.update({k: adapter.assets[k] for k in adapter.assets
                    if any(_under(f, k) for f in already)})
    if requested and adapter.assets:
        present = set(gitops.tree_files(repo, commit, *[k.rstrip("/") for k in adapter.assets]))
        skipped.update({k: why for k, why in adapter.assets.items()
                        if any(_under(f, k) for f in present)})
    return skipped, warnings


def _checkout(repo, commit, skipped, progress):
    """Check out ``commit`` detached (leaving ``skipped`` assets out) and verify HEAD."""
    if skipped:
        patterns = ["/*"] + ["!/" + re.sub(r"([*?\[\\])", r"\\\1", k.rstrip("/")) for k in skipped]
        (repo / ".git" / "info").mkdir(exist_ok=True)
        (repo / ".git" / "info" / "sparse-checkout").write_text("\n".join(patterns) + "\n")
        gitops.git(repo, "config", "core.sparseCheckout", "true")
    gitops.git_progress(repo, "checkout", "--detach", commit, show=progress)
    _require_on_pin(repo, commit)


def record(repo, adapter, origin, target, skipped):
    """Write the lock file and the ref that keeps the expected state."""
    gitops.git(repo, "update-ref", REF, target)
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    have = exclude.read_text().splitlines() if exclude.exists() else []
    if missing := [line for line in EXCLUDES if line not in have]:
        with exclude.open("a") as f:
            f.write("".join(line + "\n" for line in ["# vem-plugins", *missing]))
    lock = {"adapter": adapter.name, "adapter_version": adapter.version,
            "vem_plugins_version": __version__, "url": adapter.url, "source": origin,
            **fingerprint(adapter), "installed": target, "skipped_assets": skipped,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    tmp = repo / (LOCK + ".tmp")
    tmp.write_text(json.dumps(lock, indent=2) + "\n")
    tmp.replace(repo / LOCK)


# --- checkout inspection -------------------------------------------------------------------

def _existing(adapter, dest) -> Path:
    dest = Path(dest).absolute()
    if not dest.exists():
        raise InstallError(f"{adapter.name} is not installed in {dest}")
    return dest


def _open(adapter, dest: Path) -> dict | None:
    """The lock of ``dest`` (None for a pristine checkout at the pin); raise when ``dest`` is
    not a checkout of ``adapter``."""
    def refuse(why):
        raise InstallError(f"{dest} exists and is not a checkout of {adapter.name} ({why}); "
                           "choose another --dir or move it away")

    if not dest.is_dir():
        refuse("not a directory")
    rc, top, _ = gitops.git(dest, "rev-parse", "--show-toplevel", check=False)
    if rc or Path(top.strip()).resolve() != dest.resolve():
        refuse("not the top of a git checkout")
    lock_path = dest / LOCK
    if lock_path.exists():
        try:
            lock = json.loads(lock_path.read_text())
            lock["commit"], lock["installed"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InstallError(f"{lock_path} is damaged ({exc}); uninstall --remove and install "
                               "again") from None
        if lock.get("adapter") != adapter.name:
            refuse(f"it is a checkout of {lock.get('adapter')}")
        if not gitops.commit_exists(dest, lock["installed"]):
            raise InstallError(f"{dest}: the record of the installed state ({REF}) is gone; "
                               "uninstall --remove and install again")
        return lock
    head = gitops.head(dest)
    if head != adapter.commit:
        refuse(f"HEAD is {head[:12] if head else 'unborn'}, not the pin "
               f"{adapter.commit[:12]}, and there is no {LOCK}")
    return None


def _recorded(adapter, dest, lock) -> tuple[str, str]:
    """(pin the checkout was made at, commit of what its working tree should hold)."""
    if lock is None:
        return adapter.commit, adapter.commit
    return lock["commit"], lock["installed"]


def _require_on_pin(dest, commit):
    head = gitops.head(dest)
    if head != commit:
        raise InstallError(f"HEAD of {dest} is {head[:12] if head else 'unborn'}, not the pin "
                           f"{commit[:12]} (commits of yours?); check out the pin "
                           f"(git -C {dest} checkout --detach {commit[:12]}) or move the "
                           "directory away")


def _same(lock, fp) -> bool:
    return all(lock.get(k) == v for k, v in fp.items())


def _patch_states(adapter, lock, edited) -> list[tuple[str, str]]:
    recorded = {p["name"]: p["sha256"] for p in lock["patches"]} if lock else {}
    states = []
    for patch in adapter.patches:
        data = patch.read_bytes()
        if patch.name not in recorded:
            state = "not applied"
        elif recorded.pop(patch.name) != patchset.sha256(data):
            state = "applied, but the adapter has a newer version (install upgrades it)"
        else:
            paths = re.findall(r"^\+\+\+ b/([^\t\r\n]+)", data.decode(errors="replace"), re.M)
            hit = [p for p in dict.fromkeys(paths) if p in edited]
            state = "applied" + (f", then edited in {', '.join(hit)}" if hit else "")
        states.append((patch.name, state))
    states += [(name, "applied, but no longer part of the adapter (install removes it)")
               for name in recorded]
    return states


# --- helpers -------------------------------------------------------------------------------

def _overwrite_edits(adapter, dest, expected, edits, managed, force, skip) -> Path | None:
    """Refuse (without ``force``) or back up and undo the user's edits to managed files."""
    conflicts = sorted(p for p in edits if p in managed)
    if not conflicts:
        return None
    if not force:
        raise InstallError(f"you edited {_few(conflicts)} in {dest} after it was patched; "
                           "this would overwrite that. Review with `vem-plugins diff "
                           f"{adapter.name}`, then rerun with --force to save your edits to a "
                           ".patch file first")
    backup = _backup(dest, expected, conflicts, skip)
    gitops.restore(dest, expected, [p for p in conflicts], skip)
    return backup


def _backup(dest, tree, paths, skip) -> Path:
    """Save the working tree's ``paths`` as a patch against ``tree`` next to the checkout."""
    data = gitops.edits_patch(dest, tree, paths, skip)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = dest.parent / f"{dest.name}.user-edits-{stamp}.patch"
    n = 1
    while backup.exists():
        backup = dest.parent / f"{dest.name}.user-edits-{stamp}-{n}.patch"
        n += 1
    backup.write_bytes(data)
    return backup


def _remove_stale_partials(dest):
    """Delete hidden partial clones left by an install that was killed (its pid is gone)."""
    for partial in dest.parent.glob(f".{dest.name}.partial-*-*"):
        pid = partial.name[len(dest.name) + 10:].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _under(path: str, key: str) -> bool:
    key = key.rstrip("/")
    return path == key or path.startswith(key + "/")


def _reason(exc: GitError) -> str:
    lines = [ln.removeprefix("fatal: ").removeprefix("error: ") for ln in exc.lines]
    return lines[-1] if lines else "git clone failed"


def _few(items, n=5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _count(items, word) -> str:
    return f"{len(items)} {word}{'' if len(items) == 1 else 'es' if word.endswith('h') else 's'}"
