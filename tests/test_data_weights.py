"""``vem-plugins data weights``: the list of every pretrained file of the paper runs, where each
goes, its published checksum, and the verification of copies a user placed. Fast tier: a
temporary ``TORCH_HOME`` and checkout registry, files made here (the real ones are not)."""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from vem_plugins import plugins
from vem_plugins.authoring.compat import INCEPTION, VGG16, WEIGHTS
from vem_plugins.data import weights


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """An empty torch hub cache and checkout registry, and no third_party/ here."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "torch" / "hub" / "checkpoints"


def shown(path: Path) -> str:
    """A path as the list prints it: relative to the working directory (``tmp_path`` here)."""
    return str(path.relative_to(Path.cwd()))


def listing(capsys, *argv) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    weights.add_arguments(parser)
    code = weights.run(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_missing_files_are_listed_with_where_they_go(home, capsys):
    code, out = listing(capsys)
    assert code == 0
    assert f"  missing           {shown(home / INCEPTION.file)}\n" in out
    assert f"  download  {INCEPTION.url}\n" in out
    assert "checksum  sha256:6726825d (the first 8 hex digits" in out
    # teachers live in checkouts; with none installed the list names the path inside one
    assert "  no checkout       <cagc checkout>/Model/full_size_model/256px_full_size.pt" in out
    assert "checksum  none published" in out


def test_a_file_with_the_right_name_and_wrong_content_is_a_checksum_mismatch(home, capsys):
    home.mkdir(parents=True)
    (home / VGG16.file).write_bytes(b"an interrupted download")
    actual = hashlib.sha256(b"an interrupted download").hexdigest()
    code, out = listing(capsys)
    assert code == 0 and f"  present           {shown(home / VGG16.file)}\n" in out  # not hashed
    code, out = listing(capsys, "--verify")
    assert code == 1
    line = next(ln for ln in out.splitlines() if VGG16.file in ln and "mismatch" in ln)
    assert line == (f"  checksum mismatch {shown(home / VGG16.file)}: expected sha256:397923af, "
                    f"got sha256:{actual}")


def test_verify_accepts_the_published_checksum_and_names_the_actual_one(tmp_path):
    path = tmp_path / "net.pth"
    path.write_bytes(b"weights" * 1000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    blob = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert weights.verify(path, f"sha256:{sha}") == (True, f"sha256:{sha}")
    assert weights.verify(path, f"sha256:{sha[:8]}", progress=False) == (True, f"sha256:{sha}")
    assert weights.verify(path, "sha256:00000000") == (False, f"sha256:{sha}")
    assert weights.verify(path, f"git-blob:{blob}") == (True, f"git-blob:{blob}")
    assert weights.verify(path, "git-blob:" + "0" * 40)[0] is False


def test_a_verified_file_in_a_checkout(tmp_path, capsys, monkeypatch):
    """Files inside checkouts resolve against the installed ones (here a remembered cagc one)."""
    checkout = tmp_path / "elsewhere" / "cagc"
    face = next(w for w in WEIGHTS if w.location and w.checksum)
    path = checkout / face.location
    path.parent.mkdir(parents=True)
    path.write_bytes(b"face parsing")
    blob = hashlib.sha1(b"blob 12\0face parsing").hexdigest()
    monkeypatch.setattr(weights, "FILES", (face._replace(checksum=f"git-blob:{blob}"),))
    registry = tmp_path / "state" / "vem-plugins" / "checkouts.json"
    registry.parent.mkdir(parents=True)
    registry.write_text(json.dumps({"cagc": [str(checkout)]}))
    code, out = listing(capsys, "--verify")
    assert code == 0 and f"  verified          {shown(path)}\n" in out
    assert "1 places: 1 present (1 verified, 0 with a wrong checksum), 0 missing" in out


def test_json_output_parses(home, capsys):
    code, out = listing(capsys, "--json")
    rows = json.loads(out)
    assert code == 0 and {row["file"] for row in rows} == {w.file for w in weights.FILES}
    inception = next(row for row in rows if row["file"] == INCEPTION.file)
    assert inception["state"] == "missing" and inception["path"] == str(home / INCEPTION.file)
    assert inception["checksum"] == "sha256:6726825d" and inception["adapter"] is None


def test_the_table(tmp_path):
    """Every entry names adapters that exist, a download address, a place, and a checksum of a
    known kind; a torch hub file's name carries the start of its sha256."""
    known = set(plugins.adapters())
    for w in weights.FILES:
        assert w.adapters and set(w.adapters) <= known, w
        assert w.url.startswith(("https://", "http://")) and w.label and w.purpose
        assert w.location is None or not Path(w.location).is_absolute()
        assert w.checksum is None or re.fullmatch(
            r"sha256:[0-9a-f]{8,64}|git-blob:[0-9a-f]{40}", w.checksum), w
        if w.location is None:
            assert w.checksum and f"-{w.checksum.removeprefix('sha256:')}." in w.file
    assert all(w in weights.FILES for w in WEIGHTS)
    assert {"gan-compression", "cat", "cagc"} <= {a for w in weights.TEACHERS for a in w.adapters}
