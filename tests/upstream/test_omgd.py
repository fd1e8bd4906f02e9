"""The OMGD adapter: OMGD's real ``distill.py`` on tiny generated data, on CPU.

Upstream tier: one ``vem-plugins`` install of OMGD at its pin per module, tiny datasets in OMGD's
formats (aligned A|B images for ``multiteacher``, trainA/trainB/valA/valB for ``cycleganbest``),
tiny networks, a random same-architecture VGG16 (OMGD's training loss needs it) in a temporary
``TORCH_HOME``, and no network access for the runs (a dead proxy), so the FID Inception is missing
as on an offline machine. Every run is a subprocess of ``distill.py`` (or, for resuming, of OMGD's
own ``Trainer``), and the assertions read what it wrote: ``log.txt``, TensorBoard events,
checkpoints.

Skipped, with the reason, without OMGD's repository or the adapter's requirements (see
``conftest.py``). The unit tests that need neither are in ``tests/test_omgd.py``.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import UpstreamRun, load, shapes, write_images
from vem_plugins.adapters.omgd import compat as omgd_compat
from vem_plugins.adapters.omgd.adapter import ADAPTER
from vem_plugins.authoring.smoke import state_equal

pytestmark = pytest.mark.needs(ADAPTER)
OFFLINE = "http://127.0.0.1:9"  # nothing listens on the discard port: downloads fail at once
TINY_EBM = ["--ebm_blocks", "2", "--ebm_steps", "2"]

# multiteacher (pix2pix), the resnet recipe of scripts/resnet_pix2pix/edges2shoes, shrunk
P2P = ["--distiller", "multiteacher", "--gpu_ids", "-1", "--batch_size", "2",
       "--teacher_netG_w", "mobile_resnet_9blocks", "--teacher_netG_d", "mobile_deepest_resnet",
       "--student_netG", "mobile_resnet_9blocks", "--teacher_ngf_w", "8", "--teacher_ngf_d", "4",
       "--student_ngf", "4", "--ndf", "8", "--netD", "multi_n_layers", "--n_share", "3",
       "--AGD_weights", "1e1,1e4,1e1,1e-5", "--load_size", "64", "--crop_size", "64",
       "--nepochs", "1", "--nepochs_decay", "0", "--num_threads", "0", "--print_freq", "1",
       "--serial_batches"]
# cycleganbest (CycleGAN), the recipe of scripts/cycle_gan/horse2zebra, shrunk: one teacher
# epoch, then one student epoch against the "best" teacher
CG = ["--distiller", "cycleganbest", "--gpu_ids", "-1", "--teacher_ngf", "8",
      "--student_ngf", "4", "--ndf", "8", "--teacher_netG", "mobile_resnet_9blocks",
      "--student_netG", "mobile_resnet_9blocks", "--lambda_CD", "5e2",
      "--AGD_weights", "1e1,1e4,1e1,1e-5", "--load_size", "64", "--crop_size", "64",
      "--nepochs", "1", "--nepochs_decay", "0", "--n_dis", "1", "--save_epoch_freq", "1",
      "--num_threads", "0", "--print_freq", "1", "--serial_batches", "--no_fid"]

RESUME = """
import sys, torch
sys.argv[0] = "distill.py"
from trainer import Trainer
trainer = Trainer("distill")  # parses the flags, builds and restores the distiller
torch.save(trainer.model.vem.runtime.state_dict(), trainer.opt.log_dir + "/restored_vem.pth")
trainer.start()
"""


# -- helpers ------------------------------------------------------------------------------------
class Run(UpstreamRun):
    """What one OMGD run wrote into its ``--log_dir``; ``rows`` are (iteration info, losses)."""

    def __init__(self, log_dir: Path, output: str):
        self.dir = log_dir
        super().__init__(log_dir / "log.txt", output)

    def row(self, line):
        if line.startswith("(epoch:"):  # (epoch: 1, iters: 2, time: 0.5, ...) G_SSIM: 0.1 ...
            head, _, body = line.partition(") ")
            return ({k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", head)},
                    {k: float(v) for k, v in re.findall(r"(\S+): (\S+)", body)})
        return None

    def row_seconds(self, row):
        """Student steps only (CycleGAN's teacher steps log no G_SSIM); OMGD's first step
        also profiles, and is left out as the warm-up."""
        info, losses = row
        return info["time"] if "G_SSIM" in losses else None

    def student_rows(self) -> list[dict]:
        """Losses logged by student steps."""
        return [losses for _, losses in self.rows if "G_SSIM" in losses]

    def events(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.dir.glob("events.out.tfevents.*"))

    def profile(self) -> list[str]:
        """OMGD's MACs/parameter lines (one per generator it profiles)."""
        return [line for line in self.output.splitlines() if "MACs:" in line]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def omgd(tmp_path_factory):
    """OMGD installed with ``vem-plugins``, a pristine clone, tiny data and stand-in weights."""
    from vem_plugins.install.checkout import install

    root = tmp_path_factory.mktemp("omgd")
    checkout = root / "omgd"
    install(ADAPTER, checkout, progress=False)
    pristine = root / "pristine"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(checkout), str(pristine)],
                   check=True)
    subprocess.run(["git", "-C", str(pristine), "checkout", "-q", ADAPTER.commit], check=True)

    rng = np.random.default_rng(0)
    data = root / "data"
    write_images(data / "p2p" / "train", 6, 64, rng, paired=True)
    write_images(data / "p2p" / "val", 2, 64, rng, paired=True)
    (data / "cityscapes").symlink_to("p2p")  # a Cityscapes-named data folder: Langevin step 50
    for split, count in (("trainA", 4), ("trainB", 4), ("valA", 2), ("valB", 2)):
        write_images(data / "cg" / split, count, 64, rng)
    # two steps per epoch for the baseline runs (OMGD drops each unaligned folder's last file)
    write_images(data / "p2p_small" / "train", 4, 64, rng, paired=True)
    shutil.copytree(data / "p2p" / "val", data / "p2p_small" / "val")
    for split, count in (("trainA", 3), ("trainB", 3), ("valA", 2), ("valB", 2)):
        write_images(data / "cg_small" / split, count, 64, rng)
    stat = data / "real_stat.npz"  # read at start-up; never used (FID is skipped or killed)
    np.savez(stat, mu=np.zeros(2048), sigma=np.zeros((2048, 2048)))

    import torchvision
    torch.manual_seed(0)
    vgg_home, full_home = root / "torch_vgg", root / "torch_full"
    vgg = vgg_home / "hub" / "checkpoints" / omgd_compat.VGG16.file
    vgg.parent.mkdir(parents=True)
    torch.save(torchvision.models.vgg16().state_dict(), vgg)
    (full_home / "hub" / "checkpoints").mkdir(parents=True)
    os.link(vgg, full_home / "hub" / "checkpoints" / vgg.name)
    inception = torchvision.models.inception_v3(num_classes=1008, aux_logits=False,
                                                init_weights=False)
    torch.save(inception.state_dict(), full_home / "hub" / "checkpoints" / omgd_compat.INCEPTION.file)

    stubs = root / "stubs"  # pristine OMGD imports wandb unconditionally
    stubs.mkdir()
    (stubs / "wandb.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.update(TORCH_HOME=str(vgg_home), http_proxy=OFFLINE, https_proxy=OFFLINE,
               HTTP_PROXY=OFFLINE, HTTPS_PROXY=OFFLINE, PYTHONUNBUFFERED="1")
    yield types.SimpleNamespace(root=root, checkout=checkout, pristine=pristine, data=data,
                                stat=str(stat), env=env, full_home=str(full_home), stubs=str(stubs))
    for home in (vgg_home, full_home):  # 0.6 GB of stand-in weights
        shutil.rmtree(home, ignore_errors=True)


