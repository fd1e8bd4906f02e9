"""The GAN-Compression adapter: upstream's real train.py, distill.py, train_supernet.py and
export.py on tiny generated data, on CPU.

Upstream tier (``@pytest.mark.upstream``): one ``vem-plugins`` install per module, plus a clone with
only ``01-compat.patch`` (upstream made runnable, without our VEM lines) to compare against; tiny
datasets (trainA/trainB/valA/valB for CycleGAN, A|B pairs for pix2pix), tiny networks, a teacher
trained for a few iterations by upstream's own ``train.py``, no network access (a dead proxy, so
the FID Inception weights are missing as on an offline machine) and ``--no_fid`` where evaluation
would cost minutes. Every run is a subprocess; the assertions read what it wrote (``log.txt``,
checkpoints, the exported generator).

The unit tests at the end need no upstream.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vem_plugins.adapters.gan_compression import compat
from vem_plugins.adapters.gan_compression import glue
from vem_plugins.adapters.gan_compression.adapter import ADAPTER
from vem_plugins.authoring.smoke import state_equal
from vem_plugins.authoring.testing import install_adapter, offline_env, require_upstream

UPSTREAM_MODULES = ("scipy", "tqdm", "tensorboardX", "torchprofile", "cv2")
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
class Run:
    """What one upstream run wrote."""

    def __init__(self, log_dir: Path, output: str):
        self.dir, self.output = log_dir, output
        self.ckpt = log_dir / "checkpoints"
        self.rows = []  # (iteration info, {loss name: value}) per logged iteration
        for line in (log_dir / "log.txt").read_text().splitlines():
            if line.startswith("(epoch:") and ") " in line and "time:" in line:
                head, _, body = line.partition(") ")
                info = {k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)}
                self.rows.append((info, {k: float(v) for k, v in re.findall(r"(\S+): (\S+)", body)}))

    def losses(self) -> list[dict]:
        return [losses for _, losses in self.rows]

    def seconds(self) -> float:
        """Mean logged time of an iteration after the first (warm-up)."""
        times = [info["time"] for info, _ in self.rows[1:]]
        return sum(times) / len(times)


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def shapes(path) -> dict:
    return {k: tuple(v.shape) for k, v in load(path).items()}


def write_images(folder: Path, count: int, size: int, rng, paired=False):
    from PIL import Image
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, 2 * size if paired else size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gc(tmp_path_factory):
    """GAN-Compression installed, a compat-only clone, tiny data, a stand-in Inception, a teacher."""
    require_upstream(ADAPTER.url)
    for name in UPSTREAM_MODULES:
        pytest.importorskip(name, reason=f"GAN-Compression needs {name} (the adapter's requirements)")

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
    env = dict(os.environ, **offline_env(), TORCH_HOME=str(root / "torch_empty"),
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # on a shared 2-core machine,
    # OpenMP's spinning threads can slow tiny CPU runs down tenfold; one thread keeps them fast
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
    argv = ["-c", script] if "\n" in script else [script]
    cmd = [sys.executable, *argv, "--log_dir", str(log_dir), *args]
    with open(gc.root / f"{name}.out", "w+") as out:
        proc = subprocess.run(cmd, cwd=checkout or gc.checkout, env=env or gc.env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=600)
        out.seek(0)
        output = out.read()
    assert proc.returncode == 0, f"{name} failed:\n{output[-6000:]}"
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


# -- upstream tier ------------------------------------------------------------------------------
@pytest.mark.upstream
def test_without_vem_is_upstream(gc, plain):
    """The VEM patch with the flag off: the same losses as the compat-only clone, no MI terms,
    no estimator file; offline FID is skipped with a message naming the missing file."""
    require_upstream(ADAPTER.url)
    upstream = run(gc, "distill_compat_only", "distill.py", distill_args(gc), checkout=gc.compat_only)
    assert len(plain.rows) == 4
    assert plain.losses() == upstream.losses()
    assert not any(name.startswith("G_mi") for losses in plain.losses() for name in losses)
    assert sorted(p.name for p in plain.ckpt.iterdir()) == sorted(p.name for p in upstream.ckpt.iterdir())
    assert not list(plain.ckpt.glob("*vem*"))
    # the teacher's train.py ran without --no_fid's Inception download: --no_fid was honoured
    assert "FID evaluation is skipped (logged as nan): --no_fid" in (gc.root / "teacher.out").read_text()
    assert "fid: nan" in (plain.dir / "log.txt").read_text()


@pytest.mark.upstream
def test_distill_vem(plain, vem):
    """MI terms logged every iteration; estimator saved on its own; the same student network."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
def test_distill_resume(gc, vem):
    """--restore_vem_path restores the estimator exactly (weights, Adam, step); training goes on."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
def test_supernet_vem_and_export(vem, supernets):
    """One energy model, resumed from the distill stage, for every sampled sub-network; the
    exported compressed generator is the same network with and without --vem."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
