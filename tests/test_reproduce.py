"""``vem-plugins reproduce`` without upstream code: specs (the built-in ones and bad ones), the
statistics against hand-computed values, jobs and both executors on a toy spec whose stages are
small Python commands, the runner killed and restarted, failures, the results and the report.
The upstream tier (tests/upstream/test_reproduce.py) runs the built-in specs' tiny scale."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vem_plugins import plugins
from vem_plugins.commands import cli
from vem_plugins.data import catalog
from vem_plugins.errors import UsageError
from vem_plugins.reproduce import executors, jobs, needs, results, specs, statistics

# A stage that logs a seeded "FID" the way an upstream would (10 + seed/2 + 0.1 for odd seeds,
# 1 less with --vem, 0.2 less with --mi vid), and counts its own runs.
LOG = ("{python} -c \"import pathlib; o = pathlib.Path('{out}'); o.mkdir(exist_ok=True); "
       "pathlib.Path('{job}/runs.txt').open('a').write('x'); f = '{flags}'; "
       "base = 9.0 if '--vem' in f else 9.8 if 'vid' in f else 10.0; "
       "(o / 'log.txt').write_text('eval fid: %f' % (base + 0.5 * {seed} + 0.1 * ({seed} % 2)))\"")

TOY = '''
name = "toy"
table = "Toy table"
row = "toy row"
adapter = "omgd"
dataset = "edges2shoes"
metric = "FID"
pattern = 'fid: (\\S+)'
log = "log.txt"
source = "tests"
[methods]
plain = ""
vem = "--vem"
vid = "--mi vid"
[reported]
plain = 24.5
[paper]
stages = [{{ name = "train", run = "true" }}]
[tiny]
generate = {{ kind = "aligned", size = 8, count = 2 }}
stages = [
  {{ name = "prepare", run = "{prepare}" }},
  {{ name = "train", run = "{train}"{resume} }},
]
'''


def toy_spec(tmp_path, prepare="true", train=LOG, resume="") -> specs.Spec:
    path = tmp_path / "toy.toml"
    path.write_text(TOY.format(prepare=prepare.replace('"', '\\"'),
                               train=train.replace('"', '\\"'), resume=resume))
    return specs.load(path)


def make_jobs(spec, tmp_path, methods=("plain", "vem", "vid"), seeds=3) -> dict:
    folders = {}
    for method in methods:
        for seed in range(seeds):
            folder = tmp_path / "out" / "jobs" / spec.name / method / f"seed-{seed}"
            jobs.describe(folder, spec=spec, scale="tiny", method=method, seed=seed,
                          checkout=tmp_path, data=tmp_path / "data")
            folders[spec.name, method, seed] = folder
    return folders


def run_all(folders, tmp_path, executor="local"):
    executors.run(list(folders.values()), executor, tmp_path / "out", progress=False,
                  say=lambda _: None)


# --- statistics -------------------------------------------------------------------------------

def test_mean_interval_matches_hand_computation():
    # values 1, 2, 3, 4: mean 2.5, s = sqrt(5/3) = 1.290994, t_{0.975, 3} = 3.182446
    i = statistics.mean_interval([1, 2, 3, 4])
    assert i.mean == pytest.approx(2.5)
    assert i.half_width == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-6)
    assert (i.n, i.low, i.high) == (4, pytest.approx(0.445740, rel=1e-5),
                                    pytest.approx(4.554260, rel=1e-5))
    one = statistics.mean_interval([7.0])
    assert one.mean == 7.0 and math.isnan(one.half_width) and not one.excludes_zero()
    assert math.isnan(statistics.mean_interval([]).mean)


def test_paired_difference_uses_common_seeds_only():
    ours = {0: 9.0, 1: 9.6, 2: 9.1, 3: 50.0}
    theirs = {0: 10.0, 1: 10.5, 2: 10.2}
    d = statistics.paired_difference(ours, theirs)
    # differences -1.0, -0.9, -1.1: mean -1.0, s = 0.1, t_{0.975, 2} = 4.302653
    assert d.n == 3 and d.mean == pytest.approx(-1.0)
    assert d.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert d.excludes_zero()
    # unpaired, the seeds' spread would hide the same gain
    assert not statistics.paired_difference({0: 9.0, 1: 12.0}, {0: 10.0, 1: 11.0}).excludes_zero()


# --- specs ------------------------------------------------------------------------------------

def test_builtin_specs_load_and_name_real_adapters_and_datasets():
    builtin = specs.builtin()
    assert builtin
    adapters = plugins.adapters()
    for name, path in builtin.items():
        spec = specs.load(path)
        assert spec.name == name == path.stem
        assert spec.adapter in adapters and spec.dataset in catalog.DATASETS
        assert spec.methods["plain"] == "" and set(spec.ours) <= set(spec.methods)
        for scale in spec.scales.values():
            assert "{flags}" in scale.stages[-1].run  # the last stage is the method's


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('metric = "FID"', 'metric = "IS"'), "metric: one of FID, mIoU"),
    (lambda t: t.replace("pattern = 'fid: (\\S+)'", "pattern = 'fid'"), "exactly one group"),
    (lambda t: t.replace("plain = 24.5", "crd = 24.5"), "reported.crd: 'crd' is not one"),
    (lambda t: t.replace("plain = 24.5", 'plain = "x"'), "reported.plain: a number"),
    (lambda t: t.replace('name = "toy"', 'name = "Toy row"'), "name: lower-case"),
    (lambda t: t.replace('run = "true" }}]', 'run = "{{gpu}}" }}]'), "unknown placeholder {gpu}"),
    (lambda t: t.replace('adapter = "omgd"\n', ""), "adapter: missing"),
    (lambda t: t.replace('run = "true" }}]', 'run = "true", resume = "--from {{checkpoint}}", '
                                             'checkpoint = "c/*" }}]'), "run: has no {resume}"),
    (lambda t: t.replace('run = "true" }}]', 'run = "true {{resume}}", resume = "-r" }}]'),
     "checkpoint: missing"),
    (lambda t: t.replace('run = "true" }}]', 'run = "true {{resume}}" }}]'),
     "run: unknown placeholder {resume}"),
    (lambda t: t.replace('run = "true" }}]', 'run = "true {{resume}}", checkpoint = "c/*", '
                                             'resume = "--epoch {{epoch}}" }}]'),
     "resume: unknown placeholder {epoch}"),
    (lambda t: t.replace("[methods]", "[methods"), "not valid TOML"),
])
def test_bad_spec_files_are_one_line_naming_file_and_key(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(TOY).format(prepare="true", train="true {flags}", resume=""))
    with pytest.raises(UsageError) as err:
        specs.load(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_spec_and_missing_file():
    with pytest.raises(UsageError, match=r"unknown spec 'omgd-edges2shoes-resnt'; did you mean "
                                         r"omgd-edges2shoes-resnet"):
        specs.resolve("omgd-edges2shoes-resnt")
    with pytest.raises(UsageError, match="spec file nowhere/x.toml does not exist"):
        specs.resolve("nowhere/x.toml")


@pytest.mark.parametrize("argv, message", [
    (["reproduce"], "give at least one SPEC"),
    (["reproduce", "no-such-row"], "unknown spec 'no-such-row'"),
    (["reproduce", "omgd-edges2shoes-resnet", "--methods", "plain,vme"],
     "unknown method 'vme' for spec omgd-edges2shoes-resnet (its methods: plain, vem"),
    (["reproduce", "omgd-edges2shoes-resnet", "--seeds", "0"], "--seeds: must be >= 1"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "third_party").exists()  # refused before any install


def test_cli_unknown_adapter_in_a_spec_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mine.toml"
    path.write_text(TOY.replace('adapter = "omgd"', 'adapter = "omdg"')
                    .format(prepare="true", train="true {flags}", resume=""))
    assert cli.main(["reproduce", str(path), "--scale", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "unknown adapter 'omdg'; did you mean omgd?" in err and err.count("\n") == 1


def test_list_shows_every_builtin_spec(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in specs.builtin())


# --- what jobs need ---------------------------------------------------------------------------

def test_needs_name_the_command_for_each_missing_item(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = specs.resolve("omgd-edges2shoes-resnet")
    checkout = tmp_path / "omgd"
    checkout.mkdir()
    lines = needs.problems(spec, "paper", checkout, tmp_path / "data")
    assert len(lines) == 4, lines
    assert "dataset edges2shoes is not prepared" in lines[0]
    assert "vem-plugins data prepare edges2shoes --from" in lines[0]
    assert "real_stat/edges2shoes-r_B.npz is missing: vem-plugins data stats edges2shoes" in lines[1]
    assert "vgg16-397923af.pth is missing: `vem-plugins data weights`" in lines[2]
    assert "pt_inception-2015-12-05-6726825d.pth" in lines[3]
    # the tiny scale needs the Inception weights only (its data is generated)
    weights = tmp_path / "torch" / "hub" / "checkpoints"
    weights.mkdir(parents=True)
    (weights / "pt_inception-2015-12-05-6726825d.pth").touch()
    assert needs.problems(spec, "tiny", checkout, tmp_path / "data") == []


# --- jobs, executors, results -----------------------------------------------------------------

def test_local_executor_runs_each_job_once_and_the_results_hold_the_intervals(tmp_path):
    spec = toy_spec(tmp_path)
    folders = make_jobs(spec, tmp_path)
    run_all(folders, tmp_path)
    assert {jobs.status(f) for f in folders.values()} == {"done"}
    run_all(folders, tmp_path)  # again: nothing reruns
    assert all((f / "runs.txt").read_text() == "x" for f in folders.values())
    summary = results.collect([spec], folders, "tiny")
    row = summary["rows"][0]
    plain = row["methods"]["plain"]
    assert plain["seeds"] == {"0": 10.0, "1": pytest.approx(10.6), "2": 11.0}
    assert plain["mean"] == pytest.approx(statistics.mean_interval([10.0, 10.6, 11.0]).mean)
    assert plain["reported"] == 24.5 and row["methods"]["vem"]["reported"] is None
    gains = {g["baseline"]: g for g in row["gains"]}
    assert set(gains) == {"plain", "vid"}
    assert gains["plain"]["mean"] == pytest.approx(-1.0) and gains["plain"]["verdict"] == "gain"
    assert gains["plain"]["half_width"] == pytest.approx(0.0, abs=1e-9)
    data, page = results.write(summary, tmp_path / "out")
    assert json.loads(data.read_text())["rows"][0]["gains"][0]["verdict"] == "gain"
    html = page.read_text()
    assert "10.533 ± " in html and "24.50" in html and "vem − plain" in html


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    spec = toy_spec(tmp_path, train=LOG + " && test {seed} != 1 || "
                    "{python} -c \"raise SystemExit('boom: no GPU here')\"")
    folders = make_jobs(spec, tmp_path, methods=("plain", "vem"))
    run_all(folders, tmp_path)
    status = {k: jobs.status(f) for k, f in folders.items()}
    assert [k for k, s in status.items() if s == "failed"] == [("toy", "plain", 1),
                                                              ("toy", "vem", 1)]
    assert sum(s == "done" for s in status.values()) == 4
    summary = results.collect([spec], folders, "tiny")
    failed = [j for j in summary["jobs"] if j["status"] == "failed"]
    assert failed[0]["problem"] == "stage train exited with status 1"
    assert "boom: no GPU here" in failed[0]["tail"]
    assert summary["rows"][0]["methods"]["plain"]["n"] == 2
    _, page = results.write(summary, tmp_path / "out")
    assert "boom: no GPU here" in page.read_text()


def test_a_job_without_its_metric_is_done_with_a_problem(tmp_path):
    spec = toy_spec(tmp_path, train="true {flags}")
    folders = make_jobs(spec, tmp_path, methods=("plain",), seeds=1)
    run_all(folders, tmp_path)
    job = results.collect([spec], folders, "tiny")["jobs"][0]
    assert job["status"] == "done" and "no FID in upstream's log (log.txt" in job["problem"]


def test_a_changed_spec_starts_its_jobs_over(tmp_path):
    spec = toy_spec(tmp_path)
    folders = make_jobs(spec, tmp_path, methods=("plain",), seeds=1)
    run_all(folders, tmp_path)
    make_jobs(toy_spec(tmp_path, prepare="echo changed"), tmp_path, methods=("plain",), seeds=1)
    assert jobs.status(folders["toy", "plain", 0]) != "done"
    run_all(folders, tmp_path)
    assert (folders["toy", "plain", 0] / "runs.txt").read_text() == "xx"


RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from vem_plugins.reproduce import executors
    executors.run([Path(p) for p in json.loads(sys.argv[1])], sys.argv[2], Path(sys.argv[3]),
                  progress=False)
""")


