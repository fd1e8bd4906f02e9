"""Install, status, diff and uninstall of the five real adapters from their upstreams (local
mirrors through git's insteadOf count; skipped with the reason when unreachable). Installing needs
none of the adapters' requirements."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git
from vem_plugins.install import checkout as installer, refresh
from vem_plugins import plugins

BUILTIN = ["omgd", "gan-compression", "cat", "gcc", "cagc"]


def inserted_lines(adapter) -> list[str]:
    """Every line the adapter adds: the patches' '+' lines and the added files' lines."""
    lines = []
    for patch in adapter.patches:
        text = patch.read_bytes().decode()
        lines += [ln[1:].rstrip("\r") for ln in text.split("\n")
                  if ln.startswith("+") and not ln.startswith("+++ ")]
    for source in adapter.added_files.values():
        lines += [ln.rstrip("\r") for ln in source.read_bytes().decode().splitlines()]
    return lines


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.needs(n, requirements=False))
                                  for n in BUILTIN])
def test_install_status_diff_uninstall(name, tmp_path):
    adapter = plugins.adapters()[name]
    dest = tmp_path / name
    result = installer.install(adapter, dest, progress=False)
    assert result.action == "installed"
    assert git(dest, "rev-parse", "HEAD").strip() == adapter.commit
    for asset in result.skipped_assets:  # only declared assets the mirror lacks are left out
        assert asset in adapter.assets and not (dest / asset).exists()
    for path, source in adapter.added_files.items():
        assert (dest / path).read_bytes() == source.read_bytes()

    st = installer.status(adapter, dest)
    assert st.state == "installed", st
    assert st.patches == [(p.name, "applied") for p in adapter.patches]
    assert st.edited == {} and st.untracked == []
    assert sorted(st.added) == sorted(adapter.added_files)

    diff = installer.diff(adapter, dest)
    added = [ln[1:].rstrip("\r") for ln in diff.split("\n")
             if ln.startswith("+") and not ln.startswith("+++ ")]
    assert sorted(added) == sorted(inserted_lines(adapter))
    assert [ln for ln in diff.split("\n") if ln.startswith("-") and not ln.startswith("--- ")] == []
    assert installer.install(adapter, dest, progress=False).action == "unchanged"

    # refresh treats a built-in as a third-party adapter: it rewrites the patch folder's series
    # and file_hashes.json (byte for byte the same, as nothing was edited)
    folder = refresh.patch_folder(adapter)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = refresh.refresh(adapter, dest)
    assert result.hashes_file == folder / "file_hashes.json" and "file_hashes.json" in before
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    assert installer.uninstall(adapter, dest).action == "reverted"
    assert git(dest, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(dest, "rev-parse", "HEAD").strip() == adapter.commit
    assert installer.status(adapter, dest).state == "pristine"


@pytest.mark.needs("omgd", requirements=False)
def test_the_users_first_command(tmp_path):
    """``vem-plugins install omgd`` through the console script, then status and removal."""
    adapter = plugins.adapters()["omgd"]
    script = Path(sys.executable).with_name("vem-plugins")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}

    def run(*args):
        proc = subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run("install", "omgd").startswith(f"installed omgd at {adapter.commit[:7]} in "
                                             "third_party/omgd")
    assert run("status", "omgd").startswith("omgd: installed\n")
    assert "removed third_party/omgd" in run("uninstall", "omgd", "--remove")
    assert not (tmp_path / "third_party" / "omgd").exists()
