"""Compute FID's real-image statistics with the upstream's own script, where its scripts read them.

``vem-plugins data stats NAME ADAPTER`` writes them where the paper scripts read them (their
``--real_stat_path``). An FID is comparable with published ones only when its statistics are
made as upstream made them: the same Inception, the same images (pix2pix: the target side of the
``val`` pairs; CycleGAN: the training and test images of a domain, as GAN Compression's README
says) and the same preprocessing. So this command only chooses the flags and paths, then runs
upstream's script in the checkout with this Python and streams its output (progress bars
included). The images are those ``vem-plugins data prepare`` put in the data root (found through
the links of :mod:`vem_plugins.data.catalog`), or a ``--dataroot`` of the user's; the script reads
them through a temporary folder of links laid out as the paper scripts' ``--dataroot``.

GAN Compression and CAT have ``get_real_stat.py``, GCC ``metric/get_real_stat.py``; OMGD has none
(its README downloads GAN Compression's files), and CAGC's cannot run at its pin (it ships its
FFHQ statistics instead): for those the command says where the statistics come from.
"""
from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from vem_plugins.authoring.compat import INCEPTION, missing_weights
from vem_plugins.data.catalog import DATASETS, data_root
from vem_plugins.data.weights import verify
from vem_plugins.errors import UsageError
from vem_plugins.commands import places

#: The image files upstream's datasets read (``data/image_folder.py``), lower-cased.
IMAGES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


class Recipe(NamedTuple):
    """How an upstream's script makes one statistics file, as the paper scripts would."""

    #: where the paper scripts read it (their ``--real_stat_path``; GCC: inside its
    #: ``--dataroot``), relative to the checkout, where they run
    output: str
    #: the paper scripts' ``--dataroot``, relative to the checkout
    dataroot: str
    #: the folders under ``dataroot`` that hold the real images
    folders: tuple[str, ...]
    #: the script's flags besides ``--dataroot``, ``--output_path`` and ``--gpu_ids``
    flags: tuple[str, ...]
    #: give the script one folder of links to every image of ``folders`` (upstream's ``single``
    #: dataset reads one folder; CycleGAN's statistics cover training and test images)
    gather: bool = False


def _paired(output: str, dataroot: str, direction: str) -> Recipe:
    """pix2pix: the target side of the ``val`` pairs, as upstream's README runs the script."""
    return Recipe(output, dataroot, ("val",),
                  ("--dataset_mode", "aligned", "--phase", "val", "--direction", direction))


def _unpaired(output: str, dataroot: str, domain: str) -> Recipe:
    """CycleGAN: every image of one domain; the ``single`` dataset yields them as ``A``."""
    return Recipe(output, dataroot, (f"train{domain}", f"val{domain}"),
                  ("--dataset_mode", "single", "--direction", "BtoA"), gather=True)


def _both(name: str) -> tuple[Recipe, Recipe]:
    """A CycleGAN dataset's two files, one per domain (each direction's target)."""
    return tuple(_unpaired(f"real_stat/{name}_{d}.npz", f"database/{name}", d) for d in "AB")


#: GAN Compression's ``get_real_stat.py`` (CAT's is a copy): the files of its paper scripts, and
#: summer2winter's, which OMGD's scripts read.
_LINEAGE = {
    "edges2shoes": (_paired("real_stat/edges2shoes-r_B.npz", "database/edges2shoes-r", "AtoB"),),
    "cityscapes": (_paired("real_stat/cityscapes_A.npz", "database/cityscapes", "BtoA"),),
    "horse2zebra": _both("horse2zebra"),
    "summer2winter": _both("summer2winter"),
}

#: adapter -> (its statistics script, dataset -> the files it makes)
SCRIPTS: dict[str, tuple[str, dict[str, tuple[Recipe, ...]]]] = {
    "gan-compression": ("get_real_stat.py", _LINEAGE),
    "cat": ("get_real_stat.py", {name: _LINEAGE[name] for name in ("horse2zebra", "cityscapes")}),
    # SAGAN on CelebA 64x64 as the script's own comment runs it, on the training images
    # (train/), which GCC's SAGAN evaluation generates against
    "gcc": ("metric/get_real_stat.py", {"celeba": (Recipe(
        "database/celeb/real_stat.npz", "database/celeb", ("train",),
        ("--dataset_mode", "sa", "--phase", "train", "--crop_size", "64", "--center_crop")),)}),
}

#: The datasets of OMGD's paper scripts, which read GAN Compression's statistics files.
_OMGD = [name for name, dataset in DATASETS.items()
         if any(use.adapter == "omgd" for use in dataset.uses)]


