"""Install an adapter's upstream repository at its pin, patched; report drift; revert.

A checkout made here is a plain clone detached at the pinned commit. Its working tree holds
the pin plus the adapter's patches and added files; its index stays at the pin, so ``git
status`` and ``git diff`` inside it show exactly what vem-plugins changed. What the working
tree *should* hold is recorded twice: as a commit (a child of the pin, kept reachable by the
ref ``refs/vem-plugins/installed``) and in the lock file ``.vem-plugins.lock.json`` (adapter
and vem-plugins versions, URL, SHA, sha256 of every patch and added file, time). Any
difference between that commit and the working tree is a user edit.

Rules every command follows:

* one command at a time per checkout (:mod:`vem_plugins.install.exclusive`); each first
  finishes what an interrupted one left (:func:`vem_plugins.install.transaction.recover`) and
  rebuilds a damaged or missing lock from the checkout;
* nothing is written until everything has been checked: the patch series is applied to a
  scratch index first (:func:`vem_plugins.install.patchset.build`), then the working tree moves
  as a journaled transaction (:mod:`vem_plugins.install.transaction`);
* a fresh clone is made in a hidden folder next to ``dest`` and renamed into place at the
  end, so an error or an interruption leaves no half-made checkout;
* the user's content is never overwritten or deleted without ``force``; with ``force`` edits
  are first saved to ``<dest>.user-edits-<time>.patch`` and untracked files (nested
  repositories too) moved whole to ``<dest>.kept-<time>``, and the output names both.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from vem_plugins import __version__
from vem_plugins.install import git as gitops, patchset, transaction
from vem_plugins.install.exclusive import exclusive
from vem_plugins.install.transaction import LOCK, REF, under
from vem_plugins.errors import GitError, InstallError

__all__ = ["InstallError", "InstallResult", "Status", "install", "status", "diff", "uninstall"]
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
    :ivar moved_to: the folder ``remove`` moved the user's untracked and ignored files to.
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
    moved_to: Path | None = None
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
        if self.moved_to:
            out.append(f"your untracked and ignored files were moved, whole, to "
                       f"{show(self.moved_to)}")
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
    :ivar pending: the action of an interrupted change this command could not finish.
    :ivar notes: what reading the checkout repaired (or would), for the user.
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
    pending: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def state(self) -> str:
        """``not installed``, ``interrupted ACTION``, ``off the pin``, ``pristine``,
        ``edited``, ``outdated`` or ``installed``."""
        if not self.exists:
            return "not installed"
        if self.pending:
            return f"interrupted {self.pending}"
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
    dest = _target(dest)
    if source is not None and not re.match(r"^[\w+.-]+://|^[\w.-]+@[\w.-]+:", source):
        path = Path(source).expanduser()  # a local clone, bare mirror or bundle file
        if not path.exists():
            raise InstallError(f"--from {source}: no such file or directory")
        source = str(path.absolute())
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InstallError(f"cannot create {dest.parent}: {exc.strerror}") from None
        with working_on(dest):
            notes = transaction.sweep(dest)
            if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
                result = _fresh_install(adapter, dest, source, progress, skip_assets)
            else:
                lock = _open(adapter, dest, notes)
                result = _update(adapter, dest, lock, source, force, progress, skip_assets)
    except BaseException:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break
        raise
    result.warnings[:0] = notes
    return result


def status(adapter, dest: Path) -> Status:
    """Pin vs HEAD, each patch applied or not, files edited after patching, untracked files.

    Finishes a change an interrupted command left, and rebuilds a damaged or missing lock,
    when it can write; else it reports them."""
    dest = _target(dest)
    if not dest.exists():
        return Status(adapter.name, dest, exists=False, pin=adapter.commit)
    with working_on(dest, required=False) as held:
        notes = transaction.sweep(dest) if held else []
        lock = _open(adapter, dest, notes, repair=held)
        pending = None if held else transaction.pending(dest)
        base, expected = _recorded(adapter, dest, lock)
        skip = gitops.skip_worktree(dest)
        edited = gitops.changed(dest, expected, skip)
        return Status(
            adapter.name, dest, exists=True, pin=adapter.commit, commit=base,
            head=gitops.head(dest), installed=lock is not None,
            patches=_patch_states(adapter, lock, edited),
            added=gitops.touched(dest, base, expected, added_only=True), edited=edited,
            untracked=gitops.untracked(dest, expected), skipped_assets=_skipped(adapter, skip),
            outdated=lock is not None and not _same(lock, fingerprint(adapter)), lock=lock,
            pending=pending and pending.action, notes=notes)


def diff(adapter, dest: Path) -> str:
    """The change in the checkout against upstream's pin, as a unified diff (the applied
    patches and added files, plus any later edits to tracked files)."""
    dest = _existing(adapter, dest)
    with working_on(dest, required=False) as held:
        lock = _open(adapter, dest, [], repair=held)
        base, expected = _recorded(adapter, dest, lock)
        return gitops.worktree_diff(dest, expected, base, gitops.skip_worktree(dest))


def uninstall(adapter, dest: Path, remove: bool = False, force: bool = False) -> InstallResult:
    """Revert the checkout to upstream's pristine tree at the pin, or delete it (``remove``).

    Refuses, without ``force``, to overwrite edits to patched or added files; with ``remove``
    also to delete edited, untracked or ignored files. With ``force`` the edits are first saved
    to a .patch file next to the checkout, and untracked and ignored files (nested git
    repositories included, history and all) are moved whole to a folder next to it.
    """
    dest = _existing(adapter, dest)
    with working_on(dest):
        notes = transaction.sweep(dest)
        lock = _open(adapter, dest, notes)
        base, expected = _recorded(adapter, dest, lock)
        _require_on_pin(dest, base)
        if remove:
            result = _remove(adapter, dest, base, expected, force)
        elif lock is None:
            edits = gitops.changed(dest, expected, gitops.skip_worktree(dest))
            result = InstallResult("pristine", adapter.name, dest, base, kept=sorted(edits))
        else:
            skip = gitops.skip_worktree(dest)
            tx = transaction.Transaction(
                "uninstall", old=(base, expected), new=(base, base), old_lock=lock,
                new_lock=None, skipped=list(_skipped(adapter, skip)),
                old_skipped=list(_skipped(adapter, skip)))
            result = _carry_out(adapter, dest, tx, force, "reverted", base)
    result.warnings[:0] = notes
    return result


# --- install steps -------------------------------------------------------------------------

def _fresh_install(adapter, dest, source, progress, skip_assets) -> InstallResult:
    """Clone, verify, patch and lock in a hidden folder next to ``dest``, then rename it."""
    if os.path.ismount(dest):
        raise InstallError(f"{dest} is a mount point, which cannot be replaced by a finished "
                           f"checkout; install into a folder inside it: --dir {dest / adapter.name}")
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
        raise
    return InstallResult("installed", adapter.name, dest, adapter.commit,
                         patches=[p.name for p in adapter.patches], skipped_assets=skipped,
                         warnings=warnings)


def _update(adapter, dest, lock, source, force, progress, skip_assets) -> InstallResult:
    """Bring an existing checkout to the adapter's current pin and patches."""
    base, expected = _recorded(adapter, dest, lock)
    _require_on_pin(dest, base)
    current = lock is not None and _same(lock, fingerprint(adapter))
    skip = gitops.skip_worktree(dest)
    skipped = old_skipped = _skipped(adapter, skip)
    warnings = []
    if skip_assets and adapter.commit == base and adapter.assets.keys() - skipped.keys():
        warnings.append("--skip-assets only applies when cloning or moving to a new pin: this "
                        "checkout keeps its assets (uninstall --remove, then install, to leave "
                        "them out)")
    if current:
        target = expected
    else:
        if adapter.commit != base:
            _fetch_pin(adapter, dest, source, progress)
            skipped, warnings = _choose_assets(dest, adapter, adapter.commit, skip_assets, skip)
        target = patchset.build(dest, adapter, adapter.commit)
    action = "installed" if lock is None else "repaired" if current else "upgraded"
    origin = source or (lock or {}).get("source") or adapter.url
    tx = transaction.Transaction(
        {"installed": "install", "repaired": "repair", "upgraded": "upgrade"}[action],
        old=(base, expected), new=(adapter.commit, target), old_lock=lock,
        new_lock=_lock(adapter, origin, target, skipped), skipped=list(skipped),
        old_skipped=list(old_skipped))
    result = _carry_out(adapter, dest, tx, force, action, adapter.commit,
                        unchanged=current)
    result.patches = [p.name for p in adapter.patches]
    result.skipped_assets = skipped
    result.warnings += warnings
    return result


