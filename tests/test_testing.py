"""The test harness for adapter authors (:mod:`vem_plugins.authoring.testing`, :mod:`vem_plugins.authoring.smoke`):
datasets, the smoke recipe with and without vem-plugins' flags, and what its assertions catch.

The fixtures are used here the way an adapter's own tests use them, on a throwaway upstream
whose adapter was made the author's way (new-adapter, insert lines, refresh).
"""
from __future__ import annotations

import dataclasses
import importlib
import sys

import numpy as np
import pytest
import torch
import toy_upstream as toy
from PIL import Image
from toy_upstream import cli

from vem_plugins.authoring import smoke
from vem_plugins.authoring.adapter import Adapter, Smoke
from vem_plugins.method.options import defaults
from vem_plugins.method.runtime import Runtime
from vem_plugins.authoring.testing import make_dataset, pythonpath, stand_in_weights
from vem_plugins.authoring.testing import vem_checkout, vem_dataset, vem_smoke  # noqa: F401 - fixtures


# --- datasets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, folders, shape", [
    ("aligned", ["test", "train", "val"], (16, 32, 3)),
    ("unaligned", ["testA", "testB", "trainA", "trainB", "valA", "valB"], (16, 16, 3)),
    ("unconditional", ["train"], (16, 16, 3)),
])
def test_datasets_have_upstream_layouts_and_are_deterministic(tmp_path, kind, folders, shape):
    root = make_dataset(tmp_path / "a", kind, size=16, count=3)
    assert sorted(p.name for p in root.iterdir()) == folders
    for folder in folders:
        files = sorted((root / folder).iterdir())
        assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png"]
        assert np.asarray(Image.open(files[0])).shape == shape
    again = make_dataset(tmp_path / "b", kind, size=16, count=3)
    other = make_dataset(tmp_path / "c", kind, size=16, count=3, seed=1)
    first = f"{folders[0]}/0000.png"
    assert (root / first).read_bytes() == (again / first).read_bytes()
    assert (root / first).read_bytes() != (other / first).read_bytes()
    with pytest.raises(ValueError, match="unknown dataset kind"):
        make_dataset(tmp_path / "d", "paired")


# --- the command without vem-plugins' flags -----------------------------------------------------

def test_vem_flags_are_taken_out_of_argv_and_shell_scripts():
    recipe = Smoke(dataset="aligned", command=(
        "{python}", "train.py", "--dataroot", "{data}", "--vem", "--ebm_width", "8",
        "--mi=vid", "--lambda_mi", "0.2", "--name", "x",
        "bash -c 'set -e; {python} a.py --mi_target teacher --ebm_range none --out {out}'"))
    full = smoke.command(recipe, "/d", "/o", python="py")
    plain = smoke.command(recipe, "/d", "/o", vem=False, python="py")
    assert plain == ["py", "train.py", "--dataroot", "/d", "--name", "x",
                     "bash -c 'set -e; py a.py --out /o'"]
    kept, flags = smoke._split(full, smoke._flags())
    assert kept == plain
    assert flags == ["--vem", "--ebm_width", "8", "--mi=vid", "--lambda_mi", "0.2",
                     "--mi_target", "teacher", "--ebm_range", "none"]
    opt = smoke.vem_options(flags)
    assert (opt.vem, opt.ebm_width, opt.mi, opt.lambda_mi, opt.ebm_range) == \
        (True, 8, "vid", 0.2, None)
    assert smoke.mi_names(opt) == ["mi_skipped", "vid_nll"]
    assert smoke.mi_names(smoke.vem_options(["--vem"])) == ["ebm_loss", "energy_gap", "mi_skipped"]


# --- what the assertions catch ------------------------------------------------------------------

def fake_run(tmp_path, log: str, flags=("--vem",), **files) -> smoke.SmokeRun:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.txt").write_text(log)
    for name, obj in files.items():
        torch.save(obj, out / name)
    return smoke.SmokeRun("toy", ["train.py"], list(flags), True, 0, "line 1\nline 2\n", out,
                          str(out / "log*.txt"), 1.0, 60)


def runtime_state(steps=2, **flags):
    opt = defaults()
    opt.vem, opt.ebm_width, opt.ebm_blocks, opt.ebm_steps = True, 4, 1, 1
    vars(opt).update(flags)
    rt = Runtime(opt, "cpu")
    for _ in range(steps):
        s = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
        rt.update(student=s, teacher=s.detach().flip(0))
        rt.student_loss(student=s, teacher=s.detach().flip(0)).backward()
    return rt.state_dict()


def test_values_are_found_under_the_names_adapters_give_them(tmp_path):
    run = fake_run(tmp_path, "S_energy_gap: 0.5 {'mi_A_energy_gap': -1e-3, 'ebm_loss': 2}\n"
                             "MI_energy_gap=nan energy_gap_max: 9 xenergy_gap: 7\n")
    assert run.values("energy_gap")[:2] == [0.5, -0.001] and np.isnan(run.values("energy_gap")[2])
    assert len(run.values("energy_gap")) == 3
    with pytest.raises(smoke.SmokeFailure, match="non-finite 'energy_gap'"):
        run.assert_mi_logged()
    run = fake_run(tmp_path, "G_L1: 0.3 G_mi: 0.1\n")
    with pytest.raises(smoke.SmokeFailure, match="no 'ebm_loss' in the log .*\n--- command: "
                                                 "train.py\n--- last output:\nline 1\nline 2"):
        run.assert_mi_logged()
    with pytest.raises(smoke.SmokeFailure, match="logged although"):
        fake_run(tmp_path, "G_energy_gap: 0.1\n").assert_no_mi()


