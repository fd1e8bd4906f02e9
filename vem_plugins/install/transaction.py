"""Every change to an existing checkout as a transaction that an interruption cannot tear.

An upgrade, a repair, an install over a pristine checkout and an uninstall all move the working
tree from one recorded state (a pin and the commit of what the tree holds) to another, and then
the record (the lock file ``.vem-plugins.lock.json`` and the ref ``refs/vem-plugins/installed``).
Before the first file is touched, the whole intent is written durably to a journal in the
checkout's ``.git`` (as a package manager keeps its journal): both states, the lock to write, and
which user content is already saved in a backup. :func:`settle` then makes each path the new
state's, and only then is the record written and the journal deleted.

:func:`settle` is idempotent and works path by path, so it also finishes what an interrupted
command left: a path holds the old state's content, the new state's, nothing (git was writing
it), or something else. Only "something else" is the user's, and it is saved to a backup named
in the journal and the output before it is overwritten. Every command begins with
:func:`recover`, which rolls an interrupted transaction forward (or, when that fails, back), so
the next command never finds a half-switched tree and never blames it on the user.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import glob
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from vem_plugins.errors import InstallError
from vem_plugins.install import git as gitops
from vem_plugins.install.exclusive import alive

LOCK = ".vem-plugins.lock.json"
REF = "refs/vem-plugins/installed"
JOURNAL = "vem-plugins-transaction.json"  # in the checkout's .git


@dataclasses.dataclass
class Transaction:
    """A move of a checkout's working tree, HEAD and record from ``old`` to ``new``.

    :ivar action: what the user asked for (``upgrade``, ``repair``, ``install``, ``revert``).
    :ivar old: ``(pin, installed)`` before: HEAD and the commit the tree holds.
    :ivar new: ``(pin, installed)`` after.
    :ivar old_lock: the lock before (None: none, a pristine checkout); for rolling back.
    :ivar new_lock: the lock to write (None: remove it and the ref).
    :ivar skipped: the assets left out of the tree at the new pin (sparse checkout).
    :ivar old_skipped: those left out at the old pin.
    :ivar saved: path -> git blob id (None: deleted) of the user's content in the old tree,
        saved in ``backups`` and in git's object store before it is overwritten.
    :ivar undo: this moves back to the old state (see :meth:`reverse`): ``saved`` content is
        put back too.
    :ivar backups: the .patch files holding the user's edits, oldest first.
    :ivar kept: for ``remove`` only (which moves no tree): the folder next to the checkout
        that the user's untracked and ignored files are moved to, whole, before deleting it.
    :ivar moved: for ``remove``: those files' paths in the checkout.
    """

    action: str
    old: tuple[str, str]
    new: tuple[str, str]
    old_lock: dict | None
    new_lock: dict | None
    skipped: list[str] = dataclasses.field(default_factory=list)
    old_skipped: list[str] = dataclasses.field(default_factory=list)
    saved: dict[str, str | None] = dataclasses.field(default_factory=dict)
    undo: bool = False
    backups: list[str] = dataclasses.field(default_factory=list)
    kept: str | None = None
    moved: list[str] = dataclasses.field(default_factory=list)
    pid: int = dataclasses.field(default_factory=os.getpid)
    time: str = dataclasses.field(default_factory=lambda: now().isoformat(timespec="seconds"))

    def reverse(self) -> "Transaction":
        """The move back, which shares this one's backups and saved content."""
        return dataclasses.replace(self, old=self.new, new=self.old, old_lock=self.new_lock,
                                   new_lock=self.old_lock, skipped=self.old_skipped,
                                   old_skipped=self.skipped, undo=not self.undo)


def conflicts(dest: Path, tx: Transaction) -> list[str]:
    """Paths the move would overwrite that hold the user's content: edited, deleted, or
    untracked files where the new state puts a file."""
    expected = _blobs(dest, tx.old[1], paths(dest, tx))
    have = _worktree_blobs(dest, expected)
    want = _blobs(dest, tx.new[1], expected)
    return sorted(p for p in expected if have[p] not in (expected[p], want[p]))


def paths(dest: Path, tx: Transaction) -> list[str]:
    """Every path whose content differs between any two of the four trees involved (the
    steps old pin - old state - new state - new pin cover every pair)."""
    return list(_paths(dest, (tx.old[0], tx.old[1], tx.new[1], tx.new[0])))