def distill(omgd, name, args, checkout=None, env=None, script=None, paper_script=None,
            stop_after_rows=None) -> Run:
    """Run OMGD into ``<root>/<name>``: ``distill.py``, ``python -c script``, or a paper script
    with the flags appended as the adapter documents (``bash -c "$(cat SCRIPT) FLAGS"``)."""
    log_dir = omgd.root / name
    args = ["--log_dir", str(log_dir), *args]
    if paper_script:
        text = (omgd.checkout / paper_script).read_text().rstrip("\n")
        cmd = ["bash", "-c", f"{text} {shlex.join(args)}"]
    else:
        cmd = [sys.executable, *(["-c", script] if script else ["distill.py"]), *args]
    with open(omgd.root / f"{name}.out", "w+") as out:
        proc = subprocess.Popen(cmd, cwd=checkout or omgd.checkout, env=env or omgd.env,
                                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{name}: OMGD ran for over 600 s")
            log = log_dir / "log.txt"
            if stop_after_rows and log.exists() and \
                    log.read_text().count("(epoch:") >= stop_after_rows:
                proc.kill()  # the rest would be evaluation (FID), which we do not compare
            time.sleep(0.2)
        proc.wait()
        out.seek(0)
        output = out.read()
    if not stop_after_rows:
        assert proc.returncode == 0, f"{name} failed:\n{output[-6000:]}"
    return Run(log_dir, output)


@pytest.fixture(scope="module")
def p2p_plain(omgd):
    """multiteacher without --vem and with FID on, but the Inception weights are missing."""
    return distill(omgd, "p2p_plain", ["--dataroot", str(omgd.data / "p2p"),
                                       "--real_stat_path", omgd.stat, *P2P])


@pytest.fixture(scope="module")
def p2p_vem(omgd):
    """The paper's script (its --lambda_CD 1e2, the rest shrunk) with --vem appended."""
    return distill(omgd, "p2p_vem", ["--dataroot", str(omgd.data / "p2p"), *P2P, "--no_fid",
                                     "--vem", "--ebm_width", "8", *TINY_EBM],
                   paper_script="scripts/resnet_pix2pix/edges2shoes/distill.sh")


@pytest.fixture(scope="module")
def cg_plain(omgd):
    return distill(omgd, "cg_plain", ["--dataroot", str(omgd.data / "cg"), *CG,
                                      "--real_stat_A_path", omgd.stat,
                                      "--real_stat_B_path", omgd.stat])


@pytest.fixture(scope="module")
def cg_vem(omgd):
    """The paper's script (shrunk) with --vem appended, writing a run record."""
    return distill(omgd, "cg_vem", ["--dataroot", str(omgd.data / "cg"), *CG, "--vem", *TINY_EBM,
                                    "--vem_record", "--vem_record_every", "2",
                                    "--real_stat_A_path", omgd.stat,
                                    "--real_stat_B_path", omgd.stat],
                   paper_script="scripts/cycle_gan/horse2zebra/distill.sh")


MI_NAMES = {"S_mi", "S_energy_gap", "S_ebm_loss", "S_mi_skipped"}


# -- tests --------------------------------------------------------------------------------------
def test_multiteacher_without_vem_is_upstream(omgd, p2p_plain):
    """Same losses as the unpatched clone; no MI terms; offline FID is skipped, not fatal."""
    env = dict(omgd.env, TORCH_HOME=omgd.full_home,
               PYTHONPATH=os.pathsep.join(filter(None, [omgd.stubs, omgd.env.get("PYTHONPATH")])))
    pristine = distill(omgd, "p2p_pristine", ["--dataroot", str(omgd.data / "p2p"),
                                              "--real_stat_path", omgd.stat, *P2P],
                       checkout=omgd.pristine, env=env, stop_after_rows=len(p2p_plain.rows))
    assert len(p2p_plain.rows) == 3
    assert [losses for _, losses in pristine.rows] == [losses for _, losses in p2p_plain.rows]
    assert not any(name.startswith("S_") for _, losses in p2p_plain.rows for name in losses)
    assert p2p_plain.profile() == pristine.profile()
    inception = os.path.join(str(omgd.root / "torch_vgg"), "hub", "checkpoints",
                             omgd_compat.INCEPTION.file)
    assert "could not be downloaded" in p2p_plain.log and inception in p2p_plain.log
    assert "fid_student: nan" in p2p_plain.log
    assert (p2p_plain.dir / "checkpoints" / "latest_net_G_student.pth").is_file()
    assert not list((p2p_plain.dir / "checkpoints").glob("*vem*"))


def test_multiteacher_vem(omgd, p2p_plain, p2p_vem):
    """MI terms in each step's log (log.txt, TensorBoard); estimator saved apart; same student."""
    assert len(p2p_vem.rows) == 3
    for _, losses in p2p_vem.rows:
        assert MI_NAMES <= losses.keys() and "G_CD" in losses
        assert set(losses) - MI_NAMES - {"G_CD"} == set(p2p_plain.rows[0][1])
        assert losses["S_mi_skipped"] == 0
    assert b"S_loss/S_mi" in p2p_vem.events() and b"S_loss/S_energy_gap" in p2p_vem.events()
    assert b"S_loss/S_mi" not in p2p_plain.events()
    ckpt = p2p_vem.dir / "checkpoints"
    for epoch in ("latest", "1"):
        state = load(ckpt / f"{epoch}_vem.pth")
        assert state["step"] == 3 and state["estimator"]["name"] == "vem"
        assert state["estimator"]["state"]["_extra_state"]["config"]["width"] == 8
    # its Adam is not among OMGD's optimisers (so --restore_O_path works either way)
    assert sorted(p.name for p in ckpt.glob("latest_optim-*")) == \
        sorted(p.name for p in (p2p_plain.dir / "checkpoints").glob("latest_optim-*"))
    # the student is the same network: same parameters, same OMGD profile
    assert shapes(ckpt / "latest_net_G_student.pth") == \
        shapes(p2p_plain.dir / "checkpoints" / "latest_net_G_student.pth")
    assert p2p_vem.profile() == p2p_plain.profile()
    assert (p2p_vem.dir / "netG_student.txt").read_text() == \
        (p2p_plain.dir / "netG_student.txt").read_text()
    print("\nmultiteacher s/iter without / with --vem: %.2f / %.2f"
          % (p2p_plain.seconds(), p2p_vem.seconds()))


def test_multiteacher_resume(omgd, p2p_vem):
    """--restore_vem_path restores the estimator exactly; training continues from it."""
    ck = p2p_vem.dir / "checkpoints"
    resumed = distill(omgd, "p2p_resume", [
        "--dataroot", str(omgd.data / "cityscapes"), *P2P, "--no_fid", "--lambda_CD", "1e2",
        "--vem", "--ebm_width", "8", *TINY_EBM,
        "--restore_student_G_path", str(ck / "latest_net_G_student.pth"),
        "--restore_teacher_G_w_path", str(ck / "latest_netG_teacher_w.pth"),
        "--restore_teacher_G_d_path", str(ck / "latest_net_G_teacher_d.pth"),
        "--restore_D_path", str(ck / "latest_net_D_teacher.pth"),
        "--restore_A_path", str(ck / "latest_net_A"), "--restore_O_path", str(ck / "latest_optim"),
        "--restore_vem_path", str(ck / "latest_vem.pth"), "--epoch_base", "2", "--iter_base", "3"],
        script=RESUME)
    saved = load(ck / "latest_vem.pth")
    assert state_equal(load(resumed.dir / "restored_vem.pth"), saved)
    assert [info["iters"] for info, _ in resumed.rows] == [4, 5, 6]
    assert all(MI_NAMES <= losses.keys() for _, losses in resumed.rows)
    after = load(resumed.dir / "checkpoints" / "latest_vem.pth")
    assert after["step"] == saved["step"] + 3
    assert not state_equal(after["estimator"]["state"], saved["estimator"]["state"])
    # the paper's Langevin step per dataset, said in the output
    assert "Langevin step size 50 (the paper's value for Cityscapes" in resumed.output
    assert "Langevin step size 100 (the paper's default" in p2p_vem.output


def test_cycleganbest_vem(omgd, cg_plain, cg_vem):
    """t = the teacher's output in the student phase; terms reach log.txt and TensorBoard."""
    plain, vem = cg_plain.student_rows(), cg_vem.student_rows()
    assert len(plain) == len(vem) == 3  # trainA's last file is dropped by OMGD
    assert not any(name.startswith("S_") for _, losses in cg_plain.rows for name in losses)
    for losses in vem:
        assert MI_NAMES <= losses.keys() and set(losses) - MI_NAMES == set(plain[0])
    # teacher steps are untouched: no MI term there
    assert all(not MI_NAMES & losses.keys() for _, losses in cg_vem.rows[:3])
    assert b"S_loss/S_mi" in cg_vem.events() and b"S_loss/S_mi" not in cg_plain.events()
    student = cg_vem.dir / "checkpoints" / "student"
    for epoch in ("lastet", "1"):  # OMGD's own spelling of its "latest" student checkpoint
        state = load(student / f"{epoch}_vem.pth")
        assert state["step"] == 3
        assert state["estimator"]["state"]["_extra_state"]["config"]["width"] == 16
    assert shapes(student / "1_net_G.pth") == \
        shapes(cg_plain.dir / "checkpoints" / "student" / "1_net_G.pth")
    assert cg_vem.profile() == cg_plain.profile()
    assert (cg_vem.dir / "checkpoints" / "best_net_G_teacher_A.pth").is_file()  # --no_fid
    print("\ncycleganbest student s/iter without / with --vem: %.2f / %.2f"
          % (cg_plain.seconds(), cg_vem.seconds()))
    # the run record of the student phase: unpaired, so no target and no held-out PSNR/SSIM
    from vem_plugins.commands import report
    run = report.load(cg_vem.dir)
    assert not run.problems, run.problems
    assert [e["step"] for e in run.scalars] == [1, 2, 3] and run.info["vem"] is True
    assert all(MI_NAMES == {"S_" + k for k in e["vem"]}
               for e in run.scalars)
    assert [(e["step"], sorted(e["images"])) for e in run.samples] == \
        [(s, ["input", "langevin", "student", "teacher"]) for s in (1, 2)]
    assert run.metrics and not any(k.startswith("heldout") for e in run.metrics
                                   for k in e["values"])
    assert run.models["student"]["params"] > 0 and run.models["estimator"]["params"] > 0


def test_cycleganbest_resume(omgd, cg_vem):
    teacher, student = (cg_vem.dir / "checkpoints" / d for d in ("teacher", "student"))
    resumed = distill(omgd, "cg_resume", [
        "--dataroot", str(omgd.data / "cg"), *CG, "--vem", *TINY_EBM,
        "--real_stat_A_path", omgd.stat, "--real_stat_B_path", omgd.stat,
        "--restore_teacher_G_A_path", str(teacher / "1_net_G_teacher_A.pth"),
        "--restore_teacher_G_B_path", str(teacher / "1_net_G_teacher_B.pth"),
        "--restore_student_G_path", str(student / "1_net_G.pth"),
        "--restore_A_path", str(student / "1_net_A"), "--restore_O_path", str(teacher / "1_optim"),
        "--restore_vem_path", str(student / "1_vem.pth"), "--epoch_base", "2", "--iter_base", "3"],
        script=RESUME)
    saved = load(student / "1_vem.pth")
    assert state_equal(load(resumed.dir / "restored_vem.pth"), saved)
    assert len(resumed.student_rows()) == 3
    assert all(MI_NAMES <= losses.keys() for losses in resumed.student_rows())
    after = load(resumed.dir / "checkpoints" / "student" / "lastet_vem.pth")
    assert after["step"] == saved["step"] + 3
    assert not state_equal(after["estimator"]["state"], saved["estimator"]["state"])


@pytest.mark.parametrize("mi, names", [("vid", {"S_vid_nll"}),
                                       ("crd", {"S_crd_loss", "S_crd_estimate"})])
@pytest.mark.parametrize("distiller", ["multiteacher", "cycleganbest"])
def test_baselines(omgd, distiller, mi, names):
    """--mi vid / --mi crd go through the same hook, logging and checkpoint."""
    if distiller == "multiteacher":
        args = ["--dataroot", str(omgd.data / "p2p_small"), *P2P, "--no_fid", "--ebm_width", "8"]
        ckpt = Path("checkpoints") / "latest_vem.pth"
    else:
        args = ["--dataroot", str(omgd.data / "cg_small"), *CG, "--real_stat_A_path", omgd.stat,
                "--real_stat_B_path", omgd.stat]
        ckpt = Path("checkpoints") / "student" / "lastet_vem.pth"
    run = distill(omgd, f"{distiller}_{mi}", [*args, "--mi", mi])
    rows = run.student_rows()
    assert len(rows) == 2
    for losses in rows:
        assert {"S_mi", "S_mi_skipped"} | names <= losses.keys()
        assert not {"S_energy_gap", "S_ebm_loss"} & losses.keys()
    state = load(run.dir / ckpt)
    assert state["estimator"]["name"] == mi and state["step"] == 2


def test_missing_vgg_weights_are_named(omgd):
    """OMGD's training loss needs ImageNet VGG16: offline, the error says which file goes where."""
    home = omgd.root / "torch_empty"
    proc = subprocess.run([sys.executable, "-c", "import utils.vgg; utils.vgg.Vgg16()"],
                          cwd=omgd.checkout, env=dict(omgd.env, TORCH_HOME=str(home)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "RuntimeError" in proc.stderr and "vgg16-397923af.pth" in proc.stderr
    assert str(home / "hub" / "checkpoints" / "vgg16-397923af.pth") in proc.stderr
