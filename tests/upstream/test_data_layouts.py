"""``vem-plugins data prepare`` writes exactly what the installed upstreams load: for every
adapter/dataset pair the catalog declares (``catalog.DATASETS[name].uses``), the adapter is
installed at its pin (once per module), the fast tier's tiny fake archive in the official format
is prepared into a fresh data root with the checkout linked, and then, in a subprocess in the
checkout (the pix2pix-lineage upstreams all have top-level ``data``, ``options``, ``models``,
``utils``...: one process each keeps them apart), the upstream's *own* code reads the result:

* OMGD, GAN Compression, CAT: the options class of the paper script's entry point parses the
  script's own flags (with ``--gpu_ids -1 --num_threads 0`` appended), and their
  ``data.create_dataloader`` / ``create_eval_dataloader`` build the datasets the trainer builds
  (``AlignedDataset`` on train/val; ``UnalignedDataset`` on trainA/B and ``SingleDataset`` on
  valA/valB); for Cityscapes their mIoU code's ``SegList`` maps each evaluation image to its
  label map through the table and reads it;
* GCC: ``options.parse()`` on the script's flags, ``create_split_dataset`` as ``train.py`` calls
  it, and the evaluation dataset with the settings of its own ``metric/test_metric.py`` function
  (``test_pix2pix_mIoU``, ``test_cyclegan_fid``, ``test_sagan_fid``), and for Cityscapes its
  ``SegList`` on ``<dataroot>/table.txt``;
* CAGC: ``dataset.FFHQ_Dataset`` on ``--path <root>/ffhq/images256`` with ``train.py``'s own
  transform.

Every item of every dataset is read; the tensors must have the shapes the training reads
(3 x crop x crop) and values in [-1, 1], and the files each dataset lists must be the prepared
ones, reached through the checkout's links.

GAN Compression's supernet, distill and search scripts read the training set through its
``datasets/metas/*.meta`` lists of file names: ``test_gan_compression_metas_name_prepared_files``
checks those names against each release the catalog accepts.

One finding is marked: the pix2pix edges2shoes release lacks a file GAN Compression's
``train_supernet.sh`` reads (strict xfail; the catalog says that script needs edges2shoes-r).

Upstream tier: each pair is skipped, with the reason, without its upstream or requirements (see
``conftest.py``). The layouts themselves (bytes, names, tables) are checked in the fast tier,
``tests/test_data.py``, whose fake archives these tests reuse.
"""
from __future__ import annotations

import fnmatch
import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_data import fakes, sources  # the fast tier's fake archives in the official formats
from vem_plugins import plugins
from vem_plugins.authoring.testing import install_adapter, offline_env
from vem_plugins.data import catalog, links, prepare

# The paper script each pair is read with: one per pair, among the scripts the catalog names.
# GAN Compression: train_full.sh, the first step of its pipeline (its distill.sh reads
# datasets/metas/*.meta, naming files a partial set lacks: see the test on the metas below).
SCRIPTS = {
    ("omgd", "edges2shoes"): "scripts/unet_pix2pix/edges2shoes/distill.sh",
    ("omgd", "cityscapes"): "scripts/unet_pix2pix/cityscapes/distill.sh",
    ("omgd", "horse2zebra"): "scripts/cycle_gan/horse2zebra/distill.sh",
    ("omgd", "summer2winter"): "scripts/cycle_gan/summer2winter/distill.sh",
    ("gan-compression", "edges2shoes"): "scripts/pix2pix/edges2shoes-r/train_full.sh",
    ("gan-compression", "cityscapes"): "scripts/pix2pix/cityscapes/train_full.sh",
    ("gan-compression", "horse2zebra"): "scripts/cycle_gan/horse2zebra/train_full.sh",
    ("cat", "cityscapes"): "scripts/pix2pix/cityscapes/train_inception_teacher.sh",
    ("cat", "horse2zebra"): "scripts/cycle_gan/zebra2horse/train_inception_student_2p6B.sh",
    ("gcc", "cityscapes"): "scripts/pix2pix/train.sh",
    ("gcc", "horse2zebra"): "scripts/cyclegan/train.sh",
    ("gcc", "celeba"): "scripts/sagan/train.sh",
    ("cagc", "ffhq"): "train.py",
}
# The module of each upstream's Cityscapes mIoU code (SegList) and its tensor-to-image function.
MIOU = {"omgd": ("metric.cityscapes_mIoU", "tensor2im"),
        "gan-compression": ("metric.cityscapes_mIoU", "tensor2im"),
        "cat": ("metric.mIoU_score", "tensor2im"),
        "gcc": ("metric.mIoU_score", "tensor2imgs")}
