"""``vem-plugins refresh``: patch files regenerated from edits in a checkout, through the console
script, on a throwaway upstream and an adapter package made with ``vem-plugins new-adapter``."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import toy_upstream as toy
from helpers import git
from toy_upstream import cli

from vem_plugins.install import checkout as installer, refresh
from vem_plugins.authoring.adapter import Adapter
from vem_plugins.errors import InstallError

COMPAT = [("train.py", "from models.model import Model\n",
           "from vem_toy_gan import compat\ncompat.fix(Model)\n")]


@pytest.fixture
def author(tmp_path):
    """An upstream, the scaffolded package registered on PYTHONPATH, its checkout installed."""
    repo, pin = toy.make_upstream(tmp_path)
    pkg = toy.scaffold(tmp_path, str(repo), pin)
    env = toy.env_with(pkg, XDG_STATE_HOME=tmp_path / "state")
    checkout = tmp_path / "checkout"
    proc = cli("install", "toy-gan", "--dir", checkout, env=env)
    assert proc.returncode == 0, proc.stderr

    def run(*args, expect=0):
        proc = cli(*args, "--dir", checkout, env=env)
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc

    return dict(repo=repo, pin=pin, pkg=pkg, patches=pkg / "vem_toy_gan" / "patches",
                checkout=checkout, run=run, env=env, root=tmp_path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts and p.name != installer.LOCK}


def test_refresh_writes_git_diff_U0_and_hashes_and_the_series_installs(author):
    toy.insert(author["checkout"])
    proc = author["run"]("refresh", "toy-gan")
    assert "01-vem.patch" in proc.stdout and "created" in proc.stdout
    patch = (author["patches"] / "01-vem.patch").read_text()
    expected = git(author["checkout"], "diff", "-U0", "--no-color", author["pin"])
    # git's hunk headers end with a line of upstream text as context: refresh leaves it out
    assert patch == "".join(re.sub(r"^(@@ .* @@).*", r"\1", line) + "\n"
                            for line in expected.splitlines() if not line.startswith("index "))
    assert "class Model" not in patch
    hashes = json.loads((author["patches"] / "file_hashes.json").read_text())
    assert hashes == {p: sha256(git(author["repo"], "show", f"{author['pin']}:{p}").encode())
                      for p in ("models/model.py", "options.py")}
    status = author["run"]("status", "toy-gan").stdout
    assert status.startswith("toy-gan: installed") and "01-vem.patch: applied" in status
    # a fresh install of the new series gives exactly the edited checkout
    fresh = author["root"] / "fresh"
    assert cli("install", "toy-gan", "--dir", fresh, env=author["env"]).returncode == 0
    assert tree(fresh) == tree(author["checkout"])


def test_lines_keep_their_patch_and_new_patches_take_their_place(author):
    run, patches = author["run"], author["patches"]
    toy.insert(author["checkout"])
    run("refresh", "toy-gan")
    vem = (patches / "01-vem.patch").read_text()
    toy.insert(author["checkout"], COMPAT)
    proc = run("refresh", "toy-gan", "--patch", "00-compat.patch")
    assert "00-compat.patch  created" in proc.stdout
    assert "01-vem.patch     unchanged" in proc.stdout
    compat = (patches / "00-compat.patch").read_text()
    assert "compat.fix(Model)" in compat and "glue" not in compat
    assert (patches / "01-vem.patch").read_text() == vem  # train.py is not in it
    # editing one of 01-vem's lines in place keeps it there; a new line goes to the last patch
    model = author["checkout"] / "models" / "model.py"
    model.write_text(model.read_text().replace("glue.attach(self)", "glue.attach(self)  # VEM")
                     .replace("    def set_input", "    # the toy's input\n    def set_input"))
    run("refresh", "toy-gan")
    assert (patches / "00-compat.patch").read_text() == compat
    vem = (patches / "01-vem.patch").read_text()
    assert "glue.attach(self)  # VEM" in vem and "# the toy's input" in vem
    # removing every compat line removes the patch file
    train = author["checkout"] / "train.py"
    train.write_text(train.read_text().replace(COMPAT[0][2], ""))
    assert "removed" in run("refresh", "toy-gan").stdout
    assert sorted(p.name for p in patches.glob("*.patch")) == ["01-vem.patch"]
    assert "train.py" not in json.loads((patches / "file_hashes.json").read_text())
    fresh = author["root"] / "fresh"
    assert cli("install", "toy-gan", "--dir", fresh, env=author["env"]).returncode == 0
    assert tree(fresh) == tree(author["checkout"])


def replace(path, old, new):
    return lambda checkout: (checkout / path).write_text(
        (checkout / path).read_text().replace(old, new))


@pytest.mark.parametrize("edit, where", [
    (replace("options.py", "default=3", "default=4"), "options.py:8: 1 upstream line(s) changed"),
    (replace("train.py", "torch.manual_seed(0)\n", ""), "train.py:12: 1 upstream line(s) removed"),
    (lambda checkout: (checkout / "options.py").unlink(), "options.py: deleted"),
])
def test_refresh_refuses_to_ship_upstream_lines_and_writes_nothing(author, edit, where):
    toy.insert(author["checkout"])
    author["run"]("refresh", "toy-gan")
    before = tree(author["patches"])
    toy.insert(author["checkout"], COMPAT)
    edit(author["checkout"])
    checkout = tree(author["checkout"])
    proc = author["run"]("refresh", "toy-gan", expect=1)
    assert "refresh refused, nothing written" in proc.stderr and where in proc.stderr
    assert "at run time" in proc.stderr
    assert tree(author["patches"]) == before and tree(author["checkout"]) == checkout


def test_moving_the_pin_from_a_plain_clone(author):
    """The guide's recipe: clone the new pin, apply the old patches, set commit=, refresh."""
    toy.insert(author["checkout"])
    author["run"]("refresh", "toy-gan")
    files = dict(toy.UPSTREAM)
    files["models/model.py"] = "# upstream's new header line\n" + files["models/model.py"]
    repo, new_pin = toy.make_upstream(author["root"], files)
    adapter = author["pkg"] / "vem_toy_gan" / "adapter.py"
    adapter.write_text(adapter.read_text().replace(author["pin"], new_pin))
    assert cli("install", "toy-gan", "--dir", author["root"] / "old",
               env=author["env"]).returncode == 1  # the recorded hash no longer matches
    clone = author["root"] / "new"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "apply", "--unidiff-zero", str(author["patches"] / "01-vem.patch"))
    proc = cli("refresh", "toy-gan", "--dir", clone, env=author["env"])
    assert proc.returncode == 0, proc.stderr
    hashes = json.loads((author["patches"] / "file_hashes.json").read_text())
    assert hashes["models/model.py"] == sha256(files["models/model.py"].encode())
    fresh = author["root"] / "fresh"
    assert cli("install", "toy-gan", "--dir", fresh, env=author["env"]).returncode == 0
    assert tree(fresh) == tree(clone)


