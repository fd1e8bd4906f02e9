"""``vem-plugins reproduce``: the paper's table rows (:mod:`vem_plugins.reproduce.specs`) over
seeds, as resumable jobs run here or on a Slurm cluster, then ``results.json`` and
``report.html`` with intervals (:mod:`vem_plugins.reproduce.results`).

Order of work, so that nothing starts that cannot finish: specs, methods and adapters are
checked; each adapter is installed where ``install`` would put it (or found where it is); every
dataset, statistics file and weight file the jobs need is checked (each missing one is a line
naming the command that makes it ready); only then do jobs run. The output folder keeps every
job (``<out>/jobs/<spec>/<method>/seed-<n>/``), so running the same command again runs only
what is not done, and ``--status`` lists jobs done, running and failed.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from vem_plugins.commands import check, places
from vem_plugins.data import catalog
from vem_plugins.errors import UsageError
from vem_plugins.install import checkout as installer
from vem_plugins.reproduce import executors, jobs, needs, specs

SCALES = ("paper", "tiny")


def add_parser(sub) -> None:
    """Add the ``reproduce`` command to ``sub`` (an argparse subparsers)."""
    text = ("run the paper's table rows (specs) with and without VEM over seeds, resumably, "
            "here or on Slurm, and write results.json and report.html with 95%% intervals")
    p = sub.add_parser("reproduce", help=text, description=text)
    p.set_defaults(run=run)
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help="built-in spec names (--list) or paths to spec files (.toml)")
    p.add_argument("--list", action="store_true", help="list the built-in specs and exit")
    p.add_argument("--status", action="store_true",
                   help="list the jobs in --out (done, running, failed with the end of its "
                        "log), rewrite the results, and exit")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 [3]")
    p.add_argument("--scale", choices=SCALES, default="paper",
                   help="paper: upstream's settings on the prepared datasets; tiny: generated "
                        "data, small networks, a few iterations, to check the pipeline on CPU "
                        "[paper]")
    p.add_argument("--methods", metavar="M,M",
                   help="only these methods of each spec (e.g. plain,vem) [all the spec's]")
    p.add_argument("--executor", choices=executors.EXECUTORS, default="local",
                   help="local: one job per visible GPU, or one at a time on CPU; slurm: "
                        "submitit's Slurm executor; submitit-local: submitit's local executor "
                        "(tries a cluster set-up on one machine) [local]")
    p.add_argument("--out", type=Path, default=Path("vem-reproduce"), metavar="DIR",
                   help="jobs, results.json and report.html [vem-reproduce]")
    p.add_argument("--root", type=Path, metavar="DIR",
                   help=f"the data root of `vem-plugins data` [${catalog.ROOT_ENV}, else "
                        f"./{catalog.DEFAULT_ROOT}]")
    slurm = p.add_argument_group("Slurm (--executor slurm; submitit's parameters)")
    slurm.add_argument("--partition", help="slurm partition")
    slurm.add_argument("--time-min", type=int, dest="timeout_min", metavar="MIN",
                       help="time limit of each job in minutes")
    slurm.add_argument("--gpus-per-job", type=int, default=1, dest="gpus_per_node",
                       metavar="N", help="GPUs per job [1]")
    slurm.add_argument("--cpus-per-job", type=int, dest="cpus_per_task", metavar="N")
    slurm.add_argument("--mem-gb", type=int, metavar="GB")
    slurm.add_argument("--array-parallelism", type=int, dest="slurm_array_parallelism",
                       metavar="N", help="jobs running at once")


def run(args) -> int:
    if args.list:
        return _list()
    out = args.out.absolute()
    if args.status:
        return _status(out)
    if not args.specs:
        raise UsageError("give at least one SPEC (`vem-plugins reproduce --list` shows them)")
    if args.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1, got {args.seeds}")
    chosen = [specs.resolve(name) for name in dict.fromkeys(args.specs)]
    methods = _methods(chosen, args.methods)
    adapters = {s.adapter: places.adapter(s.adapter) for s in chosen}
    for adapter in adapters.values():
        if problem := check.requirements_problem(adapter):
            raise UsageError(problem)
    root = catalog.data_root(args.root)
    checkouts = {name: _checkout(adapter) for name, adapter in adapters.items()}
    missing = [line for s in chosen
               for line in needs.problems(s, args.scale, checkouts[s.adapter], root)]
    if missing:
        for line in missing:
            print(f"vem-plugins: missing: {line}", file=sys.stderr)
        raise UsageError(f"{len(missing)} thing(s) the jobs need are missing (above); no job "
                         f"was started")
    folders = {}
    for spec in chosen:
        scale = spec.scales[args.scale]
        data = _tiny_data(spec, out) if args.scale == "tiny" else checkouts[spec.adapter] / (
            scale.data or ".")
        for method in methods[spec.name]:
            for seed in range(args.seeds):
                folder = out / "jobs" / spec.name / method / f"seed-{seed}"
                jobs.describe(folder, spec=spec, scale=args.scale, method=method, seed=seed,
                              checkout=checkouts[spec.adapter], data=data)
                folders[spec.name, method, seed] = folder
    print(f"{len(folders)} job(s): {len(chosen)} spec(s) x methods x {args.seeds} seed(s), "
          f"{args.scale} scale, in {places.show(out)}", flush=True)
    slurm = {k: getattr(args, k) for k in ("partition", "timeout_min", "gpus_per_node",
                                           "cpus_per_task", "mem_gb", "slurm_array_parallelism")}
    from vem_plugins.reproduce import results  # (with the report's plotting: not at start-up)
    try:
        executors.run(list(folders.values()), args.executor, out, slurm,
                      progress=sys.stderr.isatty(), say=lambda text: print(text, flush=True))
    finally:
        summary = results.collect(chosen, folders, args.scale)
        data_path, page = results.write(summary, out)
    return _report_jobs(summary, data_path, page)


def _methods(chosen, given: str | None) -> dict[str, list[str]]:
    if not given:
        return {s.name: list(s.methods) for s in chosen}
    wanted = [m.strip() for m in given.split(",") if m.strip()]
    for method in wanted:
        for spec in chosen:
            if method not in spec.methods:
                raise UsageError(f"unknown method {method!r} for spec {spec.name} (its "
                                 f"methods: {', '.join(spec.methods)})")
    return {s.name: wanted for s in chosen}


def _checkout(adapter) -> Path:
    """Where the adapter is installed (third_party/NAME or a remembered --dir); installed into
    third_party/NAME when it is nowhere, upgraded when its patches are not current."""
    found = places.checkouts(adapter.name)
    dest = found[0] if found else places.default_dest(adapter.name)
    result = installer.install(adapter, dest, progress=sys.stderr.isatty())
    places.remember(adapter.name, dest)
    print(result.summary(places.show), flush=True)
    return dest


def _tiny_data(spec, out: Path) -> Path:
    """The spec's generated dataset (the same files every time), written once."""
    from vem_plugins.authoring import smoke
    kind, size, count = spec.scales["tiny"].generate
    folder = out / "data" / spec.name
    if not folder.is_dir():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        smoke.make_dataset(staging, kind, size, count)
        staging.rename(folder)
    return folder