# OMGD's and CAT's make_dataset return images[:min(max_dataset_size, n)] and their
# --max_dataset_size defaults to -1, so their unaligned and single datasets leave out one file
# of each folder, the last os.walk lists (upstream's own behaviour, whatever the data: GAN
# Compression special-cases -1; their aligned dataset passes no limit).
DROPS_ONE = {(adapter, cls) for adapter in ("omgd", "cat")
             for cls in ("UnalignedDataset", "SingleDataset")}
# get_trainIds.py (cityscapesscripts' labels) for the label ids the fake archive uses.
TRAIN_IDS = {0: 255, 7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18}


def _pairs():
    return [(use.adapter, name) for name, dataset in catalog.DATASETS.items()
            for use in dataset.uses]


PAIRS = [pytest.param(adapter, name, marks=pytest.mark.needs(adapter), id=f"{adapter}-{name}")
         for adapter, name in _pairs()]


# -- the runs in the checkouts ---------------------------------------------------------------
_COMMON = r"""
import ast, copy, importlib, json, os, sys
import torch
cfg = json.loads(sys.argv[1])
torch.manual_seed(0)

def summary(dataset):
    item_keys = ("AB_paths", "A_paths", "B_paths", "image_file_names", "images_list")
    paths = {k: [os.path.join(getattr(dataset, "data_folder", ""), p) for p in getattr(dataset, k)]
             for k in item_keys if isinstance(getattr(dataset, k, None), list)}
    items = []
    for i in range(len(dataset)):
        item = dataset[i]
        item = item if isinstance(item, dict) else {"img": item}
        items.append({k: {"shape": list(v.shape), "min": float(v.min()), "max": float(v.max())}
                      for k, v in item.items() if torch.is_tensor(v) and v.dim() == 3})
    cls = type(dataset)
    return {"class": cls.__name__, "file": os.path.realpath(sys.modules[cls.__module__].__file__),
            "len": len(dataset), "paths": paths, "items": items}

def seglist(module, to_images, dataset, table_path, data_dir):
    # as the upstream's mIoU evaluation: names from the evaluation images' paths, the images as
    # its util turns generator outputs into arrays, SegList maps each name through the table
    import metric  # the package: the adapter's compatibility fixes run on import
    from utils import util
    if module == "metric.mIoU_score" and to_images == "tensor2imgs":  # GCC: they run in its test
        from vem_plugins.adapters.gcc import compat
        importlib.import_module(module)
        compat.fix_metric()
    items = [dataset[i] for i in range(len(dataset))]
    names = [os.path.splitext(os.path.basename(item["A_paths"]))[0] for item in items]
    images = getattr(util, to_images)(torch.stack([item["A"] for item in items]))
    seg = importlib.import_module(module).SegList(images, names, table_path, data_dir)
    out = []
    for i, name in enumerate(names):
        row = {"name": name, "label_path": os.path.join(seg.data_dir, seg.label_list[i])}
        try:
            image, label = seg[i]
            row.update(image=list(image.shape), label=list(label.shape),
                       values=sorted(int(v) for v in label.unique()))
        except Exception as exc:  # reported, so the test names what failed
            row["error"] = f"{type(exc).__name__}: {exc}"
        out.append(row)
    return out

def done(result):
    print("VEM-RESULT " + json.dumps(result))
"""

