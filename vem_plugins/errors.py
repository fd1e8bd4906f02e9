"""The errors vem-plugins raises for users: one base class, one line each.

The command line (:mod:`vem_plugins.commands.cli`) catches :class:`VemPluginsError` and prints its
message as one line on stderr with exit status 1; anything else is a bug and keeps its traceback.
Inside upstream's training scripts, :func:`one_line_in_upstream` does the same. Messages say what
is wrong and the command or flag that fixes it.
"""
import sys


class VemPluginsError(Exception):
    """Base of every error meant for users; the message is one line that names the fix."""


class InstallError(VemPluginsError):
    """Fetching, verifying, patching, refreshing or reverting a checkout failed."""


class GitError(InstallError):
    """A git command failed; ``lines`` holds what git said and ``reason`` its first error line
    (git's later lines are often generic advice, such as "Please make sure you have the
    correct access rights and the repository exists.")."""

    def __init__(self, args, lines):
        self.lines = [ln for ln in lines if ln.strip()]
        errors = [ln for ln in self.lines if ln.startswith(("fatal: ", "error: "))]
        reason = (errors or self.lines or ["no message"])[0]
        self.reason = reason.removeprefix("fatal: ").removeprefix("error: ")
        super().__init__(f"git {args[0]} failed: {self.reason}")


class OptionError(VemPluginsError, ValueError):
    """vem-plugins' flags on an upstream command line are wrong or contradict each other.

    A ``ValueError`` too, so upstream code that reports bad options that way keeps working."""


class UsageError(VemPluginsError):
    """A command was given something it cannot work on (a run directory, a name, a path)."""


def one_line_in_upstream() -> None:
    """Make a :class:`VemPluginsError` that ends upstream's script print as the command line
    prints it: ``vem-plugins: error: ...``, one line on stderr, exit status 1 (a bad
    ``--restore_vem_path`` is the user's to fix, not a bug to trace). Other exceptions keep
    Python's traceback. Called when vem-plugins starts inside an upstream process."""
    if getattr(sys.excepthook, "vem_plugins", False):
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        if isinstance(exc, VemPluginsError):
            print(f"vem-plugins: error: {exc}", file=sys.stderr)
        else:
            previous(kind, exc, tb)
    hook.vem_plugins = True
    sys.excepthook = hook
