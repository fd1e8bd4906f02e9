"""The GCC adapter: GCC's real ``train.py`` (SAGAN, the paper's setting) on tiny data, on CPU.

Upstream tier: one ``vem-plugins`` install of GCC per module, 8 random CelebA-sized JPEGs in GCC's
``sa`` layout (``<dataroot>/train``), a random pre-training checkpoint in GCC's own format (its
BatchNorm scales decide the pruned widths), a random same-architecture FID Inception in a temporary
``TORCH_HOME``, and no network (a dead proxy). Each run is GCC's pruning + online-distillation
stage (``scripts/sagan/train.sh`` shrunk); SAGAN forces batch 64 and 100 epochs, so with 8 images
one epoch is one iteration, and a run is stopped once epoch 5 (GCC's first evaluation and
checkpoint) is saved.

Skipped, with the reason, without GCC's repository or the adapter's requirements (see
``conftest.py``). The unit tests that need neither are in ``tests/test_gcc.py``.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import UpstreamRun, upstream_env
from vem_plugins.adapters.gcc import compat as gcc_compat
from vem_plugins.adapters.gcc.adapter import ADAPTER
from vem_plugins.authoring.testing import install_adapter

pytestmark = pytest.mark.needs(ADAPTER)

TINY_EBM = ["--ebm_width", "8", "--ebm_blocks", "2", "--ebm_steps", "2"]
SAVED = "saving the model at the end of epoch 5"

# GCC's random pre-training checkpoint (stage 1) in its own format: BatchNorm scales spread
# over [0.3, 1] so that the pruning bisection finds a threshold.
PRETRAIN = """
import sys, torch
out, dataroot = sys.argv[1:]
sys.argv = ["train.py", "--model", "sagan", "--dataroot", dataroot, "--ngf", "16", "--ndf", "16",
            "--gpu_ids", "-1"]
