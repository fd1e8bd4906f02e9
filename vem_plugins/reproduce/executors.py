"""Running many jobs: on this machine, or through submitit (Slurm, or submitit's own local
executor to try a cluster set-up on one machine).

Every executor skips finished jobs and waits for one another process runs (its lock is held)
instead of starting it twice; a failed job is recorded in its folder and the others go on.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from vem_plugins.reproduce import jobs

EXECUTORS = ("local", "slurm", "submitit-local")
_POLL = 1.0


def run(folders: list[Path], executor: str, out: Path, slurm: dict | None = None,
        progress: bool = True, say=print) -> None:
    """Run every job of ``folders`` that is not done; return when none is left running."""
    todo = [f for f in folders if jobs.status(f) != "done"]
    if len(todo) < len(folders):
        say(f"{len(folders) - len(todo)} of {len(folders)} jobs already done: not rerun")
    if not todo:
        return
    bar = _bar(len(folders), len(folders) - len(todo), progress)
    try:
        if executor == "local":
            _local(todo, bar)
        else:
            _submitit(todo, executor, out, slurm or {}, bar, say)
    finally:
        bar.close()


def gpus() -> list[str]:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else all torch sees)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def _bar(total: int, done: int, progress: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=done, desc="jobs", unit="job", disable=not progress,
                dynamic_ncols=True)


def _local(todo: list[Path], bar) -> None:
    """One job per visible GPU at a time (each sees only its GPU), or one at a time on CPU."""
    slots = gpus() or [None]
    running: dict[Path, tuple[subprocess.Popen | None, str | None]] = {}
    queue = list(todo)
    try:
        while queue or running:
            for folder, (proc, gpu) in list(running.items()):
                if (proc.poll() is None) if proc else jobs.held(folder):
                    continue
                del running[folder]
                slots.append(gpu)
                if proc is None and jobs.status(folder) == "interrupted":
                    queue.append(folder)  # the other runner stopped before the end: ours now
                    continue
                if proc is not None and proc.returncode and \
                        jobs.status(folder) not in ("done", "failed"):
                    _failed(folder, f"its worker ended with status {proc.returncode} (see "
                                    f"{folder / 'runner.txt'})")
                bar.update(1)
                bar.set_postfix_str(f"{folder.parent.parent.name} {folder.parent.name} "
                                    f"{folder.name}: {jobs.status(folder)}")
            while queue and slots:
                folder = queue.pop(0)
                gpu = slots.pop(0)
                if jobs.held(folder):  # another runner has it: wait for that one
                    running[folder] = (None, gpu)
                    continue
                env = dict(os.environ)
                if gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                with open(folder / "runner.txt", "a") as log:
                    running[folder] = (subprocess.Popen(
                        [sys.executable, "-m", "vem_plugins.reproduce.jobs", str(folder)],
                        env=env, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL), gpu)
            time.sleep(_POLL)
    except BaseException:
        for proc, _ in running.values():
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait()
        raise


def _submitit(todo: list[Path], executor: str, out: Path, slurm: dict, bar, say) -> None:
    """Submit every job not queued already; wait until all have ended. A job still queued or
    running from an earlier submission (its id is in ``submitted.json``) is waited for."""
    import submitit

    folder = out / "submitit"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(**{k: v for k, v in slurm.items() if v is not None})
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(timeout_min=slurm.get("timeout_min") or 24 * 60)
    waiting = {}
    for job_folder in todo:
        earlier = jobs.read(job_folder / "submitted.json")
        if jobs.held(job_folder) or _queued(earlier, executor, folder):
            waiting[job_folder] = None
            continue
        submitted = ex.submit(jobs.run, str(job_folder))
        jobs.write(job_folder / "submitted.json",
                    {"executor": executor, "job_id": str(submitted.job_id)})
        waiting[job_folder] = submitted
    say(f"{sum(j is not None for j in waiting.values())} job(s) submitted ({executor}); "
        f"submitit's logs in {folder}")
    while waiting:
        for job_folder, submitted in list(waiting.items()):
            if submitted is not None:
                if not submitted.done():
                    continue
                _record_crash(job_folder, submitted)
            if submitted is None and (jobs.held(job_folder) or _queued(
                    jobs.read(job_folder / "submitted.json"), executor, folder)):
                continue
            del waiting[job_folder]
            bar.update(1)
        time.sleep(_POLL)


def _record_crash(folder: Path, submitted) -> None:
    """A submitit job that ended without its job recording why (killed by Slurm, out of
    memory, a broken environment): its state says what submitit knows."""
    try:
        submitted.result()
    except Exception as exc:  # noqa: BLE001 - whatever ended it goes into the job's state
        if jobs.status(folder) not in ("done", "failed"):
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            _failed(folder, f"submitit: {lines[-1]}")


def _failed(folder: Path, why: str) -> None:
    jobs.write(folder / "state.json", {**jobs.state(folder), "failed": why})


def _queued(record: dict, executor: str, folder: Path) -> bool:
    """Whether a job submitted earlier is still queued or running."""
    if record.get("executor") != executor or not record.get("job_id"):
        return False
    import submitit
    if executor == "slurm":
        state = submitit.SlurmJob(folder=folder, job_id=record["job_id"]).state
        return state in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING",
                         "RESIZING", "SUSPENDED")
    from vem_plugins.install.exclusive import alive
    return alive(record["job_id"])  # submitit's local jobs are processes of this machine
