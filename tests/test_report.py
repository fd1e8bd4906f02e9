"""``vem-plugins report`` on records written by :class:`vem_plugins.commands.record.RunRecord`.

The records here are written through the same class adapter glue uses, with made-up losses and
random images; the upstream tier (tests/upstream/test_try.py) renders the page of a real OMGD
run. The browser tests open the page in headless Chromium and check that every plot and image
strip was drawn and is not blank.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math

import pytest
import torch

from browser import images
from vem_plugins.commands import record, report
from vem_plugins.commands.cli import main

STEPS = (1, 5, 10, 15, 20)


def make_run(root, name, vem: bool, evaluations=(10, 20)):
    """A complete record of a short made-up run (with or without the MI term)."""
    opt = argparse.Namespace(vem=vem, mi=None, lambda_mi=0.1, ebm_width=16, batch_size=4,
                             ebm_range=(-1.0, 1.0), lr=2e-4, gpu_ids=[], log_dir=root / name)
    rec = record.RunRecord(root / name, every=10)
    rec.start("toy", opt, vem, student_losses=("G_SSIM", "G_tv"))
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    sizes = {"student": record.model_size(student, torch.zeros(2, 3, 16, 16))}
    if vem:
        sizes["estimator"] = record.model_size(torch.nn.Linear(4, 4))
    rec.models(**sizes)
    g = torch.Generator().manual_seed(len(name))
    for step in STEPS:
        ours = {"mi": 0.03 / step, "energy_gap": 0.3 / step, "ebm_loss": 0.31 / step,
                "mi_skipped": 0} if vem else {}
        rec.scalars(step, {"G_SSIM": 9.0 - step * 0.1, "G_tv": 0.2, "D_real": 0.9}, ours)
        if rec.wants_samples(step):
            batch = lambda: torch.rand(4, 3, 16, 16, generator=g) * 2 - 1  # noqa: E731
            rec.samples(step, input=batch(), target=batch(), teacher=None, student=batch(),
                        langevin=batch() if vem else None)
    for step in evaluations:
        rec.metrics(step, {"metric/fid_student": 50.0 + step if vem else math.nan,
                           "metric/fid-best_student": 1e9,
                           "heldout_psnr": 10.0 + step / 10, "heldout_ssim": 0.1 + step / 100})
    return root / name


def test_record_files(tmp_path):
    run = make_run(tmp_path, "a", vem=True)
    folder = run / record.FOLDER
    info = json.loads((folder / "run.json").read_text())
    assert info["adapter"] == "toy" and info["vem"] is True
    assert info["options"]["ebm_range"] == [-1.0, 1.0] and info["options"]["log_dir"] == str(run)
    assert info["student_losses"] == ["G_SSIM", "G_tv"]
    models = json.loads((folder / "models.json").read_text())
    # MACs are counted with torchprofile, one of the [upstream] extras: None without it
    macs = 16 * 16 * 3 * 3 * 9 if importlib.util.find_spec("torchprofile") else None
    assert models["student"] == {"params": 3 * 3 * 9 + 3, "macs": macs}
    assert models["estimator"]["params"] == 20
    scalars = [json.loads(line) for line in (folder / "scalars.jsonl").read_text().splitlines()]
    assert [s["step"] for s in scalars] == list(STEPS)
    assert scalars[1]["vem"]["energy_gap"] == pytest.approx(0.06)
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1, 10, 20]  # the first step and every 10
    assert set(samples[0]["images"]) == {"input", "target", "student", "langevin"}
    from PIL import Image
    strip = Image.open(folder / samples[0]["images"]["langevin"])
    assert strip.size == (3 * 16 + 4 * 2, 16 + 2 * 2)  # record.STRIP images with 2 px padding


def test_record_rejects_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="--vem_record_every"):
        record.RunRecord(tmp_path, every=0)


def test_report_compares_runs(tmp_path):
    runs = [make_run(tmp_path, "with", vem=True), make_run(tmp_path, "without", vem=False)]
    path, read = report.write(runs, tmp_path / "page.html")
    assert all(not r.problems for r in read)
    page = path.read_text()
    assert "with (with VEM)" in page and "without (without VEM)" in page
    assert "heldout_psnr" in page and "12" in page  # the last evaluation: 10 + 20 / 10
    assert "metric/fid_student</th>" in page and "<td>70</td>" in page  # computed in one run
    assert "not computed (nan)" in page  # ... and not in the other
    assert "Not computed by upstream in these runs (e.g. --no_fid, or weights missing " \
           "offline): metric/fid-best_student" in page
    assert page.count('class="plot"') == 2 + 4 + 2  # 2 student losses, 4 VEM terms, PSNR+SSIM
    assert page.count('class="grid"') == 3 * 4 + 3 * 3  # steps x columns, t~ only with VEM


def test_report_in_chromium(tmp_path):
    runs = [make_run(tmp_path, "with", vem=True), make_run(tmp_path, "without", vem=False)]
    path, _ = report.write(runs, tmp_path / "page.html")
    drawn, text = images(path, screenshot=tmp_path / "page.png")
    plots = [i for i in drawn if i["cls"] == "plot"]
    grids = [i for i in drawn if i["cls"] == "grid"]
    assert len(plots) == 8 and len(grids) == 21
    for image in drawn:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["colours"] > 1, f"{image['alt']} is blank"  # not one flat colour
    assert {i["alt"] for i in plots} >= {"energy gap E(t,s) - E(t~,s)",
                                         "EBM (contrastive divergence) loss"}
    assert "Langevin sample t~" in text and "Missing" not in text


def test_half_written_and_broken_runs(tmp_path):
    good = make_run(tmp_path, "crashed", vem=True, evaluations=())
    folder = good / record.FOLDER
    with open(folder / "scalars.jsonl", "a") as f:
        f.write('{"step": 25, "upstream": {"G_SS')  # killed while writing a line
    (folder / "models.json").unlink()
    lost = json.loads((folder / "samples.jsonl").read_text().splitlines()[-1])["images"]["student"]
    (folder / lost).unlink()
    (folder / "run.json").write_text("{not json")
    plain = tmp_path / "upstream-only"
    plain.mkdir()
    (plain / "log.txt").write_text("(epoch: 1, iters: 1) G_SSIM: 1.0\n")

    path, read = report.write([good, plain, tmp_path / "gone"], tmp_path / "page.html")
    problems = {r.name: "\n".join(r.problems) for r in read}
    assert "1 unreadable line(s)" in problems["crashed"]
    assert "models.json is missing" in problems["crashed"]
    assert "run.json is not valid JSON" in problems["crashed"]
    assert "metrics.jsonl is missing" in problems["crashed"]
    assert f"{lost} is missing" in problems["crashed"]
    assert "train with --vem_record" in problems["upstream-only"] and "log.txt" in \
        problems["upstream-only"]
    # which adapters add --vem_record comes from the registered ones (those with a try recipe)
    assert "omgd" in problems["upstream-only"].split("adapters that add it: ")[1]
    assert "cat" not in report.recording_adapters()  # no try recipe, no --vem_record
    assert "is not a directory" in problems["gone"]
    page = path.read_text()
    for text in ("Missing in crashed", "Missing in upstream-only", "Missing in gone",
                 "No evaluation recorded yet"):
        assert text in page
    # what was readable is still shown; without run.json every upstream loss is plotted
    assert page.count('class="plot"') == 3 + 4


def test_report_command(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path, "one", vem=True)
    assert main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert (run / "report.html").exists() and "report:" in out and not err
    (run / record.FOLDER / "metrics.jsonl").unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run), str(tmp_path / "nowhere")]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "vem-report.html").exists()
    assert "one: vem_record/metrics.jsonl is missing" in err and "nowhere" in err
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "no such run directory" in capsys.readouterr().err
