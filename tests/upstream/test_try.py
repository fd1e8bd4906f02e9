"""``vem-plugins try``: the README's main job, end to end on OMGD's real ``distill.py``.

One ``try`` run (shrunk with ``--epochs 1 --pairs 8``) in a fresh directory, offline and with
an empty ``TORCH_HOME``, as on a new user's machine without downloads: it must install OMGD,
generate the data, train with and without ``--vem``, and write a report a browser can show.
Skipped, with the reason, without OMGD's repository or its requirements (``try`` refuses then).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from browser import images
from vem_plugins.adapters.omgd.adapter import ADAPTER
from vem_plugins.commands.record import FOLDER
from vem_plugins.authoring.testing import offline_env

pytestmark = [pytest.mark.needs(ADAPTER), pytest.mark.slow]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tried(tmp_path_factory):
    root = tmp_path_factory.mktemp("try")
    env = dict(os.environ, TORCH_HOME=str(root / "torch_home"), **offline_env())
    proc = subprocess.run(
        [sys.executable, "-m", "vem_plugins", "try", "--dir", str(root / "omgd"),
         "--out", str(root / "out"), "--epochs", "1", "--pairs", "8"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    folders = [p for p in (root / "out").iterdir() if p.name != "data"]
    return root, proc, folders


def test_try_trains_both_and_reports(tried):
    root, proc, folders = tried
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installed omgd" in proc.stdout and "report: " in proc.stdout
    assert "with-vem (with VEM): held-out PSNR " in proc.stdout
    assert "without-vem (without VEM): held-out PSNR " in proc.stdout
    assert "8 training and 32 held-out pairs" in proc.stdout
    assert "with-vem" in proc.stderr and "without-vem" in proc.stderr  # the progress bars
    assert len(folders) == 1
    runs = {name: folders[0] / name / FOLDER for name in ("with-vem", "without-vem")}
    for name, folder in runs.items():
        info = json.loads((folder / "run.json").read_text())
        assert info["vem"] is (name == "with-vem")
        assert info["lock"]["commit"] == ADAPTER.commit
        console = (folder.parent / "console.txt").read_text()
        assert "--random_vgg: OMGD's VGG16 losses use seeded random weights" in console
        metrics = lines(folder / "metrics.jsonl")[-1]["values"]
        assert 0 < metrics["heldout_psnr"] < 100 and -1 < metrics["heldout_ssim"] < 1
    with_vem, without = (lines(runs[n] / "scalars.jsonl") for n in ("with-vem", "without-vem"))
    assert [s["step"] for s in with_vem] == [s["step"] for s in without] == [1]  # 2 steps
    assert set(with_vem[0]["vem"]) == {"mi", "ebm_loss", "energy_gap", "mi_skipped"}
    assert without[0]["vem"] == {}
    # same seed, same data, the same seeded random VGG16: the first step's student losses agree
    for name in ("G_SSIM", "G_style", "G_feature", "G_tv"):
        assert with_vem[0]["upstream"][name] == pytest.approx(without[0]["upstream"][name])
    sizes = {n: json.loads((f / "models.json").read_text()) for n, f in runs.items()}
    assert sizes["with-vem"]["student"] == sizes["without-vem"]["student"]
    assert sizes["with-vem"]["estimator"]["params"] > 0 and "estimator" not in \
        sizes["without-vem"]
    samples = lines(runs["with-vem"] / "samples.jsonl")[0]["images"]
    assert set(samples) == {"input", "target", "teacher", "student", "langevin"}
    assert "langevin" not in lines(runs["without-vem"] / "samples.jsonl")[0]["images"]


def test_try_report_in_chromium(tried):
    root, proc, folders = tried
    assert proc.returncode == 0, proc.stdout + proc.stderr
    drawn, text = images(folders[0] / "report.html", screenshot=root / "report.png")
    plots = [i for i in drawn if i["cls"] == "plot"]
    grids = [i for i in drawn if i["cls"] == "grid"]
    assert len(plots) == 8  # SSIM, style, feature, TV, MI term, gap, EBM loss, skipped
    assert len(grids) == 5 + 4  # one sample step; the run without VEM has no t~
    for image in drawn:  # drawn, and not one flat colour (edge maps have two)
        assert image["complete"] and image["width"] > 0 and image["colours"] > 1, image
    assert "heldout_psnr" in text and "Missing" not in text
