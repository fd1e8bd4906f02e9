"""The CAGC adapter: CAGC's real ``train.py`` (StyleGAN2 KD after pruning) on tiny data, on CPU.

Upstream tier (``@pytest.mark.upstream``): one ``vem-plugins`` install of CAGC per module (the
mirror lacks the repository's large assets, so the install leaves them out), 16 random images in
CAGC's plain image-folder format, a random teacher and "pruned" student in CAGC's checkpoint
format at 16 px (CAGC's discriminator keeps its full 512-channel width, so it dominates the cost),
and no network (a dead proxy). Each run is ``train.py`` for two iterations (iteration 0 includes
both lazy regularisations), with FID and a checkpoint at iteration 1.

The unit tests at the end need no upstream: they check the compatibility helpers on their own.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vem_plugins.install import checkout as installer
from vem_plugins.adapters.cagc import compat as cagc_compat, glue as cagc_vem
from vem_plugins.adapters.cagc.adapter import ADAPTER, PARSING_WEIGHTS
from vem_plugins.authoring.testing import install_adapter, require_upstream

OFFLINE = "http://127.0.0.1:9"  # nothing listens on the discard port: downloads fail at once
TINY_EBM = ["--ebm_width", "8", "--ebm_blocks", "2", "--ebm_steps", "2"]
TINY = ["--size", "16", "--batch_size", "2", "--channel_multiplier", "1", "--kd_lpips_lambda", "0",
        "--model_save_freq", "1", "--val_sample_freq", "100", "--n_sample", "4"]
CAGC_KEYS = {"g", "d", "g_ema", "g_optim", "d_optim"}


class Run:
    """What one CAGC run wrote: its ``Exp_<time>`` folder (log and checkpoints)."""

    def __init__(self, cwd: Path, output: str):
        (self.exp,) = cwd.glob("Exp_*")
        (log,) = self.exp.glob("*_training_log.out")
        self.log, self.output = log.read_text(), output
        self.rows = [dict(re.findall(r"(\S+): ([-\w.]+)", line))
                     for line in self.log.splitlines() if line.startswith("Iter #")]

    def checkpoint(self, iteration: int) -> dict:
        path = self.exp / "ckpt" / f"{iteration:06d}.pt"
        return torch.load(path, map_location="cpu", weights_only=True)

    def seconds_per_iteration(self) -> float:
        """CAGC's logged train time; iteration 0 (both regularisations, warm-up) left out."""
        return float(self.rows[-1]["Time"])


@pytest.fixture(scope="module")
def cagc(tmp_path_factory):
    """CAGC installed with ``vem-plugins``, tiny data, random teacher and student."""
    require_upstream(ADAPTER.url)
    for name in ("scipy", "tqdm", "skimage"):
        pytest.importorskip(name, reason=f"CAGC needs {name} (the adapter's requirements)")
    from PIL import Image

    root = tmp_path_factory.mktemp("cagc")
    checkout = root / "cagc"
    install_adapter(ADAPTER, checkout)
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"{i:03d}.png")
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(TORCH_HOME=str(root / "torch"), http_proxy=OFFLINE, https_proxy=OFFLINE,
               HTTP_PROXY=OFFLINE, HTTPS_PROXY=OFFLINE, PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")  # on a shared 2-core machine, OpenMP's spinning threads can
    # slow tiny CPU runs down tenfold; one thread each keeps them fast and deterministic
    subprocess.run([sys.executable, "-c", "from vem_plugins.adapters import cagc; "
                    f"cagc.write_random_checkpoints({str(root)!r}, 16)"],
                   cwd=checkout, env=env, check=True, capture_output=True)
    return types.SimpleNamespace(root=root, checkout=checkout, data=data, env=env,
                                 installed=installer.status(ADAPTER, checkout), runs={})


def train(cagc, name, *flags, student=None, iters=2) -> Run:
    """CAGC's ``train.py`` in ``<root>/<name>`` (memoised per name)."""
    if name in cagc.runs:
        return cagc.runs[name]
    cwd = cagc.root / name
    cwd.mkdir()
    cmd = [sys.executable, str(cagc.checkout / "train.py"), "--path", str(cagc.data),
           "--iter", str(iters), "--ckpt", str(student or cagc.root / "student.pt"),
           "--teacher_ckpt", str(cagc.root / "teacher.pt"), *TINY, *flags]
    proc = subprocess.run(cmd, cwd=cwd, env=cagc.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-6000:]}"
    cagc.runs[name] = Run(cwd, proc.stderr)
    return cagc.runs[name]


