"""The GAN-Compression adapter: upstream's real train.py, distill.py, train_supernet.py and
export.py on tiny generated data, on CPU.

Upstream tier: one ``vem-plugins`` install per module, plus a clone with only ``01-compat.patch``
(upstream made runnable, without our VEM lines) to compare against; tiny datasets
(trainA/trainB/valA/valB for CycleGAN, A|B pairs for pix2pix), tiny networks, a teacher trained for
a few iterations by upstream's own ``train.py``, no network access (a dead proxy, so the FID
Inception weights are missing as on an offline machine) and ``--no_fid`` where evaluation would
cost minutes. Every run is a subprocess; the assertions read what it wrote (``log.txt``,
checkpoints, the exported generator).

Skipped, with the reason, without GAN-Compression's repository or the adapter's requirements
(see ``conftest.py``). The unit tests that need neither are in ``tests/test_gan_compression.py``.
"""
from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import UpstreamRun, load, run_script, shapes, upstream_env, write_images
from vem_plugins.adapters.gan_compression import compat
from vem_plugins.adapters.gan_compression.adapter import ADAPTER
from vem_plugins.authoring.smoke import state_equal
from vem_plugins.authoring.testing import install_adapter

pytestmark = pytest.mark.needs(ADAPTER)
MI_NAMES = {"G_mi", "G_energy_gap", "G_ebm_loss", "G_mi_skipped"}
TINY = ["--gpu_ids", "-1", "--load_size", "64", "--crop_size", "64", "--nepochs", "1",
        "--nepochs_decay", "0", "--num_threads", "0", "--print_freq", "1", "--serial_batches"]
# scripts/cycle_gan/horse2zebra/{distill,train_supernet}.sh, shrunk (4 iterations an epoch)
CG = ["--dataset_mode", "unaligned", "--gan_mode", "lsgan", "--teacher_ngf", "16",
      "--student_ngf", "8", "--ndf", "16", "--lambda_recon", "10", "--lambda_distill", "0.01",
      "--no_fid", *TINY]
RESUME = """
import sys, torch
sys.argv[0] = "distill.py"
from trainer import Trainer
trainer = Trainer("distill")  # parses the flags, builds and restores the distiller
torch.save(trainer.model.vem.state_dict(), trainer.opt.log_dir + "/restored_vem.pth")
trainer.start()
"""


# -- helpers ------------------------------------------------------------------------------------
class Run(UpstreamRun):
    """What one GAN-Compression run wrote into its ``--log_dir``; ``rows`` are (iteration info,
    losses)."""

    def __init__(self, log_dir: Path, output: str):
        self.dir, self.ckpt = log_dir, log_dir / "checkpoints"
        super().__init__(log_dir / "log.txt", output)

    def row(self, line):
        if line.startswith("(epoch:") and ") " in line and "time:" in line:
            head, _, body = line.partition(") ")  # (epoch: 1, iters: 2, time: ...) G_gan: ...
            return ({k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)},
                    {k: float(v) for k, v in re.findall(r"(\S+): (\S+)", body)})
        return None

    def row_seconds(self, row):
        return row[0]["time"]

    def losses(self) -> list[dict]:
        return [losses for _, losses in self.rows]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gc(tmp_path_factory):
    """GAN-Compression installed, a compat-only clone, tiny data, a stand-in Inception, a teacher."""
    root = tmp_path_factory.mktemp("gc")
    checkout = root / "gan-compression"
    install_adapter(ADAPTER, checkout)
    # the pin + 01-compat.patch: upstream, runnable on CPU
    compat_only = install_adapter(ADAPTER, root / "compat-only", patches=1)

    rng = np.random.default_rng(0)
    data = root / "data"
    for split, count in (("trainA", 4), ("trainB", 4), ("valA", 2), ("valB", 2)):
        write_images(data / "cg" / split, count, 64, rng)
    write_images(data / "p2p" / "train", 4, 64, rng, paired=True)
    write_images(data / "p2p" / "val", 2, 64, rng, paired=True)
    stat = data / "real_stat.npz"  # read at start-up; never used (FID is skipped)
    np.savez(stat, mu=np.zeros(2048), sigma=np.eye(2048))

    home = root / "torch_home"  # gets a FID Inception stand-in: same architecture, random weights
    (home / "hub" / "checkpoints").mkdir(parents=True)
    env = upstream_env(root / "torch_empty")
    g = types.SimpleNamespace(root=root, checkout=checkout, compat_only=compat_only, data=data,
                              stat=str(stat), env=env, home=home)
    g.teacher = run(g, "teacher", "train.py", [
        "--dataroot", str(data / "cg"), "--dataset_mode", "unaligned", "--model", "cycle_gan",
        "--netG", "mobile_resnet_9blocks", "--ngf", "16", "--ndf", "16",
        "--real_stat_A_path", g.stat, "--real_stat_B_path", g.stat, "--no_fid", *TINY]).ckpt
    return g


