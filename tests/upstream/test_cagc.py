"""The CAGC adapter: CAGC's real ``train.py`` (StyleGAN2 KD after pruning) on tiny data, on CPU.

Upstream tier: one ``vem-plugins`` install of CAGC per module (the mirror lacks the repository's
large assets, so the install leaves them out), 16 random images in CAGC's plain image-folder
format, a random teacher and "pruned" student in CAGC's checkpoint format at 16 px (CAGC's
discriminator keeps its full 512-channel width, so it dominates the cost), and no network (a dead
proxy). Each run is ``train.py`` for two iterations (iteration 0 includes both lazy
regularisations), with FID and a checkpoint at iteration 1.

Skipped, with the reason, without CAGC's repository or the adapter's requirements (see
``conftest.py``). The unit tests that need neither are in ``tests/test_cagc.py``.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import UpstreamRun, load, upstream_env
from vem_plugins.install import checkout as installer
from vem_plugins.adapters.cagc.adapter import ADAPTER, PARSING_WEIGHTS
from vem_plugins.authoring.testing import install_adapter

pytestmark = pytest.mark.needs(ADAPTER)

TINY_EBM = ["--ebm_width", "8", "--ebm_blocks", "2", "--ebm_steps", "2"]
TINY = ["--size", "16", "--batch_size", "2", "--channel_multiplier", "1", "--kd_lpips_lambda", "0",
        "--model_save_freq", "1", "--val_sample_freq", "100", "--n_sample", "4"]
CAGC_KEYS = {"g", "d", "g_ema", "g_optim", "d_optim"}


class Run(UpstreamRun):
    """What one CAGC run wrote: its ``Exp_<time>`` folder (log and checkpoints); ``rows`` are
    the log's ``Iter #`` lines, each a dict of what it says (as text)."""

    def __init__(self, cwd: Path, output: str):
        (self.exp,) = cwd.glob("Exp_*")
        (log,) = self.exp.glob("*_training_log.out")
        super().__init__(log, output)

    def row(self, line):
        if line.startswith("Iter #"):  # Iter #: 1 Train Time: 2.5 D_Loss: 1.4 ...
            return dict(re.findall(r"(\S+): ([-\w.]+)", line))
        return None

    def row_seconds(self, row):
        """CAGC's logged train time (iteration 0, with both regularisations, is the warm-up)."""
        return float(row["Time"])

    def checkpoint(self, iteration: int) -> dict:
        path = self.exp / "ckpt" / f"{iteration:06d}.pt"
        return load(path)


@pytest.fixture(scope="module")
def cagc(tmp_path_factory):
    """CAGC installed with ``vem-plugins``, tiny data, random teacher and student."""
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
    env = upstream_env(root / "torch")
    subprocess.run([sys.executable, "-c", "from vem_plugins.adapters.cagc import adapter; "
                    f"adapter.write_random_checkpoints({str(root)!r}, 16)"],
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
    cagc.runs[name] = Run(cwd, proc.stdout + proc.stderr)
    return cagc.runs[name]


def test_without_vem_upstream_training_falls_back_and_keeps_checkpoint(cagc):
    assert PARSING_WEIGHTS in cagc.installed.skipped_assets  # the mirror lacks it
    run = train(cagc, "plain")  # CAGC's defaults: content-aware KD on, FID on
    assert [row["#"] for row in run.rows] == ["0", "1"]
    assert all("KD_L1_Loss" in row for row in run.rows)
    assert not any(key.startswith("G_mi") for row in run.rows for key in row)
    # no face-parsing weights: warned, and whole-image KD (the status block says so)
    assert "Content-aware KD needs the face-parsing weights 79999_iter.pth" in run.output
    assert "Content Aware: False" in run.log
    # FID has no statistics at 16 px: logged, and the checkpoint after it is saved all the same
    assert "Evaluated FID: failed (ValueError: Image Size is Invalid!)" in run.log
    assert set(run.checkpoint(1)) == CAGC_KEYS


@pytest.mark.parametrize("name,flags,stat", [
    ("vem", ["--vem"], "G_energy_gap"),
    ("vid", ["--mi", "vid"], "G_vid_nll"),
    ("crd", ["--mi", "crd"], "G_crd_estimate"),
])
def test_mi_term_logged_and_estimator_in_checkpoint(cagc, name, flags, stat):
    run = train(cagc, name, "--no_fid", "--content_aware_KD", "False", *flags, *TINY_EBM)
    assert "Evaluated FID: skipped (--no_fid)" in run.log
    # "False" now parses as False: no attempt at content-aware KD, so no missing-weights warning
    assert "Content Aware: False" in run.log and "face-parsing" not in run.output
    assert len(run.rows) == 2
    assert all(stat in row and math.isfinite(float(row["G_mi"])) for row in run.rows)
    assert all(" G_mi: " in line.split("G_Reg")[1] for line in run.log.splitlines()
               if line.startswith("Iter #"))  # in upstream's own log line
    ckpt = run.checkpoint(1)
    assert set(ckpt) == CAGC_KEYS | {"vem"}
    assert ckpt["vem"]["estimator"]["name"] == name and ckpt["vem"]["step"] == 2
    # the compressed generator is the one without --vem: same weights' names and shapes
    plain = train(cagc, "plain").checkpoint(1)
    for key in ("g", "g_ema"):
        assert {k: v.shape for k, v in ckpt[key].items()} == \
            {k: v.shape for k, v in plain[key].items()}


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


def test_seconds_per_iteration_recorded(cagc, capsys):
    plain = train(cagc, "plain")
    vem = train(cagc, "vem", "--no_fid", "--content_aware_KD", "False", "--vem", *TINY_EBM)
    with capsys.disabled():
        print(f"\nCAGC tiny (16 px, batch 2, CPU): {plain.seconds():.2f} s/iter "
              f"without --vem, {vem.seconds():.2f} s/iter with --vem "
              f"(tiny energy net)")
    assert plain.seconds() > 0 and vem.seconds() > 0
