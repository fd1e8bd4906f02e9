"""The errors vem-plugins raises for users: one base class, one line each.

The command line (:mod:`vem_plugins.commands.cli`) catches :class:`VemPluginsError` and prints its
message as one line on stderr with exit status 1; anything else is a bug and keeps its traceback.
Messages say what is wrong and the command or flag that fixes it.
"""


class VemPluginsError(Exception):
    """Base of every error meant for users; the message is one line that names the fix."""


class InstallError(VemPluginsError):
    """Fetching, verifying, patching, refreshing or reverting a checkout failed."""


class GitError(InstallError):
    """A git command failed; ``lines`` holds what git said, its reason last."""

    def __init__(self, args, lines):
        self.lines = [ln for ln in lines if ln.strip()]
        last = self.lines[-1] if self.lines else "no message"
        super().__init__(f"git {args[0]} failed: "
                         + last.removeprefix("fatal: ").removeprefix("error: "))


class OptionError(VemPluginsError, ValueError):
    """vem-plugins' flags on an upstream command line are wrong or contradict each other.

    A ``ValueError`` too, so upstream code that reports bad options that way keeps working."""


class UsageError(VemPluginsError):
    """A command was given something it cannot work on (a run directory, a name, a path)."""