@pytest.mark.upstream
def test_without_vem_upstream_training_falls_back_and_keeps_checkpoint(cagc):
    assert PARSING_WEIGHTS in cagc.installed.skipped_assets  # the mirror lacks it
    run = train(cagc, "plain")  # CAGC's defaults: content-aware KD on, FID on
    assert [row["#"] for row in run.rows] == ["0", "1"]
    assert all("KD_L1_Loss" in row for row in run.rows)
    assert not any(key.startswith("MI_") for row in run.rows for key in row)
    # no face-parsing weights: warned, and whole-image KD (the status block says so)
    assert "content-aware KD needs the face-parsing weights" in run.output
    assert "Content Aware: False" in run.log
    # FID has no statistics at 16 px: logged, and the checkpoint after it is saved all the same
    assert "Evaluated FID: failed (ValueError: Image Size is Invalid!)" in run.log
    assert set(run.checkpoint(1)) == CAGC_KEYS


@pytest.mark.upstream
@pytest.mark.parametrize("name,flags,stat", [
    ("vem", ["--vem"], "MI_energy_gap"),
    ("vid", ["--mi", "vid"], "MI_vid_nll"),
    ("crd", ["--mi", "crd"], "MI_crd_estimate"),
])
def test_mi_term_logged_and_estimator_in_checkpoint(cagc, name, flags, stat):
    run = train(cagc, name, "--no_fid", "--content_aware_KD", "False", *flags, *TINY_EBM)
    assert "Evaluated FID: skipped (--no_fid)" in run.log
    # "False" now parses as False: no attempt at content-aware KD, so no missing-weights warning
    assert "Content Aware: False" in run.log and "face-parsing" not in run.output
    assert len(run.rows) == 2
    assert all(stat in row and math.isfinite(float(row["MI_Loss"])) for row in run.rows)
    assert all("MI_" in line.split("G_Reg")[1] for line in run.log.splitlines()
               if line.startswith("Iter #"))  # in upstream's own log line
    ckpt = run.checkpoint(1)
    assert set(ckpt) == CAGC_KEYS | {"vem"}
    assert ckpt["vem"]["estimator"]["name"] == name and ckpt["vem"]["step"] == 2
    # the compressed generator is the one without --vem: same weights' names and shapes
    plain = train(cagc, "plain").checkpoint(1)
    for key in ("g", "g_ema"):
        assert {k: v.shape for k, v in ckpt[key].items()} == \
            {k: v.shape for k, v in plain[key].items()}


@pytest.mark.upstream
def test_resume_restores_the_estimator(cagc):
    saved = train(cagc, "vem", "--no_fid", "--content_aware_KD", "False", "--vem", *TINY_EBM)
    resume_from = cagc.root / "resume_from" / "000001.pt"  # CAGC reads the iteration off the name
    resume_from.parent.mkdir()
    shutil.copy(saved.exp / "ckpt" / "000001.pt", resume_from)
    run = train(cagc, "resume", "--no_fid", "--content_aware_KD", "False", "--vem", *TINY_EBM,
                "--load_train_state", "True", student=resume_from, iters=3)
    assert [row["#"] for row in run.rows] == ["2"]
    before, after = torch.load(resume_from, weights_only=True)["vem"], run.checkpoint(2)["vem"]
    assert after["step"] == before["step"] + 1  # one more student step on the restored state

    def adam_steps(state):
        optimizer = state["estimator"]["state"]["_extra_state"]["optimizer"]["state"]
        return {int(s["step"]) for s in optimizer.values()}

    assert adam_steps(after) == {s + 1 for s in adam_steps(before)} == {3}