def run(gc, name, script, args, checkout=None, env=None) -> Run:
    """Run upstream's ``script`` (or ``-c`` code) into ``<root>/<name>``."""
    log_dir = gc.root / name
    output = run_script(script, ["--log_dir", str(log_dir), *args], checkout or gc.checkout,
                        env or gc.env, gc.root / f"{name}.out")
    return Run(log_dir, output)


def distill_args(gc, *extra):
    t = gc.teacher
    return ["--dataroot", str(gc.data / "cg"), "--distiller", "resnet", "--pretrained_ngf", "16",
            "--restore_teacher_G_path", str(t / "latest_net_G_A.pth"),
            "--restore_pretrained_G_path", str(t / "latest_net_G_A.pth"),
            "--restore_D_path", str(t / "latest_net_D_A.pth"), "--real_stat_path", gc.stat,
            *CG, *extra]


@pytest.fixture(scope="module")
def plain(gc):
    return run(gc, "distill_plain", "distill.py", distill_args(gc))


@pytest.fixture(scope="module")
def vem(gc):
    return run(gc, "distill_vem", "distill.py", distill_args(gc, "--vem"))


@pytest.fixture(scope="module")
def supernets(gc, vem):
    """train_supernet.py from the --vem student, without and with --vem (the latter resuming
    the distill stage's energy model), then export.py of one sub-network of each."""
    args = ["--dataroot", str(gc.data / "cg"), "--supernet", "resnet", "--config_set", "test",
            "--restore_teacher_G_path", str(gc.teacher / "latest_net_G_A.pth"),
            "--restore_student_G_path", str(vem.ckpt / "latest_net_G.pth"),
            "--restore_D_path", str(vem.ckpt / "latest_net_D.pth"), "--real_stat_path", gc.stat, *CG]
    runs = {"plain": run(gc, "supernet_plain", "train_supernet.py", args),
            "vem": run(gc, "supernet_vem", "train_supernet.py",
                       [*args, "--vem", "--restore_vem_path", str(vem.ckpt / "latest_vem.pth")])}
    for key, r in runs.items():
        r.export = gc.root / f"export_{key}.pth"
        subprocess.run([sys.executable, "export.py", "--input_path", str(r.ckpt / "latest_net_G.pth"),
                        "--output_path", str(r.export), "--ngf", "8", "--config_str", "8_6_8_8_8_8_8_8"],
                       cwd=gc.checkout, env=gc.env, check=True, capture_output=True)
    return runs


# -- tests --------------------------------------------------------------------------------------
def test_without_vem_is_upstream(gc, plain):
    """The VEM patch with the flag off: the same losses as the compat-only clone, no MI terms,
    no estimator file; offline FID is skipped with a message naming the missing file."""
    upstream = run(gc, "distill_compat_only", "distill.py", distill_args(gc), checkout=gc.compat_only)
    assert len(plain.rows) == 4
    assert plain.losses() == upstream.losses()
    assert not any(name.startswith("G_mi") for losses in plain.losses() for name in losses)
    assert sorted(p.name for p in plain.ckpt.iterdir()) == sorted(p.name for p in upstream.ckpt.iterdir())
    assert not list(plain.ckpt.glob("*vem*"))
    # the teacher's train.py ran without --no_fid's Inception download: --no_fid was honoured
    assert "FID evaluation is skipped (logged as nan): --no_fid" in (gc.root / "teacher.out").read_text()
    assert "fid: nan" in (plain.dir / "log.txt").read_text()


