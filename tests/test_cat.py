"""The CAT adapter: upstream's real train.py, distill.py (pruning + distillation) and
onnx_export.py on tiny generated data, on CPU.

Upstream tier (``@pytest.mark.upstream``): one ``vem-plugins`` install per module, plus a clone with
only ``01-compat.patch`` (upstream made runnable, without our VEM lines) to compare against; tiny
CycleGAN data (trainA/trainB/valA/valB), an inception teacher trained for two iterations by
upstream's own ``train.py`` (a never-trained teacher would prune to an empty student), no network
access (a dead proxy) and ``--no_fid``. Every run is a subprocess; the assertions read what it
wrote (``log.txt``, checkpoints, the ONNX file).

The unit tests at the end need no upstream.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vem_plugins.adapters.cat import compat as cat_compat, glue as cat_vem
from vem_plugins.adapters.cat.adapter import ADAPTER
from vem_plugins.authoring.smoke import state_equal
from vem_plugins.authoring.testing import install_adapter, offline_env, require_upstream

UPSTREAM_MODULES = ("scipy", "tqdm", "tensorboardX", "torchprofile", "cv2", "yaml")
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
class Run:
    """What one upstream run wrote."""

    def __init__(self, log_dir: Path, output: str):
        self.dir, self.output = log_dir, output
        self.ckpt = log_dir / "checkpoints"
        self.log = (log_dir / "log.txt").read_text()
        self.rows = []  # (iteration info, {loss name: value}) per logged iteration
        for line in self.log.splitlines():
            if line.startswith("(epoch:") and "time:" in line:
                head, _, body = line.partition(") ")
                info = {k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)}
                self.rows.append((info, {k: float(v) for k, v in re.findall(r"(\S+): (\S+)", body)}))

    def losses(self) -> list[dict]:
        return [losses for _, losses in self.rows]

    def seconds(self) -> float:
        """Mean logged time of an iteration after the first (warm-up)."""
        times = [info["time"] for info, _ in self.rows[1:]]
        return sum(times) / len(times)

    def student_profile(self) -> list[str]:
        """CAT's MACs line of the pruned student."""
        return [line for line in self.log.splitlines() if line.startswith("netG student FLOPs")]


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def shapes(path) -> dict:
    return {k: tuple(v.shape) for k, v in load(path).items()}


