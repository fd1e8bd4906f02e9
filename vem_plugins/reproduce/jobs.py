"""One job of ``vem-plugins reproduce``: a spec's stages for one method and one seed.

A job lives in its own folder, which says everything needed to run it (``job.json``), so the
same :func:`run` serves the local executor (``python -m vem_plugins.reproduce.jobs FOLDER``) and
a Slurm worker (submitit pickles the call with the folder's path)::

    job.json      what to run: the commands with every placeholder filled, the checkout, the
                  metric's pattern and log
    state.json    what happened: stages finished, the metric, or why it failed (written whole,
                  atomically, after each stage)
    console.txt   every stage's output, appended
    run/          ``{out}``: upstream's log folder

A finished stage is never rerun, so a job interrupted mid-way (a killed runner, a preempted
Slurm job) resumes at the stage it was in, and inside it from upstream's last checkpoint where
the spec says how (:func:`resumption`); a finished job is never rerun at all. While a job
runs it holds the lock ``.running`` (with its PID), so a second runner waits for it instead of
running it twice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from vem_plugins.errors import InstallError, VemPluginsError
from vem_plugins.install.exclusive import exclusive
from vem_plugins.install.transaction import write_durably
from vem_plugins.reproduce import specs

LOCK = ".running"


class JobFailed(VemPluginsError):
    """A stage exited with an error, or the metric is not in upstream's log."""


def describe(folder: Path, *, spec, scale: str, method: str, seed: int, checkout: Path,
             data: Path) -> dict:
    """Write ``job.json`` for one job into ``folder`` and return it. A rerun with the same
    commands keeps the job's state (what it finished); when the spec changed its commands, the
    state is cleared, since what ran is not this job's work."""
    out = folder / "run"
    values = {"python": sys.executable, "flags": spec.methods[method], "seed": str(seed),
              "out": str(out), "data": str(data), "job": str(folder)}
    job = {"spec": spec.name, "spec_file": str(spec.path), "scale": scale, "method": method,
           "seed": seed, "adapter": spec.adapter, "checkout": str(checkout),
           "stages": [{key: specs.fill(value, values) if key != "name" else value
                       for key, value in dataclasses.asdict(st).items() if value}
                      for st in spec.scales[scale].stages],
           "metric": spec.metric, "pattern": spec.pattern, "log": str(out / spec.log)}
    folder.mkdir(parents=True, exist_ok=True)
    if read(folder / "job.json").get("stages", job["stages"]) != job["stages"]:
        write(folder / "state.json", {})
    write(folder / "job.json", job)
    return job


def read(path: Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when it is missing or damaged."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def state(folder: Path) -> dict:
    """What ``state.json`` says: ``stages_done``, the ``stage`` under way and where stages
    ``resumed`` from, and ``metric`` once done or ``failed``."""
    return read(Path(folder) / "state.json")


def status(folder: Path) -> str:
    """``done``, ``failed``, ``running`` (its lock is held), ``interrupted`` (started, not
    running) or ``pending``."""
    folder = Path(folder)
    st = state(folder)
    if "metric" in st:
        return "done"
    if held(folder):
        return "running"
    if "failed" in st:
        return "failed"
    return "interrupted" if st.get("stages_done") or (folder / "console.txt").exists() else \
        "pending"


def held(folder: Path) -> bool:
    """Whether a process runs the job now."""
    try:
        with exclusive(Path(folder) / LOCK, "the job", required=False):
            return False
    except InstallError:
        return True


def tail(folder: Path, lines: int = 12) -> str:
    """The last lines of the job's console (progress bars reduced to what each line ended as)."""
    try:
        text = (Path(folder) / "console.txt").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line.split("\r")[-1] for line in text.splitlines()[-lines:])


def run(folder) -> float:
    """Run the job in ``folder`` to the end; its metric (``nan`` when upstream logged none).

    :raises JobFailed: a stage failed (its state says which, with the exit status).
    :raises InstallError: another process runs this job now.
    """
    folder = Path(folder)
    job = read(folder / "job.json")
    if not job:
        why = "job.json is missing or damaged"
        write(folder / "state.json", {**state(folder), "failed": why})
        raise JobFailed(f"{folder}: {why}")
    with exclusive(folder / LOCK, f"job {folder}"):
        current = state(folder)
        if "metric" in current:
            return current["metric"]
        done = list(current.get("stages_done", []))
        resumed = list(current.get("resumed", []))
        for stage in job["stages"]:
            if stage["name"] in done:
                continue
            resume = resumption(folder, job, stage, current)
            resumed += [resume] if resume else []
            write(folder / "state.json", {"stages_done": done, "stage": stage["name"],
                                           "resumed": resumed, "started": time.time()})
            code = _stage(folder, job, stage, resume)
            if code:
                why = f"stage {stage['name']} exited with status {code}"
                write(folder / "state.json", {"stages_done": done, "stage": stage["name"],
                                               "resumed": resumed, "failed": why})
                raise JobFailed(f"{job['spec']} {job['method']} seed {job['seed']}: {why}; "
                                f"see {folder / 'console.txt'}")
            done.append(stage["name"])
            write(folder / "state.json", {"stages_done": done, "resumed": resumed})
        metric, where = read_metric(job)
        write(folder / "state.json", {"stages_done": done, "resumed": resumed,
                                       "metric": metric, "log": where,
                                       "finished": time.time()})
        return metric