def add_arguments(parser) -> None:
    parser.add_argument("name", metavar="NAME", choices=list(DATASETS),
                        help=f"the dataset: {', '.join(DATASETS)}")
    parser.add_argument("adapter", metavar="ADAPTER",
                        help="whose statistics script and paths (gan-compression, cat, gcc; "
                             "omgd and cagc say where theirs come from)")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="the data root vem-plugins data prepare filled "
                             "[$VEM_DATA_ROOT, else ./datasets]")
    parser.add_argument("--dataroot", type=Path, metavar="PATH",
                        help="use this dataset folder, laid out as the paper scripts' "
                             "--dataroot (val/; train{A,B}/ and val{A,B}/; train/), instead of "
                             "the prepared one")
    parser.add_argument("--dir", type=Path, metavar="CHECKOUT",
                        help="the adapter's checkout (default: third_party/ADAPTER or where "
                             "vem-plugins installed it)")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="where the Inception runs [cuda when there is one]")
    parser.add_argument("--force", action="store_true",
                        help="replace statistics files that exist (e.g. downloaded ones)")


def run(args) -> int:

    adapter = places.adapter(args.adapter).name
    if adapter == "cagc":
        return _cagc(args)
    script, recipes = _recipes(adapter, args.name)
    checkout = _checkout(adapter, args.dir, script)
    folders = [_folders(recipe, args) for recipe in recipes]
    outputs = [checkout / recipe.output for recipe in recipes]
    for output in outputs:
        if output.exists() and not args.force:
            raise UsageError(f"{places.show(output)} exists; --force replaces it")
    what = f"{adapter}'s {script}"
    _check_inception(what)
    gpu_ids, device = _device(args.device)
    for i, (recipe, images, output) in enumerate(zip(recipes, folders, outputs), 1):
        print(f"vem-plugins: [{i}/{len(recipes)}] {what} on {device}: "
              f"{', '.join(map(places.show, images.values()))} -> {places.show(output)}",
              file=sys.stderr, flush=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="vem-real-images-") as dataroot:
            _link(images, Path(dataroot), recipe.gather)
            _run_script(what, checkout, [
                sys.executable, script, "--dataroot", dataroot, "--output_path", str(output),
                "--gpu_ids", gpu_ids, *recipe.flags])
        print(f"wrote {places.show(output)}: {_shapes(output, what)}")
    return 0


def _recipes(adapter: str, name: str) -> tuple[str, tuple[Recipe, ...]]:
    """The script and recipes for ``name``, or a one-line error that says where else its
    statistics come from."""
    if adapter in SCRIPTS and name in SCRIPTS[adapter][1]:
        return SCRIPTS[adapter][0], SCRIPTS[adapter][1][name]
    if adapter == "omgd" and name in _OMGD:
        files = " and ".join(Path(r.output).name for r in _LINEAGE[name])
        raise UsageError(f"OMGD has no statistics script (its README downloads GAN "
                         f"Compression's): make {files} with: vem-plugins data stats {name} "
                         f"gan-compression, then copy to real_stat/ in the omgd checkout")
    if adapter == "gcc" and name == "horse2zebra":
        raise UsageError("GCC's metric/get_real_stat.py has no mode for unpaired data; its "
                         "CycleGAN FID reads real_stat_A.npz and real_stat_B.npz in the dataset "
                         "folder: make them with: vem-plugins data stats horse2zebra "
                         "gan-compression, and copy real_stat/horse2zebra_{A,B}.npz there")
    if adapter == "gcc" and name == "cityscapes":
        raise UsageError("GCC evaluates cityscapes by mIoU, without FID statistics (it needs "
                         "the DRN-D-105 weights: see vem-plugins data weights)")
    if adapter not in SCRIPTS and adapter != "omgd":
        raise UsageError(f"vem-plugins knows no statistics script of {adapter} (it does of: "
                         f"{', '.join([*SCRIPTS, 'omgd', 'cagc'])})")
    known = _OMGD if adapter == "omgd" else sorted(SCRIPTS[adapter][1])
    raise UsageError(f"{adapter}'s paper scripts read no FID statistics of {name!r} (they do "
                     f"of: {', '.join(known)})")


_CAGC_STATS = ("https://github.com/lychenyoko/content-aware-gan-compression/tree/master/"
               "Evaluation/inception_ffhq_embed")