@pytest.mark.parametrize("mi, names", [("vid", {"G_vid_nll"}), ("crd", {"G_crd_loss", "G_crd_estimate"})])
def test_baselines(gc, mi, names):
    """--mi vid / --mi crd go through the same hook, logging and checkpoint."""
    require_upstream(ADAPTER.url)
    r = run(gc, f"distill_{mi}", "distill.py", distill_args(gc, "--mi", mi))
    assert len(r.rows) == 4
    for losses in r.losses():
        assert {"G_mi", "G_mi_skipped"} | names <= losses.keys()
        assert not {"G_energy_gap", "G_ebm_loss"} & losses.keys()
    state = load(r.ckpt / "latest_vem.pth")
    assert state["estimator"]["name"] == mi and state["step"] == 4


@pytest.mark.upstream
def test_pix2pix_vem(gc):
    """Paired data: a pix2pix teacher from train.py, then distill.py --vem (t = real_B)."""
    require_upstream(ADAPTER.url)
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


@pytest.mark.upstream
def test_fid_inception_from_torch_home_or_named_when_missing(gc):
    """Upstream's metric models: the Inception weights come from $TORCH_HOME when they are there;
    offline without them FID is off, with a message naming the file and where it goes."""
    require_upstream(ADAPTER.url)
    import torchvision
    weights = gc.home / "hub" / "checkpoints" / compat.FID_WEIGHTS
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
    where = Path(gc.env["TORCH_HOME"]) / "hub" / "checkpoints" / compat.FID_WEIGHTS
    assert "FID evaluation is skipped (logged as nan)" in missing.stdout
    assert str(where) in missing.stdout


# -- unit tests (no upstream) -------------------------------------------------------------------
def _opt(**kw):
    from vem_plugins.method.options import defaults
    opt = defaults()
    opt.ebm_width, opt.ebm_blocks, opt.ebm_steps = 4, 1, 1
    for k, v in kw.items():
        setattr(opt, k, v)
    return opt


@pytest.mark.parametrize("mi", ["vem", "vid", "crd"])
def test_log_names_are_names_upstream_prints(mi):
    """Every value the runtime logs maps to a name get_current_losses accepts and prints."""
    model = types.SimpleNamespace(opt=_opt(vem=True, mi=mi, dataset_mode="unaligned"),
                                  device=torch.device("cpu"), loss_names=["G_gan"])
    glue.attach(model, model.opt)
    model.Tfake_B = torch.rand(2, 3, 8, 8) * 2 - 1
    model.Sfake_B = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    term = glue.student_term(model)
    term.backward()
    assert model.Sfake_B.grad is not None
    added = model.loss_names[1:]
    assert "G_mi" in added and "G_mi_skipped" in added
    for name in added:
        assert name.startswith("G_") and not re.search(r"\d", name)
        assert isinstance(getattr(model, "loss_" + name), (int, float))  # not a tensor


class _Recorder:
    enabled = True

    def __init__(self):
        self.calls, self.losses, self.stats = [], {}, {}

    def update(self, **kw):
        self.calls.append(("update", kw))

    def student_loss(self, **kw):
        self.calls.append(("student_loss", kw))
        return kw["student"].sum() * 0

    def modules(self):
        return [nn.Linear(1, 1)]

    def log_values(self):
        return {}


@pytest.mark.parametrize("mode, paired", [("aligned", True), ("unaligned", False)])
def test_t_is_real_B_for_paired_data_and_the_teacher_otherwise(mode, paired):
    """The EBM step comes first, then the student term, both with the same tensors; real_B is
    passed (and so is t) only for aligned data, where it is the paired target."""
    rec = _Recorder()
    model = types.SimpleNamespace(opt=types.SimpleNamespace(dataset_mode=mode, mi=None), vem=rec,
                                  Sfake_B=torch.ones(1, 3, 2, 2), Tfake_B=torch.zeros(1, 3, 2, 2),
                                  real_B=torch.full((1, 3, 2, 2), 0.5), loss_names=[], vem_log_names=[])
    loss = torch.tensor(1.0)
    assert glue.add_student_term(model, loss) is not loss
    assert [c[0] for c in rec.calls] == ["update", "student_loss"]
    assert rec.calls[0][1] == rec.calls[1][1]
    kw = rec.calls[0][1]
    assert kw["student"] is model.Sfake_B and kw["teacher"] is model.Tfake_B
    assert (kw["real"] is model.real_B) if paired else kw["real"] is None


def test_without_vem_nothing_changes(tmp_path):
    model = types.SimpleNamespace(opt=_opt(dataset_mode="aligned"), device=torch.device("cpu"),
                                  save_dir=str(tmp_path), loss_names=["G_gan"])
    glue.attach(model, model.opt)
    loss = torch.tensor(2.0, requires_grad=True)
    assert glue.add_student_term(model, loss) is loss
    glue.save(model, "latest")
    assert model.loss_names == ["G_gan"] and not list(tmp_path.iterdir())
    model.opt.restore_vem_path = str(tmp_path / "x_vem.pth")
    with pytest.raises(ValueError, match="needs --vem"):
        glue.attach(model, model.opt)


