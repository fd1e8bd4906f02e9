"""``vem-plugins data``: the datasets of the paper experiments (``list``, ``prepare``: see
:mod:`vem_plugins.data.prepare`) and the evaluation assets (``stats``, ``weights``: their
arguments and behaviour are :mod:`vem_plugins.data.stats` and :mod:`vem_plugins.data.weights`).

The installed checkouts ``prepare`` links and ``list`` reports are those the top-level ``list``
finds: ``third_party/NAME`` and the places ``install --dir`` remembered.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from vem_plugins.commands import places
from vem_plugins.data import catalog

_ROOT_HELP = (f"the data root [${catalog.ROOT_ENV}, else ./{catalog.DEFAULT_ROOT}]: it holds "
              f"<root>/<dataset>/<layout>/, one copy of each layout, to which prepare links "
              f"the installed checkouts")


def add_parser(sub) -> None:
    """Add the ``data`` command and its subcommands to ``sub`` (an argparse subparsers)."""
    text = ("the datasets and evaluation assets of the paper experiments: prepare the official "
            "archives (downloaded yourself) in the layouts the upstream scripts load")
    data = sub.add_parser("data", help=text, description=text)
    commands = data.add_subparsers(required=True, metavar="SUBCOMMAND")

    text = ("the datasets the adapters' paper scripts use: the official archives, what each "
            "upstream expects (paths, layout, sizes, file counts), and what is prepared and "
            "linked")
    p = commands.add_parser("list", help=text, description=text)
    p.add_argument("--root", type=Path, metavar="DIR", help=_ROOT_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_list)

    text = ("verify an official archive (zip or tar) or its extracted folder, write the "
            "layouts the upstreams load under the data root (atomically; an interrupted run "
            "resumes), and link each installed checkout's paths to them")
    p = commands.add_parser("prepare", help=text, description=text)
    p.add_argument("name", metavar="NAME", help=f"one of {', '.join(catalog.DATASETS)}")
    p.add_argument("--from", dest="sources", type=Path, action="append", required=True,
                   metavar="PATH", help="the archive or folder; give it once per archive "
                                        "(Cityscapes: gtFine_trainvaltest.zip and "
                                        "leftImg8bit_trainvaltest.zip)")
    p.add_argument("--root", type=Path, metavar="DIR", help=_ROOT_HELP)
    p.add_argument("--allow-partial", action="store_true",
                   help="accept fewer files than the official archive holds (a subset), with "
                        "a warning saying how many are missing; without it such an archive "
                        "is refused as truncated")
    p.set_defaults(run=_prepare)

    for name in ("stats", "weights"):
        module = importlib.import_module(f"vem_plugins.data.{name}")
        text = next(iter((module.__doc__ or "").strip().splitlines()), None)
        p = commands.add_parser(name, help=text, description=text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)


def _list(args):
    from vem_plugins.data import prepare
    root = catalog.data_root(args.root)
    rows = prepare.status(root, _checkouts())
    if args.json:
        print(json.dumps({"root": str(root), "datasets": rows}, indent=2))
        return
    print(f"data root: {places.show(root)} (--root, else ${catalog.ROOT_ENV}, else "
          f"./{catalog.DEFAULT_ROOT})")
    for row in rows:
        print(f"\n{row['name']}: {_state(row['prepared'])}")
        for i, release in enumerate(r for r in row["releases"] if not r["refused"]):
            files = "; ".join(f"{a['file']}: " + ", ".join(f"{n:,} {g}" for g, n in
                                                          a["counts"].items())
                              for a in release["archives"])
            print(f"  {'or ' if i else 'from'}  {files}")
            print(f"        at {release['url']}")
            if release["note"]:
                print(f"        note: {release['note']}")
        for folder, what in row["layouts"].items():
            print(f"  writes {folder}/: {what}")
        for use in row["uses"]:
            where = _paths(use["paths"]) or use["flag"]
            print(f"  {use['adapter']:<15} {where}: {use['loads']}")
            for checkout in use["checkouts"]:
                print(f"  {'':<15} {places.show(checkout['dir'])}: {checkout['state']}")
            if not use["checkouts"]:
                print(f"  {'':<15} not installed")


def _prepare(args):
    from vem_plugins.data import links, prepare
    root = catalog.data_root(args.root)
    done = prepare.prepare(args.name, args.sources, root, _checkouts(),
                           allow_partial=args.allow_partial, say=print, warn=_warn)
    for path, state in done.links:
        if state == links.LINKED:
            print(f"linked {places.show(path)}")
        else:
            _warn(f"{places.show(path)}: {state}")
    for use in catalog.DATASETS[args.name].uses:
        if use.flag:
            print(f"{use.adapter} reads no fixed path: give it {use.flag.format(root=root)}")
    if not done.links and not any(u.flag for u in catalog.DATASETS[args.name].uses):
        users = " or ".join(u.adapter for u in catalog.DATASETS[args.name].uses)
        print(f"no installed checkout to link yet: after vem-plugins install {users}, run this "
              f"command again")


def _checkouts() -> dict[str, list[Path]]:
    names = {use.adapter for dataset in catalog.DATASETS.values() for use in dataset.uses}
    return {name: places.checkouts(name) for name in sorted(names)}


def _state(marker) -> str:
    if not marker:
        return "not prepared"
    extent = "whole" if marker.get("complete") else "partial, " + ", ".join(
        f"{marker['counts'][g]:,} of {n:,} {g}" for g, n in marker["expected"].items()
        if marker["counts"].get(g) != n)
    return f"ready ({extent}; from {', '.join(marker['from'])}, {marker['time']})"


def _paths(paths: list[str]) -> str:
    """``a/b/{c,d}`` for paths sharing a folder."""
    folders: dict[str, list[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, []).append(name)
    return " ".join(f"{folder}/{names[0]}" if len(names) == 1
                    else f"{folder}/{{{','.join(names)}}}" for folder, names in folders.items())


def _warn(text: str) -> None:
    print(f"vem-plugins: warning: {text}", file=sys.stderr)

