"""The one way vem-plugins tells the user something while upstream code runs.

Inside a training run there is no command line to report to: messages go to stdout, where
upstream prints its own progress (so they interleave in order in a captured log), prefixed
``vem-plugins:`` so a user can grep for them, and, when upstream keeps a log file, into it too.
Errors are not messages: they raise (:mod:`vem_plugins.errors`).
"""
from __future__ import annotations

import os

_told: set[str] = set()


def tell(message: str, log_file: str | os.PathLike | None = None, once: bool = False) -> None:
    """Print ``vem-plugins: message`` (flushed) and append it to ``log_file`` when given.

    :param once: say it only the first time in this process (for messages a loop would repeat).
    """
    if once:
        if message in _told:
            return
        _told.add(message)
    line = f"vem-plugins: {message}"
    print(line, flush=True)
    if log_file:
        with open(log_file, "a") as f:
            f.write(line + "\n")
