"""The few git operations the installer needs, run through GitPython.

Every command goes through :meth:`git.Git.execute`; a failure becomes one
:class:`~vem_plugins.errors.GitError` that keeps git's own reason. Long commands (clone, fetch,
checkout) have their progress parsed by GitPython's :class:`git.RemoteProgress` and drawn as
tqdm bars.

Everything that inspects or rewrites a checkout goes through a *scratch index*
(``GIT_INDEX_FILE``): the checkout's own index always stays at the pinned commit, so plain
``git status`` and ``git diff`` in a patched checkout show exactly what vem-plugins changed.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

# GitPython refuses to import when it finds no git executable; let it import so that a missing
# git is reported by the command that needs it (GitCommandNotFound below), in one line.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
from git import Git, GitCommandError, GitCommandNotFound, RemoteProgress  # noqa: E402
from tqdm import tqdm  # noqa: E402

from vem_plugins.errors import GitError, InstallError  # noqa: E402

#: English messages (the installer parses some), never an interactive credential prompt.
_ENV = {"LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"}
_REPO_VARS = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
              "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX"}
#: A fixed identity and date for the commit that records a checkout's expected state, so the
#: same adapter always yields the same commit id.
_COMMIT_ENV = {"GIT_AUTHOR_NAME": "vem-plugins", "GIT_AUTHOR_EMAIL": "vem-plugins@localhost",
               "GIT_COMMITTER_NAME": "vem-plugins", "GIT_COMMITTER_EMAIL": "vem-plugins@localhost",
               "GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}


def _execute(repo, args, extra_env=None, **kwargs):
    """Start ``git -C repo ARGS`` through GitPython (``kwargs`` go to
    :meth:`git.Git.execute`).

    The repository is named with ``-C`` rather than as GitPython's working directory, which
    falls back to the current directory when the folder is missing. GitPython builds the
    environment from ``os.environ`` and can only add to it, so variables that point git at
    another repository (set, e.g., when vem-plugins runs inside a git hook) are taken out of
    ``os.environ`` for the call (the installer runs git from one thread).
    """
    command = [Git.GIT_PYTHON_GIT_EXECUTABLE, "-c", "advice.detachedHead=false",
               "-c", "core.quotePath=false", *(["-C", str(repo)] if repo is not None else []),
               *args]
    lifted = {k: os.environ.pop(k) for k in _REPO_VARS & os.environ.keys()}
    try:
        return Git().execute(command, env={**_ENV, **(extra_env or {})}, **kwargs)
    except GitCommandNotFound:
        raise InstallError("git is not installed; vem-plugins needs it to fetch upstream "
                           "code") from None
    finally:
        os.environ.update(lifted)


def git(repo, *args, extra_env=None, input=None, check=True, binary=False):
    """Run ``git -C repo ARGS``; stdout as str (bytes with ``binary``), ``input`` (str or
    bytes) on its stdin.

    With ``check`` a non-zero exit raises :class:`GitError`; otherwise returns
    ``(returncode, stdout, stderr)``.
    """
    with contextlib.ExitStack() as stack:
        stdin = None
        if input is not None:  # GitPython hands stdin to git as a file
            stdin = stack.enter_context(tempfile.TemporaryFile())
            stdin.write(input.encode() if isinstance(input, str) else input)
            stdin.seek(0)
        rc, out, err = _execute(repo, args, extra_env, istream=stdin, with_extended_output=True,
                                with_exceptions=False, stdout_as_string=not binary,
                                strip_newline_in_stdout=False)
    if check:
        if rc:
            raise GitError(args, err.splitlines())
        return out
    return rc, out, err


def git_progress(repo, *args, show: bool) -> None:
    """Run a long git command (clone, fetch, checkout), drawing its progress as bars on stderr
    when ``show``.

    git's stderr goes line by line through GitPython's :class:`~git.RemoteProgress`, which
    keeps what is not progress for the error raised on failure. It is read here rather than
    by GitPython's reader threads so that an interrupt stops the read and git at once.
    """
    progress = _Bars() if show else RemoteProgress()
    command = [args[0], *(["--progress"] if show else []), *args[1:]]
    proc = _execute(repo, command, as_process=True, with_stdout=False,
                    universal_newlines=True, errors="replace")
    handle = progress.new_message_handler()
    try:
        for line in proc.stderr:
            handle(line)
        proc.wait()
    except GitCommandError:
        raise GitError(args, progress.other_lines + progress.error_lines) from None
    except BaseException:
        proc.kill()
        raise
    finally:
        if show:
            progress.close()


class _Bars(RemoteProgress):
    """Each stage git reports with a size ("Receiving objects:  42% (5/12), 1.2 MiB | ...")
    as a tqdm bar on stderr, one after another."""

    def __init__(self):
        super().__init__()
        self.stage, self.bar = None, None

    def update(self, op_code, cur_count, max_count=None, message=""):
        if max_count:  # a stage of known size: git's line matched re_op_relative
            self._draw(self.re_op_relative.match(self._cur_line), message, op_code & self.END)

    def line_dropped(self, line):
        """git checkout's "Updating files: 42% (5/12)" is a stage GitPython has no code for."""
        if match := self.re_op_relative.match(line):
            self._draw(match, "", line.endswith(self.DONE_TOKEN))

    def _draw(self, match, message, done):
        remote, name, _percent, count, total, _rest = match.groups()
        stage = (remote or "") + name
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(desc=stage, total=int(total), unit=" " + name.split()[-1],
                            file=sys.stderr, **_screen())
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(int(count) - self.bar.n)
        if done:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.stage, self.bar = None, None


def _screen() -> dict:
    """The bars' size: tqdm's own choice, except on a terminal that reports no size (0x0, as
    a bare pty does), where tqdm would draw nothing."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):  # not a terminal
        return {}
    return {} if size.columns and size.lines else {"ncols": 80, "nrows": 24}


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
