"""The six datasets of the paper experiments: what users download, and what each upstream loads.

One declarative table (:data:`DATASETS`). For each dataset:

* its official releases (:class:`Release`): the archives as distributed (users download them
  themselves: the upstreams' download scripts point at hosts that are gone or need a login),
  the files each holds, as regular expressions over member paths below the archive's top folder,
  with the published counts and where each number comes from;
* the layouts ``prepare`` writes, each once, under ``<data root>/<dataset>/``;
* for each adapter whose paper scripts use it (:class:`Use`), the paths those scripts read,
  relative to the adapter's checkout (where the scripts run), each mapped to the prepared
  folder or file ``prepare`` links there; and the scripts the paths were read from.

Design of the data root: ``$VEM_DATA_ROOT`` (default ``./datasets``; ``--root`` overrides both)
holds ``<root>/<dataset>/<layout>/...``, one copy per layout, and
``<root>/<dataset>/.vem-plugins-ready.json``, written last: a dataset is ready only with it.
``prepare`` then links each installed checkout's expected paths to that copy with symbolic
links, one per folder the upstream reads (``database/horse2zebra/trainA``, ...), not one for the
whole dataroot: files the upstreams keep *inside* their dataroot (GCC's ``real_stat*.npz``)
then stay in the checkout and never land in the shared copy. A path that exists in a checkout
and is not such a link is the user's own copy and is left alone.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path

from vem_plugins.errors import UsageError

ROOT_ENV = "VEM_DATA_ROOT"
DEFAULT_ROOT = Path("datasets")


def data_root(given: Path | None = None) -> Path:
    """The data root: ``given`` (``--root``), else ``$VEM_DATA_ROOT``, else ``./datasets``."""
    return Path(given or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).absolute()


def get(name: str) -> "Dataset":
    """The dataset called ``name``; an unknown name is refused in one line."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UsageError(f"unknown dataset {name!r}; {hint}(known: {', '.join(DATASETS)})")
    return DATASETS[name]


@dataclasses.dataclass(frozen=True)
class Group:
    """Files of one kind in an archive: a regular expression over paths below the archive's top
    folder, and how many the official archive holds."""
    pattern: str
    count: int


@dataclasses.dataclass(frozen=True)
class Archive:
    """One file as distributed. ``top`` is the folder its members sit in ('' when they sit at
    the top, as in Cityscapes' zips); ``size`` the (width, height) of every image it holds."""
    file: str
    top: str
    groups: dict[str, Group]
    size: tuple[int, int] | None = None
    md5: str | None = None  # of the whole archive, where one is published (``md5_source``)
    md5_source: str = ""


@dataclasses.dataclass(frozen=True)
class Release:
    """One official distribution: its archives (all needed), where to get them, where the counts
    come from. ``refuse`` marks a look-alike that ``prepare`` names and refuses, saying why."""
    name: str
    url: str
    archives: tuple[Archive, ...]
    counts_source: str
    refuse: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Use:
    """What one adapter's paper scripts read. ``links`` maps a path relative to the checkout to
    a path relative to ``<root>/<dataset>/``; ``flag`` is for an upstream with no fixed path."""
    adapter: str
    links: dict[str, str]
    scripts: tuple[str, ...]
    loads: str
    flag: str = ""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # how prepare writes it: aligned, unaligned, cityscapes, celeba, ffhq
    releases: tuple[Release, ...]
    layouts: dict[str, str]  # folder or file under <root>/<name>/ -> what it holds
    uses: tuple[Use, ...]


_PIX2PIX = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"
_CYCLEGAN = "https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/"
_UNALIGNED = {"trainA": "unaligned/trainA", "trainB": "unaligned/trainB",
              "testA": "unaligned/testA", "testB": "unaligned/testB"}
# Their download scripts link valA -> testA and valB -> testB: evaluation reads phase "val".
_UNALIGNED_VAL = {**_UNALIGNED, "valA": "unaligned/testA", "valB": "unaligned/testB"}


def _under(folder: str, links: dict[str, str]) -> dict[str, str]:
    return {f"{folder}/{path}": target for path, target in links.items()}