@pytest.mark.upstream
def test_seconds_per_iteration_recorded(cagc, capsys):
    plain = train(cagc, "plain")
    vem = train(cagc, "vem", "--no_fid", "--content_aware_KD", "False", "--vem", *TINY_EBM)
    with capsys.disabled():
        print(f"\nCAGC tiny (16 px, batch 2, CPU): {plain.seconds_per_iteration():.2f} s/iter "
              f"without --vem, {vem.seconds_per_iteration():.2f} s/iter with --vem "
              f"(tiny energy net)")
    assert plain.seconds_per_iteration() > 0 and vem.seconds_per_iteration() > 0


# -- unit tests (no upstream) -------------------------------------------------------------------
def test_bool_flags_parse_as_booleans():
    parser = argparse.ArgumentParser()
    parser.add_argument("--content_aware_KD", type=bool, default=True)
    assert parser.parse_args(["--content_aware_KD", "False"]).content_aware_KD is True  # upstream
    cagc_compat.add_options(parser)
    for text, value in (("False", False), ("", False), ("0", False), ("True", True), ("yes", True)):
        assert parser.parse_args(["--content_aware_KD", text]).content_aware_KD is value
    with pytest.raises(SystemExit):
        parser.parse_args(["--content_aware_KD", "maybe"])
    assert parser.parse_args(["--no_fid"]).no_fid


def test_layerwise_scores_sum_per_layer_with_ragged_widths():
    batches = [[np.full(4, b + 1.0), np.full(4, 1.0), np.full(2, 2.0)] for b in range(3)]
    with pytest.raises(ValueError):  # what prune.py does on NumPy >= 1.24
        np.array([np.array(scores) for scores in batches])
    stacked = np.array([np.array(scores) for scores in cagc_compat.layerwise_scores(batches)])
    total = np.sum(stacked, axis=0)  # prune.py's next line
    assert [list(layer) for layer in total] == [[6.0] * 4, [3.0] * 4, [6.0] * 2]


def test_devices_follow_what_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert cagc_compat.present_devices([0, 1], "cuda:0") == ([0], "cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cagc_compat.present_devices([0, 1], "cuda:0") == ([0], "cuda:0")
    assert cagc_compat.present_devices([1, 2], "cuda:1") == ([0], "cuda:0")


def test_guarded_fid_reports_instead_of_raising(tmp_path):
    args = types.SimpleNamespace(no_fid=False, size=64)

    def fid(**kwargs):
        raise ValueError("Image Size is Invalid!")

    with pytest.warns(UserWarning, match="FFHQ statistics for 64 px"):
        text = cagc_compat.guarded_fid(fid, args)(batch_size=2)
    assert text.startswith("failed (ValueError: Image Size is Invalid!)")
    args.no_fid = True
    assert cagc_compat.guarded_fid(fid, args)() == "skipped (--no_fid)"


def test_glue_takes_the_papers_ffhq_settings_and_its_state_round_trips(capsys):
    parser = argparse.ArgumentParser()
    cagc_vem.add_options(parser)
    args = parser.parse_args(["--vem", *TINY_EBM])
    assert args.ebm_range is None  # the StyleGAN2 student is unbounded: no clamp
    assert args.lambda_mi == 0.05 and args.ebm_step_size is None
    cagc_vem.attach(args, "cpu")
    assert "Langevin step size 50 (the paper's value for FFHQ" in capsys.readouterr().out
    student = (torch.randn(2, 3, 8, 8) * 3).requires_grad_()
    cagc_vem.capture_teacher(args, torch.randn(2, 3, 8, 8).requires_grad_())
    loss = cagc_vem.add_mi_term(args, torch.zeros(()), student)
    loss.backward()
    assert student.grad.abs().sum() > 0
    (estimator,) = args.vem_glue.runtime.modules()
    assert estimator.step_size == 50.0
    state = cagc_vem.checkpoint_entries(args)["vem"]
    again = parser.parse_args(["--vem", *TINY_EBM, "--ebm_step_size", "20"])
    cagc_vem.attach(again, "cpu")
    assert "Langevin step size 20 (set with --ebm_step_size)" in capsys.readouterr().out
    cagc_vem.restore(again, {"vem": state})
    restored = again.vem_glue.runtime.modules()[0].state_dict()
    assert all(torch.equal(restored[k], v) for k, v in estimator.state_dict().items()
               if isinstance(v, torch.Tensor))