@functools.lru_cache(maxsize=16)
def _paths(dest: Path, chain: tuple[str, ...]) -> tuple[str, ...]:
    """(Commits never change, so neither does this.)"""
    out: dict[str, None] = {}
    for a, b in zip(chain, chain[1:]):
        if a != b:
            out.update(dict.fromkeys(gitops.touched(dest, a, b)))
    return tuple(sorted(out))


def run(dest: Path, tx: Transaction, save=()) -> list[Path]:
    """Carry out ``tx`` on ``dest``: save ``save`` (user content the caller was allowed to
    overwrite) to a backup, journal, settle, record. On an error the tree is moved back to the
    old state and the error raised; the backups made are returned."""
    _refuse_folders(dest, save)
    if save:
        tx.backups.append(str(backup_edits(dest, tx.old[1], save)))
        tx.saved.update(_worktree_blobs(dest, save, store=True))
    _write_journal(dest, tx)
    try:
        settle(dest, tx)
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else describe(exc)
        back = tx.reverse()
        try:
            settle(dest, back)
        except Exception as stuck:  # the journal stays: the next command finishes the move
            raise InstallError(f"{why}, and undoing the {tx.action} failed too ({describe(stuck)})"
                               f"; fix that, then any vem-plugins command on {dest} finishes it"
                               + _saved_note(tx)) from None
        _journal(dest).unlink()
        raise InstallError(f"{why}; {dest} is as it was before" + _saved_note(back)) from None
    _journal(dest).unlink()
    return [Path(b) for b in tx.backups]


def recover(dest: Path) -> list[str]:
    """Finish (or undo) a transaction an interrupted command left in ``dest``; return what
    was done, for the user."""
    tx = pending(dest)
    if tx is None:
        return []
    what = f"an interrupted {tx.action} of {dest} (started {tx.time} by PID {tx.pid})"
    if tx.action == "remove":
        _move_back(dest, tx)
        _journal(dest).unlink()
        return [f"undid {what}: your files are back in it" + _saved_note(tx)]
    try:
        settle(dest, tx)
        done = f"finished {what}"
    except Exception as forward:
        back = tx.reverse()  # shares the backups and saved content
        try:
            settle(dest, back)
        except Exception as backward:
            raise InstallError(f"cannot finish {what} ({describe(forward)}) nor undo it "
                               f"({describe(backward)}); fix that, then run any vem-plugins "
                               "command on it again" + _saved_note(tx)) from None
        done = f"undid {what}, which could not be finished ({describe(forward)})"
        tx = back
    _journal(dest).unlink()
    return [done + _saved_note(tx)]


