"""Fault injection: every change to a checkout interrupted at every git step.

A ``git`` wrapper first on ``PATH`` counts the git commands ``vem-plugins`` runs and, at the
chosen one, kills it (SIGKILL before or after the git command, or after git has written half of
the paths it was given on stdin) or sends it SIGTERM. After each interruption, as a user would:
``status`` (no ``--force``) must succeed and tell the truth — the tree is byte for byte the old
state or the new one, and status names that state — and every byte the user wrote is in the
tree or in a backup the output named; then the same command again must finish the job.

The toy adapter is registered through a plugin package whose adapter (pin, patches) comes from a
JSON file the test rewrites, so upgrades and pin changes run through the real command line.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import git

SCRIPT = Path(sys.executable).with_name("vem-plugins")
REAL_GIT = shutil.which("git")

WRAPPER = r"""#!/bin/bash
# git that interrupts vem-plugins at its FAULT_AT-th git command (tests/test_faults.py)
real=$FAULT_REAL_GIT
if [ -z "$FAULT_AT" ]; then exec "$real" "$@"; fi
sub=""; i=1
while [ $i -le $# ]; do
  a=${!i}
  case "$a" in -c|-C) i=$((i+2));; -*) i=$((i+1));; *) sub=$a; break;; esac
done
echo "$sub" >> "$FAULT_LOG"
n=$(wc -l < "$FAULT_LOG")
if [ "$n" != "$FAULT_AT" ]; then exec "$real" "$@"; fi
case "$FAULT_MODE" in
  kill-before) kill -KILL $PPID; exit 137;;
  term-before) kill -TERM $PPID; exec "$real" "$@";;
  kill-after) "$real" "$@"; rc=$?; kill -KILL $PPID; exit $rc;;
  half)
    tmp=$(mktemp); cat > "$tmp"
    half=$(( ($(tr -cd '\0' < "$tmp" | wc -c) + 1) / 2 ))
    head -z -n $half "$tmp" | "$real" "$@"; rm -f "$tmp"; kill -KILL $PPID; exit 137;;
esac
"""

PLUGIN = """\
import json, os
from pathlib import Path
from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter

@hookimpl
def register_adapters(register):
    spec = json.loads(Path(os.environ["TOY_SPEC"]).read_text())
    register(Adapter(name="toy", url=spec["url"], commit=spec["commit"],
                     patches=tuple(Path(p) for p in spec["patches"]),
                     file_hashes=spec["file_hashes"],
                     added_files={k: Path(v) for k, v in spec["added_files"].items()},
                     version=spec["version"]))
