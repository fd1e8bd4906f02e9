"""``vem-plugins data list`` and ``data prepare``: tiny fake archives in the official formats
(the same folder structure, file naming and image sizes, a handful of generated images each)
become exactly the layouts the upstreams load, and bad input is refused in one line with nothing
half-made left behind. Fast tier: everything in ``tmp_path``; the checkouts are empty folders.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import immutable, small_disk

from vem_plugins.commands import cli
from vem_plugins.commands import data as data_command
from vem_plugins.data import catalog, links, prepare
from vem_plugins.errors import UsageError

ADAPTERS = ("omgd", "gan-compression", "cat", "gcc", "cagc")
LABEL_IDS = (0, 7, 8, 11, 21, 23, 24, 26, 33)  # a few Cityscapes ids: void, road, ..., bicycle


def picture(size, seed, fmt="JPEG", mode="RGB") -> bytes:
    """An image of ``size`` (w, h): coarse random blocks, so that it compresses like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, (max(h // 32, 1), max(w // 32, 1), 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.NEAREST).convert(mode)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def label_ids(seed) -> bytes:
    rng = np.random.default_rng(seed)
    ids = np.array(LABEL_IDS, dtype=np.uint8)[rng.integers(0, len(LABEL_IDS), (32, 64))]
    out = io.BytesIO()
    Image.fromarray(ids).resize((2048, 1024), Image.NEAREST).save(out, format="PNG")
    return out.getvalue()


def cityscapes_files() -> dict[str, dict[str, bytes]]:
    scenes = {"train": [("aachen", 0), ("aachen", 1), ("bochum", 5)],
              "val": [("frankfurt", 294), ("lindau", 12)], "test": [("berlin", 3)]}
    gt, photos = {"README": b"x", "license.txt": b"x"}, {"README": b"x", "license.txt": b"x"}
    for split, places in scenes.items():
        for k, (city, n) in enumerate(places):
            stem = f"{split}/{city}/{city}_{n:06d}_000019"
            seed = 100 * len(split) + k
            gt[f"gtFine/{stem}_gtFine_color.png"] = picture((2048, 1024), seed, "PNG", "RGBA")
            gt[f"gtFine/{stem}_gtFine_labelIds.png"] = label_ids(seed)
            gt[f"gtFine/{stem}_gtFine_instanceIds.png"] = label_ids(seed + 1)
            gt[f"gtFine/{stem}_gtFine_polygons.json"] = b"{}"
            photos[f"leftImg8bit/{stem}_leftImg8bit.png"] = picture((2048, 1024), seed + 2, "PNG")
    return {"gtFine_trainvaltest": gt, "leftImg8bit_trainvaltest": photos}


def unaligned(top, a, b) -> dict[str, dict[str, bytes]]:
    files = {}
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            files[f"{top}/{split}A/{a(i)}.jpg"] = picture((256, 256), 10 * i + len(split))
            files[f"{top}/{split}B/{b(i)}.jpg"] = picture((256, 256), 10 * i + 5)
    return {top: files}


@functools.cache
def fakes() -> dict[str, dict[str, dict[str, bytes]]]:
    """dataset -> archive stem -> member path -> bytes, as in the official archives (made at
    first use, not when the suite is collected)."""
    return {
        "edges2shoes": {"edges2shoes": {
            **{f"edges2shoes/train/{i}_AB.jpg": picture((512, 256), i) for i in (1, 2, 10, 4)},
            **{f"edges2shoes/val/{i}_AB.jpg": picture((512, 256), 50 + i) for i in (1, 2)}}},
        "horse2zebra": unaligned("horse2zebra", lambda i: f"n02381460_{100 + i}",
                                 lambda i: f"n02391049_{7 + i}"),
        "summer2winter": unaligned("summer2winter_yosemite",
                                   lambda i: f"2005-06-26 14:04:5{i}",
                                   lambda i: f"2011-01-0{i + 1} 09:10:00"),
        "cityscapes": cityscapes_files(),
        "celeba": {"img_align_celeba": {f"img_align_celeba/{i:06d}.jpg": picture((178, 218), i)
                                        for i in range(1, 5)}},
        "ffhq": {"images1024x1024": {
            "images1024x1024/LICENSE.txt": b"CC BY-NC-SA 4.0",
            **{f"images1024x1024/{i // 1000 * 1000:05d}/{i:05d}.png":
               picture((1024, 1024), i, "PNG") for i in (0, 1, 1000)}}},
    }



def write(files: dict[str, bytes], form: str, where: Path, stem: str) -> Path:
    """The archive ``stem`` as a zip, a tar.gz, or extracted into ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    if form == "zip":
        path = where / f"{stem}.zip"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    elif form == "tar.gz":
        path = where / f"{stem}.tar.gz"
        with tarfile.open(path, "w:gz") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    else:
        for name, data in files.items():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            (where / name).write_bytes(data)
        path = where
    return path


def sources(name: str, form: str, where: Path) -> list[Path]:
    """What a user gives ``--from``: each archive, or the folder they were extracted in (the
    dataset's top folder when it has one)."""
    made = [write(files, form, where, stem) for stem, files in fakes()[name].items()]
    if form != "folder":
        return made
    tops = {a.top for r in catalog.DATASETS[name].releases for a in r.archives}
    top = next((t for t in tops if (where / t).is_dir()), "")
    return [where / top if top else where]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No data root from the environment, no checkout registry, a fresh working directory."""
    monkeypatch.delenv(catalog.ROOT_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def checkouts(tmp_path) -> dict[str, list[Path]]:
    """An (empty) checkout of every adapter, as prepare gets them from the registry."""
    out = {name: [tmp_path / "third_party" / name] for name in ADAPTERS}
    for [path] in out.values():
        path.mkdir(parents=True)
    return out


def run_prepare(name, paths, root, checkouts=None, **kwargs):
    said, warned = [], []
    done = prepare.prepare(name, paths, root, checkouts or {}, say=said.append,
                           warn=warned.append, **kwargs)
    return done, said, warned


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (links followed), by relative path."""
    return {Path(d, f).relative_to(folder).as_posix(): Path(d, f).read_bytes()
            for d, _, files in os.walk(folder, followlinks=True) for f in files}


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# --- what the upstream loaders read, through each checkout's links -------------------------

IMAGE = (".jpg", ".jpeg", ".png")


def images(folder: Path) -> list[Path]:
    """As upstream's data/image_folder.py make_dataset: image files below ``folder``."""
    return sorted(Path(d, f) for d, _, files in os.walk(folder) for f in files
                  if f.lower().endswith(IMAGE))


def aligned(dataroot: Path, phase: str) -> list[Path]:
    """As AlignedDataset: every image is an A|B pair, A left, B right, width 2 x height."""
    paths = images(dataroot / phase)
    for path in paths:
        w, h = Image.open(path).size
        assert w == 2 * h, path
    return paths


def check_edges2shoes(root, checkouts):
    files = fakes()["edges2shoes"]["edges2shoes"]
    for adapter in ("omgd", "gan-compression"):
        dataroot = checkouts[adapter][0] / "database/edges2shoes-r"
        for phase in ("train", "val"):
            got = {p.name: p.read_bytes() for p in aligned(dataroot, phase)}
            assert got == {Path(n).name: d for n, d in files.items() if f"/{phase}/" in n}


def check_unaligned(name, top, root, checkouts):
    files = fakes()[name][top]
    want = {split: {Path(n).name: d for n, d in files.items() if f"/{split}/" in n}
            for split in ("trainA", "trainB", "testA", "testB")}
    for use in catalog.DATASETS[name].uses:
        dataroot = checkouts[use.adapter][0] / f"database/{name}"
        # pix2pix lineage: phase train + evaluation on val{A,B}; GCC: train + test{A,B}
        phases = ("train", "test") if use.adapter == "gcc" else ("train", "val", "test")
        for phase in phases:
            for side in "AB":
                got = {p.name: p.read_bytes() for p in images(dataroot / f"{phase}{side}")}
                assert got == want[f"{'test' if phase == 'val' else phase}{side}"]


def check_horse2zebra(root, checkouts):
    check_unaligned("horse2zebra", "horse2zebra", root, checkouts)


def check_summer2winter(root, checkouts):
    check_unaligned("summer2winter", "summer2winter_yosemite", root, checkouts)


def check_cityscapes(root, checkouts):
    """As prepare_cityscapes_dataset.py + get_trainIds.py, read as the mIoU code reads them."""
    gt = fakes()["cityscapes"]["gtFine_trainvaltest"]
    photos = fakes()["cityscapes"]["leftImg8bit_trainvaltest"]
    lut = np.full(256, 255, dtype=np.uint8)  # get_trainIds.py for the ids used: the rest 255
    lut[[7, 8, 11, 21, 23, 24, 26, 33]] = [0, 1, 2, 8, 10, 11, 13, 18]
    for use in catalog.DATASETS["cityscapes"].uses:
        checkout = checkouts[use.adapter][0]
        dataroot = checkout / "database/cityscapes"
        origin = dataroot if use.adapter == "gcc" else checkout / "database/cityscapes-origin"
        for split in ("train", "val"):
            colors = sorted(n for n in gt if n.startswith(f"gtFine/{split}/")
                            and n.endswith("_color.png"))
            shots = sorted(n for n in photos if n.startswith(f"leftImg8bit/{split}/"))
            pairs = aligned(dataroot, split)
            assert sorted(p.name for p in pairs) == sorted(f"{i}.jpg" for i in range(len(colors)))
            table = (root / "cityscapes/origin" / f"{split}_table.txt").read_text().splitlines()
            for i, (color, shot) in enumerate(zip(colors, shots)):
                pair = np.asarray(Image.open(dataroot / split / f"{i}.jpg"), dtype=float)
                photo = Image.open(io.BytesIO(photos[shot])).convert("RGB")
                label = Image.open(io.BytesIO(gt[color])).convert("RGB")
                for half, img in ((pair[:, :256], photo), (pair[:, 256:], label)):  # A | B
                    small = np.asarray(img.resize((256, 256), Image.BICUBIC), dtype=float)
                    assert np.abs(half - small).mean() < 2  # JPEG quality 100
                assert table[i] == (f"{i} {color.replace('_color', '_trainIds')} {shot}")
                if split == "val" or use.adapter != "gcc":
                    ids = np.asarray(Image.open(origin / table[i].split()[1]))
                    raw = np.asarray(Image.open(io.BytesIO(gt[color.replace("color",
                                                                             "labelIds")])))
                    assert ids.shape == (1024, 2048)
                    assert (ids == lut[raw]).all()
        if use.adapter == "gcc":  # GCC's mIoU reads <dataroot>/table.txt
            assert (dataroot / "table.txt").read_text() == \
                (root / "cityscapes/origin/val_table.txt").read_text()


def check_celeba(root, checkouts):
    from torchvision import transforms
    dataroot = checkouts["gcc"][0] / "database/celeb"
    names = sorted(os.listdir(dataroot / "train"))  # GCC's SADataset: every file of train/
    want = fakes()["celeba"]["img_align_celeba"]
    assert {n: (dataroot / "train" / n).read_bytes() for n in names} == \
        {Path(n).name: d for n, d in want.items()}
    load = transforms.Compose([transforms.CenterCrop(160), transforms.Resize((64, 64))])
    assert load(Image.open(dataroot / "train" / names[0]).convert("RGB")).size == (64, 64)


def check_ffhq(root, checkouts):
    """CAGC's FFHQ_Dataset with transforms.Resize(256) reads the same pixels as from the
    1024 px originals."""
    from torchvision.transforms import functional
    folder = root / "ffhq/images256"
    originals = {Path(n).name: d for n, d in fakes()["ffhq"]["images1024x1024"].items()
                 if n.endswith(".png")}
    assert sorted(os.listdir(folder)) == sorted(originals)
    for name, data in originals.items():
        ours = Image.open(folder / name).convert("RGB")
        assert ours.size == (256, 256)
        theirs = functional.resize(Image.open(io.BytesIO(data)).convert("RGB"), 256)
        assert functional.resize(ours, 256).tobytes() == theirs.tobytes()
    [row] = [r for r in prepare.status(root, checkouts) if r["name"] == "ffhq"]
    assert row["uses"][0]["checkouts"] == [  # CAGC reads --path: nothing to link
        {"dir": str(checkouts["cagc"][0]), "state": f"no fixed path: give --path {folder}"}]


CHECKS = {"edges2shoes": check_edges2shoes, "horse2zebra": check_horse2zebra,
          "summer2winter": check_summer2winter, "cityscapes": check_cityscapes,
          "celeba": check_celeba, "ffhq": check_ffhq}


# --- the layouts ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["zip", "tar.gz", "folder"])
@pytest.mark.parametrize("name", list(catalog.DATASETS))
def test_prepare_writes_what_the_upstreams_load(name, form, tmp_path, checkouts):
    root = tmp_path / "root"
    done, said, warned = run_prepare(name, sources(name, form, tmp_path / "dl"), root,
                                     checkouts, allow_partial=True)
    [warning] = warned
    assert warning.startswith("a partial dataset: ") and "missing" in warning
    assert leftovers(root) == [name]  # no staging folder left
    marker = json.loads((root / name / prepare.MARKER).read_text())
    assert marker["dataset"] == name and marker["complete"] is False
    assert done.marker == marker and prepare.read_marker(root / name) == marker
    uses = catalog.DATASETS[name].uses
    assert sorted(done.links) == sorted(
        (checkouts[u.adapter][0] / path, links.LINKED) for u in uses for path in u.links)
    for path, _ in done.links:  # one copy: every link points into the data root
        assert path.is_symlink() and Path(os.readlink(path)).is_relative_to(root / name)
    CHECKS[name](root, checkouts)


def test_rerun_of_a_whole_dataset_reads_nothing_and_links(tmp_path, checkouts, monkeypatch):
    name, root = "horse2zebra", tmp_path / "root"
    counts = {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2}
    whole = official(monkeypatch, name, counts)
    done, said, warned = run_prepare(name, sources(name, "zip", tmp_path / "dl"), root)
    assert not warned and done.marker["complete"] and done.marker["release"] == whole.name
    assert not done.links  # no checkout yet
    done, said, _ = run_prepare(name, [tmp_path / "nothing-there.zip"], root, checkouts)
    assert "already prepared" in said[0]
    assert {p for p, state in done.links if state == links.LINKED} == {
        checkouts[u.adapter][0] / p for u in catalog.DATASETS[name].uses for p in u.links}
    assert len(tree(checkouts["omgd"][0] / "database/horse2zebra")) == 14  # val{A,B} = test{A,B}


def official(monkeypatch, name, counts, **archive):
    """Make the fake the official archive: the catalog's counts (and ``archive`` fields) set to
    the fake's."""
    dataset = catalog.DATASETS[name]
    first = dataset.releases[0]
    [arc] = first.archives
    arc = dataclasses.replace(arc, groups={g: dataclasses.replace(x, count=counts[g])
                                           for g, x in arc.groups.items()}, **archive)
    release = dataclasses.replace(first, archives=(arc,))
    monkeypatch.setitem(catalog.DATASETS, name, dataclasses.replace(
        dataset, releases=(release,) + dataset.releases[1:]))
    return release


def test_user_paths_in_checkouts_are_left_alone(tmp_path, checkouts):
    omgd = checkouts["omgd"][0]
    (omgd / "database/horse2zebra/trainA").mkdir(parents=True)  # the user's own copy
    (omgd / "database/horse2zebra/trainB").symlink_to(tmp_path)  # the user's link
    (omgd / "database/horse2zebra/testA").symlink_to(tmp_path / "gone")  # a dangling link
    done, _, _ = run_prepare("horse2zebra", sources("horse2zebra", "zip", tmp_path / "dl"),
                             tmp_path / "root", checkouts, allow_partial=True)
    states = {p.relative_to(omgd).as_posix(): s for p, s in done.links if p.is_relative_to(omgd)}
    assert states["database/horse2zebra/trainA"] == "your own copy, left alone"
    assert states["database/horse2zebra/trainB"] == "a link to somewhere else, left alone"
    assert states["database/horse2zebra/testA"] == links.LINKED
    assert os.readlink(omgd / "database/horse2zebra/trainB") == str(tmp_path)


# --- interruptions ---------------------------------------------------------------------------

def count_writes(monkeypatch, interrupt_after=None) -> list[str]:
    """The files the staging folder writes from now on; a KeyboardInterrupt (Ctrl-C, or the
    SIGTERM the command line turns into one) after ``interrupt_after`` of them."""
    real, written = prepare._Staging.write, []

    def write(self, rel, data):
        if len(written) == interrupt_after:
            raise KeyboardInterrupt
        written.append(rel)
        real(self, rel, data)
    monkeypatch.setattr(prepare._Staging, "write", write)
    return written


def test_interrupted_prepare_is_not_ready_and_a_rerun_resumes(tmp_path, checkouts, monkeypatch):
    name, root = "edges2shoes", tmp_path / "root"
    paths = sources(name, "tar.gz", tmp_path / "dl")
    real = prepare._Staging.write
    count_writes(monkeypatch, interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(name, paths, root, checkouts, allow_partial=True)
    [partial] = leftovers(root)
    assert partial == f".{name}.partial-{os.getpid()}"
    [row] = [r for r in prepare.status(root, checkouts) if r["name"] == name]
    assert row["prepared"] is None and not (root / name).exists()
    assert not (checkouts["omgd"][0] / "database").exists()
    # a later process: the partial's pid is dead by then
    os.rename(root / partial, root / f".{name}.partial-{dead_pid()}")
    monkeypatch.setattr(prepare._Staging, "write", real)
    copied = count_writes(monkeypatch)
    done, said, _ = run_prepare(name, paths, root, checkouts, allow_partial=True)
    assert said[0] == (f"resuming the interrupted prepare of {name} (pid {dead_pid()}): 3 files "
                       f"were written")
    assert len(copied) == 3 and leftovers(root) == [name]
    check_edges2shoes(root, checkouts)


def test_unfinished_prepare_of_other_files_is_removed(tmp_path, checkouts, monkeypatch):
    name, root = "horse2zebra", tmp_path / "root"
    stale = root / f".{name}.partial-{dead_pid()}"
    (stale / "unaligned/trainA").mkdir(parents=True)
    (stale / "unaligned/trainA/n02381460_1.jpg").write_bytes(b"half")
    done, said, _ = run_prepare(name, sources(name, "zip", tmp_path / "dl"), root, checkouts,
                                allow_partial=True)
    assert said[0] == (f"removed an unfinished prepare of {name} (pid {dead_pid()}) from other "
                       f"files; starting over")
    assert leftovers(root) == [name]
    check_horse2zebra(root, checkouts)


def test_a_running_prepare_is_not_disturbed(tmp_path):
    root = tmp_path / "root"
    running = root / f".celeba.partial-{os.getppid()}"
    running.mkdir(parents=True)
    with pytest.raises(UsageError, match=f"another prepare of celeba is running \\(pid "
                                         f"{os.getppid()}\\)"):
        run_prepare("celeba", sources("celeba", "zip", tmp_path / "dl"), root,
                    allow_partial=True)
    assert leftovers(root) == [running.name]


def test_killed_prepare_leaves_nothing_ready(tmp_path):
    """A real SIGKILL in the middle (of a slowed-down copy), then the same command again."""
    root, paths = tmp_path / "root", sources("celeba", "folder", tmp_path / "dl")
    code = (f"import time, sys; from vem_plugins.data import prepare\n"
            f"real = prepare._Staging.write\n"
            f"def slow(self, rel, data):\n"
            f"    real(self, rel, data); print(rel, flush=True); time.sleep(60)\n"
            f"prepare._Staging.write = slow\n"
            f"prepare.prepare('celeba', [{str(paths[0])!r}], prepare.Path({str(root)!r}), {{}},"
            f" allow_partial=True, warn=print)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("a partial dataset: ")
        assert proc.stdout.readline().startswith("images/")
    finally:
        proc.kill()
        proc.wait()
    assert prepare.read_marker(root / "celeba") is None
    assert [r["prepared"] for r in prepare.status(root, {}) if r["name"] == "celeba"] == [None]
    _, said, _ = run_prepare("celeba", paths, root, allow_partial=True)
    assert said[0].startswith("resuming the interrupted prepare of celeba")
    assert leftovers(root) == ["celeba"]
    assert len(tree(root / "celeba/images")) == 4


def dead_pid() -> int:
    return 2 ** 22 + 1  # above the largest pid_max Linux allows: never a live process


# --- bad input -------------------------------------------------------------------------------

def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("form", ["zip", "tar.gz"])
def test_truncated_archive_is_refused_and_a_rerun_picks_up(form, tmp_path, checkouts):
    root = tmp_path / "root"
    [path] = sources("edges2shoes", form, tmp_path / "dl")
    good = path.read_bytes()
    path.write_bytes(good[:len(good) * 2 // 3])
    with pytest.raises(UsageError) as exc:
        run_prepare("edges2shoes", [path], root, checkouts, allow_partial=True)
    assert f"{path} is not a whole zip or tar archive (truncated or damaged?" in one_line(exc) \
        or f"{path} is damaged at" in one_line(exc)
    assert leftovers(root) == []
    path.write_bytes(good)
    run_prepare("edges2shoes", [path], root, checkouts, allow_partial=True)
    check_edges2shoes(root, checkouts)


def test_incomplete_archive_needs_allow_partial(tmp_path):
    [path] = sources("edges2shoes", "tar.gz", tmp_path / "dl")
    with pytest.raises(UsageError) as exc:
        run_prepare("edges2shoes", [path], tmp_path / "root")
    assert one_line(exc) == (f"{path} holds 4 of 49,825 train, 2 of 200 val files of "
                             f"edges2shoes.tar.gz (50,019 missing: truncated or incomplete?); "
                             f"--allow-partial prepares what is there")
    assert leftovers(tmp_path / "root") == []


@pytest.mark.parametrize("given, name, says", [
    ("horse2zebra", "edges2shoes", "looks like horse2zebra.zip (dataset horse2zebra), not "
                                   "edges2shoes"),
    ("horse2zebra", "summer2winter", "looks like horse2zebra.zip (dataset horse2zebra), not "
                                     "summer2winter"),
    ("summer2winter", "horse2zebra", "looks like summer2winter_yosemite.zip (dataset "
                                     "summer2winter), not horse2zebra"),
    ("celeba", "ffhq", "looks like img_align_celeba.zip (dataset celeba), not ffhq"),
    ("edges2shoes", "cityscapes", "looks like edges2shoes.tar.gz (dataset edges2shoes)"),
])
def test_another_datasets_archive_is_refused(given, name, says, tmp_path):
    paths = sources(given, "zip", tmp_path / "dl")
    with pytest.raises(UsageError) as exc:
        run_prepare(name, paths, tmp_path / "root", allow_partial=True)
    assert says in one_line(exc)
    assert leftovers(tmp_path / "root") == []


def test_more_files_than_the_official_archive_is_refused(tmp_path, monkeypatch):
    official(monkeypatch, "celeba", {"images": 3})
    [path] = sources("celeba", "zip", tmp_path / "dl")
    with pytest.raises(UsageError) as exc:
        run_prepare("celeba", [path], tmp_path / "root", allow_partial=True)
    assert one_line(exc) == (f"{path} holds 4 images files (the official 3): not "
                             f"img_align_celeba.zip")


def test_look_alikes_are_refused_saying_why(tmp_path):
    pix2pix = {f"cityscapes/{s}/{i}.jpg": picture((512, 256), i) for s in ("train", "val")
               for i in (1, 2)}
    path = write(pix2pix, "tar.gz", tmp_path, "cityscapes")
    with pytest.raises(UsageError) as exc:
        run_prepare("cityscapes", [path], tmp_path / "root", allow_partial=True)
    assert one_line(exc).startswith(f"{path} is cityscapes.tar.gz, refused for cityscapes: it "
                                    f"holds pairs already combined, without the label maps")
    thumbs = {f"thumbnails128x128/00000/0000{i}.png": picture((128, 128), i, "PNG")
              for i in range(3)}
    path = write(thumbs, "zip", tmp_path, "thumbnails128x128")
    with pytest.raises(UsageError, match="thumbnails128x128.zip, refused for ffhq: its 128x128"):
        run_prepare("ffhq", [path], tmp_path / "root", allow_partial=True)
    write(thumbs, "folder", tmp_path / "t", "")
    (tmp_path / "renamed").mkdir()
    os.rename(tmp_path / "t/thumbnails128x128", tmp_path / "renamed/faces")
    with pytest.raises(UsageError) as exc:  # renamed: the image size gives it away
        run_prepare("ffhq", [tmp_path / "renamed/faces"], tmp_path / "root", allow_partial=True)
    assert "is 128x128, the official archive's images 1024x1024" in one_line(exc)
    assert leftovers(tmp_path / "root") == []


def test_cityscapes_needs_both_archives(tmp_path):
    gt = write(fakes()["cityscapes"]["gtFine_trainvaltest"], "zip", tmp_path,
               "gtFine_trainvaltest")
    with pytest.raises(UsageError) as exc:
        run_prepare("cityscapes", [gt], tmp_path / "root", allow_partial=True)
    assert one_line(exc) == (f"cityscapes needs gtFine_trainvaltest.zip + "
                             f"leftImg8bit_trainvaltest.zip; leftImg8bit_trainvaltest.zip is not "
                             f"among {gt} (give --from once for each, or a folder holding all)")


def test_not_an_archive_and_unsafe_members_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UsageError, match="notes.txt is not a whole zip or tar archive"):
        run_prepare("celeba", [text], tmp_path / "root")
    with pytest.raises(UsageError, match="missing.zip does not exist"):
        run_prepare("celeba", [tmp_path / "missing.zip"], tmp_path / "root")
    evil = write({"img_align_celeba/000001.jpg": picture((178, 218), 1),
                  "../000002.jpg": picture((178, 218), 2)}, "zip", tmp_path, "img_align_celeba")
    with pytest.raises(UsageError, match=r"has a member outside its folder \(../000002.jpg\)"):
        run_prepare("celeba", [evil], tmp_path / "root", allow_partial=True)
    with pytest.raises(UsageError, match="unknown dataset 'celeb'; did you mean celeba?"):
        run_prepare("celeb", [evil], tmp_path / "root")
    assert leftovers(tmp_path / "root") == []


def test_published_checksum_is_verified(tmp_path, monkeypatch):
    [path] = sources("celeba", "zip", tmp_path / "dl")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    official(monkeypatch, "celeba", {"images": 4}, md5="0" * 32)
    with pytest.raises(UsageError) as exc:
        run_prepare("celeba", [path], tmp_path / "root")
    assert one_line(exc) == (f"{path} has md5 {md5}, the official img_align_celeba.zip "
                             f"{'0' * 32} (torchvision.datasets.CelebA.file_list): damaged or "
                             f"altered; download it again")
    official(monkeypatch, "celeba", {"images": 4}, md5=md5)
    done, _, warned = run_prepare("celeba", [path], tmp_path / "root")
    assert done.marker["complete"] and not warned


def test_damaged_image_is_refused(tmp_path):
    files = dict(fakes()["celeba"]["img_align_celeba"])
    files["img_align_celeba/000003.jpg"] = b"not a jpeg"
    path = write(files, "zip", tmp_path, "img_align_celeba")
    with pytest.raises(UsageError) as exc:
        run_prepare("celeba", [path], tmp_path / "root", allow_partial=True)
    assert one_line(exc).startswith(f"img_align_celeba/000003.jpg in {path} is not a readable "
                                    f"image")
    assert leftovers(tmp_path / "root") == []


def test_read_only_root_is_refused_and_a_rerun_picks_up(tmp_path, checkouts):
    root = tmp_path / "root"
    root.mkdir()
    paths = sources("horse2zebra", "zip", tmp_path / "dl")
    with immutable(root):
        with pytest.raises(UsageError) as exc:
            run_prepare("horse2zebra", paths, root, checkouts, allow_partial=True)
        assert one_line(exc).startswith(f"cannot write under {root}: Operation not permitted")
    assert leftovers(root) == []
    run_prepare("horse2zebra", paths, root, checkouts, allow_partial=True)
    check_horse2zebra(root, checkouts)


def test_full_disk_is_refused_and_a_rerun_picks_up(tmp_path, checkouts):
    paths = sources("edges2shoes", "zip", tmp_path / "dl")
    needed = sum(map(len, fakes()["edges2shoes"]["edges2shoes"].values()))
    with small_disk(tmp_path / "disk", "1m") as disk:
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:  # fill it up
            for _ in range(1024):
                f.write(b"x" * 1024)
                f.flush()
        os.truncate(filler, filler.stat().st_size - needed // 2)  # room for half of it
        root = disk / "root"
        with pytest.raises(UsageError) as exc:
            run_prepare("edges2shoes", paths, root, checkouts, allow_partial=True)
        assert one_line(exc).startswith(f"no space left under {root} while preparing "
                                        f"edges2shoes")
        assert leftovers(root) == []
        filler.unlink()
        run_prepare("edges2shoes", paths, root, checkouts, allow_partial=True)
        check_edges2shoes(root, checkouts)


def test_existing_folder_not_made_by_prepare_is_refused(tmp_path):
    (tmp_path / "root/celeba").mkdir(parents=True)
    with pytest.raises(UsageError, match="root/celeba exists but was not made by vem-plugins"):
        run_prepare("celeba", sources("celeba", "zip", tmp_path / "dl"), tmp_path / "root",
                    allow_partial=True)


def test_partial_dataset_is_replaced_by_a_whole_one(tmp_path, checkouts, monkeypatch):
    root = tmp_path / "root"
    files = fakes()["celeba"]["img_align_celeba"]
    few = write(dict(list(files.items())[:2]), "zip", tmp_path / "few", "img_align_celeba")
    run_prepare("celeba", [few], root, checkouts, allow_partial=True)
    assert len(tree(root / "celeba/images")) == 2
    official(monkeypatch, "celeba", {"images": 4}, md5=None)
    done, _, warned = run_prepare("celeba", sources("celeba", "zip", tmp_path / "dl"), root,
                                  checkouts)
    assert done.marker["complete"] and not warned and leftovers(root) == ["celeba"]
    check_celeba(root, checkouts)


# --- the command line ------------------------------------------------------------------------

def main(monkeypatch, *argv) -> int:
    """``vem-plugins data ...`` through the real ``main``, with a parser holding ``data``."""
    def parser():
        top = argparse.ArgumentParser(prog="vem-plugins")
        data_command.add_parser(top.add_subparsers(required=True))
        return top
    monkeypatch.setattr(cli, "_parser", parser)
    return cli.main(list(argv))


def test_cli_prepare_and_list(tmp_path, monkeypatch, capsys):
    (tmp_path / "third_party/omgd").mkdir(parents=True)  # an installed checkout
    monkeypatch.setenv(catalog.ROOT_ENV, str(tmp_path / "data"))
    [path] = sources("summer2winter", "zip", tmp_path / "dl")
    assert main(monkeypatch, "data", "prepare", "summer2winter", "--from", str(path),
                "--allow-partial") == 0
    out, err = capsys.readouterr()
    assert err.startswith("vem-plugins: warning: a partial dataset: 3 of 1,231 trainA, 3 of "
                          "962 trainB, 2 of 309 testA, 2 of 238 testB files (2,730 missing)")
    assert f"prepared summer2winter in {tmp_path / 'data/summer2winter'}" in out
    assert "linked third_party/omgd/database/summer2winter/valA" in out
    assert main(monkeypatch, "data", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["root"] == str(tmp_path / "data")
    rows = {row["name"]: row for row in listed["datasets"]}
    assert list(rows) == list(catalog.DATASETS)
    assert rows["summer2winter"]["prepared"]["counts"] == {"trainA": 3, "trainB": 3,
                                                           "testA": 2, "testB": 2}
    assert rows["summer2winter"]["uses"][0]["checkouts"] == [
        {"dir": str(tmp_path / "third_party/omgd"), "state": links.LINKED}]
    assert all(rows[n]["prepared"] is None for n in rows if n != "summer2winter")
    assert rows["ffhq"]["uses"][0]["flag"] == f"--path {tmp_path / 'data/ffhq/images256'}"
    assert rows["ffhq"]["uses"][0]["checkouts"] == []  # cagc is not installed here
    assert main(monkeypatch, "data", "list", "--root", str(tmp_path / "elsewhere")) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"data root: elsewhere (--root, else ${catalog.ROOT_ENV}, else "
                           f"./datasets)\n")
    assert "\nsummer2winter: not prepared\n" in text
    assert "  from  edges2shoes.tar.gz: 49,825 train, 200 val\n" in text
    assert "  omgd            database/edges2shoes-r/{train,val}: aligned" in text
    assert "                  third_party/omgd: database/edges2shoes-r/train: not linked" in text


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    [path] = sources("horse2zebra", "zip", tmp_path / "dl")
    assert main(monkeypatch, "data", "prepare", "edges2shoes", "--from", str(path),
                "--root", str(tmp_path / "root")) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"vem-plugins: error: {path} looks like horse2zebra.zip")


def test_cli_delegates_stats_and_weights():
    from vem_plugins.data import stats, weights
    top = argparse.ArgumentParser()
    data_command.add_parser(top.add_subparsers(required=True))
    subcommands = top._subparsers._group_actions[0].choices["data"]._subparsers
    choices = subcommands._group_actions[0].choices
    assert list(choices) == ["list", "prepare", "stats", "weights"]
    assert choices["stats"].get_default("run") is stats.run
    assert choices["weights"].get_default("run") is weights.run


def test_default_root_is_documented_and_absolute(monkeypatch, tmp_path):
    assert catalog.data_root() == tmp_path / "datasets"
    monkeypatch.setenv(catalog.ROOT_ENV, "rel")
    assert catalog.data_root() == tmp_path / "rel"
    assert catalog.data_root(Path("given")) == tmp_path / "given"