# OMGD, GAN Compression, CAT: as their trainer.py: Options().parse(), create_dataloader(opt), and
# the models' create_eval_dataloader(opt[, direction]).
LINEAGE = _COMMON + r"""
sys.argv = [cfg["script"], *cfg["args"]]
task = os.path.splitext(os.path.basename(cfg["script"]))[0]  # train or distill
Options = getattr(importlib.import_module(f"options.{task}_options"), f"{task.title()}Options")
opt = Options().parse(verbose=False)
import data
loaders = {"train": data.create_dataloader(opt)}
if opt.dataset_mode == "unaligned":
    for direction in ("AtoB", "BtoA"):
        loaders[f"eval {direction}"] = data.create_eval_dataloader(opt, direction=direction)
else:
    loaders["eval"] = data.create_eval_dataloader(opt)
result = {"crop_size": opt.crop_size, "dataroot": opt.dataroot,
          "loaders": {k: summary(v.dataset) for k, v in loaders.items()}}
if cfg.get("miou"):
    result["miou"] = seglist(*cfg["miou"], loaders["eval"].dataset, opt.table_path,
                             opt.cityscapes_path)
done(result)
"""

# GCC: as its train.py: options.parse(), create_split_dataset(opt), and for evaluation
# create_dataset(opt) with the opt settings its metric/test_metric.py function makes first.
GCC = _COMMON + r"""
sys.argv = [cfg["script"], *cfg["args"]]
from options import options
opt = options.parse()
opt.isTrain = True
from data import create_dataset, create_split_dataset
train, val = create_split_dataset(opt)
loaders = {"train": train, "train.py's second split": val}
evaluation = copy.deepcopy(opt)
source = open("metric/test_metric.py").read()
function = next(node for node in ast.parse(source).body
                if isinstance(node, ast.FunctionDef) and node.name == cfg["evaluation"])
for statement in function.body:  # its leading "opt.X = ..." lines
    if not (isinstance(statement, ast.Assign) and all(
            isinstance(t, ast.Attribute) and getattr(t.value, "id", "") == "opt"
            for t in statement.targets)):
        break
    exec(compile(ast.Module([statement], []), "metric/test_metric.py", "exec"),
         {"opt": evaluation})
loaders["evaluation"] = create_dataset(evaluation)
result = {"crop_size": opt.crop_size, "dataroot": opt.dataroot,
          "loaders": {k: summary(v.dataset) for k, v in loaders.items()}}
if cfg.get("miou"):  # test_pix2pix_mIoU: table and labels under the dataroot
    result["miou"] = seglist(*cfg["miou"], loaders["evaluation"].dataset,
                             os.path.join(opt.dataroot, "table.txt"), opt.dataroot)
done(result)
"""

# CAGC: train.py's FFHQ_Dataset(args.path, transform), its transform taken from train.py.
CAGC = _COMMON + r"""
import argparse
import train_hyperparams
from torchvision import transforms
from dataset import FFHQ_Dataset
tree = ast.parse(open("train.py").read())
node = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
            and [getattr(t, "id", "") for t in n.targets] == ["transform"])
args = argparse.Namespace(size=train_hyperparams.generated_img_size)  # --size's default
transform = eval(compile(ast.Expression(node.value), "train.py", "eval"),
                 {"transforms": transforms, "args": args})
dataset = FFHQ_Dataset(cfg["path"], transform)
done({"crop_size": args.size, "dataroot": cfg["path"],
      "loaders": {"train": summary(dataset)}})
"""


def run_in(checkout: Path, program: str, cfg: dict) -> dict:
    env = {**os.environ, **offline_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", program, json.dumps(cfg)], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("VEM-RESULT ")]
    assert proc.returncode == 0 and lines, \
        f"{checkout.name} could not read the prepared data:\n{proc.stdout[-3000:]}\n" \
        f"{proc.stderr[-6000:]}"
    return json.loads(lines[-1].removeprefix("VEM-RESULT "))


def script_command(checkout: Path, script: str) -> tuple[str, list[str]]:
    """The Python entry point of a paper script and its flags, as bash would pass them."""
    text = (checkout / script).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words[:2]):
            if word.endswith(".py") and i and words[0].startswith("python"):
                return word, words[i + 1:]
    raise AssertionError(f"{script} runs no python script")