"""

FILES = {"train.py": "".join(f"line {i}\n" for i in range(1, 11)),
         "models/net.py": "class Net:\n    pass\n", "README.md": "toy\n", ".gitignore": "logs/\n",
         **{f"data/part{i}.txt": f"part {i}\n" for i in range(4)}}
NEWER = {"train.py": FILES["train.py"] + "line 11\n", "README.md": "toy, newer\n",
         **{f"data/part{i}.txt": f"part {i} newer\n" for i in range(4)}}


def insertion(path, after, lines, new=False) -> str:
    head = [f"diff --git a/{path} b/{path}"] + (["new file mode 100644"] if new else [])
    head += ["--- /dev/null" if new else f"--- a/{path}", f"+++ b/{path}"]
    return "\n".join(head + [f"@@ -{after},0 +{after + 1},{len(lines)} @@"]
                     + ["+" + line for line in lines]) + "\n"


def sha(text) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    repo = root / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin")
    pin = git(repo, "rev-parse", "HEAD").strip()
    for name, text in NEWER.items():
        (repo / name).write_text(text)
    git(repo, "commit", "-q", "-am", "newer")
    newer = git(repo, "rev-parse", "HEAD").strip()

    plugin = root / "plugin"
    plugin.mkdir()
    (plugin / "toyfaults.py").write_text(PLUGIN)
    info = plugin / "toyfaults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyfaults\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vem_plugins]\ntoy = toyfaults\n")
    patches = {
        "01-compat.patch": insertion("train.py", 1, ["import toy_vem  # compat"]),
        "02-vem.patch": insertion("train.py", 6, ["toy_vem.step()  # vem"])
        + insertion("models/net.py", 1, ["    toy_vem.register()"]),
        "02-vem-v2.patch": insertion("models/net.py", 2, ["    toy_vem.v2()"])
        + insertion("data/part0.txt", 1, ["# vem v2"]) + insertion("data/part1.txt", 1, ["# v2"]),
    }
    for name, text in patches.items():
        (plugin / name).write_text(text)
    (plugin / "toy_vem.py").write_text("def step():\n    pass\n")

    def spec(version, commit, second, hashes):
        return {"url": str(repo), "commit": commit, "version": version,
                "patches": [str(plugin / "01-compat.patch"), str(plugin / second)],
                "file_hashes": {p: sha(t) for p, t in hashes.items()},
                "added_files": {"toy_vem.py": str(plugin / "toy_vem.py")}}

    old_hashes = {p: FILES[p] for p in ("train.py", "models/net.py", "data/part0.txt",
                                        "data/part1.txt")}
    specs = {"v1": spec("1", pin, "02-vem.patch", old_hashes),
             "v2": spec("2", pin, "02-vem-v2.patch", old_hashes),
             "newpin": spec("3", newer, "02-vem-v2.patch", {**old_hashes, **{
                 p: NEWER[p] for p in ("train.py", "data/part0.txt", "data/part1.txt")}})}
    for name, data in specs.items():
        (root / f"{name}.json").write_text(json.dumps(data))
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "git").write_text(WRAPPER)
    (bindir / "git").chmod(0o755)
    return {"root": root, "plugin": plugin, "bin": bindir, "pin": pin, "newer": newer}


class Cli:
    """``vem-plugins`` run as a user runs it, in ``work``, with the toy adapter at ``spec``."""

    def __init__(self, world, work: Path):
        self.world, self.work = world, work
        work.mkdir(parents=True, exist_ok=True)

    def __call__(self, spec, *args, fault=None):
        env = {**os.environ, "PYTHONPATH": str(self.world["plugin"]),
               "XDG_STATE_HOME": str(self.work / ".state"),
               "TOY_SPEC": str(self.world["root"] / f"{spec}.json"),
               "PATH": f"{self.world['bin']}{os.pathsep}{os.environ['PATH']}",
               "FAULT_REAL_GIT": REAL_GIT, "FAULT_LOG": str(self.work / ".git-log")}
        env.pop("VEM_PLUGINS_DISABLE_AUTOLOAD", None)
        if fault:
            (self.work / ".git-log").unlink(missing_ok=True)
            env["FAULT_AT"], env["FAULT_MODE"] = str(fault[0]), fault[1]
        return subprocess.run([str(SCRIPT), *args], cwd=self.work, env=env, text=True,
                              capture_output=True, timeout=120)

    def steps(self) -> list[str]:
        """The git subcommands the last faulted run started, in order."""
        return (self.work / ".git-log").read_text().split()


def state(cli, spec, dest) -> str:
    proc = cli(spec, "status", "toy", "--dir", str(dest))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[0].split(": ", 1)[1]


def tree(dest: Path) -> dict | None:
    """The checkout's files (outside .git folders and but for the lock's time), as bytes."""
    if not dest.exists():
        return None
    out = {}
    for p in sorted(dest.rglob("*")):
        rel = p.relative_to(dest)
        if ".git" in rel.parts or not p.is_file():
            continue
        data = p.read_bytes()
        out[str(rel)] = re.sub(rb'"time": "[^"]*"', b"", data) if p.name.endswith("lock.json") \
            else data
    return out


#: The user's content in each scenario: (path in the checkout, bytes that must survive).
MINE = {"train.py": b"mine = 1\n", "notes.txt": b"my notes\n", "README.md": b"my readme\n",
        "logs/run.txt": b"loss 0.5\n", "myexp/wip.txt": b"work in progress\n",
        "myexp/exp.py": b"experiment = 1\n"}


def edit(dest: Path, *paths):
    for path in paths:
        full = dest / path
        full.parent.mkdir(parents=True, exist_ok=True)
        with open(full, "ab") as f:
            f.write(MINE[path])
    if "myexp/exp.py" in paths:  # a nested repository with history and an uncommitted file
        git(dest / "myexp", "init", "-q")
        git(dest / "myexp", "add", "exp.py")
        git(dest / "myexp", "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "e")


#: name -> (how the checkout is made, its user content, the spec and arguments of the command).
SCENARIOS = {
    "fresh install": ([], (), ("v1", "install")),
    "upgrade": ([("v1", "install")], ("README.md", "notes.txt"), ("v2", "install")),
    "new pin": ([("v1", "install")], ("notes.txt",), ("newpin", "install")),
    "install over pristine": ([("v1", "install"), ("v1", "uninstall")], ("notes.txt",),
                              ("v1", "install")),
    "uninstall": ([("v1", "install")], ("README.md", "notes.txt"), ("v1", "uninstall")),
    "forced repair": ([("v1", "install")], ("train.py", "notes.txt"),
                      ("v1", "install", "--force")),
    "forced upgrade to a new pin": ([("v1", "install")], ("train.py",),
                                    ("newpin", "install", "--force")),
    "forced uninstall": ([("v1", "install")], ("train.py",), ("v1", "uninstall", "--force")),
    "remove": ([("v1", "install")], ("train.py", "notes.txt", "logs/run.txt", "myexp/exp.py",
                                     "myexp/wip.txt"), ("v1", "uninstall", "--remove", "--force")),
}


def named(outputs: str) -> list[Path]:
    """The backups and kept folders the output named."""
    return [Path(p) for p in re.findall(r"(/\S+?\.(?:patch|kept-[\d-]+))(?=[\s,;)]|$)", outputs)]


def survives(dest: Path, path: str, data: bytes, outputs: str) -> bool:
    """The user's ``data`` for ``path`` is in the tree or in a backup the output named."""
    if (dest / path).is_file() and data in (dest / path).read_bytes():
        return True
    for place in named(outputs):
        if place.suffix == ".patch" and place.is_file():
            text = place.read_bytes()
            if all(b"+" + line in text for line in data.splitlines()):
                return True
        elif (place / path).is_file() and data in (place / path).read_bytes():
            if path.startswith("myexp/"):  # the nested repository kept its history
                return "e" == git(place / "myexp", "log", "-1", "--format=%s").strip()
            return True
    return False


