"""``vem-plugins report`` on records written by :class:`vem_plugins.commands.record.RunRecord`.

The records here are written through the same class adapter glue uses, with made-up losses and
random images; the upstream tier (tests/upstream/test_try.py) renders the page of a real OMGD
run. The browser tests open the page in headless Chromium and check that every plot and image
strip was drawn and is not blank.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import math
from pathlib import Path

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
    assert "vem_record/scalars.jsonl line 6: not JSON (Unterminated string" in problems["crashed"]
    assert "(the run stopped while writing it?); skipped" in problems["crashed"]
    assert "models.json is missing" in problems["crashed"]
    assert "run.json is not valid JSON" in problems["crashed"]
    assert "metrics.jsonl is missing" in problems["crashed"]
    assert f"samples.jsonl line 3: image path '{lost}' (student, step 20) is missing" in \
        problems["crashed"]
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


def _entries(path, *lines):
    """Append ``lines`` (objects as JSON, strings as they are) to a record file."""
    with open(path, "a") as f:
        f.writelines((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)


def test_report_embeds_only_the_record_folder(tmp_path):
    """An image path out of vem_record/ (absolute, .., a symlink) is refused, not embedded."""
    run = make_run(tmp_path, "a", vem=True)
    folder = run / record.FOLDER
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not really: a private key " * 8)
    (folder / "samples" / "out.png").symlink_to(secret)
    good = "samples/00000001_student.png"
    (folder / "samples" / "in.png").symlink_to(folder / good)  # a symlink inside is fine
    (folder / "samples.jsonl").write_text("")
    _entries(folder / "samples.jsonl",
             {"step": 1, "images": {"input": "/etc/passwd", "student": good}},
             {"step": 10, "images": {"input": "../../secret.png", "teacher": "samples/in.png"}},
             {"step": 20, "images": {"input": "samples/out.png", "target": str(secret)}},
             {"step": 30, "images": {"input": 5, "target": {"path": good}, "student": None,
                                     "teacher": "a\0b", "langevin": "samples/" + "x" * 5000}})

    path, (read,) = report.write([run], tmp_path / "page.html")
    where = "vem_record/samples.jsonl line"
    assert read.problems == [
        f"{where} 1: image path '/etc/passwd' (input, step 1) is outside vem_record/; not shown",
        f"{where} 2: image path '../../secret.png' (input, step 10) is outside vem_record/; "
        "not shown",
        f"{where} 3: image path 'samples/out.png' (input, step 20) is outside vem_record/; "
        "not shown",
        f"{where} 3: image path '{secret}' (target, step 20) is outside vem_record/; not shown",
        f"{where} 4: image path (input, step 30) is an integer, not a string; not shown",
        f"{where} 4: image path (target, step 30) is an object, not a string; not shown",
        f"{where} 4: image path (student, step 30) is null, not a string; not shown",
        f"{where} 4: image path 'a\\x00b' (teacher, step 30) cannot be read; not shown",
        f"{where} 4: image path 'samples/{'x' * 5000}' (langevin, step 30) cannot be read; "
        "not shown"]
    page = path.read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    if Path("/etc/passwd").is_file():
        assert base64.b64encode(Path("/etc/passwd").read_bytes()).decode() not in page
    assert page.count('class="grid"') == 2  # step 1's student, step 10's teacher (a symlink)
    # a symlinked run directory is followed; a record file or folder linked out is not read
    (tmp_path / "latest").symlink_to(run)
    assert report.load(tmp_path / "latest").problems == read.problems
    (tmp_path / "settings.json").write_text('{"options": {"token": "s3cret"}}')
    (folder / "run.json").unlink()
    (folder / "run.json").symlink_to(tmp_path / "settings.json")
    (folder / "metrics.jsonl").unlink()
    (folder / "metrics.jsonl").mkdir()
    path, (read,) = report.write([run], tmp_path / "page.html")
    assert read.problems[0] == \
        "vem_record/run.json links out of vem_record/: not read, no settings or upstream pin"
    assert read.problems[1].startswith("vem_record/metrics.jsonl cannot be read (")
    assert "Is a directory" in read.problems[1]
    assert "s3cret" not in path.read_text()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / record.FOLDER).symlink_to(folder)
    linked = report.load(tmp_path / "b").problems
    assert "vem_record/scalars.jsonl links out of vem_record/: not read, no loss curves" in linked


def test_malformed_records_name_file_and_line(tmp_path):
    """Bad JSON and entries of the wrong shape are problems naming the file and line; what is
    well-formed is still shown."""
    run = make_run(tmp_path, "a", vem=True)
    folder = run / record.FOLDER
    _entries(folder / "scalars.jsonl",  # after lines 1-5 written by make_run
             "not json", [1, 2], {"step": "5", "upstream": {}, "vem": {}},
             {"step": True, "upstream": {}, "vem": {}}, {"step": 7, "upstream": [1], "vem": {}},
             {"step": 8, "upstream": {}},
             {"step": 9, "upstream": {"G_SSIM": 10 ** 400, "G_tv": math.inf}, "vem": {}})
    _entries(folder / "metrics.jsonl", {"step": 30, "values": [1]}, "[" * 100000)
    _entries(folder / "samples.jsonl", {"step": 40, "images": "x.png"})
    with open(folder / "samples.jsonl", "ab") as f:
        f.write(b'{"step": 50, "images": {"input": "\xff"}}\n')  # not UTF-8
    (folder / "run.json").write_text("[1, 2]")
    (folder / "models.json").write_text('"big"')

    path, (read,) = report.write([run], tmp_path / "page.html")
    problems = "\n".join(read.problems)
    for line in (
            "vem_record/run.json: the JSON value is a list, not an object; no settings or "
            "upstream pin",
            "vem_record/models.json: the JSON value is a string, not an object; no model sizes",
            "vem_record/scalars.jsonl line 6: not JSON (Expecting value: line 1 column 1 (char "
            "0)); skipped",
            "vem_record/scalars.jsonl line 7: the JSON value is a list, not an object; skipped",
            "vem_record/scalars.jsonl line 8: step is a string, not an integer; skipped",
            "vem_record/scalars.jsonl: 3 more malformed line(s) skipped, from line 9",
            "vem_record/metrics.jsonl line 3: values is a list, not an object; skipped",
            "vem_record/metrics.jsonl line 4: not JSON (maximum recursion depth exceeded",
            "vem_record/samples.jsonl line 4: images is a string, not an object; skipped",
            "vem_record/samples.jsonl line 5: not JSON ('utf-8' codec can't decode byte 0xff"):
        assert line in problems
    assert "stopped while writing" not in problems  # said of a last line without its newline
    page = path.read_text()
    assert page.count('class="plot"') == 3 + 4 + 2  # with G_SSIM's step 9; no run.json
    assert page.count('class="grid"') == 3 * 4


@pytest.mark.parametrize("info, problem", [
    ('"a string"', "the JSON value is a string, not an object"),
    ('{"options": [1]}', "options is a list, not an object"),
    ('{"options": {"mi": 3}}', "options.mi is an integer, not a string"),
    ('{"argv": "python train.py"}', "argv is a string, not a list"),
    ('{"student_losses": [["G"]]}', "student_losses[0] is a list, not a string"),
    ('{"lock": {"patches": [{"name": "p"}]}}', "lock.patches[0].sha256 is missing"),
])
def test_run_json_of_the_wrong_shape(tmp_path, info, problem):
    """Valid JSON that is not what the page reads is a problem naming where, not a traceback."""
    run = make_run(tmp_path, "a", vem=True)
    (run / record.FOLDER / "run.json").write_text(info)
    read = report.load(run)
    assert read.problems == [f"vem_record/run.json: {problem}; no settings or upstream pin"]
    assert read.info is None and "vem-plugins report" in report.build([read])


def test_report_out_unwritable(tmp_path, capsys, monkeypatch):
    """A page that cannot be written is one error line and exit status 1."""
    run = make_run(tmp_path, "a", vem=True)
    assert main(["report", str(run), "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"vem-plugins: error: {tmp_path} is a directory; give -o a file name such as "
        f"{tmp_path / 'report.html'}"]
    (tmp_path / "file").write_text("")
    assert main(["report", str(run), "-o", str(tmp_path / "file" / "page.html")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"vem-plugins: error: cannot write the report to {tmp_path / 'file' / 'page.html'}: "
        "Not a directory"]

    def denied(self, text):  # tests may run as root, who may write anywhere
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "write_text", denied)
    assert main(["report", str(run)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"vem-plugins: error: cannot write the report to {run / 'report.html'}: "
        "Permission denied"]