def _carry_out(adapter, dest, tx, force, action, commit, unchanged=False) -> InstallResult:
    """Run ``tx`` on ``dest``, refusing (without ``force``) to overwrite the user's content;
    ``unchanged``: nothing to do unless the user changed managed files."""
    clash = transaction.conflicts(dest, tx)
    expected = tx.old[1]
    kept = sorted(set(gitops.changed(dest, expected, gitops.skip_worktree(dest)))
                  - set(transaction.paths(dest, tx)))
    if unchanged and not clash:
        return InstallResult("unchanged", adapter.name, dest, commit, kept=kept)
    if clash and not force:
        raise InstallError(f"you edited {_few(clash)} in {dest} after it was patched; "
                           "this would overwrite that. Review with `vem-plugins diff "
                           f"{adapter.name}`, then rerun with --force to save your edits to a "
                           ".patch file first")
    backups = transaction.run(dest, tx, save=clash)
    return InstallResult(action, adapter.name, dest, commit,
                         backup=backups[0] if backups else None, kept=kept)


def _remove(adapter, dest, base, expected, force) -> InstallResult:
    """Delete the checkout; the user's edits go to a .patch file and their untracked and
    ignored files (bytecode caches aside) are moved whole to ``<dest>.kept-<time>``."""
    if os.path.ismount(dest):
        raise InstallError(f"{dest} is a mount point, which vem-plugins does not remove; "
                           f"delete what is in it yourself, or revert it with: vem-plugins "
                           f"uninstall {adapter.name} --dir {dest}")
    skip = gitops.skip_worktree(dest)
    edits = sorted(gitops.changed(dest, expected, skip))
    extra = gitops.untracked(dest, expected)
    ignored = [p for p in gitops.untracked(dest, expected, ignored=True)
               if p != LOCK and "__pycache__/" not in "/" + p]

    def few(paths):
        return _few(p + (" (a git repository)" if (dest / p / ".git").exists() else "")
                    for p in paths)

    kept = transaction.beside(dest, "kept")
    if (edits or extra or ignored) and not force:
        what = [f"edited {_few(edits)}"] if edits else []
        what += [f"untracked {few(extra)}"] if extra else []
        what += [f"ignored {few(ignored)}"] if ignored else []
        raise InstallError(f"{dest} holds files of yours (" + "; ".join(what) + "); rerun with "
                           "--force to save your edits to a .patch file and move the other "
                           "files, whole, to a folder next to it before removing it")
    tx = transaction.Transaction("remove", old=(base, expected), new=(base, expected),
                                 old_lock=None, new_lock=None,
                                 kept=str(kept) if extra or ignored else None,
                                 moved=extra + ignored)
    if edits:
        tx.backups.append(str(transaction.backup_edits(dest, expected, edits)))
    transaction.remove(dest, tx)
    return InstallResult("removed", adapter.name, dest, base,
                         backup=Path(tx.backups[0]) if tx.backups else None,
                         moved_to=kept if tx.moved else None)