@pytest.fixture(scope="module")
def prepared(world, tmp_path_factory):
    """For each scenario: a template checkout, and the state, tree and steps of the command
    run to completion on a copy of it."""
    out = {}
    for name, (setup, mine, command) in SCENARIOS.items():
        base = tmp_path_factory.mktemp("template")
        cli = Cli(world, base / "work")
        dest = cli.work / "toy"
        for spec, verb in setup:
            assert cli(spec, verb, "toy", "--dir", str(dest)).returncode == 0
        if mine:
            edit(dest, *mine)
        spec, *args = command
        before = (state(cli, spec, dest), tree(dest))
        shutil.copytree(cli.work, base / "copy", symlinks=True)
        ref = Cli(world, base / "copy")
        done = ref(spec, args[0], "toy", *args[1:], "--dir", str(ref.work / "toy"),
                   fault=(0, "none"))
        assert done.returncode == 0, done.stderr
        after = (state(ref, spec, ref.work / "toy") if (ref.work / "toy").exists()
                 else "not installed", tree(ref.work / "toy"))
        out[name] = {"cli": cli, "spec": spec, "args": args, "mine": mine, "before": before,
                     "after": after, "steps": ref.steps()}
    return out


def trial(world, case, at, mode, work: Path) -> list[str]:
    """Interrupt ``case``'s command at git step ``at`` with ``mode``; what went wrong."""
    shutil.copytree(case["cli"].work, work, symlinks=True)
    cli = Cli(world, work)
    dest, spec = work / "toy", case["spec"]
    command = [case["args"][0], "toy", *case["args"][1:], "--dir", str(dest)]
    faulted = cli(spec, *command, fault=(at, mode))
    outputs = faulted.stdout + faulted.stderr
    problems = []
    if faulted.returncode not in (0, 1, 130, -9, -15):  # -15: before the handler is set
        problems.append(f"exit status {faulted.returncode}: {faulted.stderr[-300:]}")
    if "Traceback" in faulted.stderr or len(faulted.stderr.strip().splitlines()) > 3:
        problems.append(f"not one line: {faulted.stderr[-300:]}")
    if dest.exists():
        look = cli(spec, "status", "toy", "--dir", str(dest))
        outputs += look.stdout + look.stderr
        if look.returncode:
            return problems + [f"status failed: {look.stderr.strip()}"]
        now = (look.stdout.splitlines()[0].split(": ", 1)[1], tree(dest))
    else:
        now = ("not installed", None)
    if now not in (case["before"], case["after"]):
        changed = sorted(k for k in {**(now[1] or {}), **(case["after"][1] or {})}
                         if (now[1] or {}).get(k) != (case["after"][1] or {}).get(k))
        problems.append(f"half-state: status {now[0]!r}, files unlike the new state: {changed}")
    for path in case["mine"]:
        if not survives(dest, path, MINE[path], outputs):
            problems.append(f"the user's {path} is neither in the tree nor in a named backup")
    again = cli(spec, *command)
    if again.returncode or tree(dest) != case["after"][1]:
        problems.append(f"rerun: exit {again.returncode}, {again.stderr.strip()[-300:]}")
    return problems


#: mode -> the git subcommands it interrupts (None: all). Killed after a command that only
#: reads is the same as killed before the next one; half applies to commands given paths on
#: stdin that write them.
MODES = {"kill-before": None, "term-before": None,
         "kill-after": {"read-tree", "update-index", "apply", "hash-object", "write-tree",
                        "commit-tree", "add", "checkout-index", "update-ref", "config", "clone",
                        "fetch", "checkout"},
         "half": {"checkout-index", "update-index"}}


@pytest.mark.faults
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_git_step_interrupted(world, prepared, scenario, mode, tmp_path):
    case = prepared[scenario]
    steps = [(n, sub) for n, sub in enumerate(case["steps"], 1)
             if MODES[mode] is None or sub in MODES[mode]]

    def one(step):
        at, sub = step
        problems = trial(world, case, at, mode, tmp_path / f"{at}")
        shutil.rmtree(tmp_path / f"{at}", ignore_errors=True)
        return f"{at} {sub}", problems

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        failures = {step: problems for step, problems in pool.map(one, steps) if problems}
    tally = Path(os.environ.get("VEM_FAULT_TALLY", os.devnull))
    with open(tally, "a") as f:
        f.write(f"{scenario}\t{mode}\t{len(steps)}\t{len(steps) - len(failures)}\n")
    assert not failures, json.dumps(failures, indent=1)