def remove(dest: Path, tx: Transaction) -> None:
    """Delete the checkout ``dest`` after moving the files ``tx.moved`` (the user's) whole,
    history and all, into ``tx.kept``; the user's edits are already in ``tx.backups``.

    Until the checkout is renamed out of the way (one atomic step), an interruption is undone
    by :func:`recover`; after it, what is left is vem-plugins' own and :func:`sweep` deletes
    it, telling where the user's files went.
    """
    _write_journal(dest, tx)
    try:
        for rel in tx.moved:
            kept = Path(tx.kept)
            (kept / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(dest / rel.rstrip("/"), kept / rel.rstrip("/"))
    except BaseException as exc:
        _move_back(dest, tx)
        _journal(dest).unlink()
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else describe(exc)
        raise InstallError(f"cannot move your files out of {dest} ({why}); nothing was "
                           "removed, move them away yourself and run it again") from None
    doomed = dest.parent / f".{dest.name}.removing-{os.getpid()}"
    os.rename(dest, doomed)
    shutil.rmtree(doomed)


def sweep(dest: Path) -> list[str]:
    """Delete what killed commands left next to ``dest``: partial clones of a fresh install
    and checkouts renamed for removal (their PID is gone); return what to tell the user."""
    notes = []
    for leftover in dest.parent.glob(f".{glob.escape(dest.name)}.*-*"):
        kind, _, pid = leftover.name[len(dest.name) + 2:].partition("-")
        pid = pid.split("-")[0]
        if kind not in ("partial", "removing") or not pid.isdigit() or alive(pid):
            continue
        if kind == "removing":
            with contextlib.suppress(InstallError):
                tx = pending(leftover)
                if tx and tx.kept:
                    notes.append(f"finished removing {dest}, interrupted before; your files "
                                 f"are in {tx.kept}" + _saved_note(tx))
        shutil.rmtree(leftover, ignore_errors=True)
    return notes


def pending(dest: Path) -> Transaction | None:
    """The journal of an unfinished transaction in ``dest``, if there is one."""
    path = _journal(dest)
    try:
        data = json.loads(path.read_text())
        return Transaction(**{**data, "old": tuple(data["old"]), "new": tuple(data["new"])})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InstallError(f"{path} (the record of an interrupted change) is unreadable "
                           f"({exc}); move it away, then check the tree with vem-plugins "
                           "status") from None


def settle(dest: Path, tx: Transaction) -> None:
    """Make the working tree, HEAD, index and record of ``dest`` the new state of ``tx``,
    whatever mix of the two states it holds now, saving the user's content first."""
    todo = paths(dest, tx)
    known = [_blobs(dest, commit, todo) for commit in {*tx.old, *tx.new}]
    skipped = {p for p in todo if any(under(p, k) for k in tx.skipped)}
    want = _blobs(dest, tx.new[1], todo)
    want.update(dict.fromkeys(skipped))
    if tx.undo:
        want.update(tx.saved)
    have = _worktree_blobs(dest, want)
    change = [p for p in todo if have[p] != want[p]]
    foreign = [p for p in change if have[p] is not None and tx.saved.get(p) != have[p]
               and all(k[p] != have[p] for k in known)]
    if foreign:  # the user's: saved and named before anything is overwritten
        _refuse_folders(dest, foreign)
        tx.backups.append(str(backup_edits(dest, tx.old[1], foreign)))
        tx.saved.update(_worktree_blobs(dest, foreign, store=True))
        _write_journal(dest, tx)
    for path in sorted((p for p in change if want[p] is None), reverse=True):
        _remove_file(dest, path)
    if writes := [p for p in change if want[p] is not None]:
        with gitops.scratch_index(dest, tx.new[1]) as scratch:
            mine = [p for p in writes if tx.undo and p in tx.saved]
            if mine:  # the user's content goes back where it was
                gitops.git(dest, "update-index", "--add", "-z", "--index-info",
                           input="".join(f"100644 {want[p]}\t{p}\0" for p in mine),
                           extra_env=scratch)
            gitops.git(dest, "checkout-index", "-f", "-z", "--stdin",
                       input="".join(p + "\0" for p in writes), extra_env=scratch)
    if tx.old[0] != tx.new[0] or gitops.head(dest) != tx.new[0]:
        _move_head(dest, tx.new[0], tx.skipped)
    commit_state(dest, tx.new_lock)


def commit_state(dest: Path, lock: dict | None) -> None:
    """Write the record of what ``dest``'s tree holds: the ref and the lock (atomically), or
    remove both for a pristine checkout."""
    path = dest / LOCK
    if lock is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        gitops.git(dest, "update-ref", "-d", REF)
        return
    gitops.git(dest, "update-ref", REF, lock["installed"])
    write_durably(path, json.dumps(lock, indent=2) + "\n", scratch=dest / ".git")


def backup_edits(dest: Path, tree: str, paths) -> Path:
    """Save the working tree's ``paths`` as a patch against ``tree`` next to the checkout
    (``git -C dest apply`` replays it)."""
    data = gitops.edits_patch(dest, tree, list(paths), gitops.skip_worktree(dest))
    backup = beside(dest, "user-edits", ".patch")
    write_durably(backup, data)
    return backup


def beside(dest: Path, what: str, suffix: str = "") -> Path:
    """A new name next to ``dest`` for what is kept of the user's: ``<dest>.<what>-<local
    time><suffix>``, numbered when taken."""
    stamp = now().astimezone().strftime("%Y%m%d-%H%M%S")
    path, n = dest.parent / f"{dest.name}.{what}-{stamp}{suffix}", 1
    while os.path.lexists(path):
        path, n = dest.parent / f"{dest.name}.{what}-{stamp}-{n}{suffix}", n + 1
    return path


def write_durably(path: Path, data: str | bytes, scratch: Path | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one.

    :param scratch: the folder (on the same filesystem) for the temporary file, when one left
        next to ``path`` by a crash would be in the user's way."""
    tmp = (scratch or path.parent) / f"{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- helpers -------------------------------------------------------------------------------

def _journal(dest: Path) -> Path:
    return dest / ".git" / JOURNAL


def _write_journal(dest: Path, tx: Transaction) -> None:
    write_durably(_journal(dest), json.dumps(dataclasses.asdict(tx), indent=1) + "\n")


def _move_back(dest: Path, tx: Transaction) -> None:
    """Undo :func:`remove`'s moves that happened (the folder left empty is deleted)."""
    if not tx.kept:
        return
    kept = Path(tx.kept)
    for rel in tx.moved:
        src, back = kept / rel.rstrip("/"), dest / rel.rstrip("/")
        if os.path.lexists(src) and not os.path.lexists(back):
            back.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, back)
    for folder in sorted((p for p in kept.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        kept.rmdir()


def _blobs(dest: Path, commit: str, paths) -> dict[str, str | None]:
    """The blob id of each of ``paths`` in ``commit`` (None where it has none)."""
    listing = _listing(dest, commit) if paths else {}
    return {p: listing.get(p) for p in paths}


@functools.lru_cache(maxsize=16)
def _listing(dest: Path, commit: str) -> dict[str, str]:
    """path -> blob id of every file in ``commit`` (which never changes)."""
    out = {}
    for entry in gitops.git(dest, "ls-tree", "-r", "-z", "--full-tree", commit).split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            out[path] = meta.split()[2]
    return out


def _worktree_blobs(dest: Path, paths, store: bool = False) -> dict[str, str | None]:
    """The blob id git would give each working-tree file (None when absent; a directory in
    the way gets a name no blob has); ``store`` writes the files' content to git's object
    store, so that it can be put back."""
    out: dict[str, str | None] = {}
    files = []
    for path in paths:
        full = dest / path
        if full.is_symlink():
            target = os.readlink(full).encode()
            out[path] = hashlib.sha1(b"blob %d\0" % len(target) + target).hexdigest()
        elif full.is_dir():
            out[path] = "directory"
        elif full.exists():
            files.append(path)
        else:
            out[path] = None
    if files:
        ids = gitops.git(dest, "hash-object", *(["-w"] if store else []), "--stdin-paths",
                         input="".join(p + "\n" for p in files)).split()
        out.update(zip(files, ids))
    return out


def _refuse_folders(dest: Path, paths) -> None:
    """A folder where a file goes cannot be saved to a patch (a nested repository would be
    saved as one line); the user moves it."""
    if folders := [p for p in paths if (dest / p).is_dir() and not (dest / p).is_symlink()]:
        raise InstallError(f"{dest / folders[0]} is a folder of yours where the checkout needs "
                           "a file; move it away, then run the command again")


def _remove_file(dest: Path, path: str) -> None:
    """Delete a file and the folders it leaves empty (as git does)."""
    full = dest / path
    with contextlib.suppress(FileNotFoundError):
        full.unlink()
    for folder in full.parents:
        if folder == dest:
            break
        try:
            folder.rmdir()
        except OSError:
            break


def _move_head(dest: Path, pin: str, skipped) -> None:
    """Detach HEAD at ``pin`` and make the checkout's own index hold it, marking files of
    left-out assets skip-worktree (with the matching sparse-checkout patterns)."""
    gitops.git(dest, "update-ref", "--no-deref", "HEAD", pin)
    if skipped:
        patterns = ["/*"] + ["!/" + re.sub(r"([*?\[\\])", r"\\\1", k.rstrip("/"))
                             for k in skipped]
        (dest / ".git" / "info").mkdir(exist_ok=True)
        (dest / ".git" / "info" / "sparse-checkout").write_text("\n".join(patterns) + "\n")
        gitops.git(dest, "config", "core.sparseCheckout", "true")
    gitops.git(dest, "read-tree", pin)
    if leave := gitops.tree_files(dest, pin, *[k.rstrip("/") for k in skipped]) \
            if skipped else []:
        gitops.git(dest, "update-index", "--skip-worktree", "-z", "--stdin",
                   input="".join(p + "\0" for p in leave))
    gitops.git(dest, "update-index", "-q", "--refresh", check=False)


def _saved_note(tx: Transaction) -> str:
    if not tx.backups:
        return ""
    return "; your edits are saved in " + ", ".join(tx.backups)


def describe(exc: BaseException) -> str:
    """An exception in a few words: an OS error as its reason and file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def under(path: str, key: str) -> bool:
    """Whether ``path`` is the file or folder ``key`` or inside it."""
    key = key.rstrip("/")
    return path == key or path.startswith(key + "/")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
