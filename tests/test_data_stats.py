"""``vem-plugins data stats NAME ADAPTER``: the command line it builds for the upstream's own
statistics script (flags, working directory, output path, the images it is shown) and the one
line it refuses each bad input with. Fast tier: a fake checkout whose ``get_real_stat.py`` takes
upstream's flags, records them and writes an npz; the run of GAN Compression's real script is in
``tests/upstream/test_data_stats.py``."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import write_images
from vem_plugins.adapters.cagc.adapter import FID_STATS
from vem_plugins.authoring.compat import INCEPTION
from vem_plugins.data import stats
from vem_plugins.data.catalog import DATASETS
from vem_plugins.errors import UsageError

# upstream's interface: --dataroot, --output_path, --gpu_ids and the dataset's flags; np.savez
FAKE = r'''
import argparse, json, os, sys
import numpy as np
parser = argparse.ArgumentParser()
for flag in ("--dataroot", "--output_path", "--gpu_ids", "--dataset_mode", "--direction",
             "--phase", "--crop_size"):
    parser.add_argument(flag)
parser.add_argument("--center_crop", action="store_true")
opt = parser.parse_args()
print("100%|##########| 4/4 [00:01<00:00]", file=sys.stderr)
if os.environ.get("FAKE_FAIL"):
    raise RuntimeError("CUDA out of memory")
files = {name: os.path.realpath(os.path.join(opt.dataroot, name))
         for name in sorted(os.listdir(opt.dataroot))}
with open("calls.jsonl", "a") as f:
    f.write(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "files": files,
                        "pythonpath": os.environ.get("PYTHONPATH", "")}) + "\n")
np.savez(opt.output_path, mu=np.zeros(4), sigma=np.eye(4))
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data root, a torch hub cache with an Inception file (not the published one), an empty
    checkout registry, and no third_party/ in the working directory."""
    home = tmp_path / "torch" / "hub" / "checkpoints"
    home.mkdir(parents=True)
    (home / INCEPTION.file).write_bytes(b"a stand-in")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("VEM_DATA_ROOT", str(tmp_path / "datasets"))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def checkout(root: Path, script: str = "get_real_stat.py") -> Path:
    path = root / "checkout"
    (path / script).parent.mkdir(parents=True, exist_ok=True)
    (path / script).write_text(FAKE)
    return path


def images(folder: Path, count: int = 2, paired: bool = False) -> Path:
    write_images(folder, count, 8, np.random.default_rng(0), paired=paired)
    return folder


def stats_run(*argv) -> int:
    parser = argparse.ArgumentParser()
    stats.add_arguments(parser)
    return stats.run(parser.parse_args([*argv, "--device", "cpu"]))


def calls(co: Path) -> list[dict]:
    return [json.loads(line) for line in (co / "calls.jsonl").read_text().splitlines()]


def flags(argv: list[str]) -> dict[str, str]:
    return dict(zip(argv[1::2], argv[2::2]))


# -- the command lines -----------------------------------------------------------------------

def test_paired_statistics_run_upstream_script_as_the_paper_scripts_read_them(env, capsys):
    co = checkout(env)
    val = images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    assert stats_run("edges2shoes", "gan-compression", "--dir", str(co)) == 0
    [call] = calls(co)
    assert call["cwd"] == str(co) and call["argv"][0] == "get_real_stat.py"
    got = flags(call["argv"])
    del got["--dataroot"]  # a temporary folder of links, laid out as the scripts' dataroot
    assert got == {"--output_path": str(co / "real_stat" / "edges2shoes-r_B.npz"),
                   "--gpu_ids": "-1", "--dataset_mode": "aligned", "--phase": "val",
                   "--direction": "AtoB"}
    assert call["files"] == {"val": str(val)}
    assert str(co) in call["pythonpath"].split(os.pathsep)
    out, err = capsys.readouterr()
    assert out == "wrote checkout/real_stat/edges2shoes-r_B.npz: mu (4,), sigma (4, 4)\n"
    assert "[1/1] gan-compression's get_real_stat.py on cpu: datasets/edges2shoes/aligned/val" \
           in err
    assert "100%|##########| 4/4" in err  # upstream's progress bar, streamed
    assert f"is not the published FID Inception file (expected {INCEPTION.checksum}" in err


