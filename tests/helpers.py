"""What several test files share: git in a throwaway repository, tiny image folders, the base
of the classes that read what an upstream run wrote, and hostile filesystems (immutable files,
a small mounted disk).

A plain module (``from helpers import git``): ``tests/`` is on ``sys.path`` in pytest's default
import mode, and ``tests/conftest.py`` has pytest rewrite its asserts like a test file's.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def load(path) -> dict:
    """A checkpoint, on CPU, with ``weights_only`` (as upstream's loaders do after our fixes)."""
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)


def shapes(path) -> dict:
    """Name -> shape of a saved network: equal shapes mean equal parameter counts too."""
    return {k: tuple(v.shape) for k, v in load(path).items()}


def upstream_env(torch_home, **extra) -> dict[str, str]:
    """The environment upstream runs get: no network (downloads fail at once, as offline), the
    pretrained weights of ``torch_home`` only, unbuffered output, and one OpenMP thread: on a
    shared 2-core machine, OpenMP's spinning threads can slow tiny CPU runs down tenfold."""
    from vem_plugins.authoring.testing import offline_env
    return {**os.environ, **offline_env(), "TORCH_HOME": str(torch_home),
            "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def run_script(script: str, args, cwd, env, out: Path) -> str:
    """Run upstream's ``script`` (or ``-c`` code, when it has several lines) with ``args`` in
    ``cwd``; its console output, also kept in ``out``. A failed run fails the test with the end
    of that output."""
    argv = ["-c", script] if "\n" in script else [script]
    with open(out, "w+") as f:
        proc = subprocess.run([sys.executable, *argv, *args], cwd=cwd, env=env, stdout=f,
                              stderr=subprocess.STDOUT, timeout=600)
        f.seek(0)
        output = f.read()
    assert proc.returncode == 0, f"{out.stem} failed:\n{output[-6000:]}"
    return output


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


@contextlib.contextmanager
def immutable(*paths):
    """``chattr +i`` on ``paths`` for the block (the tests run as root, who ignores permission
    bits but not this); skips, with the reason, where it is not supported."""
    done = []
    try:
        for path in paths:
            proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if proc.returncode:
                pytest.skip(f"chattr +i is not supported here: {proc.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    """A tmpfs of ``size`` mounted at ``where`` for the block; skips, with the reason, where
    mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a small filesystem here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
