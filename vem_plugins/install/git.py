"""The few git operations the installer needs, run as real ``git`` subprocesses.

Everything that inspects or rewrites a checkout goes through a *scratch index*
(``GIT_INDEX_FILE``): the checkout's own index always stays at the pinned commit, so plain
``git status`` and ``git diff`` in a patched checkout show exactly what vem-plugins changed.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vem_plugins.errors import GitError, InstallError

#: English messages (the installer parses some), never an interactive credential prompt.
_ENV = {"LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"}
_REPO_VARS = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
              "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX"}
#: A fixed identity and date for the commit that records a checkout's expected state, so the
#: same adapter always yields the same commit id.
_COMMIT_ENV = {"GIT_AUTHOR_NAME": "vem-plugins", "GIT_AUTHOR_EMAIL": "vem-plugins@localhost",
               "GIT_COMMITTER_NAME": "vem-plugins", "GIT_COMMITTER_EMAIL": "vem-plugins@localhost",
               "GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}
#: git's progress lines ("Receiving objects:  42% (...)", "remote: Counting objects: ...").
_PROGRESS = re.compile(rb"^(remote: )?[A-Z][\w ]*: +\d+%")


def _command(repo, args) -> list[str]:
    if not shutil.which("git"):
        raise InstallError("git is not installed; vem-plugins needs it to fetch upstream code")
    return ["git", "-c", "advice.detachedHead=false", "-c", "core.quotePath=false",
            *(["-C", str(repo)] if repo is not None else []), *args]


def _env(extra=None) -> dict:
    """The environment without variables that point git at another repository (set, e.g.,
    when vem-plugins runs inside a git hook)."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARS}
    return {**env, **_ENV, **(extra or {})}


def git(repo, *args, extra_env=None, input=None, check=True, binary=False):
    """Run ``git -C repo ARGS``; stdout as str (bytes with ``binary``).

    With ``check`` a non-zero exit raises :class:`GitError`; otherwise returns
    ``(returncode, stdout, stderr)``.
    """
    proc = subprocess.run(_command(repo, args), capture_output=True, input=input,
                          stdin=subprocess.DEVNULL if input is None else None,
                          text=not binary, env=_env(extra_env))
    stderr = proc.stderr if not binary else proc.stderr.decode(errors="replace")
    if check:
        if proc.returncode:
            raise GitError(args, stderr.splitlines())
        return proc.stdout
    return proc.returncode, proc.stdout, stderr