def test_distill_vem(plain, vem):
    """MI terms logged every iteration; estimator saved on its own; the same student network."""
    assert len(vem.rows) == 4
    for losses in vem.losses():
        assert MI_NAMES <= losses.keys() and set(losses) - MI_NAMES == set(plain.losses()[0])
        assert losses["G_mi_skipped"] == 0
    for epoch in ("latest", "1"):
        state = load(vem.ckpt / f"{epoch}_vem.pth")
        assert state["step"] == 4 and state["estimator"]["name"] == "vem"
        assert state["estimator"]["state"]["_extra_state"]["config"]["width"] == 16  # CycleGAN
    # not among upstream's optimisers: --restore_O_path works with and without --vem
    assert sorted(p.name for p in vem.ckpt.glob("latest_optim-*")) == ["latest_optim-0.pth",
                                                                      "latest_optim-1.pth"]
    assert shapes(vem.ckpt / "latest_net_G.pth") == shapes(plain.ckpt / "latest_net_G.pth")
    assert (vem.dir / "netG_student.txt").read_text() == (plain.dir / "netG_student.txt").read_text()
    assert "estimator has" in vem.output
    events = b"".join(f.read_bytes() for f in vem.dir.glob("events.out.tfevents.*"))
    assert b"G_loss/G_mi" in events and b"G_loss/G_energy_gap" in events  # TensorBoard too
    print("\ndistill s/iter without / with --vem: %.2f / %.2f" % (plain.seconds(), vem.seconds()))


def test_distill_resume(gc, vem):
    """--restore_vem_path restores the estimator exactly (weights, Adam, step); training goes on."""
    ck = vem.ckpt
    args = distill_args(gc, "--vem", "--nepochs", "2", "--epoch_base", "2", "--iter_base", "4",
                        "--restore_student_G_path", str(ck / "latest_net_G.pth"),
                        "--restore_A_path", str(ck / "latest_net_A"),
                        "--restore_O_path", str(ck / "latest_optim"),
                        "--restore_vem_path", str(ck / "latest_vem.pth"))
    args[args.index("--restore_D_path") + 1] = str(ck / "latest_net_D.pth")
    del args[args.index("--restore_pretrained_G_path"):][:2]
    resumed = run(gc, "distill_resume", RESUME, args)
    saved = load(ck / "latest_vem.pth")
    assert state_equal(load(resumed.dir / "restored_vem.pth"), saved)
    assert [info["iters"] for info, _ in resumed.rows] == [5, 6, 7, 8]
    assert all(MI_NAMES <= losses.keys() for losses in resumed.losses())
    after = load(resumed.ckpt / "latest_vem.pth")
    assert after["step"] == saved["step"] + 4
    assert not state_equal(after["estimator"]["state"], saved["estimator"]["state"])


def test_supernet_vem_and_export(vem, supernets):
    """One energy model, resumed from the distill stage, for every sampled sub-network; the
    exported compressed generator is the same network with and without --vem."""
    plain, sup = supernets["plain"], supernets["vem"]
    assert "restored the estimator from" in sup.output
    assert len(sup.rows) == 4 and all(MI_NAMES <= losses.keys() for losses in sup.losses())
    assert not any("G_mi" in losses for losses in plain.losses())
    state = load(sup.ckpt / "latest_vem.pth")
    assert state["step"] == load(vem.ckpt / "latest_vem.pth")["step"] + 4
    config = state["estimator"]["state"]["_extra_state"]["config"]
    assert (config["t_channels"], config["s_channels"]) == (3, 3)  # images, any sub-network
    assert shapes(sup.ckpt / "latest_net_G.pth") == shapes(plain.ckpt / "latest_net_G.pth")
    assert shapes(sup.export) == shapes(plain.export)
    assert not any("energy" in key for key in load(sup.export))
    print("\nsupernet s/iter without / with --vem: %.2f / %.2f" % (plain.seconds(), sup.seconds()))