def _clone(adapter, source, tmp, progress) -> str:
    """Clone ``source`` (or the adapter's URL) into ``tmp`` without a checkout; make sure the
    pinned commit is there. Returns what was cloned."""
    origin = source or adapter.url
    try:
        gitops.git_progress(None, "clone", "--no-checkout", origin, str(tmp), show=progress)
    except GitError as exc:
        reason = exc.reason
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
        return next((k for k in adapter.assets if under(path, k)), None)

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
                    if any(under(f, k) for f in already)})
    if requested and adapter.assets:
        present = set(gitops.tree_files(repo, commit, *[k.rstrip("/") for k in adapter.assets]))
        skipped.update({k: why for k, why in adapter.assets.items()
                        if any(under(f, k) for f in present)})
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
    """Write the lock file and the ref that keep the expected state (and keep the lock file
    and bytecode caches out of ``git status``)."""
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    have = exclude.read_text().splitlines() if exclude.exists() else []
    if missing := [line for line in EXCLUDES if line not in have]:
        with exclude.open("a") as f:
            f.write("".join(line + "\n" for line in ["# vem-plugins", *missing]))
    transaction.commit_state(repo, _lock(adapter, origin, target, skipped))


def _lock(adapter, origin, target, skipped) -> dict:
    """The lock file's content for ``adapter`` installed as commit ``target``."""
    return {"adapter": adapter.name, "adapter_version": adapter.version,
            "vem_plugins_version": __version__, "url": adapter.url, "source": origin,
            **fingerprint(adapter), "installed": target, "skipped_assets": skipped,
            "time": transaction.now().isoformat(timespec="seconds")}


