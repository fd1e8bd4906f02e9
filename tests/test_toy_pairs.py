"""The built-in paired dataset of ``vem-plugins try``."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from vem_plugins.commands import toy_pairs


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_layout_and_determinism(tmp_path):
    a = toy_pairs.write(tmp_path / "a", train=12, val=3, size=32, seed=5)
    b = toy_pairs.write(tmp_path / "b", train=12, val=3, size=32, seed=5)
    files = digest(a)
    assert len([f for f in files if f.startswith("train/")]) == 12
    assert len([f for f in files if f.startswith("val/")]) == 3
    assert files == digest(b)  # byte-identical
    assert files != digest(toy_pairs.write(tmp_path / "c", train=12, val=3, size=32, seed=6))
    assert Image.open(a / "train" / "0000.png").size == (64, 32)  # A | B


def test_a_is_the_edge_map_of_b(tmp_path):
    root = toy_pairs.write(tmp_path, train=6, val=1, size=64)
    for path in sorted((root / "train").glob("*.png")):
        pair = np.asarray(Image.open(path))
        a, b = pair[:, :64], pair[:, 64:]
        assert set(np.unique(a)) <= {0, 255}  # dark lines on white
        lines = a[..., 0] == 0
        assert 0 < lines.mean() < 0.5
        assert (np.asarray(toy_pairs.edges(Image.fromarray(b))) == a).all()
        assert len(np.unique(b.reshape(-1, 3), axis=0)) > 2  # coloured shapes on a background


def test_reuse_and_rewrite(tmp_path):
    toy_pairs.write(tmp_path, train=4, val=2, size=32)
    first = (tmp_path / "train" / "0000.png").stat().st_mtime_ns
    toy_pairs.write(tmp_path, train=4, val=2, size=32)  # same settings: kept as is
    assert (tmp_path / "train" / "0000.png").stat().st_mtime_ns == first
    toy_pairs.write(tmp_path, train=2, val=2, size=32)  # other settings: rewritten
    assert len(list((tmp_path / "train").glob("*.png"))) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least one train"):
        toy_pairs.write(tmp_path, train=0)
