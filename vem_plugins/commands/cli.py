"""The ``vem-plugins`` command: try VEM on built-in data (:mod:`vem_plugins.commands.tryout`),
report on training runs (:mod:`vem_plugins.commands.report`), list adapters, install upstream code
patched, status, diff, uninstall; the paper's datasets and evaluation assets
(:mod:`vem_plugins.commands.data`); the paper's tables over seeds
(:mod:`vem_plugins.commands.reproduce`); and for adapter authors new-adapter, refresh and check
(:mod:`vem_plugins.commands.scaffold`, :mod:`vem_plugins.install.refresh`,
:mod:`vem_plugins.commands.check`).

Errors (:class:`~vem_plugins.errors.VemPluginsError`) are one line on stderr and exit status 1;
anything else is a bug and keeps its traceback. The work itself is in
:mod:`vem_plugins.install.checkout`. The command remembers where it installed each adapter (in
``$XDG_STATE_HOME/vem-plugins/checkouts.json``) so that ``list`` and ``status`` find
checkouts made with ``--dir``; ``third_party/NAME`` under the current directory is always
looked at.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from vem_plugins import __version__, plugins
from vem_plugins.commands import data, places, reproduce
from vem_plugins.install import git as gitops, checkout as installer
from vem_plugins.errors import InstallError, UsageError, VemPluginsError


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args) or 0
    except VemPluginsError as exc:
        print(f"vem-plugins: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vem-plugins: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vem-plugins diff NAME | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-plugins",
        description="Add VEM distillation to GAN-compression codebases: fetch each upstream "
                    "repository at a pinned commit and apply vem-plugins' small patches to it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name, func, help):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=func)
        return p

    def add_dir(p):
        p.add_argument("--dir", type=Path, metavar="PATH",
                       help="the checkout (default: third_party/NAME under the current directory)")

    p = command("try", _try, "see VEM work: install an adapter if needed, train it on a built-in "
                             "paired dataset with and without --vem side by side on CPU, and "
                             "write an HTML report (refused, before any work, when the "
                             "adapter's requirements are not installed)")
    p.add_argument("name", nargs="?", default="omgd", metavar="NAME", help="the adapter [omgd]")
    add_dir(p)
    p.add_argument("--out", type=Path, default=Path("vem-try"), metavar="PATH",
                   help="where the dataset, the runs and the report go; each call adds a new "
                        "timestamped folder [vem-try]")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of each run [2]")
    p.add_argument("--pairs", type=int, default=320,
                   help="training pairs to generate [320]; 32 more are held out")

    p = command("report", _report, "write an HTML page on one training run or comparing runs "
                                   "(runs made with --vem_record)")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="upstream's log directory of a run")
    p.add_argument("--out", "-o", type=Path, metavar="FILE",
                   help="the page to write [RUN_DIR/report.html for one run, "
                        "./vem-report.html for several]")

    p = command("list", _list, "list the adapters, their upstreams and pins, and where they are "
                               "installed")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("install", _install, "clone an adapter's upstream at its pinned commit and apply "
                                     "its patches (upgrades an existing checkout); warns when the "
                                     "adapter's requirements are not installed, which running "
                                     "upstream's code needs")
    p.add_argument("name", metavar="NAME")
    add_dir(p)
    p.add_argument("--from", dest="source", metavar="SOURCE",
                   help="clone from this local clone, bare mirror, git bundle or URL instead of "
                        "the upstream URL (git's url.<base>.insteadOf rewriting also works)")
    p.add_argument("--force", action="store_true",
                   help="overwrite your edits to patched files after saving them to a .patch file")
    p.add_argument("--skip-assets", action="store_true",
                   help="leave the adapter's large optional files (weights, statistics) out of "
                        "the checkout")

    p = command("status", _status, "show pin vs HEAD, patches applied, files edited after "
                                   "patching, untracked files")
    p.add_argument("name", nargs="?", metavar="NAME")
    add_dir(p)

    p = command("diff", _diff, "show the checkout's change against upstream's pin")
    p.add_argument("name", metavar="NAME")
    add_dir(p)

    p = command("uninstall", _uninstall, "revert the patches to upstream's pristine tree "
                                         "(or delete the checkout)")
    p.add_argument("name", metavar="NAME")
    add_dir(p)
    p.add_argument("--remove", action="store_true", help="delete the checkout directory")
    p.add_argument("--force", action="store_true",
                   help="go ahead despite your edits, after saving them to a .patch file")
    _authoring_commands(command, add_dir)
    data.add_parser(sub)
    reproduce.add_parser(sub)
    return parser


# --- commands --------------------------------------------------------------------------------

def _try(args):
    from vem_plugins.commands import tryout
    adapter = places.adapter(args.name)
    dest = _dest(args)
    path, runs, processes = tryout.run(adapter, dest, args.out.absolute(), epochs=args.epochs,
                                       pairs=args.pairs, say=lambda text: print(text, flush=True))
    places.remember(adapter.name, dest)
    _print_problems(runs)
    for run in runs:
        last = run.metrics[-1]["values"] if run.metrics else {}
        if "heldout_psnr" in last:
            print(f"{run.label}: held-out PSNR {last['heldout_psnr']:.2f} dB, "
                  f"SSIM {last['heldout_ssim']:.3f}")
    print(f"report: {places.show(path)}")
    return 1 if any(p.process.returncode for p in processes) else 0


def _report(args):
    from vem_plugins.commands import report
    missing = [d for d in args.runs if not d.is_dir()]
    if len(missing) == len(args.runs):
        raise UsageError(f"no such run directory: {', '.join(map(str, missing))}")
    out = args.out or (args.runs[0] / "report.html" if len(args.runs) == 1
                       else Path("vem-report.html"))
    if out.is_dir():  # refused before the page is built, not after
        raise UsageError(f"{out} is a directory; give -o a file name such as "
                         f"{out / 'report.html'}")
    path, runs = report.write(args.runs, out)
    _print_problems(runs)
    print(f"report: {places.show(path)}")


def _print_problems(runs):
    for run in runs:
        for problem in run.problems:
            print(f"vem-plugins: warning: {run.name}: {problem}", file=sys.stderr)


def _list(args):
    rows = []
    for name, adapter in sorted(plugins.adapters().items()):
        found = places.checkouts(name)
        for place in found or [None]:
            rows.append({"name": name, "url": adapter.url, "commit": adapter.commit,
                         "dir": str(place) if place else None,
                         "state": _state(adapter, place) if place else "not installed"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = [("NAME", "UPSTREAM", "PIN", "STATE", "WHERE")]
    table += [(r["name"], r["url"], r["commit"][:7], r["state"],
               places.show(r["dir"]) if r["dir"] else "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])


def _install(args):
    from vem_plugins.commands import check
    adapter = places.adapter(args.name)
    if problem := check.requirements_problem(adapter):  # the source alone is of use: go on
        print(f"vem-plugins: warning: {problem}", file=sys.stderr)
    dest = _dest(args)
    result = installer.install(adapter, dest, source=args.source, force=args.force,
                               progress=sys.stderr.isatty(), skip_assets=args.skip_assets)
    places.remember(adapter.name, dest)
    for warning in result.warnings:
        print(f"vem-plugins: warning: {warning}", file=sys.stderr)
    print(result.summary(places.show))


def _status(args):
    if args.name:
        pairs = [(places.adapter(args.name), _dest(args))]
    elif args.dir:
        pairs = [(_owner(args.dir.absolute()), args.dir.absolute())]
    else:
        pairs = [(a, place) for name, a in sorted(plugins.adapters().items())
                 for place in places.checkouts(name)]
        if not pairs:
            print("no checkouts found (looked in ./third_party and where vem-plugins installed "
                  "before); install one with: vem-plugins install NAME")
    for adapter, dest in pairs:
        try:
            _print_status(installer.status(adapter, dest))
        except InstallError as exc:
            if args.name or args.dir:
                raise
            print(f"{adapter.name}: {exc}")  # a remembered place that changed since


def _diff(args):
    sys.stdout.write(installer.diff(places.adapter(args.name), _dest(args)))


def _uninstall(args):
    adapter = places.adapter(args.name)
    dest = _dest(args)
    result = installer.uninstall(adapter, dest, remove=args.remove, force=args.force)
    if args.remove:
        places.remember(adapter.name, dest, keep=False)
    for warning in result.warnings:
        print(f"vem-plugins: warning: {warning}", file=sys.stderr)
    print(result.summary(places.show))


# --- adapter authoring: new-adapter, refresh, check (docs/api.md) ----------------------------

def _authoring_commands(command, add_dir):
    p = command("new-adapter", _new_adapter, "create the skeleton of a third-party adapter "
                                             "package (pip install -e it to register it)")
    p.add_argument("name", metavar="NAME", help="the adapter's name, e.g. my-gan")
    p.add_argument("--url", required=True, help="the upstream git repository")
    p.add_argument("--commit", required=True, metavar="SHA", help="the full commit SHA to pin")
    p.add_argument("--dir", type=Path, metavar="PATH",
                   help="where to create the package (default: ./vem-NAME)")

    p = command("refresh", _refresh, "rewrite an adapter's patch files and file_hashes from "
                                     "the lines you inserted in its checkout")
    p.add_argument("name", metavar="NAME")
    add_dir(p)
    p.add_argument("--patch", metavar="FILE",
                   help="the patch that takes your new lines (default: the last of the "
                        "series; a new name creates it)")
    p.add_argument("--patches", type=Path, metavar="DIR",
                   help="the adapter's patch folder (default: found from the adapter)")

    p = command("check", _check, "verify an adapter: its patches apply to the pin, its "
                                 "requirements import, its smoke recipe runs with and without "
                                 "--vem (exit status 1 when not)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--from", dest="source", metavar="SOURCE",
                   help="clone from this local clone, bare mirror, bundle or URL")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="do the work in DIR and keep it (default: a temporary directory, "
                        "kept only when a check fails)")
    p.add_argument("--timeout", type=float, default=600, metavar="S",
                   help="seconds each smoke run may take [600]")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke runs")


def _new_adapter(args):
    from vem_plugins.commands import scaffold
    dest = (args.dir or Path(f"vem-{args.name}")).absolute()
    files = scaffold.new_adapter(args.name, args.url, args.commit, dest)
    print(f"created the {args.name} adapter package in {places.show(dest)}:")
    for path in files:
        print(f"  {places.show(path)}")
    print(f"next: pip install -e {places.show(dest)}; vem-plugins install {args.name}; insert your "
          f"lines in third_party/{args.name}; vem-plugins refresh {args.name}; "
          f"vem-plugins check {args.name}")


def _refresh(args):
    from vem_plugins.install import refresh
    result = refresh.refresh(places.adapter(args.name), _dest(args), patch=args.patch,
                             patch_dir=args.patches)
    print(result.summary())


def _check(args):
    from vem_plugins.commands import check
    outcomes = check.check(places.adapter(args.name), source=args.source, work=args.keep,
                           timeout=args.timeout, smoke_runs=not args.no_smoke,
                           report=lambda text: print(text, flush=True))
    return 1 if any(o.ok is False for o in outcomes) else 0


# --- helpers ---------------------------------------------------------------------------------

def _owner(dest: Path):
    """The adapter a checkout belongs to, from its lock file, else its HEAD."""
    adapters = plugins.adapters()
    try:
        name = json.loads((dest / installer.LOCK).read_text())["adapter"]
    except (OSError, ValueError, KeyError, TypeError):
        name = None  # no lock, or a damaged one: status rebuilds it
    if isinstance(name, str):
        if name in adapters:
            return adapters[name]
        raise InstallError(f"{dest} is a checkout of adapter {name!r}, which is not installed "
                           "in this Python environment")
    if dest.is_dir():
        head = gitops.head(dest)
        for adapter in adapters.values():
            if adapter.commit == head:
                return adapter
    raise InstallError(f"{dest} is not a checkout of any known adapter; if it is one whose "
                       f"lock is damaged, name the adapter: vem-plugins status NAME --dir {dest}")


def _dest(args) -> Path:
    return args.dir.absolute() if args.dir else places.default_dest(args.name)


def _state(adapter, place) -> str:
    try:
        return installer.status(adapter, place).state
    except InstallError:
        return "not a checkout of this adapter"


def _print_status(st):
    for note in st.notes:
        print(f"vem-plugins: warning: {note}", file=sys.stderr)
    print(f"{st.adapter}: {st.state}")
    print(f"  checkout   {places.show(st.dest)}")
    if not st.exists:
        print(f"  install it with: vem-plugins install {st.adapter}"
              + (f" --dir {places.show(st.dest)}" if st.dest != places.default_dest(st.adapter) else ""))
        return
    moved = "" if st.head == st.commit else "  (HEAD moved off the pin)"
    print(f"  pin        {st.commit[:12]}, HEAD {st.head[:12] if st.head else '-'}{moved}")
    rows = [("patches", f"{name}: {state}") for name, state in st.patches]
    rows += [("added", path) for path in st.added]
    rows += [("edited", f"{path} ({how})") for path, how in sorted(st.edited.items())]
    rows += [("untracked", path) for path in st.untracked]
    rows += [("left out", f"{path} (disables {why})") for path, why in st.skipped_assets.items()]
    last = None
    for label, text in rows:
        print(f"  {label if label != last else '':<10} {text}")
        last = label
    if st.outdated:
        print(f"  the adapter changed since install; upgrade with: vem-plugins install "
              f"{st.adapter}" + (f" --dir {places.show(st.dest)}"
                                 if st.dest != places.default_dest(st.adapter) else ""))
    if st.installed and st.lock:
        print(f"  installed  {st.lock.get('time')} from {st.lock.get('source')}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