# --- checkout inspection -------------------------------------------------------------------

def _target(dest) -> Path:
    """``dest`` made absolute; a symbolic link is refused (removing or renaming it would act
    on the link, not on the checkout it points to)."""
    dest = Path(dest).absolute()
    if dest.is_symlink():
        real = dest.resolve()
        raise InstallError(f"{dest} is a symbolic link (to {real}); give the folder itself: "
                           f"--dir {real}")
    return dest


def _existing(adapter, dest) -> Path:
    dest = _target(dest)
    if not dest.exists():
        raise InstallError(f"{adapter.name} is not installed in {dest}")
    return dest


@contextlib.contextmanager
def working_on(dest: Path, required: bool = True):
    """Hold ``dest``'s lock (a file next to it) for one command; an OS error on the way (a
    read-only folder, a full disk) becomes one line naming the file."""
    try:
        with exclusive(dest.parent / f".{dest.name}.vem-plugins-lock", str(dest),
                       required=required) as held:
            yield held
    except OSError as exc:
        raise InstallError(transaction.describe(exc)) from None


def _open(adapter, dest: Path, notes: list, repair: bool = True) -> dict | None:
    """The lock of ``dest`` (None for a pristine checkout at the pin), after finishing a
    change an interrupted command left; a damaged or missing lock is rebuilt from the
    checkout (written back when ``repair``). Raises when ``dest`` is not a checkout of
    ``adapter``. What was repaired is added to ``notes``."""
    def refuse(why):
        raise InstallError(f"{dest} exists and is not a checkout of {adapter.name} ({why}); "
                           "choose another --dir or move it away")

    if not dest.is_dir():
        refuse("not a directory")
    rc, top, _ = gitops.git(dest, "rev-parse", "--show-toplevel", check=False)
    if rc or Path(top.strip()).resolve() != dest.resolve():
        refuse("not the top of a git checkout")
    if repair:
        notes += transaction.recover(dest)
    elif tx := transaction.pending(dest):
        notes.append(f"an {tx.action} of {dest} was interrupted (PID {tx.pid}, {tx.time}); "
                     "run vem-plugins install or uninstall where it can write to finish it")
    lock, damage = _read_lock(dest)
    if lock is not None and isinstance(lock.get("adapter"), str) \
            and lock["adapter"] != adapter.name:
        refuse(f"it is a checkout of {lock['adapter']}")
    if damage is None:
        if lock is not None:
            return lock
        head = gitops.head(dest)
        if head != adapter.commit and not gitops.commit_exists(dest, REF):
            refuse(f"HEAD is {head[:12] if head else 'unborn'}, not the pin "
                   f"{adapter.commit[:12]}, and there is no {LOCK}")
        if not gitops.commit_exists(dest, REF) \
                and not gitops.changed(dest, head, gitops.skip_worktree(dest)):
            return None  # upstream's pristine pin
        damage = f"{LOCK} is missing"
    return _rebuild(adapter, dest, lock, damage, notes, repair)


def _read_lock(dest) -> tuple[dict | None, str | None]:
    """``(lock, what is wrong with it)``; the lock is the parsed object when it is one."""
    path = dest / LOCK
    if not os.path.lexists(path):
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{LOCK} is unreadable ({exc})"
    if not isinstance(data, dict):
        return None, f"{LOCK} is damaged (not a JSON object)"
    for key in ("adapter", "commit", "installed"):
        if not isinstance(data.get(key), str):
            return data, f"{LOCK} is damaged ({key!r} is not a string)"
    for key in ("commit", "installed"):
        if not re.fullmatch(r"[0-9a-f]{40}", data[key]):
            return data, f"{LOCK} is damaged ({key!r} is not a commit id)"
        if not gitops.commit_exists(dest, data[key]):
            return data, f"{LOCK} names a commit ({key} {data[key][:12]}) not in the repository"
    if not isinstance(data.get("patches"), list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str)
            and isinstance(p.get("sha256"), str) for p in data["patches"]):
        return data, f"{LOCK} is damaged ('patches' is not a list of names and hashes)"
    for key in ("added_files", "skipped_assets"):
        if not isinstance(data.get(key, {}), dict):
            return data, f"{LOCK} is damaged ({key!r} is not an object)"
    for key in ("source", "time", "adapter_version", "vem_plugins_version", "url"):
        if key in data and not isinstance(data[key], str):
            return data, f"{LOCK} is damaged ({key!r} is not a string)"
    return data, None


