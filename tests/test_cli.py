"""The ``vem-plugins`` console script, run as a subprocess the way users run it.

Test adapters reach the command the way third-party adapters do: a module registering them
through the ``vem_plugins`` entry-point group, from a ``*.dist-info`` folder on PYTHONPATH.
"""
from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vem_plugins
from helpers import git

SCRIPT = Path(sys.executable).with_name("vem-plugins")
TRAIN = "".join(f"line {i}\n" for i in range(1, 6))
VEM_PATCH = ("diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
             "@@ -1,0 +2,1 @@\n+import toy_vem  # vem\n")
BAD_PATCH = "--- a/train.py\n+++ b/train.py\n@@ -99,0 +100,1 @@\n+late()\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An upstream repository, its bundle, and a plugin package registering test adapters."""
    root = tmp_path_factory.mktemp("cli")
    repo = root / "upstream"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin")
    pin = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "bundle", "create", str(root / "toy.bundle"), "--all")
    plugin = root / "plugin"
    (plugin / "toy_patches").mkdir(parents=True)
    (plugin / "toy_patches" / "01-vem.patch").write_text(VEM_PATCH)
    (plugin / "toy_patches" / "01-bad.patch").write_text(BAD_PATCH)
    (plugin / "toy_patches" / "toy_vem.py").write_text("X = 1\n")
    hashes = {"train.py": hashlib.sha256(TRAIN.encode()).hexdigest()}
    (plugin / "toyplugin.py").write_text(textwrap.dedent(f"""\
        from pathlib import Path
        from vem_plugins import hookimpl
        from vem_plugins.authoring.adapter import Adapter, Tryout

        P = Path(__file__).parent / "toy_patches"

        @hookimpl
        def register_adapters(register):
            register(Adapter(name="toy", url={str(repo)!r}, commit={pin!r},
                             patches=(P / "01-vem.patch",), file_hashes={hashes!r},
                             added_files={{"toy_vem.py": P / "toy_vem.py"}}))
            register(Adapter(name="toy-offline", url="https://127.0.0.1:9/toy.git", commit={pin!r}))
            register(Adapter(name="toy-slow", url="ssh://slowhost/toy.git", commit={pin!r}))
            register(Adapter(name="toy-nopin", url={str(repo)!r}, commit="1" * 40))
            register(Adapter(name="toy-broken", url={str(repo)!r}, commit={pin!r},
                             patches=(P / "01-bad.patch",), file_hashes={hashes!r}))
            register(Adapter(name="toy-needs", url={str(repo)!r}, commit={pin!r},
                             requirements=("numpy", "surely-not-installed-vem-xyz>=1"),
                             tryout=Tryout(command=("{{python}}", "-c", "open('trained', 'w')"))))
        """))
    info = plugin / "toyplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vem_plugins]\ntoy = toyplugin\n")
    return {"root": root, "repo": repo, "pin": pin, "plugin": plugin}


