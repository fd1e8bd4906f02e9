"""The compatibility fixes shared by the pix2pix-lineage adapters."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from vem_plugins.adapters import lineage


def test_sqrtm_accepts_disp():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 6))
    a = x @ x.T + np.eye(6)
    linalg = lineage.scipy_linalg()  # what the FID code gets: SciPy's, but sqrtm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SciPy 1.17 warns on disp=; the shim never passes it on
        root, err = linalg.sqrtm(a, disp=False)
        plain = linalg.sqrtm(a)
    np.testing.assert_allclose(root @ root, a, atol=1e-8)
    np.testing.assert_array_equal(plain, root)
    assert 0 <= err < 1e-10
    assert linalg.inv is scipy_linalg.inv


def test_loaders_restore_on_any_device_and_unwrap_data_parallel(tmp_path):
    net, other = nn.Linear(2, 2), nn.DataParallel(nn.Linear(2, 2))
    torch.save(net.state_dict(), tmp_path / "n.pth")
    lineage.load_network(other, tmp_path / "n.pth", verbose=False)
    assert torch.equal(other.module.weight, net.weight)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "o.pth")
    fresh = torch.optim.Adam(net.parameters())
    lineage.load_optimizer(fresh, tmp_path / "o.pth", verbose=False)
    assert fresh.state_dict()["state"][0]["step"] == 1