def _rebuild(adapter, dest, old, damage, notes, repair) -> dict | None:
    """Work out what ``dest``'s tree should hold without its lock: the state the ref
    ``refs/vem-plugins/installed`` records (when it sits on HEAD), the adapter's patches on
    HEAD (when HEAD is its pin), or the pristine pin, whichever the tree is closest to."""
    head = gitops.head(dest)
    candidates = {}
    if gitops.commit_exists(dest, REF):
        ref = gitops.git(dest, "rev-parse", REF).strip()
        if gitops.git(dest, "rev-parse", f"{ref}^").strip() == head:
            candidates[ref] = f"the installed state kept in {REF}"
    built = None
    if head == adapter.commit:
        with contextlib.suppress(InstallError):  # a read-only .git: no objects can be written
            built = patchset.build(dest, adapter, head)
            candidates.setdefault(built, f"{adapter.name}'s current patches")
    if not candidates and head != adapter.commit:
        raise InstallError(f"{damage}, and HEAD of {dest} is {head[:12] if head else 'unborn'}, "
                           f"not {adapter.name}'s pin {adapter.commit[:12]}: check out the pin "
                           f"(git -C {dest} checkout --detach {adapter.commit[:12]}) or move "
                           "the directory away")
    skip = gitops.skip_worktree(dest)
    distance = {c: len(gitops.changed(dest, c, skip)) for c in [*candidates, head]}
    chosen = min([*candidates, head], key=distance.get)  # a recorded state wins a tie
    if chosen == head:
        lock, how = None, "the tree is upstream's pristine pin"
    else:
        old = old or {}
        fp = fingerprint(adapter) if chosen == built else {
            "commit": head, "patches": [], "added_files": {}}
        version = adapter.version if chosen == built else _text(old, "adapter_version")
        lock = {"adapter": adapter.name, "adapter_version": version or "unknown",
                "vem_plugins_version": __version__, "url": adapter.url,
                "source": _text(old, "source") or adapter.url, **fp, "installed": chosen,
                "skipped_assets": _skipped(adapter, skip), "rebuilt": damage,
                "time": transaction.now().isoformat(timespec="seconds")}
        how = f"the tree matches {candidates[chosen]}" + (
            f" but for {distance[chosen]} edited file(s)" if distance[chosen] else "")
    if repair:
        transaction.commit_state(dest, lock)
        notes.append(f"{damage}: rebuilt it from the checkout ({how})")
    else:
        notes.append(f"{damage}: read the checkout as if it were rebuilt ({how}); a command "
                     "that can write there rebuilds it")
    return lock


def _text(data: dict, key: str) -> str | None:
    return data[key] if isinstance(data.get(key), str) else None


def _recorded(adapter, dest, lock) -> tuple[str, str]:
    """(pin the checkout was made at, commit of what its working tree should hold)."""
    if lock is None:
        return adapter.commit, adapter.commit
    return lock["commit"], lock["installed"]


def _skipped(adapter, skip) -> dict:
    """The adapter's assets a checkout leaves out, given its skip-worktree files."""
    return {k: why for k, why in adapter.assets.items() if any(under(f, k) for f in skip)}


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
    if lock and lock.get("rebuilt") and not recorded:
        return [(patch.name, "applied in a version that cannot be told (the lock was rebuilt); "
                             "install brings the adapter's current one")
                for patch in adapter.patches]
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

def _few(items, n=5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _count(items, word) -> str:
    return f"{len(items)} {word}{'' if len(items) == 1 else 'es' if word.endswith('h') else 's'}"