def expand(pattern: str) -> list[str]:
    """``a/{b,c}/*.sh`` -> [``a/b/*.sh``, ``a/c/*.sh``]."""
    m = re.search(r"\{([^}]*)\}", pattern)
    if not m:
        return [pattern]
    return [p for alt in m.group(1).split(",")
            for p in expand(pattern[:m.start()] + alt + pattern[m.end():])]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkouts(tmp_path_factory):
    """``checkouts(name) -> Path``: the adapter installed at its pin, once per module."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            made[name] = install_adapter(plugins.adapters()[name], root / name)
        return made[name]

    return get


# -- the tests ----------------------------------------------------------------------------------
def test_every_catalog_pair_has_a_paper_script():
    assert sorted(SCRIPTS) == sorted(_pairs())
    for (adapter, name), script in SCRIPTS.items():
        [use] = [u for u in catalog.DATASETS[name].uses if u.adapter == adapter]
        patterns = [p for s in use.scripts for p in expand(s)]
        assert any(fnmatch.fnmatch(script, p) for p in patterns), (adapter, name, script)


@pytest.mark.parametrize("adapter, name", PAIRS)
def test_upstream_reads_what_prepare_wrote(adapter, name, checkouts, tmp_path):
    checkout = checkouts(adapter)
    dataset = catalog.DATASETS[name]
    [use] = [u for u in dataset.uses if u.adapter == adapter]
    root = tmp_path / "data"
    warned = []
    done = prepare.prepare(name, sources(name, "zip", tmp_path / "dl"), root,
                           {adapter: [checkout]}, allow_partial=True, say=lambda _: None,
                           warn=warned.append)
    assert done.links == [(checkout / path, links.LINKED) for path in use.links]
    assert len(warned) == 1 and warned[0].startswith("a partial dataset: ")

    script = SCRIPTS[adapter, name]
    cfg = {"script": script}
    if adapter == "cagc":
        program = CAGC
        cfg["path"] = use.flag.format(root=root).split(" ", 1)[1]  # --path <root>/ffhq/...
        assert cfg["path"] == str(root / "ffhq/images256")
    else:
        entry, args = script_command(checkout, script)
        cfg.update(script=entry, args=[*args, "--gpu_ids", "-1", "--num_threads", "0"])
        if adapter == "gcc":
            program = GCC
            model = args[args.index("--model") + 1]
            cfg["evaluation"] = {"pix2pix": "test_pix2pix_mIoU", "cyclegan": "test_cyclegan_fid",
                                 "sagan": "test_sagan_fid"}[model]
        else:
            program = LINEAGE
            if name == "cityscapes" and "--table_path" in args:
                # the repository's table lists the 500 official validation images; a partial
                # set is read with the table prepare wrote (the catalog says so)
                cfg["args"] += ["--table_path", str(root / "cityscapes/origin/val_table.txt")]
        if name == "cityscapes":
            cfg["miou"] = MIOU[adapter]
    result = run_in(checkout, program, cfg)

    expected = EXPECTED[dataset.kind](adapter)
    assert sorted(result["loaders"]) == sorted(expected)
    for loader, summary in result["loaders"].items():
        check_dataset(adapter, checkout, root / name, loader, summary, expected[loader],
                      result["crop_size"])
    if name == "cityscapes":
        check_miou(adapter, checkout, root, result["miou"])


# -- what each upstream dataset must read --------------------------------------------------------
def _aligned(adapter):
    if adapter == "gcc":
        return {"train": {"AB_paths": "aligned/train"},
                "train.py's second split": {"AB_paths": "aligned/train"},
                "evaluation": {"AB_paths": "aligned/val"}}
    return {"train": {"AB_paths": "aligned/train"}, "eval": {"AB_paths": "aligned/val"}}


def _unaligned(adapter):
    train = {"A_paths": "unaligned/trainA", "B_paths": "unaligned/trainB"}
    if adapter == "gcc":  # evaluates on test{A,B}
        return {"train": train, "train.py's second split": train,
                "evaluation": {"A_paths": "unaligned/testA", "B_paths": "unaligned/testB"}}
    return {"train": train,  # evaluation reads val{A,B}, linked to test{A,B}
            "eval AtoB": {"A_paths": "unaligned/testA"},
            "eval BtoA": {"A_paths": "unaligned/testB"}}


def _celeba(adapter):
    return {"train": {"image_file_names": "images"},
            "train.py's second split": {"image_file_names": "images"},
            "evaluation": {"image_file_names": "images"}}


def _ffhq(adapter):
    return {"train": {"images_list": "images256"}}


EXPECTED = {"aligned": _aligned, "cityscapes": _aligned, "unaligned": _unaligned,
            "celeba": _celeba, "ffhq": _ffhq}


def check_dataset(adapter, checkout, prepared, loader, summary, folders, crop):
    where = f"{adapter} {loader} ({summary['class']})"
    assert Path(summary["file"]).is_relative_to(checkout.resolve()), \
        f"{where}: not the upstream's own class: {summary['file']}"
    assert sorted(summary["paths"]) == sorted(folders), where
    for key, folder in folders.items():
        paths = summary["paths"][key]
        for path in paths:  # read through the checkout's links, not from the data root
            assert not Path(path).is_absolute() or Path(path).is_relative_to(prepared), path
        files = sorted(os.listdir(prepared / folder))
        got = sorted(Path(os.path.realpath(checkout / p)).relative_to(prepared).as_posix()
                     for p in paths)
        want = [f"{folder}/{f}" for f in files]
        if (adapter, summary["class"]) in DROPS_ONE:
            assert set(got) < set(want) and len(got) == len(want) - 1, \
                f"{where} {key}: lists {got}, prepare wrote {want}"
        else:
            assert got == want, f"{where} {key}: lists {got}, prepare wrote {want}"
    assert summary["len"] == len(summary["items"]) > 0, where
    for i, item in enumerate(summary["items"]):
        assert item, f"{where} item {i}: no image tensor"
        for key, t in item.items():
            assert t["shape"] == [3, crop, crop], f"{where} item {i} {key}: {t}"
            assert -1 - 1e-6 <= t["min"] < t["max"] <= 1 + 1e-6, f"{where} item {i} {key}: {t}"


def check_miou(adapter, checkout, root, rows):
    """Each evaluation image N.jpg is mapped, through the table, to the trainIds of the scene it
    was made from, read as the mIoU code reads it."""
    gt = fakes()["cityscapes"]["gtFine_trainvaltest"]
    scenes = sorted(n for n in gt if n.startswith("gtFine/val/") and n.endswith("_color.png"))
    lut = np.full(256, 255, dtype=np.uint8)
    lut[list(TRAIN_IDS)] = list(TRAIN_IDS.values())
    assert sorted(row["name"] for row in rows) == [str(i) for i in range(len(scenes))]
    for row in rows:
        where = f"{adapter} mIoU of {row['name']}.jpg"
        label = Path(os.path.realpath(checkout / row["label_path"]))
        assert label.is_relative_to(root / "cityscapes/origin/gtFine/val"), (where, label)
        scene = scenes[int(row["name"])]
        assert label.name == Path(scene).name.replace("_color", "_trainIds"), where
        raw = np.asarray(Image.open(io.BytesIO(gt[scene.replace("_color", "_labelIds")])))
        assert (np.asarray(Image.open(label)) == lut[raw]).all(), where
        if "error" in row:
            continue
        assert row["label"] == [1024, 2048] and row["image"] == [3, 256, 256], (where, row)
        assert set(row["values"]) <= set(range(19)) | {255}, (where, row["values"])
    # the repository's own table (what a whole set is read with) names label and photo as the
    # table prepare wrote: the same paths for a scene both hold (the fake's lindau one)
    prepared = [line.split()[1:] for line in
                (root / "cityscapes/origin/val_table.txt").read_text().splitlines()]
    table = {"omgd": "datasets/table.txt", "gan-compression": "datasets/val_table.txt",
             "cat": "datasets/table.txt"}.get(adapter)
    if table:
        theirs = {_scene(row[2]): row[1:] for row in
                  (line.split() for line in (checkout / table).read_text().splitlines())}
        assert len(theirs) == 500
        shared = [row for row in prepared if _scene(row[1]) in theirs]
        assert shared and all(theirs[_scene(row[1])] == row for row in shared), (prepared, table)
    errors = {row["error"] for row in rows if "error" in row}
    assert not errors, f"{adapter}: its SegList cannot read an item: {errors}"


def _scene(path: str) -> str:
    return "_".join(Path(path).name.split("_")[:3])


# -- GAN Compression's meta files ---------------------------------------------------------------
# Its supernet, distill and search scripts read the training set through datasets/metas/*.meta
# (one file name a line, relative to the folder read): a whole prepared set must hold each name.
# Where the release's numbering is published (counts_source), the names it holds:
RELEASE_NAMES = {
    ("pix2pix edges2shoes", "train"): {f"{i}_AB.jpg" for i in range(1, 49825 + 1)},
    # prepare numbers the sorted scenes from 0, as prepare_cityscapes_dataset.py does
    ("Cityscapes (fine annotations + left 8-bit images)", "train"):
        {f"{i}.jpg" for i in range(2975)},
}
EDGES2SHOES_META = (
    "datasets/metas/edges2shoes-r/train1.meta (read by GAN Compression's scripts/pix2pix/"
    "edges2shoes-r/train_supernet.sh, which the catalog covers with scripts/pix2pix/"
    "edges2shoes-r/*.sh) names 0_AB.jpg, which the pix2pix edges2shoes release the catalog "
    "accepts (train/1_AB.jpg ... 49825_AB.jpg) lacks: that script's AlignedDataset fails with "
    "FileNotFoundError on it in its first epoch; its names are edges2shoes-r's numbering")


def _metas(checkout: Path, name: str) -> dict[str, set[str]]:
    """``{folder: names}`` over the meta files the catalog's GAN Compression scripts for
    ``name`` read, the folder relative to the prepared layout."""
    [use] = [u for u in catalog.DATASETS[name].uses if u.adapter == "gan-compression"]
    out: dict[str, set[str]] = {}
    for pattern in use.scripts:
        for script in sorted(glob.glob(str(checkout / pattern)) if pattern.endswith(".sh") else []):
            _, args = script_command(checkout, os.path.relpath(script, checkout))
            flags = {flag: value for flag, value in zip(args, args[1:]) if flag.startswith("--")}
            for flag, side in (("--meta_path", ""), ("--metaA_path", "A"), ("--metaB_path", "B")):
                if flag in flags:
                    folder = Path(flags["--dataroot"]).name  # search.sh: .../horse2zebra/trainA
                    folder = folder if folder.startswith("train") else f"train{side}"
                    names = (checkout / flags[flag]).read_text().split()
                    out.setdefault(folder, set()).update(names)
    return out


@pytest.mark.needs("gan-compression", requirements=False)
@pytest.mark.parametrize("name, release", [
    pytest.param(name, release.name, id=f"{name}-{release.name}",
                 marks=[pytest.mark.xfail(strict=True, raises=AssertionError,
                                          reason=EDGES2SHOES_META)]
                 if release.name == "pix2pix edges2shoes" else [])
    for name in ("edges2shoes", "cityscapes", "horse2zebra")
    for release in catalog.DATASETS[name].releases if not release.refuse])
def test_gan_compression_metas_name_prepared_files(name, release, checkouts):
    checkout = checkouts("gan-compression")
    metas = _metas(checkout, name)
    assert metas, f"no GAN Compression script for {name} reads a meta file"
    archive = next(r for r in catalog.get(name).releases if r.name == release).archives[0]
    for folder, names in metas.items():
        if (release, folder) in RELEASE_NAMES:
            assert names <= RELEASE_NAMES[release, folder], \
                f"{folder}: {sorted(names - RELEASE_NAMES[release, folder])[:5]}"
        elif name != "cityscapes":  # copied as released: each name matches the release's
            group = archive.groups[folder]
            assert all(re.fullmatch(group.pattern, f"{folder}/{n}") for n in names), folder
            assert len(names) <= group.count, folder