def _unaligned(top: str, a: str, b: str, counts: tuple[int, int, int, int]) -> Archive:
    # No size check: the loaders resize (286) and crop (256) whatever they are given.
    return Archive(f"{top}.zip", top, groups={
        split: Group(rf"{split}/{stem}\.jpg", count)
        for (split, stem), count in zip([("trainA", a), ("trainB", b), ("testA", a),
                                         ("testB", b)], counts)})


def _cityscapes_files(folder: str, suffix: str) -> dict[str, Group]:
    """``<folder>/<split>/<city>/<city>_<seq>_<frame>_<suffix>.png``, the fine splits only."""
    return {f"{suffix}/{split}": Group(rf"{folder}/{split}/[^/]+/[^/]+_{suffix}\.png", count)
            for split, count in (("train", 2975), ("val", 500))}


_CITYSCAPES_ALIGNED = {"database/cityscapes/train": "aligned/train",
                       "database/cityscapes/val": "aligned/val"}

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        "edges2shoes", "aligned",
        releases=(
            Release("pix2pix edges2shoes", _PIX2PIX + "edges2shoes.tar.gz",
                    (Archive("edges2shoes.tar.gz", "edges2shoes", size=(512, 256), groups={
                        "train": Group(r"train/\d+_AB\.jpg", 49825),
                        "val": Group(r"val/\d+_AB\.jpg", 200)}),),
                    counts_source="the pix2pix release: train/1_AB.jpg ... 49825_AB.jpg, "
                                  "val/1_AB.jpg ... 200_AB.jpg",
                    note="the paper scripts' edges2shoes-r is GAN Compression's re-split of "
                         "these 50,025 pairs (47,977 train / 2,048 val); with this archive "
                         "validation (FID against real_stat/edges2shoes-r_B.npz) uses the "
                         "original 200 pairs, and GAN Compression's train_supernet.sh and "
                         "search.sh, which read edges2shoes-r's file lists "
                         "(datasets/metas/edges2shoes-r), need the edges2shoes-r archive"),
            Release("GAN Compression edges2shoes-r",
                    "https://hanlab.mit.edu/files/gan_compression/datasets/edges2shoes-r.tar.gz "
                    "(host gone; the Hugging Face repository mit-han-lab/gan-compression)",
                    (Archive("edges2shoes-r.tar.gz", "edges2shoes-r", size=(512, 256), groups={
                        "train": Group(r"train/\d+_AB\.jpg", 47977),
                        "val": Group(r"val/\d+_AB\.jpg", 2048)}),),
                    counts_source="GAN Compression @111093f: datasets/metas/edges2shoes-r/"
                                  "train{1,2}.meta (45,929 + 2,048 training files) and "
                                  "docs/datasets.md (2,048 validation images)"),
        ),
        layouts={"aligned": "train/, val/: A|B pairs, 512x256 JPEG (edges | shoe), as released"},
        uses=(
            Use("omgd", _under("database/edges2shoes-r",
                               {"train": "aligned/train", "val": "aligned/val"}),
                ("scripts/unet_pix2pix/edges2shoes/distill*.sh",
                 "scripts/resnet_pix2pix/edges2shoes/distill*.sh"),
                "aligned: <dataroot>/{train,val}/*.jpg, A left | B right"),
            Use("gan-compression", _under("database/edges2shoes-r",
                                          {"train": "aligned/train", "val": "aligned/val"}),
                ("scripts/pix2pix/edges2shoes-r/*.sh",),
                "aligned: <dataroot>/{train,val}/*.jpg, A left | B right"),
        )),
    Dataset(
        "cityscapes", "cityscapes",
        releases=(
            Release("Cityscapes (fine annotations + left 8-bit images)",
                    "https://www.cityscapes-dataset.com/downloads/ (free account; licence "
                    "forbids redistribution)",
                    (Archive("gtFine_trainvaltest.zip", "", size=(2048, 1024), groups={
                        **_cityscapes_files("gtFine", "gtFine_color"),
                        **_cityscapes_files("gtFine", "gtFine_labelIds")}),
                     Archive("leftImg8bit_trainvaltest.zip", "", size=(2048, 1024),
                             groups=_cityscapes_files("leftImg8bit", "leftImg8bit"))),
                    counts_source="the Cityscapes paper (2,975 train / 500 val fine images); "
                                  "GAN Compression's datasets/train_table.txt and "
                                  "val_table.txt list exactly these"),
            Release("pix2pix cityscapes", _PIX2PIX + "cityscapes.tar.gz",
                    (Archive("cityscapes.tar.gz", "cityscapes", groups={
                        "train": Group(r"train/\d+\.jpg", 2975),
                        "val": Group(r"val/\d+\.jpg", 500)}),),
                    counts_source="the pix2pix release",
                    refuse="it holds pairs already combined, without the label maps that "
                           "mIoU reads and in its own order; the upstreams need "
                           "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from "
                           "cityscapes-dataset.com"),
        ),
        layouts={"aligned": "train/, val/: N.jpg, photo | colour label map, each resized to "
                            "256x256 (bicubic), JPEG quality 100, N in sorted order, as "
                            "upstream's datasets/prepare_cityscapes_dataset.py writes them",
                 "origin": "gtFine/{train,val}/<city>/*_gtFine_trainIds.png (full size, as "
                           "datasets/get_trainIds.py makes them) for mIoU, and "
                           "train_table.txt, val_table.txt mapping N to them"},
        uses=(
            Use("omgd", {**_CITYSCAPES_ALIGNED,
                         "database/cityscapes-origin/gtFine": "origin/gtFine"},
                ("scripts/unet_pix2pix/cityscapes/distill*.sh",
                 "scripts/resnet_pix2pix/cityscapes/distill*.sh",
                 "metric/cityscapes_mIoU.py"),
                "aligned (--direction BtoA); mIoU reads --cityscapes_path "
                "database/cityscapes-origin with --table_path datasets/table.txt (in the repo; "
                "a partial set needs <root>/cityscapes/origin/val_table.txt instead)"),
            Use("gan-compression", {**_CITYSCAPES_ALIGNED,
                                    "database/cityscapes-origin/gtFine": "origin/gtFine"},
                ("scripts/pix2pix/cityscapes/*.sh", "metric/cityscapes_mIoU.py"),
                "aligned (--direction BtoA); mIoU reads database/cityscapes-origin with "
                "datasets/val_table.txt (search.sh: train_table.txt)"),
            Use("cat", {**_CITYSCAPES_ALIGNED,
                        "database/cityscapes-origin/gtFine": "origin/gtFine"},
                ("scripts/pix2pix/cityscapes/train_inception_*.sh", "metric/mIoU_score.py"),
                "aligned (--direction BtoA); mIoU reads database/cityscapes-origin with "
                "datasets/table.txt"),
            Use("gcc", {**_CITYSCAPES_ALIGNED, "database/cityscapes/gtFine": "origin/gtFine",
                        "database/cityscapes/table.txt": "origin/val_table.txt"},
                ("scripts/pix2pix/train.sh", "metric/test_metric.py"),
                "aligned (BtoA forced for *cityscapes*); mIoU reads <dataroot>/table.txt and "
                "labels under <dataroot>"),
        )),
    Dataset(
        "horse2zebra", "unaligned",
        releases=(
            Release("CycleGAN horse2zebra", _CYCLEGAN + "horse2zebra.zip",
                    (_unaligned("horse2zebra", r"n02381460_\d+", r"n02391049_\d+",
                                (1067, 1334, 120, 140)),),
                    counts_source="the CycleGAN release; the training counts agree with GAN "
                                  "Compression's datasets/metas/horse2zebra/train{1,2}{A,B}.meta "
                                  "(947 + 120, 1,214 + 120)"),
        ),
        layouts={"unaligned": "trainA/, trainB/, testA/, testB/: the released JPEGs (256x256)"},
        uses=(
            Use("omgd", _under("database/horse2zebra", _UNALIGNED_VAL),
                ("scripts/cycle_gan/horse2zebra/distill*.sh",),
                "unaligned: train{A,B}; evaluation reads val{A,B}"),
            Use("gan-compression", _under("database/horse2zebra", _UNALIGNED_VAL),
                ("scripts/cycle_gan/horse2zebra/*.sh",),
                "unaligned: train{A,B}; evaluation reads val{A,B}"),
            Use("cat", _under("database/horse2zebra", _UNALIGNED_VAL),
                ("scripts/cycle_gan/{horse2zebra,zebra2horse}/train_inception_*.sh",),
                "unaligned: train{A,B}; evaluation reads val{A,B}"),
            Use("gcc", _under("database/horse2zebra", _UNALIGNED),
                ("scripts/cyclegan/train.sh", "metric/test_metric.py"),
                "unaligned: train{A,B}; evaluation reads test{A,B} and <dataroot>/real_stat_*.npz"),
        )),
    Dataset(
        "summer2winter", "unaligned",
        releases=(
            Release("CycleGAN summer2winter_yosemite", _CYCLEGAN + "summer2winter_yosemite.zip",
                    (_unaligned("summer2winter_yosemite", "[^/]+", "[^/]+",
                                (1231, 962, 309, 238)),),
                    counts_source="the CycleGAN release (not cross-checked against an "
                                  "upstream file)"),
        ),
        layouts={"unaligned": "trainA/, trainB/, testA/, testB/: the released JPEGs (256x256)"},
        uses=(
            # OMGD's scripts say summer2winter; the release unpacks as summer2winter_yosemite.
            Use("omgd", _under("database/summer2winter", _UNALIGNED_VAL),
                ("scripts/cycle_gan/summer2winter/distill*.sh",),
                "unaligned: train{A,B}; evaluation reads val{A,B}"),
        )),
    Dataset(
        "celeba", "celeba",
        releases=(
            Release("CelebA aligned and cropped", "https://mmlab.ie.cuhk.edu.hk/projects/"
                                                  "CelebA.html (Google Drive: Img/)",
                    (Archive("img_align_celeba.zip", "img_align_celeba", size=(178, 218),
                             md5="00d2c5bc6d35e252742224ab0c1e8fcb",
                             md5_source="torchvision.datasets.CelebA.file_list",
                             groups={"images": Group(r"\d{6}\.jpg", 202599)}),),
                    counts_source="the CelebA paper and release: 000001.jpg ... 202599.jpg"),
        ),
        layouts={"images": "all 202,599 178x218 JPEGs, as released: GCC's SAGAN loader "
                           "centre-crops 160 and resizes to 64 itself, so a copy resized to 64 "
                           "would be cropped again"},
        uses=(
            Use("gcc", {"database/celeb/train": "images"},
                ("scripts/sagan/train.sh", "data/sa_dataset.py", "options/options.py"),
                "every file of <dataroot>/train (os.listdir), CenterCrop(160) + Resize(64); "
                "FID reads <dataroot>/real_stat.npz"),
        )),
    Dataset(
        "ffhq", "ffhq",
        releases=(
            Release("FFHQ images1024x1024", "https://github.com/NVlabs/ffhq-dataset (the "
                                            "images1024x1024 folder or images1024x1024.zip)",
                    (Archive("images1024x1024.zip", "images1024x1024", size=(1024, 1024),
                             groups={"images": Group(r"\d{5}/\d{5}\.png", 70000)}),),
                    counts_source="the FFHQ README: 70,000 PNGs, 00000/00000.png ... "
                                  "69000/69999.png"),
            Release("FFHQ thumbnails128x128", "https://github.com/NVlabs/ffhq-dataset",
                    (Archive("thumbnails128x128.zip", "thumbnails128x128", size=(128, 128),
                             groups={"images": Group(r"\d{5}/\d{5}\.png", 70000)}),),
                    counts_source="the FFHQ README",
                    refuse="its 128x128 thumbnails are smaller than the paper's 256x256; use "
                           "images1024x1024"),
        ),
        layouts={"images256": "00000.png ... 69999.png in one folder, 256x256: the 1024 px "
                              "originals resized as CAGC's loader does (PIL bilinear, "
                              "torchvision's Resize(256)), so it reads the same pixels"},
        uses=(
            Use("cagc", {}, ("train.py", "dataset.py", "train_hyperparams.py"),
                "every file of --path (os.listdir), Resize(--size 256) on load",
                flag="--path {root}/ffhq/images256"),
        )),
)}