def resumption(folder: Path, job: dict, stage: dict, previous: dict) -> dict | None:
    """Where ``stage`` goes on from: ``{"stage", "checkpoint", "step", "args"}``, or ``None``
    to start it afresh.

    A stage resumes when its spec says how, a previous attempt at it was interrupted or failed
    (``previous`` is the job's state before this run), and upstream left a checkpoint: the
    newest, the one whose name holds the highest number. A failed attempt that had resumed from
    that same checkpoint is not repeated (the checkpoint may be what fails): the stage starts
    afresh, and says so.
    """
    if not stage.get("resume") or previous.get("stage") != stage["name"]:
        return None
    found = []
    for path in glob.glob(os.path.join(job["checkout"], stage["checkpoint"])):
        number = re.search(r"\d+", os.path.basename(path))
        if number and os.path.isfile(path):
            found.append((int(number[0]), path))
    if not found:
        return None
    step, path = max(found)
    last = ([r for r in previous.get("resumed", []) if r["stage"] == stage["name"]] or [{}])[-1]
    if "failed" in previous and last.get("checkpoint") == path:
        _note(folder, f"stage {stage['name']} failed after resuming from {path}: "
                      "starting it afresh")
        return None
    args = specs.fill(stage["resume"], {"checkpoint": path, "step": str(step),
                                        "next": str(step + 1)})
    return {"stage": stage["name"], "checkpoint": path, "step": step, "args": args}


def read_metric(job: dict) -> tuple[float, str | None]:
    """The last value of the job's metric in upstream's log (``nan`` when absent), and the log."""
    found, where = math.nan, None
    for log in sorted(glob.glob(job["log"])):
        with contextlib.suppress(OSError):
            values = re.findall(job["pattern"], Path(log).read_text(errors="replace"))
            for value in values:
                with contextlib.suppress(ValueError):
                    found, where = float(value), log
    return found, where


def _stage(folder: Path, job: dict, stage: dict, resume: dict | None) -> int:
    """Run one stage in the checkout (from ``resume``'s checkpoint when given), its output
    appended to the console. The stage runs in a session of its own, so that a SIGTERM or
    Ctrl-C to this process ends every process the stage started (upstream's data loaders
    included) before this one exits."""
    out = folder / "run"
    out.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = specs.fill(stage["run"], {"resume": resume["args"] if resume else ""})
    how = f", resumed from {resume['checkpoint']} (step {resume['step']})" if resume else ""
    _note(folder, f"stage {stage['name']} ({time.strftime('%Y-%m-%d %H:%M:%S')}){how}: "
                  f"{command}", header=True)
    with open(folder / "console.txt", "a") as console:
        proc = subprocess.Popen(["bash", "-c", command], cwd=job["checkout"], env=env,
                                stdout=console, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

        def stop(signum, frame):  # (not waiting here: wait() below holds Popen's lock)
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            return proc.wait()
        except BaseException:  # SIGTERM, Ctrl-C: the stage's whole process group goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def _note(folder: Path, text: str, header: bool = False) -> None:
    """A line of ours in the job's console (a stage's header starts with ``=== stage``)."""
    with open(folder / "console.txt", "a") as console:
        console.write(f"\n=== {text}\n" if header else f"vem-plugins: {text}\n")


def write(path: Path, value: dict) -> None:
    """Replace a JSON file whole (a crash leaves the old one or the new one)."""
    write_durably(Path(path), json.dumps(value, indent=1) + "\n")


def _exit_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when the runner that started it dies (Linux), so a
    killed runner leaves no job running behind it."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":  # the local executor's worker: python -m vem_plugins.reproduce.jobs DIR
    _exit_with_parent()
    try:
        run(sys.argv[1])
    except VemPluginsError as exc:
        print(f"vem-plugins: {exc}", file=sys.stderr)
        sys.exit(1)
