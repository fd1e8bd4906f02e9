"""``vem-plugins try``: VEM working in one command, on CPU, with no dataset or download.

It refuses, before any work, when the adapter's requirements are not installed
(:func:`vem_plugins.commands.check.requirements_problem`). Then it installs the adapter if needed,
writes the built-in paired dataset (:mod:`vem_plugins.commands.toy_pairs`) and runs upstream's
real training twice side by side, as the adapter's :class:`~vem_plugins.authoring.adapter.Tryout`
recipe says: once with ``--vem`` and once without, same seed and same iterations, each on its
share of the CPU cores, with a progress bar each. Both write a run record, and
:mod:`vem_plugins.commands.report` turns them into one page.

Every call writes into a new ``<out>/<time>/`` folder (the dataset is shared in
``<out>/data``), so earlier tries are kept.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from vem_plugins.install import checkout as installer
from vem_plugins.commands import check, report, toy_pairs
from vem_plugins.errors import UsageError
from vem_plugins.commands.record import FOLDER


@dataclasses.dataclass
class TrainingRun:
    """One upstream process and where it writes."""

    name: str
    dir: Path
    process: subprocess.Popen
    console: Path

    def step(self) -> int:
        """The last student step its record logged (0 before the first)."""
        try:
            lines = (self.dir / FOLDER / "scalars.jsonl").read_text().splitlines()
        except OSError:
            return 0
        for line in reversed(lines):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return ""
        # upstream's tqdm bars redraw with carriage returns: keep what each line ended as
        return "\n".join(line.split("\r")[-1] for line in text.splitlines()[-lines:])


def _start(name, command, checkout: Path, run_dir: Path, threads: int) -> TrainingRun:
    run_dir.mkdir(parents=True)
    console = run_dir / "console.txt"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    with open(console, "w") as out:
        process = subprocess.Popen(command, cwd=checkout, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    return TrainingRun(name, run_dir, process, console)


def _watch(runs: list[TrainingRun], total: int) -> None:
    """Progress bars until every run has ended; Ctrl-C stops them all."""
    from tqdm import tqdm

    bars = [tqdm(total=total, desc=f"{run.name:<12}", unit="step", position=i, leave=True,
                 dynamic_ncols=True) for i, run in enumerate(runs)]
    try:
        while True:
            done = [run.process.poll() is not None for run in runs]
            for run, bar, ended in zip(runs, bars, done):
                # the record logs every few steps: a run that ended well did all of them
                step = total if ended and run.process.returncode == 0 else run.step()
                if min(step, total) > bar.n:
                    bar.update(min(step, total) - bar.n)
            if all(done):
                break
            time.sleep(1)
    except KeyboardInterrupt:
        for run in runs:
            run.process.terminate()
        for run in runs:
            run.process.wait()
        raise
    finally:
        for bar in bars:
            bar.close()


def run(adapter, checkout: Path, out: Path, epochs: int = 2, pairs: int = 320,
        held_out: int = 32, say=print) -> tuple[Path, list[report.Run], list[TrainingRun]]:
    """Install, generate data, train with and without VEM, write the report.

    :return: the report's path, the runs as the report read them, and the training processes
        (each with its exit status in ``process.returncode``).
    :raises UsageError: before any work, when the adapter has no recipe, ``epochs`` is below 1
        or the adapter's requirements are not installed.
    """
    recipe = adapter.tryout
    if recipe is None:
        raise UsageError(f"adapter {adapter.name} has no `try` recipe; these have one: "
                         f"vem-plugins try NAME for NAME in "
                         f"{', '.join(report.recording_adapters()) or '(none)'}")
    if epochs < 1:
        raise UsageError(f"--epochs: must be >= 1, got {epochs}")
    if problem := check.requirements_problem(adapter):
        raise UsageError(problem)
    result = installer.install(adapter, checkout, progress=sys.stderr.isatty())
    say(result.summary(str))
    try:
        data = toy_pairs.write(out / "data", train=pairs, val=held_out, size=recipe.size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    say(f"dataset: {pairs} training and {held_out} held-out pairs of {recipe.size} px "
        f"in {data}")
    folder = out / time.strftime("%Y%m%d-%H%M%S")
    while folder.exists():
        folder = folder.with_name(folder.name + "+")
    steps = epochs * math.ceil(pairs / recipe.batch_size)
    threads = max(1, (os.cpu_count() or 2) // 2)

    def argv(run_dir, extra):
        values = dict(python=sys.executable, data=str(data), out=str(run_dir),
                      epochs=str(epochs))
        return [part.format(**values) for part in recipe.command] + list(extra)

    say(f"training {adapter.name} {epochs} epoch(s) ({steps} steps) with and without VEM "
        f"side by side on {threads} CPU thread(s) each; logs in {folder}/*/console.txt")
    runs = [_start(name, argv(folder / name, extra), checkout, folder / name, threads)
            for name, extra in (("with-vem", recipe.vem), ("without-vem", ()))]
    _watch(runs, steps)
    for run_ in runs:
        if run_.process.returncode:
            say(f"{run_.name} failed (exit status {run_.process.returncode}); the end of "
                f"{run_.console}:\n{run_.tail()}")
    path, read = report.write([r.dir for r in runs], folder / "report.html")
    return path, read, runs
