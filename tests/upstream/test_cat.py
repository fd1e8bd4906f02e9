"""The CAT adapter: upstream's real train.py, distill.py (pruning + distillation) and
onnx_export.py on tiny generated data, on CPU.

Upstream tier: one ``vem-plugins`` install per module, plus a clone with only ``01-compat.patch``
(upstream made runnable, without our VEM lines) to compare against; tiny CycleGAN data
(trainA/trainB/valA/valB), an inception teacher trained for two iterations by upstream's own
``train.py`` (a never-trained teacher would prune to an empty student), no network access (a dead
proxy) and ``--no_fid``. Every run is a subprocess; the assertions read what it wrote (``log.txt``,
checkpoints, the ONNX file).

Skipped, with the reason, without CAT's repository or the adapter's requirements (see
``conftest.py``). The unit tests that need neither are in ``tests/test_cat.py``.
"""
from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest

from helpers import UpstreamRun, load, run_script, shapes, upstream_env, write_images
from vem_plugins.adapters.cat.adapter import ADAPTER
from vem_plugins.authoring.smoke import state_equal
from vem_plugins.authoring.testing import install_adapter

pytestmark = pytest.mark.needs(ADAPTER)
MI_NAMES = {"G_mi", "G_energy_gap", "G_ebm_loss", "G_mi_skipped"}
# scripts/cycle_gan/horse2zebra/train_inception_{teacher,student_2p6B}.sh, shrunk
NET = ["--norm_affine", "--norm_affine_D", "--channels_reduction_factor", "6",
       "--kernel_sizes", "1", "3", "5", "--ndf", "16"]
TINY = ["--dataset_mode", "unaligned", "--gpu_ids", "-1", "--load_size", "64", "--crop_size", "64",
        "--nepochs", "1", "--nepochs_decay", "0", "--num_threads", "0", "--print_freq", "1",
        "--batch_size", "2", "--serial_batches", "--no_fid", *NET]
STUDENT = ["--distiller", "inception", "--gan_mode", "lsgan", "--teacher_ngf", "16",
           "--pretrained_ngf", "16", "--student_ngf", "16", "--lambda_distill", "1.0",
           "--lambda_recon", "5", "--prune_cin_lb", "2", "--target_flops", "2e7",
           "--distill_G_loss_type", "ka", *TINY]
RESUME = """
import sys, torch
sys.argv[0] = "distill.py"
from trainer import Trainer
trainer = Trainer("distill")  # parses the flags, builds the distiller and restores the estimator
torch.save(trainer.model.vem.state_dict(), trainer.opt.log_dir + "/restored_vem.pth")
trainer.start()  # prunes, then (--prune_continue) loads the pruned checkpoints and trains
"""


# -- helpers ------------------------------------------------------------------------------------
class Run(UpstreamRun):
    """What one CAT run wrote into its ``--log_dir``; ``rows`` are (iteration info, losses)."""

    def __init__(self, log_dir: Path, output: str):
        self.dir, self.ckpt = log_dir, log_dir / "checkpoints"
        super().__init__(log_dir / "log.txt", output)

    def row(self, line):
        if line.startswith("(epoch:") and "time:" in line:  # (epoch: 1, iters: 2, time: ...) ...
            head, _, body = line.partition(") ")
            return ({k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)},
                    {k: float(v) for k, v in re.findall(r"(\S+): (\S+)", body)})
        return None

    def row_seconds(self, row):
        return row[0]["time"]

    def losses(self) -> list[dict]:
        return [losses for _, losses in self.rows]

    def student_profile(self) -> list[str]:
        """CAT's MACs line of the pruned student."""
        return [line for line in self.log.splitlines() if line.startswith("netG student FLOPs")]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    """CAT installed, a compat-only clone, tiny data, a teacher from upstream's train.py."""
    root = tmp_path_factory.mktemp("cat")
    checkout = root / "cat"
    install_adapter(ADAPTER, checkout)
    # the pin + 01-compat.patch: upstream, runnable on CPU
    compat_only = install_adapter(ADAPTER, root / "compat-only", patches=1)

    rng = np.random.default_rng(0)
    data = root / "data"
    for split, count in (("trainA", 4), ("trainB", 4), ("valA", 2), ("valB", 2)):
        write_images(data / split, count, 64, rng)
    stat = data / "real_stat.npz"  # read at start-up; never used (FID is skipped)
    np.savez(stat, mu=np.zeros(2048), sigma=np.eye(2048))
    env = upstream_env(root / "torch_empty")
    c = types.SimpleNamespace(root=root, checkout=checkout, compat_only=compat_only, data=data,
                              stat=str(stat), env=env)
    c.teacher = run(c, "teacher", "train.py", [
        "--dataroot", str(data), "--model", "cycle_gan", "--netG", "inception_9blocks",
        "--ngf", "16", "--real_stat_A_path", c.stat, "--real_stat_B_path", c.stat, *TINY]).ckpt
    return c


def run(cat, name, script, args, checkout=None) -> Run:
    """Run upstream's ``script`` (or ``-c`` code) into ``<root>/<name>``."""
    log_dir = cat.root / name
    output = run_script(script, ["--log_dir", str(log_dir), *args], checkout or cat.checkout,
                        cat.env, cat.root / f"{name}.out")
    return Run(log_dir, output)


def distill_args(cat, *extra):
    t = cat.teacher
    return ["--dataroot", str(cat.data), "--restore_teacher_G_path", str(t / "latest_net_G_A.pth"),
            "--restore_pretrained_G_path", str(t / "latest_net_G_A.pth"),
            "--restore_D_path", str(t / "latest_net_D_A.pth"), "--real_stat_path", cat.stat,
            *STUDENT, *extra]