def test_numpy_aliases_are_the_builtins():
    np_ = compat._NumPyWithAliases("numpy")
    assert np_.array([1.7], dtype=np_.int).dtype == np.array([1], dtype=int).dtype
    assert np_.float is float and np_.bool is bool and np_.zeros is np.zeros


class _Net(nn.Module):
    BLOCK_INDEX_BY_DIM = {2048: 3}

    def __init__(self, *args):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)


class _Offline(_Net):
    def __init__(self, *args):
        raise compat.MissingWeights("the FID Inception weights are missing: put X at Y")


def test_optional_metric_nets(tmp_path, capsys):
    """Off by flag, by missing weights or a missing --drn_path: None plus a printed reason."""
    drn = tmp_path / "drn.pth"

    def build(opt, device):
        inception = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        drn_net = DRNSeg("drn_d_105", 19)
        compat.load_network(drn_net, opt.drn_path)
        return inception, drn_net

    build.__globals__["InceptionV3"], build.__globals__["DRNSeg"] = _Net, _Net
    create = compat.optional_metric_models(build)
    opt = argparse.Namespace(no_fid=False, no_mIoU=False, drn_path=str(drn))
    torch.save(_Net().state_dict(), drn)
    inception, drn_net = create(opt, "cpu")
    assert isinstance(inception, _Net) and isinstance(drn_net, _Net)
    assert build.__globals__["InceptionV3"] is _Net  # restored after the call
    opt.no_fid, opt.drn_path = True, str(tmp_path / "missing.pth")
    assert create(opt, "cpu") == (None, None)
    out = capsys.readouterr().out
    assert "FID evaluation is skipped (logged as nan): --no_fid" in out
    assert f"--drn_path {tmp_path / 'missing.pth'} do not exist" in out
    build.__globals__["InceptionV3"] = _Offline
    opt.no_fid, opt.no_mIoU = False, True
    assert create(opt, "cpu") == (None, None)
    out = capsys.readouterr().out
    assert "put X at Y" in out and "Cityscapes mIoU evaluation is skipped (logged as nan): --no_mIoU" in out
    assert compat.optional_metric_models(create) is create  # fixing twice wraps once


def test_metrics_are_nan_without_model():
    calls = []
    get_fid = compat.nan_without_model(lambda fakes, model, npz, device: calls.append(model) or 1.0)
    assert np.isnan(get_fid([], None, {}, "cpu")) and get_fid([], "net", {}, device="cpu") == 1.0
    assert calls == ["net"]


def test_fid_weights_named_when_offline(tmp_path, monkeypatch):
    import urllib.error
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    url = "https://example.org/fid/" + compat.FID_WEIGHTS
    with pytest.raises(compat.MissingWeights) as err:
        compat.fid_weights(url, progress=True)
    assert str(tmp_path / "hub" / "checkpoints" / compat.FID_WEIGHTS) in str(err.value)
    assert url in str(err.value) and "Name or service" in str(err.value)


def test_single_device_distill_loss():
    """On CPU: the sum over mapping layers of MSE(netA(S), T), each stored as loss_G_distill<i>."""
    def original(self):
        raise AssertionError("upstream's replicate/gather path runs only on GPUs")

    model = types.SimpleNamespace(gpu_ids=[], mapping_layers=["model.9", "model.12"],
                                  netAs=[nn.Conv2d(2, 4, 1), nn.Conv2d(2, 4, 1)])
    model.Sacts = {"model.9cpu": torch.randn(1, 2, 3, 3), "model.12cpu": torch.randn(1, 2, 3, 3)}
    model.Tacts = {"model.9cpu": torch.randn(1, 4, 3, 3), "model.12cpu": torch.randn(1, 4, 3, 3)}
    loss = compat._single_device_distill_loss(original, lambda netA: {})(model)
    expected = [torch.nn.functional.mse_loss(a(model.Sacts[n + "cpu"]), model.Tacts[n + "cpu"])
                for a, n in zip(model.netAs, model.mapping_layers)]
    assert torch.allclose(loss, sum(expected))
    assert torch.allclose(model.loss_G_distill1, expected[1])
    loss.backward()
    assert model.netAs[0].weight.grad is not None


def test_output_padding_old_call():
    """SuperConvTranspose2d's pre-1.12 call of _output_padding works after the fix."""
    class Super(nn.ConvTranspose2d):
        def forward(self, x, output_size=None):
            padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size)
            return nn.functional.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                                  padding)

    compat.fix_super_modules({"SuperConvTranspose2d": Super})
    net = Super(2, 3, 3, stride=2, padding=1, output_padding=1)
    assert net(torch.randn(1, 2, 4, 4)).shape == (1, 3, 8, 8)
    assert net(torch.randn(1, 2, 4, 4), output_size=[7, 7]).shape == (1, 3, 7, 7)


def test_load_network_leaves_disabled_nets_alone(tmp_path):
    disabled = compat.Disabled("FID", "off")
    assert compat.load_network(disabled, tmp_path / "none.pth") is disabled