def _report_jobs(summary: dict, data_path: Path, page: Path) -> int:
    failed = [j for j in summary["jobs"] if j["status"] == "failed"]
    for job in failed:
        print(f"vem-plugins: failed: {job['spec']} {job['method']} seed {job['seed']}: "
              f"{job['problem']} ({places.show(Path(job['folder']) / 'console.txt')})",
              file=sys.stderr)
    for row in summary["rows"]:
        for method, m in row["methods"].items():
            mean = "–" if m["mean"] is None else f"{m['mean']:.3f}"
            ci = "" if m["half_width"] is None else f" ± {m['half_width']:.3f}"
            print(f"{row['spec']} {method}: {row['metric']} {mean}{ci} (n={m['n']})")
    print(f"results: {places.show(data_path)}\nreport: {places.show(page)}")
    return 1 if failed else 0


def _status(out: Path) -> int:
    folders = {}
    for job_file in sorted(out.glob("jobs/*/*/seed-*/job.json")):
        job = jobs.read(job_file)
        if job:
            folders[job["spec"], job["method"], job["seed"]] = (job_file.parent, job)
    if not folders:
        raise UsageError(f"no jobs in {places.show(out)} (give the --out of a reproduce run)")
    counts: dict[str, int] = {}
    for (name, method, seed), (folder, job) in sorted(folders.items()):
        status = jobs.status(folder)
        counts[status] = counts.get(status, 0) + 1
        line = f"{status:<11} {name} {method} seed {seed}"
        st = jobs.state(folder)
        if status == "done":
            line += f": {job['metric']} {st.get('metric')}"
        elif status == "failed":
            line += f": {st.get('failed')}\n" + "\n".join(
                "    " + text for text in jobs.tail(folder).splitlines())
        elif st.get("stages_done"):
            line += f" (stages done: {', '.join(st['stages_done'])})"
        print(line)
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    from vem_plugins.reproduce import results
    chosen, scale = [], None
    for folder, job in folders.values():
        scale = job["scale"]
        if job["spec"] not in [s.name for s in chosen]:
            try:
                chosen.append(specs.load(Path(job["spec_file"])))
            except UsageError:
                continue
    data_path, page = results.write(
        results.collect(chosen, {k: f for k, (f, _) in folders.items()}, scale), out)
    print(f"results: {places.show(data_path)}\nreport: {places.show(page)}")
    return 0


def _list() -> int:
    for name, path in specs.builtin().items():
        spec = specs.load(path)
        hours = spec.scales["paper"].gpu_hours
        print(f"{name:<34} {spec.table}: {spec.row} [{spec.adapter}, {spec.dataset}, "
              f"{spec.metric}; methods {', '.join(spec.methods)}"
              + (f"; ~{hours:g} GPU-h a job" if hours else "") + "]")
    return 0