@pytest.mark.parametrize("executor", ["local", "submitit-local"])
def test_killed_runner_restarted_runs_only_the_remaining_jobs(tmp_path, executor):
    # seed 1's last stage waits for the gate, so the runner is killed in the middle of it
    gate = tmp_path / "gate"
    spec = toy_spec(tmp_path, prepare="sleep 0.2",
                    train=f"while [ ! -e {gate} ] && [ {{seed}} = 1 ]; do sleep 0.1; done; " + LOG)
    folders = make_jobs(spec, tmp_path, methods=("plain",), seeds=3)
    order = [folders["toy", "plain", s] for s in range(3)]
    argv = [sys.executable, "-c", RUNNER, json.dumps(list(map(str, order))), executor,
            str(tmp_path / "out")]
    runner = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while jobs.state(order[1]).get("stages_done") != ["prepare"]:
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        runner.kill()
        runner.wait()
        if executor == "local":  # its worker stops the stage when the runner dies
            deadline = time.monotonic() + 30
            while jobs.held(order[1]):  # the kernel drops a job's lock with its process
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert jobs.status(order[1]) == "interrupted"
        else:  # submitit's job goes on without the runner; the next runner waits for it
            assert jobs.status(order[1]) == "running"
        assert jobs.status(order[0]) == "done" and not (order[1] / "runs.txt").exists()
        gate.touch()
        subprocess.run(argv, check=True, timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
    assert [jobs.status(f) for f in order] == ["done"] * 3
    assert [(f / "runs.txt").read_text() for f in order] == ["x"] * 3  # each ran once
    # the interrupted job resumed at its unfinished stage
    assert (order[1] / "console.txt").read_text().count("=== stage prepare") == 1


# An upstream that trains 4 iterations, saving ckpt/<i>.pt after each (atomically) and logging
# each iteration it runs; `--from FILE` goes on after that checkpoint. Iteration 2 waits for the
# gate (the runner is killed there); with the file `broken`, resuming fails.
UPSTREAM = textwrap.dedent("""
    import os, re, sys, time
    from pathlib import Path
    out, gate = Path(sys.argv[1]), Path(sys.argv[2])
    ckpt = Path(sys.argv[sys.argv.index("--from") + 1]) if "--from" in sys.argv else None
    start = int(re.search(r"\\d+", ckpt.name)[0]) + 1 if ckpt else 1
    if ckpt and (gate.parent / "broken").exists():
        sys.exit(f"cannot read {ckpt}")
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    for i in range(start, 5):
        with open(out / "iterations.txt", "a") as f:
            f.write(f"{i}\\n")
        (out / "ckpt" / "tmp").write_text(str(i))
        os.replace(out / "ckpt" / "tmp", out / "ckpt" / f"{i:06d}.pt")
        while i == 2 and not gate.exists():
            time.sleep(0.05)
    (out / "log.txt").write_text("fid: 7.5")
""")


def resumable_spec(tmp_path):
    (tmp_path / "upstream.py").write_text(UPSTREAM)
    return toy_spec(tmp_path, train=f"{{python}} {tmp_path}/upstream.py {{out}} {tmp_path}/gate "
                                    "{flags} {resume}",
                    resume=', resume = "--from {checkpoint}", checkpoint = "{out}/ckpt/*.pt"')


def test_an_interrupted_stage_resumes_from_upstreams_last_checkpoint(tmp_path):
    spec = resumable_spec(tmp_path)
    folder = make_jobs(spec, tmp_path, methods=("vem",), seeds=1)["toy", "vem", 0]
    argv = [sys.executable, "-c", RUNNER, json.dumps([str(folder)]), "local",
            str(tmp_path / "out")]
    runner = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "run" / "ckpt" / "000002.pt").exists():
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.05)
        runner.kill()
        runner.wait()
        while jobs.held(folder):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert jobs.status(folder) == "interrupted"
        (tmp_path / "gate").touch()
        subprocess.run(argv, check=True, timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
    # iterations 1 and 2 ran once: the stage went on from the checkpoint of iteration 2
    assert (folder / "run" / "iterations.txt").read_text().split() == ["1", "2", "3", "4"]
    assert jobs.state(folder)["metric"] == 7.5
    ckpt = folder / "run" / "ckpt" / "000002.pt"
    assert [(r["stage"], r["checkpoint"], r["step"]) for r in jobs.state(folder)["resumed"]] == \
        [("train", str(ckpt), 2)]
    console = (folder / "console.txt").read_text()
    assert "=== stage train" in console and f", resumed from {ckpt} (step 2): " in console
    assert f"--vem --from {ckpt}\n" in console
    assert console.count("=== stage prepare") == 1


def test_a_stage_whose_resume_fails_starts_afresh_the_next_time(tmp_path):
    spec = resumable_spec(tmp_path)
    (tmp_path / "gate").touch()
    folder = make_jobs(spec, tmp_path, methods=("plain",), seeds=1)["toy", "plain", 0]
    jobs.describe(folder, spec=spec, scale="tiny", method="plain", seed=0, checkout=tmp_path,
                  data=tmp_path / "data")
    # a first attempt that got to iteration 3 and then failed (a node lost, say)
    (folder / "run" / "ckpt").mkdir(parents=True)
    (folder / "run" / "ckpt" / "000003.pt").write_text("3")
    (folder / "run" / "ckpt" / "000001.pt").write_text("1")
    jobs.write(folder / "state.json", {"stages_done": ["prepare"], "stage": "train",
                                       "failed": "stage train exited with status 1"})
    (tmp_path / "broken").touch()
    with pytest.raises(jobs.JobFailed, match="stage train exited with status 1"):
        jobs.run(folder)  # the retry resumes from iteration 3, whose checkpoint is unreadable
    assert jobs.state(folder)["resumed"][-1]["step"] == 3
    assert jobs.run(folder) == 7.5  # so the next one starts the stage afresh, and says so
    assert (folder / "run" / "iterations.txt").read_text().split() == ["1", "2", "3", "4"]
    assert "failed after resuming from" in (folder / "console.txt").read_text()
    assert "starting it afresh" in jobs.tail(folder, 20)


def test_status_lists_done_and_failed_jobs_with_the_end_of_the_log(tmp_path, capsys):
    spec = toy_spec(tmp_path, train=LOG + " && test {seed} != 1 || "
                    "{python} -c \"raise SystemExit('boom: disk full')\"")
    folders = make_jobs(spec, tmp_path, methods=("plain",), seeds=2)
    run_all(folders, tmp_path)
    assert cli.main(["reproduce", "--status", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "done        toy plain seed 0: FID 10.0" in out
    assert "failed      toy plain seed 1: stage train exited with status 1" in out
    assert "    boom: disk full" in out and "1 done, 1 failed" in out
    assert (tmp_path / "out" / "report.html").exists()
    assert cli.main(["reproduce", "--status", "--out", str(tmp_path / "none")]) == 1


def test_describe_fills_the_placeholders_and_leaves_bash_alone(tmp_path):
    spec = specs.resolve("omgd-edges2shoes-resnet")
    job = jobs.describe(tmp_path / "job", spec=spec, scale="paper", method="vid", seed=4,
                        checkout=tmp_path, data=tmp_path / "d")
    run = job["stages"][0]["run"]
    assert run == ('bash -c "$(cat scripts/resnet_pix2pix/edges2shoes/distill.sh) --gpu_ids 0 '
                   f'--seed 4 --log_dir {tmp_path}/job/run --mi vid"')


def test_seeded_runs_a_script_with_every_generator_seeded(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import random, sys, numpy, torch\n"
                      "print(__name__, sys.argv[1:], random.random(), numpy.random.rand(), "
                      "torch.rand(1).item())\n")
    def run(seed):
        return subprocess.run([sys.executable, "-m", "vem_plugins.reproduce.seeded", str(seed),
                               str(script), "--x", "1"], capture_output=True, text=True,
                              check=True).stdout
    assert run(3) == run(3) != run(4)
    assert run(3).startswith("__main__ ['--x', '1'] ")
    bad = subprocess.run([sys.executable, "-m", "vem_plugins.reproduce.seeded", "x.py"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("usage:")


@pytest.mark.parametrize("executor", ["local", "submitit-local"])
def test_a_job_that_cannot_start_is_failed_not_forgotten(tmp_path, executor):
    spec = toy_spec(tmp_path)
    folders = make_jobs(spec, tmp_path, methods=("plain",), seeds=2)
    (folders["toy", "plain", 1] / "job.json").write_text("{damaged")
    run_all(folders, tmp_path, executor)
    assert jobs.status(folders["toy", "plain", 0]) == "done"
    broken = folders["toy", "plain", 1]
    assert jobs.status(broken) == "failed"
    assert jobs.state(broken)["failed"] == "job.json is missing or damaged"


def test_the_command_starts_without_importing_torch():
    # every `vem-plugins` call (hundreds in the fault sweep) would pay seconds for it
    out = subprocess.run([sys.executable, "-c", "import sys, vem_plugins.commands.cli; "
                          "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'submitit') "
                          "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
