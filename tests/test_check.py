"""``vem-plugins check``, through the console script, on a throwaway upstream and an adapter
package made the author's way: new-adapter, install, insert lines, refresh, declare the smoke
recipe. Variants of that adapter break one thing each."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import toy_upstream as toy
from toy_upstream import cli

VARIANTS = '''\
import dataclasses

from vem_plugins import hookimpl
from vem_toy_gan.adapter import ADAPTER


@hookimpl
def register_adapters(register):
    register(dataclasses.replace(ADAPTER, name="toy-moved",
                                 file_hashes={p: "0" * 64 for p in ADAPTER.file_hashes}))
    register(dataclasses.replace(ADAPTER, name="toy-needs",
                                 requirements=("numpy", "surely-not-installed-vem-xyz")))
    register(dataclasses.replace(ADAPTER, name="toy-nosmoke", smoke=None))
    wrong_log = dataclasses.replace(ADAPTER.smoke, log="{out}/loss_log.txt")
    register(dataclasses.replace(ADAPTER, name="toy-nolog", smoke=wrong_log))
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    repo, pin = toy.make_upstream(root)
    pkg = toy.scaffold(root, str(repo), pin)
    env = toy.env_with(pkg, XDG_STATE_HOME=root / "state")
    checkout = root / "checkout"
    assert cli("install", "toy-gan", "--dir", checkout, env=env).returncode == 0
    toy.insert(checkout)
    assert cli("refresh", "toy-gan", "--dir", checkout, env=env).returncode == 0
    toy.set_smoke(pkg)
    (pkg / "variants.py").write_text(VARIANTS)
    entry_points = next(pkg.glob("*.dist-info")) / "entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "variants = variants\n")
    return dict(root=root, env=env)


def check(world, *args):
    proc = cli("check", *args, env=world["env"], cwd=world["root"])
    return proc.returncode, proc.stdout, proc.stderr


def outcome(stdout, name) -> str:
    """The line a check printed for ``name`` (e.g. ``smoke --vem``)."""
    found = re.findall(rf"^(ok  |FAIL|skip)  {re.escape(name)}: (.*)$", stdout, re.M)
    assert len(found) == 1, stdout
    return " ".join(found[0])


def test_a_good_adapter_passes_every_check(world):
    rc, out, err = check(world, "toy-gan")
    assert rc == 0, out + err
    assert outcome(out, "patches").startswith("ok   1 patch(es) apply to")
    assert outcome(out, "requirements") == "ok   none declared"
    vem = outcome(out, "smoke --vem")
    assert re.match(r"ok   ebm_loss x3, energy_gap x3, mi_skipped x3 logged; the estimator "
                    r"checkpoint latest_vem\.pth \(step 3\) restores exactly", vem), vem
    assert outcome(out, "smoke without --vem").startswith(
        "ok   no MI terms logged, no estimator checkpoint")
    assert out.rstrip().endswith("toy-gan: all 4 checks passed")
    work = Path(re.search(r"^checking toy-gan \(.*\) in (\S+)$", out, re.M)[1])
    assert not work.exists()  # nothing left behind when everything passed


def test_patches_that_no_longer_fit_the_pin_fail_and_stop_the_smoke(world):
    rc, out, _ = check(world, "toy-moved")
    assert rc == 1
    assert outcome(out, "patches").startswith("FAIL") and "records" in outcome(out, "patches")
    assert outcome(out, "smoke") == "skip not run: there is no checkout"
    kept = re.search(r"check\(s\) failed \(patches\); files kept in (\S+)$", out, re.M)
    assert kept and Path(kept[1]).is_dir()


def test_a_missing_requirement_is_named(world):
    rc, out, _ = check(world, "toy-needs", "--no-smoke")
    assert rc == 1
    line = outcome(out, "requirements")
    assert line.startswith("FAIL") and "surely-not-installed-vem-xyz: not installed" in line
    assert outcome(out, "patches").startswith("ok") and "smoke" not in out  # --no-smoke


def test_an_adapter_without_a_smoke_recipe_fails(world):
    rc, out, _ = check(world, "toy-nosmoke")
    assert rc == 1
    assert outcome(out, "smoke") == "FAIL the adapter declares no smoke recipe (Adapter.smoke)"


def test_a_smoke_run_whose_log_lacks_the_mi_terms_fails_with_its_output(world, tmp_path):
    rc, out, _ = check(world, "toy-nolog", "--keep", tmp_path / "work")
    assert rc == 1
    assert outcome(out, "smoke --vem").startswith("FAIL no log at ")
    assert "--- command: " in out and "train.py" in out
    assert outcome(out, "smoke without --vem").startswith("ok")
    assert (tmp_path / "work" / "smoke" / "vem" / "log.txt").is_file()  # --keep kept it


def test_unknown_adapter(world):
    rc, _, err = check(world, "toy-gna")
    assert rc == 1 and "unknown adapter 'toy-gna'" in err and "toy-gan" in err