from options import options
from models import get_model_class
opt = options.parse()
opt.isTrain = True
torch.manual_seed(0)
model = get_model_class(opt)(opt)
for module in model.netG.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.data.uniform_(0.3, 1)
model.save_models(1, out, isbest=True)
"""

# scripts/sagan/train.sh with tiny widths on CPU
GCC_SAGAN = ["--model", "sagan", "--ngf", "16", "--ndf", "16", "--scale_prune",
             "--target_budget", "0.0045", "--darts_discriminator", "--threshold", "0.1",
             "--online_distillation", "--lambda_L1", "0", "--lambda_content", "1",
             "--lambda_gram", "1", "--teacher_ngf", "16", "--teacher_ndf", "16",
             "--gpu_ids", "-1", "--num_threads", "0", "--print_freq", "64"]


class Run(UpstreamRun):
    """What one GCC run wrote: ``logger.log`` (``rows`` are (iteration info, losses as logged))
    and the checkpoints folder."""

    def __init__(self, exp: Path, output: str):
        self.exp, self.checkpoints = exp, exp / "checkpoints"
        super().__init__(exp / "logger.log", output)

    def row(self, line):
        if "(epoch:" in line:  # <logger's prefix> (epoch: 5, iters: 8, time: ...) G_GAN: 0.1 ...
            head, _, body = line[line.index("(epoch:"):].partition(") ")
            return ({k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)},
                    dict(re.findall(r"(\S+): ([-\d.naif]+) ", body + " ")))
        return None

    def row_seconds(self, row):
        """GCC logs time per sample of its nominal batch (64): one epoch here is one iteration."""
        return 64 * row[0]["time"]

    def losses(self) -> list[dict]:
        return [losses for _, losses in self.rows]

    def generator_shapes(self) -> dict:
        ckpt = torch.load(self.checkpoints / "model_5.pth", map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in ckpt["G"].items()}, ckpt["cfg"]


@pytest.fixture(scope="module")
def gcc(tmp_path_factory):
    """GCC installed with ``vem-plugins``, tiny data, a random pre-training checkpoint."""
    from PIL import Image

    root = tmp_path_factory.mktemp("gcc")
    checkout = root / "gcc"
    install_adapter(ADAPTER, checkout)
    data = root / "celeb"  # GCC keys its SAGAN settings on "celeb" in the path
    (data / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            data / "train" / f"{i:06d}.jpg")

    import torchvision
    home = root / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                                init_weights=False)
    torch.save(inception.state_dict(),
               home / "hub" / "checkpoints" / gcc_compat.INCEPTION.file)
    env = upstream_env(home)
    pretrain = root / "pretrain"
    subprocess.run([sys.executable, "-c", PRETRAIN, str(pretrain), str(data)], cwd=checkout,
                   env=env, check=True, capture_output=True)
    return types.SimpleNamespace(root=root, checkout=checkout, data=data, env=env,
                                 pretrain=pretrain / "model_best_AtoB.pth", runs={})


def train(gcc, name, *flags) -> Run:
    """GCC's ``train.py`` until epoch 5 is saved (memoised per name)."""
    if name in gcc.runs:
        return gcc.runs[name]
    cmd = [sys.executable, "train.py", "--dataroot", str(gcc.data), *GCC_SAGAN,
           "--pretrain_path", str(gcc.pretrain), "--checkpoints_dir", str(gcc.root / "exp"),
           "--name", name, *flags]
    log = gcc.root / "exp" / name / "logger.log"
    with open(gcc.root / f"{name}.out", "w+") as out:
        proc = subprocess.Popen(cmd, cwd=gcc.checkout, env=gcc.env, stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while proc.poll() is None and not (log.exists() and SAVED in log.read_text()):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{name}: GCC ran for over 600 s")
            time.sleep(0.2)
        stopped = proc.poll() is None
        proc.kill()  # the remaining 95 epochs are more of the same
        proc.wait()
        out.seek(0)
        output = out.read()
    assert stopped, f"{name} ended before saving epoch 5:\n{output[-6000:]}"
    gcc.runs[name] = Run(log.parent, output)
    return gcc.runs[name]


def test_without_vem_upstream_losses_and_failed_evaluation_keeps_checkpoint(gcc):
    run = train(gcc, "plain")
    assert len(run.rows) >= 5
    assert all("G_GAN" in row and "content" in row for row in run.losses())
    assert not any(name.startswith("G_mi") for row in run.losses() for name in row)
    # FID at epoch 5 fails (no real_stat.npz): logged with what is missing, checkpoint saved
    assert re.search(r"evaluation failed at epoch 5 \(FileNotFoundError.*"
                     r"missing: \S*real_stat\.npz", run.log)
    assert (run.checkpoints / "model_5.pth").exists()
    assert not list(run.checkpoints.glob("*_vem*.pth"))


@pytest.mark.parametrize("name,flags,stat", [
    ("vem", ["--vem"], "G_energy_gap"),
    ("vid", ["--mi", "vid"], "G_vid_nll"),
    ("crd", ["--mi", "crd"], "G_crd_estimate"),
])
def test_mi_term_logged_and_estimator_saved_beside_checkpoint(gcc, name, flags, stat):
    run = train(gcc, name, "--no_eval", *flags, *TINY_EBM)
    assert "evaluation skipped (--no_eval) at epoch 5" in run.log
    assert len(run.rows) >= 5
    assert all("G_mi" in row and stat in row and "content" in row for row in run.losses())
    assert all(math.isfinite(float(row["G_mi"])) for row in run.losses())
    state = torch.load(run.checkpoints / "model_5_vem.pth", map_location="cpu", weights_only=True)
    assert state["estimator"]["name"] == name and state["step"] == 5
    assert not any(k.startswith(("energy", "mean", "embed")) for k in
                   torch.load(run.checkpoints / "model_5.pth", weights_only=True)["G"])
    # the compressed generator (pruned widths and every weight shape) is the one without --vem
    assert run.generator_shapes() == train(gcc, "plain").generator_shapes()


def test_seconds_per_iteration_recorded(gcc, capsys):
    plain, vem = train(gcc, "plain"), train(gcc, "vem", "--no_eval", "--vem", *TINY_EBM)
    with capsys.disabled():
        print(f"\nGCC SAGAN tiny (8 images, ngf 16, CPU): {plain.seconds():.2f} "
              f"s/iter without --vem, {vem.seconds():.2f} s/iter with --vem "
              f"(tiny energy net)")
    assert plain.seconds() > 0 and vem.seconds() > 0