def test_cyclegan_statistics_cover_training_and_test_images_of_each_domain(env, capsys):
    co = checkout(env)
    data = env / "datasets" / "horse2zebra" / "unaligned"
    for folder in ("trainA", "trainB", "testA", "testB"):
        images(data / folder)
    assert stats_run("horse2zebra", "cat", "--dir", str(co)) == 0
    a, b = calls(co)
    for call, side in ((a, "A"), (b, "B")):
        assert flags(call["argv"])["--output_path"] == str(co / "real_stat" /
                                                           f"horse2zebra_{side}.npz")
        assert flags(call["argv"])["--dataset_mode"] == "single"
        assert flags(call["argv"])["--direction"] == "BtoA"  # single yields its images as A
        # training and test images (the scripts' val{A,B} is the release's test{A,B})
        assert call["files"] == {
            f"{split}{side}_{i}.png": str(data / f"{ours}{side}" / f"{i}.png")
            for split, ours in (("train", "train"), ("val", "test")) for i in range(2)}
    assert capsys.readouterr().out.count("wrote ") == 2


def test_gcc_statistics_go_into_its_dataroot(env):
    co = checkout(env, "metric/get_real_stat.py")
    celeba = images(env / "datasets" / "celeba" / "images")
    assert stats_run("celeba", "gcc", "--dir", str(co)) == 0
    [call] = calls(co)
    assert call["cwd"] == str(co) and call["argv"][0] == "metric/get_real_stat.py"
    assert call["argv"][-1] == "--center_crop"
    got = flags(call["argv"][:-1])
    del got["--dataroot"]
    assert got == {"--output_path": str(co / "database" / "celeb" / "real_stat.npz"),
                   "--gpu_ids": "-1", "--dataset_mode": "sa", "--phase": "train",
                   "--crop_size": "64"}
    assert call["files"] == {"train": str(celeba)}
    assert str(co) in call["pythonpath"].split(os.pathsep)  # metric/ imports `data`


def test_dataroot_and_root_choose_the_images(env, tmp_path):
    co = checkout(env)
    mine = images(tmp_path / "mine" / "val", paired=True)
    assert stats_run("cityscapes", "gan-compression", "--dir", str(co),
                     "--dataroot", str(mine.parent)) == 0
    other = images(tmp_path / "other" / "cityscapes" / "aligned" / "val", paired=True)
    assert stats_run("cityscapes", "gan-compression", "--dir", str(co), "--root",
                     str(tmp_path / "other"), "--force") == 0
    first, second = calls(co)
    assert first["files"] == {"val": str(mine)} and second["files"] == {"val": str(other)}
    assert flags(first["argv"])["--direction"] == "BtoA"
    assert flags(first["argv"])["--output_path"] == str(co / "real_stat" / "cityscapes_A.npz")


def test_checkouts_are_found_where_install_put_them(env):
    co = checkout(env)
    (env / "third_party").mkdir()
    co.rename(env / "third_party" / "gan-compression")
    images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    assert stats_run("edges2shoes", "gan-compression") == 0
    assert (env / "third_party" / "gan-compression" / "real_stat" / "edges2shoes-r_B.npz").is_file()


def test_every_recipe_reads_folders_that_prepare_makes():
    for adapter, (_, datasets) in stats.SCRIPTS.items():
        for name, recipes in datasets.items():
            links = {p for use in DATASETS[name].uses for p in use.links}
            for recipe in recipes:
                assert {f"{recipe.dataroot}/{f}" for f in recipe.folders} <= links, (adapter, name)


# -- refusals: one line each -----------------------------------------------------------------

def refused(*argv) -> str:
    with pytest.raises(UsageError) as err:
        stats_run(*argv)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("argv, expected", [
    (("edges2shoes", "gan-compresion"), "did you mean gan-compression?"),
    (("edges2shoes", "omgd"), "make edges2shoes-r_B.npz with: vem-plugins data stats "
                              "edges2shoes gan-compression"),
    (("horse2zebra", "gcc"), "vem-plugins data stats horse2zebra gan-compression"),
    (("cityscapes", "gcc"), "GCC evaluates cityscapes by mIoU"),
    (("edges2shoes", "cat"), "cat's paper scripts read no FID statistics of 'edges2shoes' "
                             "(they do of: cityscapes, horse2zebra)"),
    (("celeba", "cagc"), "cagc's paper runs read no FID statistics of 'celeba'"),
    (("edges2shoes", "gan-compression"), "gan-compression is not installed (looked in "
                                         "third_party/gan-compression and where vem-plugins "
                                         "installed it); install it with: vem-plugins install "
                                         "gan-compression, or give --dir"),
])
def test_what_has_no_statistics_or_no_checkout_is_refused(env, argv, expected):
    assert expected in refused(*argv)