def write_images(folder: Path, count: int, size: int, rng):
    from PIL import Image
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    """CAT installed, a compat-only clone, tiny data, a teacher from upstream's train.py."""
    require_upstream(ADAPTER.url)
    for name in UPSTREAM_MODULES:
        pytest.importorskip(name, reason=f"CAT needs {name} (the adapter's requirements)")

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
    env = dict(os.environ, **offline_env(), TORCH_HOME=str(root / "torch_empty"),
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # on a shared 2-core machine,
    # OpenMP's spinning threads can slow tiny CPU runs down tenfold; one thread keeps them fast
    c = types.SimpleNamespace(root=root, checkout=checkout, compat_only=compat_only, data=data,
                              stat=str(stat), env=env)
    c.teacher = run(c, "teacher", "train.py", [
        "--dataroot", str(data), "--model", "cycle_gan", "--netG", "inception_9blocks",
        "--ngf", "16", "--real_stat_A_path", c.stat, "--real_stat_B_path", c.stat, *TINY]).ckpt
    return c


def run(cat, name, script, args, checkout=None) -> Run:
    """Run upstream's ``script`` (or ``-c`` code) into ``<root>/<name>``."""
    log_dir = cat.root / name
    argv = ["-c", script] if "\n" in script else [script]
    cmd = [sys.executable, *argv, "--log_dir", str(log_dir), *args]
    with open(cat.root / f"{name}.out", "w+") as out:
        proc = subprocess.run(cmd, cwd=checkout or cat.checkout, env=cat.env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=600)
        out.seek(0)
        output = out.read()
    assert proc.returncode == 0, f"{name} failed:\n{output[-6000:]}"
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


# -- upstream tier ------------------------------------------------------------------------------
@pytest.mark.upstream
def test_without_vem_is_upstream(cat, plain):
    """The VEM wiring with the flag off: the same pruned student and losses as the compat-only
    clone, no MI terms, no estimator file; --no_fid reported, training not stopped."""
    require_upstream(ADAPTER.url)
    upstream = run(cat, "distill_compat_only", "distill.py", distill_args(cat), checkout=cat.compat_only)
    assert len(plain.rows) == 2
    assert plain.losses() == upstream.losses()
    assert plain.student_profile() == upstream.student_profile() != []
    assert not any(name.startswith("G_mi") for losses in plain.losses() for name in losses)
    assert sorted(p.name for p in plain.ckpt.iterdir()) == sorted(p.name for p in upstream.ckpt.iterdir())
    assert not list(plain.ckpt.glob("*vem*"))
    assert "FID evaluation is skipped (logged as nan): --no_fid" in plain.output
    assert "fid: nan" in plain.log


@pytest.mark.upstream
def test_distill_vem(plain, vem):
    """MI terms logged every iteration; estimator saved on its own (after pruning replaced the
    optimisers); the pruned student is the same network with the same MACs."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
def test_resume_pruned_student_and_estimator(cat, vem):
    """--prune_continue with every --restore_* flag (which failed upstream) plus --restore_vem_path:
    the estimator is restored exactly and training goes on from the pruned checkpoints."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
@pytest.mark.parametrize("mi, names", [("vid", {"G_vid_nll"}), ("crd", {"G_crd_loss", "G_crd_estimate"})])
def test_baselines(cat, mi, names):
    """--mi vid / --mi crd go through the same hook, logging and checkpoint."""
    require_upstream(ADAPTER.url)
    r = run(cat, f"distill_{mi}", "distill.py", distill_args(cat, "--mi", mi))
    assert len(r.rows) == 2
    for losses in r.losses():
        assert {"G_mi", "G_mi_skipped"} | names <= losses.keys()
        assert not {"G_energy_gap", "G_ebm_loss"} & losses.keys()
    state = load(r.ckpt / "latest_vem.pth")
    assert state["estimator"]["name"] == mi and state["step"] == 2


@pytest.mark.upstream
def test_onnx_export_unchanged(cat, plain, vem):
    """CAT's onnx_export.py: the student trained with --vem exports to the same graph."""
    require_upstream(ADAPTER.url)
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


# -- unit tests (no upstream) -------------------------------------------------------------------
def test_stdlib_profile_wins_over_a_local_profile_py(tmp_path):
    """A profile.py first on sys.path (CAT's, run from its root) no longer breaks cProfile."""
    (tmp_path / "profile.py").write_text("raise ImportError('the local profile.py was imported')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from vem_plugins.adapters.cat.compat import fix; fix({'__name__': 'data'});"
            "import cProfile, profile; print(profile.__file__)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == os.path.join(sysconfig.get_paths()["stdlib"], "profile.py")


def test_cuda_synchronize_needs_no_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    ns = {"torch": torch}
    cat_compat.fix_common(ns)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ns["torch"].cuda.synchronize()
    assert calls == [] and ns["torch"].nn is torch.nn and ns["torch"].cuda.manual_seed is torch.cuda.manual_seed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ns["torch"].cuda.synchronize()
    assert calls == [None]


def test_model_profiling_on_cpu_without_cuda(monkeypatch):
    seen = []

    def model_profiling(model, height, width, batch=1, channel=3, use_cuda=True, num_forwards=10):
        seen.append((use_cuda, num_forwards))

    ns = {"torch": torch, "model_profiling": model_profiling}
    cat_compat.fix_model_profiling(ns)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ns["model_profiling"](None, 8, 8, num_forwards=0)
    ns["model_profiling"](None, 8, 8, 1, 3, True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ns["model_profiling"](None, 8, 8)
    ns["model_profiling"](None, 8, 8, use_cuda=False)
    assert seen == [(False, 0), (False, 10), (True, 10), (False, 10)]


def test_prune_continue_loads_pruned_checkpoints_after_pruning():
    class Distiller:
        def load_networks(self, verbose=True, teacher_only=False, restore_pretrain=True):
            self.seen.append({k: getattr(self.opt, k) for k in sorted(vars(self.opt))
                              if k.startswith("restore")})

    cat_compat.resume_after_pruning(Distiller)
    d = Distiller()
    d.seen, d.opt = [], argparse.Namespace(prune_continue=True, restore_pretrained_G_path="P",
                                           restore_student_G_path="S", restore_A_path="A",
                                           restore_O_path="O", restore_D_path="D")
    d.load_networks()  # setup(), before pruning
    d.load_networks(restore_pretrain=False)  # trainer.py, after pruning
    assert d.seen == [dict(restore_pretrained_G_path="P", restore_student_G_path=None,
                           restore_A_path=None, restore_O_path=None, restore_D_path="D"),
                      dict(restore_pretrained_G_path=None, restore_student_G_path="S",
                           restore_A_path="A", restore_O_path="O", restore_D_path="D")]
    assert d.opt.restore_student_G_path == "S" and d.opt.restore_pretrained_G_path == "P"
    d.opt.prune_continue = False
    d.load_networks()
    assert d.seen[-1]["restore_student_G_path"] == "S"  # upstream's behaviour otherwise


def _fake_cat(monkeypatch):
    """A stand-in for distillers.inception_distiller with upstream's method shapes."""
    events = []

    class InceptionDistiller:
        @staticmethod
        def modify_commandline_options(parser, is_train):
            parser.add_argument("--dataset_mode", default="aligned")
            return parser

        def __init__(self, opt):
            self.opt, self.device, self.loss_names = opt, torch.device("cpu"), ["G_gan"]

        def backward_G(self, steps):
            events.append(("upstream backward", self.input.grad is not None))
            (self.Sfake_B ** 2).sum().backward()

        def save_networks(self, epoch):
            events.append(("upstream save", epoch))

    module = types.ModuleType("distillers.inception_distiller")
    module.InceptionDistiller = InceptionDistiller
    monkeypatch.setitem(sys.modules, "distillers.inception_distiller", module)
    return InceptionDistiller, events


def test_vem_wiring_adds_the_term_inside_backward_G(monkeypatch, tmp_path):
    cls, events = _fake_cat(monkeypatch)
    cat_vem.install()
    cat_vem.install()  # twice: wired once
    argv = ["--dataset_mode", "unaligned", "--vem", "--ebm_blocks", "1", "--ebm_steps", "1",
            "--lambda_mi", "100"]
    monkeypatch.setattr(sys, "argv", ["distill.py", *argv])  # upstream's parsers read sys.argv
    opt = cls.modify_commandline_options(argparse.ArgumentParser(), True).parse_args(argv)
    assert opt.ebm_width == 16  # CycleGAN's width from --dataset_mode unaligned
    model = cls(opt)
    model.save_dir = str(tmp_path)
    x = model.input = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    model.Sfake_B, model.Tfake_B = x.tanh(), torch.rand(2, 3, 8, 8) * 2 - 1
    model.backward_G(1)
    # the MI term reached the student before upstream's own backward; the gradients add up
    assert events[0] == ("upstream backward", True)
    upstream = 2 * x.tanh() * (1 - x.tanh() ** 2)
    assert (x.grad - upstream).abs().max() > 1e-4
    assert {"G_mi", "G_energy_gap"} <= set(model.loss_names)
    model.save_networks("latest")
    assert events[-1] == ("upstream save", "latest") and (tmp_path / "latest_vem.pth").is_file()


def test_vem_wiring_is_inert_without_the_flag(monkeypatch, tmp_path):
    cls, events = _fake_cat(monkeypatch)
    cat_vem.install()
    monkeypatch.setattr(sys, "argv", ["distill.py"])
    opt = cls.modify_commandline_options(argparse.ArgumentParser(), True).parse_args([])
    model = cls(opt)
    model.save_dir = str(tmp_path)
    model.Sfake_B = model.input = torch.ones(1, 3, 2, 2, requires_grad=True)
    model.backward_G(1)
    model.save_networks(1)
    assert model.loss_names == ["G_gan"] and not list(tmp_path.iterdir())
    assert torch.equal(model.Sfake_B.grad, 2 * torch.ones(1, 3, 2, 2))  # upstream's gradient only