@pytest.mark.parametrize("mi, names", [("vid", {"G_vid_nll"}), ("crd", {"G_crd_loss", "G_crd_estimate"})])
def test_baselines(gc, mi, names):
    """--mi vid / --mi crd go through the same hook, logging and checkpoint."""
    r = run(gc, f"distill_{mi}", "distill.py", distill_args(gc, "--mi", mi))
    assert len(r.rows) == 4
    for losses in r.losses():
        assert {"G_mi", "G_mi_skipped"} | names <= losses.keys()
        assert not {"G_energy_gap", "G_ebm_loss"} & losses.keys()
    state = load(r.ckpt / "latest_vem.pth")
    assert state["estimator"]["name"] == mi and state["step"] == 4


def test_pix2pix_vem(gc):
    """Paired data: a pix2pix teacher from train.py, then distill.py --vem (t = real_B)."""
    common = ["--dataroot", str(gc.data / "p2p"), "--real_stat_path", gc.stat, "--no_fid", *TINY]
    teacher = run(gc, "teacher_p2p", "train.py", ["--model", "pix2pix", "--ngf", "8", "--ndf", "8",
                                                  *common]).ckpt / "latest_net_G.pth"
    r = run(gc, "distill_p2p", "distill.py", [
        "--distiller", "resnet", "--teacher_ngf", "8", "--pretrained_ngf", "8", "--student_ngf", "4",
        "--ndf", "8", "--restore_teacher_G_path", str(teacher), "--restore_pretrained_G_path",
        str(teacher), *common, "--vem", "--ebm_blocks", "3"])
    assert len(r.rows) == 4 and all(MI_NAMES <= losses.keys() for losses in r.losses())
    config = load(r.ckpt / "latest_vem.pth")["estimator"]["state"]["_extra_state"]["config"]
    assert config["width"] == 64 and config["blocks"] == 3  # pix2pix keeps the paper's 64


def test_fid_inception_from_torch_home_or_named_when_missing(gc):
    """Upstream's metric models: the Inception weights come from $TORCH_HOME when they are there;
    offline without them FID is off, with a message naming the file and where it goes."""
    import torchvision
    weights = gc.home / "hub" / "checkpoints" / compat.INCEPTION.file
    standin = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, init_weights=False)
    torch.save(standin.state_dict(), weights)
    code = ("from types import SimpleNamespace as N; from metric import create_metric_models;"
            "m = create_metric_models(N(no_fid=False, no_mIoU=False, gpu_ids=[], dataroot='x',"
            " direction='AtoB', drn_path='none'), 'cpu')[0];"
            "print('INCEPTION', m is not None and float(m.blocks[0][0].conv.weight.sum()))")
    found = subprocess.run([sys.executable, "-c", code], cwd=gc.checkout,
                           env=dict(gc.env, TORCH_HOME=str(gc.home)), capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-3000:]
    value = float(found.stdout.split("INCEPTION ")[1].split()[0])
    assert value == pytest.approx(float(standin.Conv2d_1a_3x3.conv.weight.detach().sum()), rel=1e-6)
    missing = subprocess.run([sys.executable, "-c", code], cwd=gc.checkout, env=gc.env,
                             capture_output=True, text=True)
    assert missing.returncode == 0, missing.stderr[-3000:]
    assert "INCEPTION False" in missing.stdout
    where = Path(gc.env["TORCH_HOME"]) / "hub" / "checkpoints" / compat.INCEPTION.file
    assert "FID evaluation is skipped (logged as nan)" in missing.stdout
    assert str(where) in missing.stdout
