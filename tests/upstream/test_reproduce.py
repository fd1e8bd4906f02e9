"""``vem-plugins reproduce`` end to end on upstream's real code: a built-in spec's tiny scale
(generated data, small networks, upstream's own training and FID with a stand-in Inception in a
temporary ``TORCH_HOME``), for one spec per adapter, run as a user runs it: the runner killed
after its first job and started again (only the remaining job runs), then a second seed through
submitit's local executor (only the new jobs run), then ``--status``; results.json and the
report are checked each time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vem_plugins.authoring.testing import offline_env, stand_in_weights
from vem_plugins.reproduce import jobs, specs

pytestmark = [pytest.mark.slow]

#: one spec per adapter whose tiny scale this tier runs
SPECS = [pytest.param(name, marks=pytest.mark.needs(adapter), id=name) for name, adapter in (
    ("omgd-edges2shoes-resnet", "omgd"),
    ("gan-compression-horse2zebra", "gan-compression"),
    ("cat-horse2zebra", "cat"),
    ("gcc-celeba-sagan", "gcc"),
    ("cagc-ffhq", "cagc"),
)]


def reproduce(root: Path, env: dict, *args: str, **kwargs):
    return subprocess.run([sys.executable, "-m", "vem_plugins", "reproduce", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1200,
                          **kwargs)


@pytest.mark.parametrize("name", SPECS)
def test_tiny_scale_end_to_end_through_both_executors(name, tmp_path):
    import torchvision
    home = stand_in_weights(tmp_path / "torch", **{
        "pt_inception-2015-12-05-6726825d.pth": torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, init_weights=False)})
    env = dict(os.environ, TORCH_HOME=str(home), XDG_STATE_HOME=str(tmp_path / "state"),
               OMP_NUM_THREADS="1", **offline_env())
    spec = specs.resolve(name)
    args = [name, "--scale", "tiny", "--methods", f"plain,{spec.ours[0]}", "--out", "out"]
    out = tmp_path / "out"

    # 1. the runner, killed (SIGKILL) once its first job is done
    runner = subprocess.Popen([sys.executable, "-m", "vem_plugins", "reproduce", *args,
                               "--seeds", "1"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while not any(jobs.status(f) == "done" for f in out.glob("jobs/*/*/seed-*")):
        assert runner.poll() is None, runner.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.5)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    folders = sorted(out.glob("jobs/*/*/seed-*"))
    assert len(folders) == 2
    while any(jobs.held(f) for f in folders):  # the running job's worker stops with the runner
        assert time.monotonic() < deadline
        time.sleep(0.5)
    first = {f for f in folders if jobs.status(f) == "done"}
    assert len(first) == 1
    assert (tmp_path / "third_party" / spec.adapter / ".vem-plugins.lock.json").exists()

    # 2. the same command again: the remaining jobs only
    proc = reproduce(tmp_path, env, *args, "--seeds", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 of 2 jobs already done: not rerun" in proc.stdout
    assert all(jobs.status(f) == "done" for f in folders)
    for folder in first:
        assert (folder / "console.txt").read_text().count("=== stage ") == \
            len(spec.scales["tiny"].stages)

    # 3. a second seed through submitit's local executor: two new jobs, nothing else
    proc = reproduce(tmp_path, env, *args, "--seeds", "2", "--executor", "submitit-local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 4 jobs already done: not rerun" in proc.stdout
    assert "2 job(s) submitted (submitit-local)" in proc.stdout
    assert list((out / "submitit").glob("*_log.out"))
    result = json.loads((out / "results.json").read_text())
    row = result["rows"][0]
    assert row["spec"] == name and result["scale"] == "tiny"
    for method, m in row["methods"].items():
        assert m["n"] == 2 and len(m["seeds"]) == 2, (method, m)
        assert all(isinstance(v, float) for v in m["seeds"].values())
        assert m["half_width"] is not None
    assert [(g["ours"], g["baseline"], g["n"]) for g in row["gains"]] == \
        [(spec.ours[0], "plain", 2)]
    page = (out / "report.html").read_text()
    assert "vem − plain" in page and "tiny scale" in page
    for job in result["jobs"]:
        assert job["status"] == "done" and "metric" in job, job
        if "run_report" in job:  # runs made with --vem_record get a page of their own
            assert Path(job["run_report"]).is_file()
            assert os.path.relpath(job["run_report"], out) in page

    # 4. the status of every job
    proc = reproduce(tmp_path, env, "--status", "--out", "out")
    assert proc.returncode == 0 and "4 done" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.needs("omgd")
def test_paper_scale_names_every_missing_item_and_starts_nothing(tmp_path):
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"),
               XDG_STATE_HOME=str(tmp_path / "state"), **offline_env())
    proc = reproduce(tmp_path, env, "omgd-edges2shoes-resnet", "omgd-horse2zebra",
                     "--methods", "plain,vem", "--root", str(tmp_path / "datasets"))
    assert proc.returncode == 1
    missing = [line for line in proc.stderr.splitlines() if line.startswith("vem-plugins: missing")]
    assert len(missing) == 9, proc.stderr  # dataset, statistics files, 2 weights: 4 + 5
    assert any("dataset horse2zebra is not prepared" in line and
               "vem-plugins data prepare horse2zebra --from" in line for line in missing)
    assert any("real_stat/horse2zebra_B.npz is missing" in line for line in missing)
    assert proc.stderr.splitlines()[-1] == ("vem-plugins: error: 9 thing(s) the jobs need are "
                                           "missing (above); no job was started")
    assert not (tmp_path / "vem-reproduce").exists()


@pytest.mark.needs("cagc")
def test_an_interrupted_training_goes_on_from_upstreams_checkpoint_and_the_estimators(tmp_path):
    """CAGC's tiny training as a user's copy of the spec with 3 iterations (checkpoints after
    iterations 1 and 2); the runner is killed once the first checkpoint is written. The next
    run resumes from it through CAGC's own ``--ckpt <iteration>.pt --load_train_state``:
    iteration 1 is not trained again, and the estimator's state goes on from the checkpoint."""
    import torch
    import torchvision
    home = stand_in_weights(tmp_path / "torch", **{
        "pt_inception-2015-12-05-6726825d.pth": torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, init_weights=False)})
    env = dict(os.environ, TORCH_HOME=str(home), XDG_STATE_HOME=str(tmp_path / "state"),
               OMP_NUM_THREADS="1", **offline_env())
    text = specs.resolve("cagc-ffhq").path.read_text()
    assert text.count(" --iter 2 ") == 1
    (tmp_path / "mine.toml").write_text(text.replace(" --iter 2 ", " --iter 3 "))
    args = ["mine.toml", "--scale", "tiny", "--methods", "vem", "--seeds", "1", "--out", "out"]
    folder = tmp_path / "out" / "jobs" / "cagc-ffhq" / "vem" / "seed-0"

    runner = subprocess.Popen([sys.executable, "-m", "vem_plugins", "reproduce", *args],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while not list(folder.glob("run/Exp_*/ckpt/000001.pt")):
        assert runner.poll() is None, runner.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)  # torch.save has finished; iteration 2 runs
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    while jobs.held(folder):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert jobs.status(folder) == "interrupted"
    [first] = folder.glob("run/Exp_*/ckpt/000001.pt")

    proc = reproduce(tmp_path, env, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = jobs.state(folder)
    assert [(r["stage"], r["checkpoint"], r["step"]) for r in state["resumed"]] == \
        [("train", str(first), 1)]
    assert isinstance(state["metric"], float)
    exps = sorted(folder.glob("run/Exp_*"))
    assert len(exps) == 2 and state["log"].startswith(str(exps[1]))
    assert sorted(p.name for p in (exps[1] / "ckpt").iterdir()) == ["000002.pt"]
    saved = [torch.load(p, map_location="cpu", weights_only=False)["vem"]
             for p in (first, exps[1] / "ckpt" / "000002.pt")]
    assert saved[1]["step"] == saved[0]["step"] + 1, [s["step"] for s in saved]
    assert "holds no estimator state" not in (folder / "console.txt").read_text()