def git_progress(repo, *args, show: bool) -> None:
    """Run a long git command (clone, checkout) passing its progress lines to stderr when
    ``show``; its other messages are kept for the error raised on failure."""
    proc = subprocess.Popen(_command(repo, args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    other, buf = [], b""
    try:
        while chunk := proc.stderr.read1(4096):
            buf += chunk
            while m := re.search(rb"[\r\n]", buf):
                piece, sep, buf = buf[:m.start()], buf[m.start():m.end()], buf[m.end():]
                if _PROGRESS.match(piece):
                    if show:
                        sys.stderr.write((piece + sep).decode(errors="replace"))
                        sys.stderr.flush()
                elif piece.strip():
                    other.append(piece.decode(errors="replace"))
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    if buf.strip():
        other.append(buf.decode(errors="replace"))
    if rc:
        raise GitError(args, other)


def commit_exists(repo, sha: str) -> bool:
    return git(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False)[0] == 0


def head(repo) -> str | None:
    rc, out, _ = git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False)
    return out.strip() if rc == 0 else None


def tree_files(repo, treeish: str, *paths: str) -> list[str]:
    """Paths of the files (blobs) in ``treeish``, optionally limited to ``paths``."""
    out = git(repo, "ls-tree", "-r", "-z", "--name-only", treeish, "--", *paths)
    return [p for p in out.split("\0") if p]


def missing_blobs(repo, commit: str) -> list[str]:
    """Paths in ``commit`` whose blob is absent from the object store (an incomplete mirror)."""
    by_sha: dict[str, list[str]] = {}
    for entry in git(repo, "ls-tree", "-r", "-z", commit).split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            _mode, kind, sha = meta.split()
            if kind == "blob":
                by_sha.setdefault(sha, []).append(path)
    if not by_sha:
        return []
    out = git(repo, "cat-file", "--batch-check", input="\n".join(by_sha) + "\n")
    return sorted(p for line in out.splitlines() if line.endswith(" missing")
                  for p in by_sha[line.split()[0]])


def touched(repo, old: str, new: str, added_only: bool = False) -> list[str]:
    """Paths whose content differs between two trees (only those ``new`` adds, with
    ``added_only``)."""
    out = git(repo, "diff-tree", "-r", "-z", "--name-only", "--no-renames",
              *(["--diff-filter=A"] if added_only else []), old, new)
    return [p for p in out.split("\0") if p]


def skip_worktree(repo) -> list[str]:
    """Files a sparse checkout leaves out (skip-worktree in the checkout's own index)."""
    out = git(repo, "ls-files", "-v", "-z")
    return [e[2:] for e in out.split("\0") if e.startswith("S ")]


def make_commit(repo, tree: str, parent: str, message: str) -> str:
    return git(repo, "commit-tree", tree, "-p", parent, "-m", message,
               extra_env=_COMMIT_ENV).strip()


@contextlib.contextmanager
def scratch_index(repo, tree: str | None = None, skip=()):
    """A throwaway index (as the env dict to pass to :func:`git`) holding ``tree``, refreshed
    against the working tree; paths in ``skip`` (files left out of a sparse checkout) are
    marked skip-worktree so they never count as deleted."""
    fd, path = tempfile.mkstemp(prefix="vem-plugins-index-", dir=Path(repo, ".git"))
    os.close(fd)
    os.unlink(path)  # git refuses an empty file as an index
    scratch = {"GIT_INDEX_FILE": path}
    try:
        if tree is not None:
            git(repo, "read-tree", tree, extra_env=scratch)
            if skip:
                git(repo, "update-index", "--skip-worktree", "-z", "--stdin",
                    input="".join(p + "\0" for p in skip), extra_env=scratch)
            git(repo, "update-index", "-q", "--refresh", extra_env=scratch, check=False)
        yield scratch
    finally:
        for leftover in (path, path + ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def changed(repo, tree: str, skip=()) -> dict[str, str]:
    """Working-tree paths that differ from ``tree``: path -> ``modified``/``deleted``/..."""
    kinds = {"M": "modified", "D": "deleted", "T": "type changed", "A": "added"}
    with scratch_index(repo, tree, skip) as scratch:
        out = git(repo, "diff-index", "-z", "--name-status", "--no-renames", tree,
                  extra_env=scratch)
    fields = [f for f in out.split("\0") if f]
    return {path: kinds.get(letter[0], letter) for letter, path in zip(fields[::2], fields[1::2])}


def untracked(repo, tree: str, ignored: bool = False) -> list[str]:
    """Files (or whole untracked folders) not in ``tree``; git-ignored ones with ``ignored``."""
    with scratch_index(repo, tree) as scratch:
        out = git(repo, "ls-files", "-z", "--others", "--exclude-standard", "--directory",
                  *(["--ignored"] if ignored else []), extra_env=scratch)
    return [p for p in out.split("\0") if p]


def switch(repo, old: str, new: str, skip=()) -> None:
    """Rewrite the working tree from ``old`` to ``new`` the way ``git checkout`` does: every
    path is checked before any is written, files only in ``old`` are deleted, and local edits
    to paths that do not differ between the two trees are kept."""
    with scratch_index(repo, old, skip) as scratch:
        git(repo, "read-tree", "-m", "-u", old, new, extra_env=scratch)


def restore(repo, tree: str, paths, skip=()) -> None:
    """Overwrite ``paths`` in the working tree with their content in ``tree``."""
    with scratch_index(repo, tree, skip) as scratch:
        git(repo, "checkout-index", "-f", "-z", "--stdin",
            input="".join(p + "\0" for p in paths), extra_env=scratch)


def worktree_diff(repo, tree: str, base: str, skip=()) -> str:
    """Unified diff from ``base`` to the working tree, over the paths of ``tree``."""
    with scratch_index(repo, tree, skip) as scratch:
        return git(repo, "diff", "--no-color", "--no-ext-diff", "--no-renames", base,
                   extra_env=scratch)


def edits_patch(repo, tree: str, paths, skip=()) -> bytes:
    """A binary-safe patch from ``tree`` to the working tree's ``paths`` (edited, deleted or
    untracked), which ``git apply`` can replay."""
    with scratch_index(repo, tree, skip) as scratch:
        git(repo, "add", "-A", "--", *paths, extra_env=scratch)
        return git(repo, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff",
                   "--no-renames", tree, extra_env=scratch, binary=True)