def test_the_checkpoint_round_trip_finds_states_and_catches_bad_ones(tmp_path):
    flags = ["--vem", "--ebm_width", "4", "--ebm_blocks", "1"]
    state = runtime_state()
    run = fake_run(tmp_path, "", flags, **{"1_vem.pth": state,
                                          "ckpt.pt": {"G": {"w": torch.ones(1)}, "vem": state}})
    assert set(run.states()) == {"1_vem.pth", "ckpt.pt:vem"}
    assert run.assert_checkpoint_roundtrip()[1] == 2
    # a state saved by an estimator of another width does not load into the recipe's runtime
    wide = fake_run(tmp_path / "w", "", flags, **{"vem.pth": runtime_state(ebm_width=8)})
    with pytest.raises(smoke.SmokeFailure, match="does not load into a Runtime built from"):
        wide.assert_checkpoint_roundtrip()
    with pytest.raises(smoke.SmokeFailure, match="at step 0"):
        fake_run(tmp_path / "z", "", flags, **{"vem.pth": {**state, "step": 0}}) \
            .assert_checkpoint_roundtrip()
    with pytest.raises(smoke.SmokeFailure, match="no vem-plugins estimator checkpoint"):
        fake_run(tmp_path / "n", "", flags, **{"net_G.pth": {"w": torch.ones(1)}}) \
            .assert_checkpoint_roundtrip()
    with pytest.raises(smoke.SmokeFailure, match="estimator checkpoint.*written although"):
        run.assert_no_mi()


def test_a_run_past_its_timeout_is_killed_with_its_children(tmp_path):
    adapter = Adapter("slow", "u", "0" * 40, smoke=Smoke(
        dataset="unconditional", size=8, count=1,
        command=("bash", "-c", "sleep 60 & echo started; wait")))
    run = smoke.run(adapter, tmp_path, tmp_path / "work", timeout=2)
    assert run.returncode is None and run.seconds < 30 and "started" in run.output
    with pytest.raises(smoke.SmokeFailure, match="still running after 2 s"):
        run.assert_ok()


def test_stand_in_weights_are_loadable_state_dicts(tmp_path):
    home = stand_in_weights(tmp_path, **{"tiny.pth": torch.nn.Linear(2, 3)})
    state = torch.load(home / "hub" / "checkpoints" / "tiny.pth", weights_only=True)
    assert state["weight"].shape == (3, 2)


# --- the fixtures on a real (throwaway) upstream ------------------------------------------------

@pytest.fixture(scope="module")
def toy_adapter(tmp_path_factory):
    """The toy upstream's adapter, made the author's way, imported as its tests import it."""
    root = tmp_path_factory.mktemp("harness")
    repo, pin = toy.make_upstream(root)
    pkg = toy.scaffold(root, str(repo), pin)
    env = toy.env_with(pkg, XDG_STATE_HOME=root / "state")
    checkout = root / "checkout"
    assert cli("install", "toy-gan", "--dir", checkout, env=env).returncode == 0
    toy.insert(checkout)
    assert cli("refresh", "toy-gan", "--dir", checkout, env=env).returncode == 0
    toy.set_smoke(pkg)
    sys.path.insert(0, str(pkg))
    try:
        module = importlib.import_module("vem_toy_gan.adapter")
    finally:
        sys.path.remove(str(pkg))
    yield module.ADAPTER, pythonpath(pkg)
    for name in [m for m in sys.modules if m.startswith("vem_toy_gan")]:
        del sys.modules[name]


def test_smoke_with_vem_logs_the_terms_and_saves_a_restorable_estimator(vem_smoke, toy_adapter):
    adapter, env = toy_adapter
    run = vem_smoke(adapter, env=env)
    run.assert_ok()
    assert run.assert_mi_logged() == {"ebm_loss": 3, "energy_gap": 3, "mi_skipped": 3}
    assert run.assert_checkpoint_roundtrip() == ("latest_vem.pth", 3)
    assert vem_smoke(adapter, env=env) is run  # cached for the session


def test_smoke_without_vem_is_upstream(vem_smoke, vem_checkout, toy_adapter):
    adapter, env = toy_adapter
    plain = vem_smoke(adapter, vem=False, env=env)
    plain.assert_ok()
    plain.assert_no_mi()
    assert "--vem" not in plain.argv and "--ebm_width" not in plain.argv
    pristine = vem_smoke(adapter, vem=False, env=env, pristine=True)
    pristine.assert_ok()
    assert plain.values("G_L1") == pristine.values("G_L1") and len(plain.values("G_L1")) == 3
    assert not (vem_checkout(adapter, pristine=True) / "options.py").read_text().count("glue")
    with pytest.raises(ValueError, match="pass vem=False"):
        vem_smoke(adapter, pristine=True)


def test_a_smoke_recipe_that_fails_shows_upstreams_output(vem_smoke, toy_adapter):
    adapter, env = toy_adapter
    broken = dataclasses.replace(adapter, smoke=dataclasses.replace(
        adapter.smoke, command=(*adapter.smoke.command, "--no_such_flag")))
    run = vem_smoke(broken, env=env)
    assert run.returncode == 2
    with pytest.raises(smoke.SmokeFailure, match="(?s)exit status 2.*unrecognized arguments: "
                                                 "--no_such_flag"):
        run.assert_ok()


def test_an_unreachable_upstream_skips(vem_checkout):
    adapter = Adapter("gone", "https://127.0.0.1:9/gone.git", "0" * 40)
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        vem_checkout(adapter)