def _cagc(args) -> int:
    """CAGC's ``Evaluation/calc_inception.py`` uses ``MultiResolutionDataset`` without
    importing it, so it cannot run; CAGC ships the FFHQ statistics it made in its repository."""
    from vem_plugins.adapters.cagc.adapter import FID_STATS

    if args.name != "ffhq":
        raise UsageError(f"cagc's paper runs read no FID statistics of {args.name!r} (they do "
                         f"of: ffhq)")
    checkout = _checkout("cagc", args.dir, "Evaluation/fid.py")
    files = [checkout / FID_STATS.format(size) for size in (256, 1024)]
    missing = [places.show(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"CAGC's FFHQ statistics come with its repository (its calc_inception.py "
                         f"cannot run at the pin), and {', '.join(missing)} are missing: "
                         f"download them from {_CAGC_STATS}")
    print(f"CAGC's FFHQ statistics come with its repository: {', '.join(map(places.show, files))}")
    return 0


def _checkout(adapter: str, given: Path | None, script: str) -> Path:
    """The checkout to run in: ``--dir``, else the first one ``vem-plugins install`` made."""

    if given is None:
        found = places.checkouts(adapter)
        if not found:
            raise UsageError(f"{adapter} is not installed (looked in third_party/{adapter} and "
                             f"where vem-plugins installed it); install it with: vem-plugins "
                             f"install {adapter}, or give --dir")
        given = found[0]
    checkout = given.absolute()
    if not (checkout / script).is_file():
        raise UsageError(f"{places.show(checkout)} is not a checkout of {adapter} (it has no {script}); "
                         f"install one with: vem-plugins install {adapter} --dir {places.show(checkout)}")
    return checkout


def _folders(recipe: Recipe, args) -> dict[str, Path]:
    """Each of ``recipe.folders`` -> the folder of real images it is: under ``--dataroot``, else
    where ``vem-plugins data prepare`` put it in the data root (the catalog's links); refused
    when missing or empty (upstream would fail with an assertion or an empty ``torch.cat``)."""

    if args.dataroot:
        found = {folder: args.dataroot.absolute() / folder for folder in recipe.folders}
    else:
        links = {path: target for use in DATASETS[args.name].uses
                 for path, target in use.links.items()}
        found = {folder: data_root(args.root) / args.name / links[f"{recipe.dataroot}/{folder}"]
                 for folder in recipe.folders}
    fix = f"prepare it with: vem-plugins data prepare {args.name}, or give --dataroot PATH"
    for path in found.values():
        if not path.is_dir():
            raise UsageError(f"no dataset folder {places.show(path)}; {fix}")
        if not _images(path):
            raise UsageError(f"{places.show(path)} holds no images ({', '.join(IMAGES)}); {fix}")
    return found


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES and p.is_file())


def _link(images: dict[str, Path], dataroot: Path, gather: bool) -> None:
    """Lay out ``dataroot`` as the script reads it: a link per folder, or with ``gather`` a link
    per image, named after its folder so that equal names in two folders stay apart."""
    for folder, path in images.items():
        if not gather:
            (dataroot / folder).symlink_to(path, target_is_directory=True)
            continue
        for image in _images(path):
            (dataroot / f"{folder}_{image.name}").symlink_to(image)


def _check_inception(what: str) -> None:
    """The FID Inception must be where upstream's ``torch.hub`` call finds it (offline it cannot
    download it); a copy that is not the published file makes statistics that match no one's."""
    path = INCEPTION.path()
    if not os.path.isfile(path):
        raise UsageError(missing_weights(INCEPTION, what))
    ok, actual = verify(path, INCEPTION.checksum)
    if not ok:
        print(f"vem-plugins: warning: {path} is not the published {INCEPTION.label} file "
              f"(expected {INCEPTION.checksum}, got {actual}): FIDs against these statistics "
              f"are not comparable with published ones", file=sys.stderr)


def _device(device: str | None) -> tuple[str, str]:
    """``--gpu_ids`` for the pix2pix-lineage parsers (-1: CPU), and the device's name."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this machine has no CUDA device; use --device cpu")
    return ("0" if device == "cuda" else "-1"), device


def _run_script(what: str, checkout: Path, command: list[str]) -> None:
    """Run ``command`` in ``checkout``, its output streamed to stderr as it comes (``\\r``
    progress bars included); a failure is one line: its exit status and last output line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(  # GCC's metric/ script imports `data`
        filter(None, [str(checkout), os.environ.get("PYTHONPATH")])))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    with subprocess.Popen(command, cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
            text = decoder.decode(chunk)
            sys.stderr.write(text)
            sys.stderr.flush()
            tail = (tail + text)[-8192:]
    if tail and not tail.endswith("\n"):  # a progress bar ends in "\r": end its line
        sys.stderr.write("\n")
    if proc.returncode:
        lines = [line.strip() for line in re.split(r"[\r\n]", tail) if line.strip()]
        raise UsageError(f"{what} failed (exit status {proc.returncode}): "
                         f"{lines[-1] if lines else 'no output'}")


def _shapes(path: Path, what: str) -> str:
    import numpy as np

    if not path.is_file():
        raise UsageError(f"{what} finished without writing {path}")
    with np.load(path) as stats:
        return f"mu {stats['mu'].shape}, sigma {stats['sigma'].shape}"
