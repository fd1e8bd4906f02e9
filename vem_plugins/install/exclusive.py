"""One vem-plugins command at a time on a checkout, and on the checkouts registry; and whether
the process behind a lock or a work folder still runs.

A lock is an ``flock(2)`` on a small file that holds the holder's PID, so that a second command
can say which process it waits for. The kernel drops the lock when its process dies, so a
killed command never leaves a lock behind that needs clearing by hand. The file is removed on
release; a command that opened it just before (and so locked a file no longer on disk) sees
that its inode is not the path's any more and starts over.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from vem_plugins.errors import InstallError

_held: set[Path] = set()


@contextlib.contextmanager
def exclusive(path: Path, what: str, wait: bool = False, required: bool = True):
    """Hold the lock ``path`` for the ``with`` block; yield whether it is held.

    :param what: what the lock guards, for the message a second command gets.
    :param wait: block until the holder is done instead of refusing.
    :param required: raise when the lock file cannot be created (a read-only folder); else
        yield False and go on without it (for commands that only read).
    """
    path = Path(path)
    if path in _held:  # taken by this process further up the stack
        yield True
        return
    try:
        fd = _acquire(path, what, wait)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or required:
            raise InstallError(f"cannot lock {what}: {exc.strerror}: {path}") from None
        yield False
        return
    _held.add(path)
    try:
        yield True
    finally:
        _held.discard(path)
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, what: str, wait: bool) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (PID {holder})" if holder.isdigit() else ""
            raise InstallError(f"another vem-plugins command{who} is working on {what}; wait "
                               "for it to finish, then run yours again") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # a full disk: the lock holds without its PID
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def alive(pid) -> bool:
    """Whether process ``pid`` (an int or its digits) still runs: work folders named after the
    process that made them are stale once it is gone."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True
