"""The installer against throwaway upstream repositories built here with real git."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import git
from vem_plugins.install import checkout as installer, git as gitops
from vem_plugins.authoring.adapter import Adapter
from vem_plugins.errors import GitError, InstallError

TRAIN = "".join(f"line {i}\n" for i in range(1, 11))
NET = ("class Net:\n    def __init__(self):\n        self.w = 1\n\n"
       "    def forward(self, x):\n        return x\n")
CRLF = "a = 1\r\nb = 2\r\n"
README = "toy upstream\n"
WEIGHTS = bytes(range(256)) * 8
UNREACHABLE = "https://127.0.0.1:9/toy.git"  # nothing listens on the discard port


def sha(data) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def insertion(path, *hunks, new=False) -> str:
    """A zero-context insertion-only patch: ``hunks`` are (after_line, [lines]) in the
    numbering of the file as the patch finds it."""
    out = [f"diff --git a/{path} b/{path}"] + (["new file mode 100644"] if new else [])
    out += ["--- /dev/null" if new else f"--- a/{path}", f"+++ b/{path}"]
    shift = 0
    for after, lines in hunks:
        out.append(f"@@ -{after},0 +{after + 1 + shift},{len(lines)} @@")
        out += ["+" + line for line in lines]
        shift += len(lines)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A toy upstream: the pin, then one newer commit on main (README and train.py changed)."""
    repo = tmp_path_factory.mktemp("upstream") / "toy"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    files = {"train.py": TRAIN, "models/net.py": NET, "crlf.py": CRLF, "README.md": README,
             ".gitignore": "logs/\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(text.encode())
    (repo / "assets").mkdir()
    (repo / "assets" / "weights.bin").write_bytes(WEIGHTS)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin")
    pin = git(repo, "rev-parse", "HEAD").strip()
    (repo / "README.md").write_text(README + "newer\n")
    (repo / "train.py").write_text(TRAIN + "line 11\n")
    git(repo, "commit", "-q", "-am", "newer")
    return repo, pin, git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def toy(upstream, tmp_path):
    """A test-local adapter: two patches (compat into train.py and crlf.py, vem into
    train.py and models/net.py), one added file and one optional asset."""
    repo, pin, _ = upstream
    pdir = tmp_path / "patches"
    pdir.mkdir()
    (pdir / "01-compat.patch").write_bytes(
        (insertion("train.py", (1, ["import toy_vem  # compat"]))
         + insertion("crlf.py", (1, ["c = 3\r"]))).encode())
    (pdir / "02-vem.patch").write_text(
        insertion("train.py", (6, ["toy_vem.step()  # vem"]))
        + insertion("models/net.py", (3, ["        toy_vem.register(self)"])))
    (tmp_path / "toy_vem.py").write_text("def step():\n    pass\n")
    return Adapter(
        name="toy", url=str(repo), commit=pin,
        patches=(pdir / "01-compat.patch", pdir / "02-vem.patch"),
        file_hashes={"train.py": sha(TRAIN), "models/net.py": sha(NET), "crlf.py": sha(CRLF)},
        added_files={"toy_vem.py": tmp_path / "toy_vem.py"},
        assets={"assets/weights.bin": "the toy's pretrained weights"}, version="1")


def with_patch(adapter, tmp_path, name, text) -> Adapter:
    """``adapter`` with its second patch replaced (written to a folder of its own)."""
    path = tmp_path / f"patches-{sha(text)[:8]}" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return dataclasses.replace(adapter, patches=(adapter.patches[0], path))


def snapshot(root: Path) -> dict:
    """Every file under ``root`` outside .git, as bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def pristine_bytes(dest, pin) -> dict:
    return {p: subprocess.run(["git", "-C", str(dest), "show", f"{pin}:{p}"], check=True,
                              capture_output=True).stdout
            for p in git(dest, "ls-tree", "-r", "--name-only", pin).split()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name] if parent.exists() else []


def test_install_checks_out_the_pin_detached_and_applies_every_patch(toy, tmp_path):
    dest = tmp_path / "third_party" / "toy"
    result = installer.install(toy, dest, progress=False)
    assert result.action == "installed" and result.patches == ["01-compat.patch", "02-vem.patch"]
    assert git(dest, "rev-parse", "HEAD").strip() == toy.commit
    assert subprocess.run(["git", "-C", str(dest), "symbolic-ref", "-q", "HEAD"]).returncode == 1
    assert (dest / "train.py").read_text().splitlines()[:8] == [
        "line 1", "import toy_vem  # compat", "line 2", "line 3", "line 4", "line 5",
        "toy_vem.step()  # vem", "line 6"]
    assert (dest / "crlf.py").read_bytes() == b"a = 1\r\nc = 3\r\nb = 2\r\n"
    assert "toy_vem.register(self)" in (dest / "models" / "net.py").read_text()
    assert (dest / "toy_vem.py").read_text() == "def step():\n    pass\n"
    # the index stays at the pin: plain git shows exactly our change; the lock is not listed
    assert sorted(git(dest, "status", "--porcelain").splitlines()) == [
        " M crlf.py", " M models/net.py", " M train.py", "?? toy_vem.py"]
    lock = json.loads((dest / installer.LOCK).read_text())
    assert lock["adapter"] == "toy" and lock["adapter_version"] == "1"
    assert lock["commit"] == toy.commit and lock["url"] == toy.url
    assert lock["patches"] == [{"name": p.name, "sha256": sha(p.read_bytes())} for p in toy.patches]
    assert lock["added_files"] == {"toy_vem.py": sha("def step():\n    pass\n")}
    assert lock["vem_plugins_version"] and lock["time"]
    assert leftovers(dest.parent) == []
    assert oct(dest.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode


def test_reinstall_of_an_unmodified_checkout_is_a_no_op(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    before = {p: (dest / p).stat().st_mtime_ns for p in ("train.py", "toy_vem.py", installer.LOCK)}
    result = installer.install(toy, dest, progress=False)
    assert result.action == "unchanged" and "nothing to do" in result.summary()
    assert {p: (dest / p).stat().st_mtime_ns for p in before} == before


def test_missing_pinned_commit_fails_and_leaves_nothing(toy, tmp_path):
    bad = dataclasses.replace(toy, commit="0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(InstallError, match="pinned commit 0123456789ab.* is not in"):
        installer.install(bad, tmp_path / "tp" / "toy", progress=False)
    assert not (tmp_path / "tp").exists()


def test_file_hashes_are_verified_before_patching(toy, tmp_path):
    wrong = dataclasses.replace(toy, file_hashes={**toy.file_hashes, "models/net.py": "0" * 64})
    with pytest.raises(InstallError, match=rf"models/net.py at the pin has sha256 {sha(NET)}"):
        installer.install(wrong, tmp_path / "toy", progress=False)
    unrecorded = dataclasses.replace(toy, file_hashes={"train.py": sha(TRAIN),
                                                       "crlf.py": sha(CRLF)})
    with pytest.raises(InstallError, match="02-vem.patch modifies models/net.py, but adapter toy "
                                           "records no sha256"):
        installer.install(unrecorded, tmp_path / "toy", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patches", "toy_vem.py"]  # no clone


@pytest.mark.parametrize("bad, message", [
    (insertion("train.py", (3, ["ok()"])) + insertion("models/net.py", (40, ["late()"])),
     r"02-bad.patch does not apply: models/net.py, hunk @@ -40,0 \+41,1 @@ lies past"),
    (insertion("train.py", (3, ["ok()"])) + insertion("nowhere.py", (1, ["x"])),
     "02-bad.patch modifies nowhere.py, which is not in toy's tree"),
    (insertion("README.md", (0, ["x"]), new=True), "02-bad.patch creates README.md, which already"),
])
def test_second_patch_failing_leaves_the_tree_untouched(toy, tmp_path, bad, message):
    broken = with_patch(toy, tmp_path, "02-bad.patch", bad)
    with pytest.raises(InstallError, match=message):
        installer.install(broken, tmp_path / "fresh", progress=False)
    assert not (tmp_path / "fresh").exists() and leftovers(tmp_path) == []
    dest = tmp_path / "installed"
    installer.install(toy, dest, progress=False)
    before = snapshot(dest)
    with pytest.raises(InstallError, match=message):
        installer.install(broken, dest, progress=False)
    assert snapshot(dest) == before


def test_only_zero_context_insertions_are_accepted(toy, tmp_path):
    context = "--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,2 @@\n line 1\n+x\n"
    with pytest.raises(InstallError, match="zero-context"):
        installer.install(with_patch(toy, tmp_path, "c.patch", context), tmp_path / "a",
                          progress=False)
    removal = "--- a/train.py\n+++ b/train.py\n@@ -1,0 +2,2 @@\n+x\n-line 2\n"
    with pytest.raises(InstallError, match="context or removed line"):
        installer.install(with_patch(toy, tmp_path, "r.patch", removal), tmp_path / "b",
                          progress=False)
    deletion = "diff --git a/train.py b/train.py\ndeleted file mode 100644\n"
    with pytest.raises(InstallError, match="may only insert"):
        installer.install(with_patch(toy, tmp_path, "d.patch", deletion), tmp_path / "c",
                          progress=False)
    assert leftovers(tmp_path) == []


def test_upgrade_reapplies_changed_patches(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    new = with_patch(toy, tmp_path, "02-vem.patch",
                     insertion("models/net.py", (5, ["        toy_vem.forward(self)"])))
    result = installer.install(new, dest, progress=False)
    assert result.action == "upgraded"
    # the old second patch's line is gone from train.py, the new one is in net.py
    compat_only = TRAIN.replace("line 1\n", "line 1\nimport toy_vem  # compat\n")
    assert (dest / "train.py").read_text() == compat_only
    net = (dest / "models" / "net.py").read_text().splitlines()
    assert net[5] == "        toy_vem.forward(self)"
    lock = json.loads((dest / installer.LOCK).read_text())
    assert lock["patches"][1]["sha256"] == sha(new.patches[1].read_bytes())
    assert installer.status(new, dest).state == "installed"
    assert installer.status(toy, dest).state == "outdated"
    # reverting follows what was installed, not the adapter's current patches
    assert installer.uninstall(toy, dest).action == "reverted"
    assert snapshot(dest) == pristine_bytes(dest, toy.commit)


def test_upgrade_to_a_new_pin(toy, upstream, tmp_path):
    _, pin, newer = upstream
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    moved = dataclasses.replace(toy, commit=newer, file_hashes={
        **toy.file_hashes, "train.py": sha(TRAIN + "line 11\n")})
    assert installer.install(moved, dest, progress=False).action == "upgraded"
    assert git(dest, "rev-parse", "HEAD").strip() == newer
    assert (dest / "README.md").read_text() == README + "newer\n"
    assert (dest / "train.py").read_text().endswith("line 10\nline 11\n")
    assert "import toy_vem  # compat" in (dest / "train.py").read_text()
    assert installer.status(moved, dest).state == "installed"


def test_status_reports_patches_edits_and_untracked_files(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    st = installer.status(toy, dest)
    assert (st.state, st.head, st.commit) == ("installed", toy.commit, toy.commit)
    assert st.patches == [("01-compat.patch", "applied"), ("02-vem.patch", "applied")]
    assert st.added == ["toy_vem.py"] and st.edited == {} and st.untracked == []
    (dest / "train.py").write_text((dest / "train.py").read_text() + "mine()\n")
    (dest / "README.md").write_text("mine\n")
    (dest / "toy_vem.py").unlink()
    (dest / "notes.txt").write_text("mine\n")
    (dest / "__pycache__").mkdir()
    (dest / "__pycache__" / "x.pyc").write_bytes(b"\0")
    st = installer.status(toy, dest)
    assert st.state == "edited"
    assert st.edited == {"train.py": "modified", "README.md": "modified", "toy_vem.py": "deleted"}
    assert st.patches == [("01-compat.patch", "applied, then edited in train.py"),
                          ("02-vem.patch", "applied, then edited in train.py")]
    assert st.untracked == ["notes.txt"]


def test_status_of_a_checkout_whose_head_moved(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    git(dest, "stash", "-q", "-u")
    git(dest, "checkout", "-q", "main")
    assert installer.status(toy, dest).state == "off the pin"
    with pytest.raises(InstallError, match="HEAD of .* is .*, not the pin"):
        installer.install(toy, dest, progress=False)


def test_edits_to_patched_files_block_install_and_uninstall_until_forced(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    edited = (dest / "train.py").read_text().replace("line 9", "line nine")
    (dest / "train.py").write_text(edited)
    (dest / "toy_vem.py").write_text("def step():\n    print('mine')\n")
    before = snapshot(dest)
    upgrade = with_patch(toy, tmp_path, "02-vem.patch", insertion("models/net.py", (1, ["# v2"])))
    for action in (lambda: installer.install(upgrade, dest, progress=False),
                   lambda: installer.install(toy, dest, progress=False),
                   lambda: installer.uninstall(toy, dest)):
        with pytest.raises(InstallError, match=r"you edited toy_vem.py, train.py .*--force"):
            action()
        assert snapshot(dest) == before
    assert not list(tmp_path.glob("toy.user-edits-*.patch"))
    # forced: the edits are saved next to the checkout first, then overwritten
    result = installer.uninstall(toy, dest, force=True)
    assert result.backup and result.backup.parent == tmp_path
    assert result.backup.name.startswith("toy.user-edits-") and result.backup.suffix == ".patch"
    assert str(result.backup) in result.summary()
    assert git(dest, "status", "--porcelain") == ""
    # the backup replays the edits onto a patched tree exactly
    installer.install(toy, dest, progress=False)
    git(dest, "apply", str(result.backup))
    assert (dest / "train.py").read_text() == edited
    assert (dest / "toy_vem.py").read_text() == "def step():\n    print('mine')\n"


def test_forced_upgrade_saves_edits_and_applies_the_new_patches(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    (dest / "models" / "net.py").write_text("mine\n")
    (dest / "README.md").write_text("mine too\n")  # not managed: kept as it is
    upgrade = with_patch(toy, tmp_path, "02-vem.patch", insertion("models/net.py", (1, ["# v2"])))
    result = installer.install(upgrade, dest, force=True, progress=False)
    assert result.action == "upgraded" and result.kept == ["README.md"]
    assert "+mine" in result.backup.read_text()
    assert (dest / "models" / "net.py").read_text().splitlines()[1] == "# v2"
    assert (dest / "README.md").read_text() == "mine too\n"
    assert installer.status(upgrade, dest).edited == {"README.md": "modified"}


def test_uninstall_restores_upstreams_pristine_bytes(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    (dest / "notes.txt").write_text("mine\n")  # untracked files stay
    result = installer.uninstall(toy, dest)
    assert result.action == "reverted"
    assert snapshot(dest) == {**pristine_bytes(dest, toy.commit), "notes.txt": b"mine\n"}
    assert git(dest, "status", "--porcelain") == "?? notes.txt\n"
    assert git(dest, "for-each-ref", installer.REF) == ""
    assert installer.status(toy, dest).state == "pristine"
    assert installer.uninstall(toy, dest).action == "pristine"
    # and installing again over the pristine checkout works
    assert installer.install(toy, dest, progress=False).action == "installed"
    assert installer.status(toy, dest).state == "installed"


def test_uninstall_remove_protects_untracked_and_ignored_files(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    (dest / "notes.txt").write_text("mine\n")
    (dest / "logs").mkdir()
    (dest / "logs" / "run.txt").write_text("loss 1\n")
    (dest / "train.py").write_text("edited\n")
    with pytest.raises(InstallError, match=r"edited train.py; untracked notes.txt; ignored "
                                           r"logs/.*--force"):
        installer.uninstall(toy, dest, remove=True)
    assert (dest / "notes.txt").exists()
    result = installer.uninstall(toy, dest, remove=True, force=True)
    assert result.action == "removed" and not dest.exists()
    assert "+edited" in result.backup.read_text()
    assert (result.moved_to / "notes.txt").read_text() == "mine\n"
    assert (result.moved_to / "logs" / "run.txt").read_text() == "loss 1\n"
    assert str(result.moved_to) in result.summary()
    clean = tmp_path / "clean"
    installer.install(toy, clean, progress=False)
    assert installer.uninstall(toy, clean, remove=True).backup is None and not clean.exists()


def test_diff_shows_the_applied_change(toy, tmp_path):
    dest = tmp_path / "toy"
    installer.install(toy, dest, progress=False)
    text = installer.diff(toy, dest)
    assert "+import toy_vem  # compat" in text and "+toy_vem.step()  # vem" in text
    assert "new file mode" in text and "+def step():" in text and "weights.bin" not in text
    applied = [ln for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert len(applied) == 6  # 4 inserted lines + the added file's 2
    installer.uninstall(toy, dest)
    assert installer.diff(toy, dest) == ""


@pytest.mark.parametrize("kind", ["bare mirror", "bundle"])
def test_install_from_a_bare_mirror_or_a_bundle(toy, upstream, tmp_path, kind):
    repo, pin, _ = upstream
    if kind == "bundle":
        source = tmp_path / "toy.bundle"
        git(repo, "bundle", "create", str(source), "--all")
    else:
        source = tmp_path / "mirror.git"
        subprocess.run(["git", "clone", "-q", "--mirror", str(repo), str(source)], check=True)
    offline = dataclasses.replace(toy, url=UNREACHABLE)
    dest = tmp_path / "toy"
    result = installer.install(offline, dest, source=str(source), progress=False)
    assert result.action == "installed"
    assert git(dest, "rev-parse", "HEAD").strip() == pin
    assert json.loads((dest / installer.LOCK).read_text())["source"] == str(source)


def test_unreachable_upstream_says_how_to_work_offline(toy, tmp_path):
    with pytest.raises(InstallError, match=r"cannot clone https://127.0.0.1:9/toy.git .* --from .*"
                                           r"insteadOf https://127.0.0.1:9/toy.git"):
        installer.install(dataclasses.replace(toy, url=UNREACHABLE), tmp_path / "tp" / "toy",
                          progress=False)
    assert not (tmp_path / "tp").exists()
    with pytest.raises(InstallError, match="--from .*nothing-here: no such file"):
        installer.install(toy, tmp_path / "toy", source=str(tmp_path / "nothing-here"),
                          progress=False)


def test_git_insteadof_rewriting_is_honoured(toy, upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{upstream[0]}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", UNREACHABLE)
    dest = tmp_path / "toy"
    result = installer.install(dataclasses.replace(toy, url=UNREACHABLE), dest, progress=False)
    assert result.action == "installed" and git(dest, "rev-parse", "HEAD").strip() == toy.commit


def test_interrupted_install_leaves_no_half_made_directory(toy, tmp_path, monkeypatch):
    def interrupt(*args):
        assert leftovers(tmp_path / "tp" / "deeper"), "the clone happens in a hidden partial folder"
        raise KeyboardInterrupt
    monkeypatch.setattr(installer.patchset, "build", interrupt)
    with pytest.raises(KeyboardInterrupt):
        installer.install(toy, tmp_path / "tp" / "deeper" / "toy", progress=False)
    assert not (tmp_path / "tp").exists()


def test_a_partial_clone_left_by_a_killed_install_is_cleaned_up(toy, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".toy.partial-{dead.pid}-abc"
    stale.mkdir()
    (stale / "junk").write_text("x")
    installer.install(toy, tmp_path / "toy", progress=False)
    assert not stale.exists()


def test_dir_that_is_not_this_adapters_checkout_is_refused(toy, upstream, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "data.txt").write_text("precious\n")
    with pytest.raises(InstallError, match="mine exists and is not a checkout of toy .*not the "
                                           "top of a git checkout"):
        installer.install(toy, other, progress=False)
    with pytest.raises(InstallError, match="not a checkout of toy"):
        installer.uninstall(toy, other, remove=True, force=True)
    assert (other / "data.txt").read_text() == "precious\n"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(upstream[0]), str(clone)], check=True)
    with pytest.raises(InstallError, match="HEAD is .*, not the pin"):
        installer.install(toy, clone, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert installer.install(toy, empty, progress=False).action == "installed"
    renamed = dataclasses.replace(toy, name="other")
    with pytest.raises(InstallError, match="it is a checkout of toy"):
        installer.status(renamed, empty)


def test_skip_assets_on_request(toy, tmp_path):
    dest = tmp_path / "toy"
    result = installer.install(toy, dest, progress=False, skip_assets=True)
    assert result.skipped_assets == {"assets/weights.bin": "the toy's pretrained weights"}
    assert not (dest / "assets" / "weights.bin").exists() and result.warnings == []
    st = installer.status(toy, dest)
    assert st.state == "installed" and st.skipped_assets == result.skipped_assets
    assert git(dest, "status", "--porcelain").splitlines() == [
        " M crlf.py", " M models/net.py", " M train.py", "?? toy_vem.py"]
    assert installer.install(toy, dest, progress=False, skip_assets=True).warnings == []
    installer.uninstall(toy, dest)
    assert git(dest, "status", "--porcelain") == ""
    full = tmp_path / "full"
    installer.install(toy, full, progress=False)
    late = installer.install(toy, full, progress=False, skip_assets=True)
    assert late.action == "unchanged" and "only applies when cloning" in late.warnings[0]
    assert (full / "assets" / "weights.bin").read_bytes() == WEIGHTS


@pytest.fixture
def lacking(upstream, tmp_path):
    """A copy of the upstream whose object store lacks the asset's blob."""
    copy = tmp_path / "lacking"
    shutil.copytree(upstream[0], copy)
    blob = git(copy, "rev-parse", f"{upstream[1]}:assets/weights.bin").strip()
    (copy / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    return copy


def test_assets_the_source_lacks_are_left_out_with_a_warning(toy, lacking, tmp_path):
    dest = tmp_path / "toy"
    result = installer.install(toy, dest, source=str(lacking), progress=False)
    assert result.action == "installed"
    assert result.warnings == ["the source lacks assets/weights.bin: left out of the checkout, "
                               "which disables the toy's pretrained weights"]
    assert not (dest / "assets" / "weights.bin").exists()
    assert installer.status(toy, dest).state == "installed"
    assert "weights.bin" not in installer.diff(toy, dest)
    assert installer.uninstall(toy, dest).action == "reverted"
    assert git(dest, "status", "--porcelain") == ""


def test_missing_blobs_that_are_no_declared_asset_are_an_error(toy, lacking, tmp_path):
    strict = dataclasses.replace(toy, assets={})
    with pytest.raises(InstallError, match=r"source lacks 1 file\(s\) .* not declare as optional "
                                           r"assets \(assets/weights.bin\)"):
        installer.install(strict, tmp_path / "toy", source=str(lacking), progress=False)
    assert not (tmp_path / "toy").exists() and leftovers(tmp_path) == []


# --- the git layer (GitPython) -------------------------------------------------------------

def test_a_clone_with_progress_draws_gitpythons_progress_as_bars(toy, upstream, tmp_path,
                                                                  capsys):
    """A file:// URL makes git transfer a pack, so "Receiving objects" is reported; it reaches
    stderr as a tqdm bar (``|███|``), not as git's own line."""
    result = installer.install(toy, tmp_path / "toy", source=f"file://{upstream[0]}")
    assert result.action == "installed"
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(r"Receiving objects: 100%\|█+\| (\d+)/\1 ", err), err


def test_a_stage_gitpython_does_not_know_is_drawn_too(capsys):
    bars = gitops._Bars()
    handle = bars.new_message_handler()
    for line in ("Updating files:  50% (1/2)\n", "Updating files: 100% (2/2), done.\n",
                 "HEAD is now at 1234567 pin\n"):
        handle(line)
    assert bars.bar is None  # closed at "done."
    assert re.search(r"Updating files: 100%\|█+\| 2/2 ", capsys.readouterr().err)
    assert bars.other_lines == ["HEAD is now at 1234567 pin"]


@pytest.mark.parametrize("progress", [True, False])
def test_a_failing_clone_says_gits_reason(toy, tmp_path, progress):
    bad = f"file://{tmp_path}/nothing-here.git"
    with pytest.raises(InstallError, match=rf"cannot clone --from {bad} \('.*nothing-here.git' "
                                           r"does not appear to be a git repository\)$"):
        installer.install(toy, tmp_path / "tp" / "toy", source=bad, progress=progress)
    assert not (tmp_path / "tp").exists()


def test_git_errors_keep_gits_reason_in_one_line(upstream):
    with pytest.raises(GitError, match=r"^git rev-parse failed: Needed a single revision$"):
        gitops.git(upstream[0], "rev-parse", "--verify", "no-such-ref")
    rc, out, err = gitops.git(upstream[0], "cat-file", "-e", "no-such-ref", check=False)
    assert rc == 128 and out == "" and err.startswith("fatal: ")
    with pytest.raises(GitError, match="cannot change to .*nowhere"):
        gitops.git(upstream[0] / "nowhere", "status")


def test_variables_pointing_git_elsewhere_are_ignored_and_kept(toy, tmp_path, monkeypatch):
    """As when vem-plugins runs inside a git hook of another repository."""
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "init", "-q", str(elsewhere))
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(elsewhere / ".git" / "index"))
    dest = tmp_path / "toy"
    assert installer.install(toy, dest, progress=False).action == "installed"
    assert gitops.head(dest) == toy.commit and gitops.head(elsewhere) is None
    assert os.environ["GIT_DIR"] == str(elsewhere / ".git")
