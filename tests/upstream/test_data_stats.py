"""``vem-plugins data stats``: GAN Compression's own ``get_real_stat.py``, run by the command on
a tiny aligned dataset on CPU, with a random Inception of the FID architecture (offline, in a
temporary ``TORCH_HOME``), writes the statistics its paper scripts read.

Upstream tier: skipped, with the reason, without GAN Compression's repository or the adapter's
requirements (see ``conftest.py``). The command lines and refusals are tested in
``tests/test_data_stats.py``.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from helpers import write_images
from vem_plugins.adapters.gan_compression.adapter import ADAPTER
from vem_plugins.authoring.compat import INCEPTION
from vem_plugins.authoring.testing import install_adapter, offline_env, stand_in_weights
from vem_plugins.data import stats

pytestmark = pytest.mark.needs(ADAPTER)


def test_stats_runs_gan_compression_get_real_stat(tmp_path, monkeypatch, capsys):
    import torchvision

    checkout = install_adapter(ADAPTER, tmp_path / "gan-compression")
    # the FID Inception's architecture (torchvision's, 1008 classes, as pytorch-fid ports it)
    standin = torchvision.models.inception_v3(num_classes=1008, aux_logits=False,
                                              init_weights=False)
    home = stand_in_weights(tmp_path / "torch", **{INCEPTION.file: standin})
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_images(tmp_path / "datasets" / "edges2shoes" / "aligned" / split, 4, 64, rng,
                     paired=True)
    for key, value in {**offline_env(), "TORCH_HOME": str(home), "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)

    parser = argparse.ArgumentParser()
    stats.add_arguments(parser)
    assert stats.run(parser.parse_args([
        "edges2shoes", "gan-compression", "--root", str(tmp_path / "datasets"),
        "--dir", str(checkout), "--device", "cpu"])) == 0

    with np.load(checkout / "real_stat" / "edges2shoes-r_B.npz") as npz:
        assert npz["mu"].shape == (2048,) and npz["sigma"].shape == (2048, 2048)
        assert np.isfinite(npz["mu"]).all() and np.isfinite(npz["sigma"]).all()
    assert "mu (2048,), sigma (2048, 2048)" in capsys.readouterr().out