def test_refresh_needs_a_checkout_at_the_pin(author):
    proc = cli("refresh", "toy-gan", "--dir", author["root"] / "nowhere", env=author["env"])
    assert proc.returncode == 1 and "is not installed in" in proc.stderr
    git(author["checkout"], "commit", "-q", "--allow-empty", "-m", "mine")
    proc = author["run"]("refresh", "toy-gan", expect=1)
    assert "moved off the pin" in proc.stderr


def test_added_files_edits_go_back_to_their_source_and_hashes_are_printed(tmp_path):
    """An adapter that lists its patches itself (like the built-ins): refresh prints the
    file_hashes to paste, and copies an edited added file back to its source."""
    repo, pin = toy.make_upstream(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "helper.py").write_text("X = 1\n")
    adapter = Adapter(name="toy", url=str(repo), commit=pin,
                      added_files={"helper.py": src / "helper.py"})
    checkout = tmp_path / "checkout"
    installer.install(adapter, checkout, progress=False)
    (checkout / "helper.py").write_text("X = 2\n")
    toy.insert(checkout, COMPAT)
    result = refresh.refresh(adapter, checkout, patch_dir=tmp_path / "patches")
    assert (src / "helper.py").read_text() == "X = 2\n"
    assert result.copied_back == ["helper.py"] and result.hashes_file is None
    text = result.summary()
    assert f"'train.py': '{sha256(toy.UPSTREAM['train.py'].encode())}'" in text
    assert "file_hashes=" in text and result.new_patch == "01-vem.patch"
    final = dataclasses.replace(adapter, patches=(tmp_path / "patches" / "01-vem.patch",),
                                file_hashes=result.file_hashes)
    assert installer.status(final, checkout).state == "installed"
    (checkout / "helper.py").unlink()
    with pytest.raises(InstallError, match="you deleted helper.py"):
        refresh.refresh(final, checkout)


def test_patch_names_must_be_patch_files(author):
    toy.insert(author["checkout"])
    proc = author["run"]("refresh", "toy-gan", "--patch", "../evil", expect=1)
    assert "ending in .patch" in proc.stderr
    assert not list(author["patches"].glob("*.patch"))


def test_the_checkout_without_edits_gives_an_empty_series(author):
    proc = author["run"]("refresh", "toy-gan")
    assert "01-vem.patch  empty" in proc.stdout
    assert not list(author["patches"].glob("*.patch"))
    assert json.loads((author["patches"] / "file_hashes.json").read_text()) == {}


@pytest.mark.parametrize("text, edited", [
    ("a = 1\r\nb = 2\r\n", "a = 1\r\nx = 0\r\nb = 2\r\ny = 0"),       # CRLF; no final newline
    ("a = 1\nb = 2", "z = 0\na = 1\nx = 0\nb = 2"),                     # upstream's lacks one
    ("a = 1\n", "a = 1\n\n\na = 1\n"),                                   # repeated lines
])
def test_line_endings_and_repeats_survive_the_round_trip(tmp_path, text, edited):
    repo, pin = toy.make_upstream(tmp_path, {"f.py": text})
    adapter = Adapter(name="toy", url=str(repo), commit=pin)
    checkout = tmp_path / "checkout"
    installer.install(adapter, checkout, progress=False)
    (checkout / "f.py").write_bytes(edited.encode())
    result = refresh.refresh(adapter, checkout, patch_dir=tmp_path / "patches")
    final = dataclasses.replace(adapter, patches=(tmp_path / "patches" / "01-vem.patch",),
                                file_hashes=result.file_hashes)
    installer.install(final, tmp_path / "fresh", progress=False)
    assert (tmp_path / "fresh" / "f.py").read_bytes() == edited.encode()
    # the series read back (patchset.parse) is the one written: refreshing again changes nothing
    again = refresh.refresh(final, tmp_path / "fresh", patch_dir=tmp_path / "patches")
    assert again.patches == [("01-vem.patch", "unchanged")]