@pytest.fixture(scope="module")
def plain(cat):
    return run(cat, "distill_plain", "distill.py", distill_args(cat))


@pytest.fixture(scope="module")
def vem(cat):
    return run(cat, "distill_vem", "distill.py", distill_args(cat, "--vem"))


# -- tests --------------------------------------------------------------------------------------
def test_without_vem_is_upstream(cat, plain):
    """The VEM wiring with the flag off: the same pruned student and losses as the compat-only
    clone, no MI terms, no estimator file; --no_fid reported, training not stopped."""
    upstream = run(cat, "distill_compat_only", "distill.py", distill_args(cat), checkout=cat.compat_only)
    assert len(plain.rows) == 2
    assert plain.losses() == upstream.losses()
    assert plain.student_profile() == upstream.student_profile() != []
    assert not any(name.startswith("G_mi") for losses in plain.losses() for name in losses)
    assert sorted(p.name for p in plain.ckpt.iterdir()) == sorted(p.name for p in upstream.ckpt.iterdir())
    assert not list(plain.ckpt.glob("*vem*"))
    assert "FID evaluation is skipped (logged as nan): --no_fid" in plain.output
    assert "fid: nan" in plain.log


def test_distill_vem(plain, vem):
    """MI terms logged every iteration; estimator saved on its own (after pruning replaced the
    optimisers); the pruned student is the same network with the same MACs."""
    assert len(vem.rows) == 2
    for losses in vem.losses():
        assert MI_NAMES <= losses.keys() and set(losses) - MI_NAMES == set(plain.losses()[0])
        assert losses["G_mi_skipped"] == 0
    for epoch in ("latest", "1"):
        state = load(vem.ckpt / f"{epoch}_vem.pth")
        assert state["step"] == 2 and state["estimator"]["name"] == "vem"
        assert state["estimator"]["state"]["_extra_state"]["config"]["width"] == 16  # CycleGAN
    assert sorted(p.name for p in vem.ckpt.glob("latest_optim-*")) == ["latest_optim-0.pth",
                                                                      "latest_optim-1.pth"]
    assert vem.student_profile() == plain.student_profile()
    assert shapes(vem.ckpt / "latest_net_G.pth") == shapes(plain.ckpt / "latest_net_G.pth")
    assert (vem.dir / "netG_student.txt").read_text() == (plain.dir / "netG_student.txt").read_text()
    events = b"".join(f.read_bytes() for f in vem.dir.glob("events.out.tfevents.*"))
    assert b"G_loss/G_mi" in events and b"G_loss/G_energy_gap" in events  # TensorBoard too
    print("\ndistill s/iter without / with --vem: %.2f / %.2f" % (plain.seconds(), vem.seconds()))


def test_resume_pruned_student_and_estimator(cat, vem):
    """--prune_continue with every --restore_* flag (which failed upstream) plus --restore_vem_path:
    the estimator is restored exactly and training goes on from the pruned checkpoints."""
    ck = vem.ckpt
    args = distill_args(cat, "--vem", "--prune_continue", "--epoch_base", "2", "--iter_base", "3",
                        "--restore_student_G_path", str(ck / "latest_net_G.pth"),
                        "--restore_A_path", str(ck / "latest_net_A"),
                        "--restore_O_path", str(ck / "latest_optim"),
                        "--restore_vem_path", str(ck / "latest_vem.pth"))
    args[args.index("--restore_D_path") + 1] = str(ck / "latest_net_D.pth")
    resumed = run(cat, "distill_resume", RESUME, args)
    saved = load(ck / "latest_vem.pth")
    assert state_equal(load(resumed.dir / "restored_vem.pth"), saved)
    assert f"Load network at {ck / 'latest_net_G.pth'}" in resumed.output
    assert [info["iters"] for info, _ in resumed.rows] == [3, 4]
    assert all(MI_NAMES <= losses.keys() for losses in resumed.losses())
    after = load(resumed.ckpt / "latest_vem.pth")
    assert after["step"] == saved["step"] + 2
    assert not state_equal(after["estimator"]["state"], saved["estimator"]["state"])


@pytest.mark.parametrize("mi, names", [("vid", {"G_vid_nll"}), ("crd", {"G_crd_loss", "G_crd_estimate"})])
def test_baselines(cat, mi, names):
    """--mi vid / --mi crd go through the same hook, logging and checkpoint."""
    r = run(cat, f"distill_{mi}", "distill.py", distill_args(cat, "--mi", mi))
    assert len(r.rows) == 2
    for losses in r.losses():
        assert {"G_mi", "G_mi_skipped"} | names <= losses.keys()
        assert not {"G_energy_gap", "G_ebm_loss"} & losses.keys()
    state = load(r.ckpt / "latest_vem.pth")
    assert state["estimator"]["name"] == mi and state["step"] == 2


def test_onnx_export_unchanged(cat, plain, vem):
    """CAT's onnx_export.py: the student trained with --vem exports to the same graph."""
    onnx = pytest.importorskip("onnx", reason="onnx_export.py needs onnx (and onnxscript)")
    pytest.importorskip("onnxscript", reason="torch's default ONNX exporter needs onnxscript")
    graphs = []
    for r in (plain, vem):
        args = distill_args(cat, "--pretrained_student_G_path", str(r.ckpt / "latest_net_G.pth"))
        out = run(cat, f"onnx_{r.dir.name}", "onnx_export.py", args)
        graph = onnx.load(str(out.dir) + "netG_student.onnx").graph  # CAT appends no "/"
        graphs.append(([n.op_type for n in graph.node],
                       sorted((i.name, tuple(i.dims)) for i in graph.initializer)))
    assert graphs[0] == graphs[1] and graphs[0][0]