@pytest.fixture
def run(world, tmp_path):
    """Run ``vem-plugins ARGS`` in a fresh working directory with the test plugin visible."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(world["plugin"]),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("VEM_PLUGINS_DISABLE_AUTOLOAD", None)

    def run(*args, check=True):
        assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}"
        proc = subprocess.run([str(SCRIPT), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc
    run.work, run.env = work, env
    return run


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def test_list_shows_builtin_and_entry_point_adapters(run, world):
    rows = json.loads(run("list", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert {"omgd", "gan-compression", "cat", "gcc", "cagc", "toy"} <= set(by_name)
    assert by_name["toy"] == {"name": "toy", "url": str(world["repo"]), "commit": world["pin"],
                              "dir": None, "state": "not installed"}
    run("install", "toy", "--dir", "elsewhere/toy")
    by_name = {r["name"]: r for r in json.loads(run("list", "--json").stdout)}
    assert by_name["toy"]["dir"] == str(run.work / "elsewhere" / "toy")
    assert by_name["toy"]["state"] == "installed"
    table = run("list").stdout.splitlines()
    assert table[0].split() == ["NAME", "UPSTREAM", "PIN", "STATE", "WHERE"]
    assert any(line.split()[:3] == ["toy", str(world["repo"]), world["pin"][:7]]
               and line.endswith("elsewhere/toy") for line in table)


def test_install_status_diff_uninstall_round_trip(run, world):
    out = run("install", "toy")
    assert out.stdout == (f"installed toy at {world['pin'][:7]} in third_party/toy "
                          "(1 patch applied)\n")
    assert out.stderr == ""
    dest = run.work / "third_party" / "toy"
    assert (dest / "train.py").read_text() == "line 1\nimport toy_vem  # vem\n" + TRAIN[7:]
    assert "already installed in third_party/toy and unmodified; nothing to do" \
        in run("install", "toy").stdout
    status = run("status", "toy").stdout
    assert status.startswith("toy: installed\n  checkout   third_party/toy\n")
    assert "  patches    01-vem.patch: applied\n  added      toy_vem.py\n" in status
    assert "toy: installed" in run("status").stdout
    diff = run("diff", "toy").stdout
    assert "+import toy_vem  # vem" in diff and "+++ b/toy_vem.py" in diff

    (dest / "train.py").write_text((dest / "train.py").read_text() + "mine()\n")
    (dest / "notes.txt").write_text("mine\n")
    status = run("status", "toy").stdout
    assert "toy: edited" in status and "  edited     train.py (modified)" in status
    assert "  untracked  notes.txt" in status
    refused = run("uninstall", "toy", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    assert "mine()" in (dest / "train.py").read_text()
    forced = run("uninstall", "toy", "--force").stdout
    backup = next(run.work.glob("third_party/toy.user-edits-*.patch"))
    assert f"saved to third_party/{backup.name} (replay them with: git -C third_party/toy apply " \
           f"{backup})" in forced
    assert "+mine()" in backup.read_text()
    assert git(dest, "status", "--porcelain") == "?? notes.txt\n"
    assert run("status", "toy").stdout.startswith("toy: pristine")
    assert "removed" in run("uninstall", "toy", "--remove", "--force").stdout
    assert not dest.exists()
    assert run("status", "toy").stdout.startswith("toy: not installed")


def test_offline_sources_and_status_by_dir(run, world):
    out = run("install", "toy-offline", "--dir", "mirror-copy",
              "--from", str(world["root"] / "toy.bundle"))
    assert "installed toy-offline" in out.stdout
    assert run("status", "--dir", "mirror-copy").stdout.startswith("toy-offline: installed")
    env = {**run.env, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{world['repo']}.insteadOf",
           "GIT_CONFIG_VALUE_0": "https://127.0.0.1:9/toy.git"}
    proc = subprocess.run([str(SCRIPT), "install", "toy-offline"], cwd=run.work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args, message", [
    (["install", "toyy"], "unknown adapter 'toyy'; did you mean toy"),
    (["install", "toy-offline"], "cannot clone https://127.0.0.1:9/toy.git (.*); if it is "
                                 "unreachable, pass --from .* url.<mirror>.insteadOf"),
    (["install", "toy-nopin"], "the pinned commit 1111111111111111111111111111111111111111 of "
                               "toy-nopin is not in"),
    (["install", "toy-broken"], r"patch 01-bad.patch does not apply: train.py, hunk "
                                r"@@ -99,0 \+100,1 @@ lies past the file's end"),
    (["install", "toy", "--dir", "occupied"], "occupied exists and is not a checkout of toy"),
    (["uninstall", "toy", "--dir", "occupied", "--remove", "--force"], "is not a checkout of toy"),
    (["diff", "toy"], "toy is not installed in .*third_party/toy"),
])
def test_errors_are_one_line_and_leave_the_disk_as_it_was(run, args, message):
    (run.work / "occupied").mkdir()
    (run.work / "occupied" / "data.txt").write_text("precious\n")
    before = tree(run.work)
    proc = run(*args, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vem-plugins: error: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert tree(run.work) == before


def test_missing_requirements_stop_try_before_any_work_and_warn_at_install(run):
    needs = ("toy-needs needs surely-not-installed-vem-xyz>=1, not installed in this Python "
             "environment; pip install 'surely-not-installed-vem-xyz>=1'")
    proc = run("try", "toy-needs", check=False)
    assert proc.returncode == 1 and proc.stderr == f"vem-plugins: error: {needs}\n"
    assert list(run.work.iterdir()) == []  # no checkout, no dataset, no training started
    proc = run("install", "toy-needs")  # the source alone is of use: a warning, and the work
    assert proc.stderr == f"vem-plugins: warning: {needs}\n"
    assert proc.stdout.startswith("installed toy-needs")


def test_a_built_in_missing_its_requirements_names_the_upstream_extra(monkeypatch, capsys):
    from vem_plugins.commands import check, cli, tryout
    monkeypatch.setattr(check, "missing_requirements", lambda adapter: ["tensorboardX"])
    monkeypatch.setattr(tryout.installer, "install", lambda *a, **k: pytest.fail("try went on"))
    assert cli.main(["try", "omgd"]) == 1
    assert capsys.readouterr().err == (
        "vem-plugins: error: omgd needs tensorboardX, not installed in this Python environment; "
        "install vem-plugins' upstream extra: pip install -e \".[upstream]\" in its source "
        "folder\n")


def test_interrupted_clone_leaves_no_half_made_directory(run, world, tmp_path):
    fake_ssh = tmp_path / "slow-ssh"
    fake_ssh.write_text("#!/bin/sh\nexec sleep 20\n")
    fake_ssh.chmod(0o755)
    env = {**run.env, "GIT_SSH_COMMAND": str(fake_ssh)}
    proc = subprocess.Popen([str(SCRIPT), "install", "toy-slow"], cwd=run.work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = run.work / "third_party"
    deadline = time.monotonic() + 30
    while not (parent.exists() and any(parent.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # git clone is now waiting on the "network"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == "vem-plugins: interrupted\n"
    assert list(run.work.iterdir()) == []


def test_progress_is_shown_on_a_terminal(run, world):
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(SCRIPT), "install", "toy", "--from", f"file://{world['repo']}"],
                            cwd=run.work, env=run.env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    err = b""
    while select.select([master], [], [], 60)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        err += chunk
    assert proc.wait(timeout=60) == 0
    os.close(master)
    assert b"Receiving objects: 100%" in err, err


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "vem_plugins", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout == f"vem-plugins {vem_plugins.__version__}\n"
