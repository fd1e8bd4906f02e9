"""What several test files share: git in a throwaway repository, tiny image folders, and the base
of the classes that read what an upstream run wrote.

A plain module (``from helpers import git``): ``tests/`` is on ``sys.path`` in pytest's default
import mode, and ``tests/conftest.py`` has pytest rewrite its asserts like a test file's.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo, *args, **kwargs) -> str:
    """``git -C repo ARGS`` with a throwaway identity (so commits work anywhere); its stdout.
    Raises ``CalledProcessError`` when git fails; ``kwargs`` go to :func:`subprocess.run`."""
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True, **kwargs).stdout


def write_images(folder: Path, count: int, size: int, rng, paired: bool = False) -> None:
    """``count`` random RGB PNGs ``0.png`` ... of ``size`` x ``size`` pixels, or side by side
    pairs (``size`` x ``2 size``, the A|B layout of aligned datasets) with ``paired``, from the
    NumPy generator ``rng``, in the new folder ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, 2 * size if paired else size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


class UpstreamRun:
    """What one run of upstream code wrote: ``output`` (its console), ``log`` (the text of its
    loss log) and ``rows``, one per iteration the log reports.

    Each upstream logs in its own format: a subclass says how in :meth:`row` (and, for
    :meth:`seconds`, in :meth:`row_seconds`).
    """

    def __init__(self, log: Path, output: str):
        self.output = output
        self.log = Path(log).read_text()
        self.rows = [row for row in map(self.row, self.log.splitlines()) if row is not None]

    def row(self, line: str):
        """What a line of the log says about one iteration; None for other lines."""
        raise NotImplementedError

    def row_seconds(self, row) -> float | None:
        """The seconds an iteration took as its row logs them; None: not counted."""
        raise NotImplementedError

    def seconds(self) -> float:
        """Mean logged seconds of the counted iterations after the first (warm-up) one."""
        times = [t for t in map(self.row_seconds, self.rows[1:]) if t is not None]
        return sum(times) / len(times)