def test_an_unknown_dataset_is_refused_by_the_parser(env, capsys):
    with pytest.raises(SystemExit):
        stats_run("edges2shoe", "gan-compression")
    err = capsys.readouterr().err.splitlines()[-1]
    assert "argument NAME: invalid choice: 'edges2shoe'" in err


def test_bad_checkouts_and_datasets_are_refused(env):
    co = checkout(env)
    assert refused("celeba", "gcc", "--dir", str(co)) == (
        "checkout is not a checkout of gcc (it has no metric/get_real_stat.py); install one "
        "with: vem-plugins install gcc --dir checkout")
    fix = "prepare it with: vem-plugins data prepare edges2shoes, or give --dataroot PATH"
    assert refused("edges2shoes", "gan-compression", "--dir", str(co)) == \
        f"no dataset folder datasets/edges2shoes/aligned/val; {fix}"
    (env / "datasets" / "edges2shoes" / "aligned" / "val").mkdir(parents=True)
    assert refused("edges2shoes", "gan-compression", "--dir", str(co)).startswith(
        "datasets/edges2shoes/aligned/val holds no images (.jpg, .jpeg, .png, .ppm, .bmp); ")
    assert not (co / "calls.jsonl").exists()


def test_missing_inception_weights_are_named_with_where_they_go(env):
    co = checkout(env)
    images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    (env / "torch" / "hub" / "checkpoints" / INCEPTION.file).unlink()
    message = refused("edges2shoes", "gan-compression", "--dir", str(co))
    assert message.startswith("gan-compression's get_real_stat.py needs the FID Inception "
                              f"weights {INCEPTION.file}: they are not at "
                              f"{env / 'torch' / 'hub' / 'checkpoints' / INCEPTION.file}")
    assert INCEPTION.url in message


def test_existing_statistics_are_kept_without_force(env):
    co = checkout(env)
    images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    (co / "real_stat").mkdir()
    (co / "real_stat" / "edges2shoes-r_B.npz").write_bytes(b"downloaded")
    assert refused("edges2shoes", "gan-compression", "--dir", str(co)) == \
        "checkout/real_stat/edges2shoes-r_B.npz exists; --force replaces it"


def test_a_failing_script_is_one_line_with_its_last_line(env, monkeypatch, capsys):
    co = checkout(env)
    images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    monkeypatch.setenv("FAKE_FAIL", "1")
    assert refused("edges2shoes", "gan-compression", "--dir", str(co)) == (
        "gan-compression's get_real_stat.py failed (exit status 1): "
        "RuntimeError: CUDA out of memory")
    assert "Traceback" in capsys.readouterr().err  # the whole output was streamed


def test_cuda_without_a_gpu_is_refused(env):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    co = checkout(env)
    images(env / "datasets" / "edges2shoes" / "aligned" / "val", paired=True)
    parser = argparse.ArgumentParser()
    stats.add_arguments(parser)
    with pytest.raises(UsageError, match="^--device cuda: this machine has no CUDA device; "):
        stats.run(parser.parse_args(["edges2shoes", "gan-compression", "--dir", str(co),
                                     "--device", "cuda"]))


def test_cagc_ships_its_statistics(env, capsys):
    co = env / "cagc"
    (co / "Evaluation").mkdir(parents=True)
    (co / "Evaluation" / "fid.py").write_text("")
    message = refused("ffhq", "cagc", "--dir", str(co))
    assert "its calc_inception.py cannot run at the pin" in message
    assert FID_STATS.format(256) in message and "download them from https://" in message
    for size in (256, 1024):
        path = co / FID_STATS.format(size)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stats")
    assert stats_run("ffhq", "cagc", "--dir", str(co)) == 0
    assert "CAGC's FFHQ statistics come with its repository" in capsys.readouterr().out
