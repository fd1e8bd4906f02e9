"""The GAN-Compression adapter's code on its own, without GAN-Compression: the glue's mapping of
the runtime to upstream's models and the compatibility fixes, on stand-ins. Upstream's real
scripts with the adapter are in ``tests/upstream/test_gan_compression.py``.
"""
from __future__ import annotations

import argparse
import re
import types

import numpy as np
import pytest
import torch
from torch import nn

from vem_plugins.adapters.gan_compression import compat
from vem_plugins.adapters.gan_compression import glue


def _opt(**kw):
    from vem_plugins.method.options import defaults
    opt = defaults()
    opt.ebm_width, opt.ebm_blocks, opt.ebm_steps = 4, 1, 1
    for k, v in kw.items():
        setattr(opt, k, v)
    return opt


@pytest.mark.parametrize("mi", ["vem", "vid", "crd"])
def test_log_names_are_names_upstream_prints(mi):
    """Every value the runtime logs maps to a name get_current_losses accepts and prints."""
    model = types.SimpleNamespace(opt=_opt(vem=True, mi=mi, dataset_mode="unaligned"),
                                  device=torch.device("cpu"), loss_names=["G_gan"])
    glue.attach(model, model.opt)
    model.Tfake_B = torch.rand(2, 3, 8, 8) * 2 - 1
    model.Sfake_B = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    term = glue.student_term(model)
    term.backward()
    assert model.Sfake_B.grad is not None
    added = model.loss_names[1:]
    assert "G_mi" in added and "G_mi_skipped" in added
    for name in added:
        assert name.startswith("G_") and not re.search(r"\d", name)
        assert isinstance(getattr(model, "loss_" + name), (int, float))  # not a tensor


class _Recorder:
    """Stands in for the Runtime: records what the glue hands over for one step."""
    enabled = True

    def __init__(self):
        self.calls = []

    def step(self, **kw):
        self.calls.append(kw)
        return kw["student"].sum() * 0


@pytest.mark.parametrize("mode, paired", [("aligned", True), ("unaligned", False)])
def test_t_is_real_B_for_paired_data_and_the_teacher_otherwise(mode, paired):
    """One runtime step per student step, logged into the model under ``G_``; real_B is passed
    (and so is t) only for aligned data, where it is the paired target."""
    rec = _Recorder()
    model = types.SimpleNamespace(opt=types.SimpleNamespace(dataset_mode=mode, mi=None), vem=rec,
                                  Sfake_B=torch.ones(1, 3, 2, 2), Tfake_B=torch.zeros(1, 3, 2, 2),
                                  real_B=torch.full((1, 3, 2, 2), 0.5), loss_names=[])
    loss = torch.tensor(1.0)
    assert glue.add_student_term(model, loss) is not loss
    (kw,) = rec.calls
    assert kw["student"] is model.Sfake_B and kw["teacher"] is model.Tfake_B
    assert (kw["real"] is model.real_B) if paired else kw["real"] is None
    assert kw["log_to"] is model and kw["prefix"] == "G_"


def test_without_vem_nothing_changes(tmp_path):
    model = types.SimpleNamespace(opt=_opt(dataset_mode="aligned"), device=torch.device("cpu"),
                                  save_dir=str(tmp_path), loss_names=["G_gan"])
    glue.attach(model, model.opt)
    loss = torch.tensor(2.0, requires_grad=True)
    assert glue.add_student_term(model, loss) is loss
    glue.save(model, "latest")
    assert model.loss_names == ["G_gan"] and not list(tmp_path.iterdir())
    model.opt.restore_vem_path = str(tmp_path / "x_vem.pth")
    with pytest.raises(ValueError, match="needs --vem"):
        glue.attach(model, model.opt)


class _Net(nn.Module):
    BLOCK_INDEX_BY_DIM = {2048: 3}

    def __init__(self, *args):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)


class _Offline(_Net):
    def __init__(self, *args):
        raise compat.MissingWeights("the FID Inception weights are missing: put X at Y")


def test_optional_metric_nets(tmp_path, capsys):
    """Off by flag, by missing weights or a missing --drn_path: None plus a printed reason."""
    drn = tmp_path / "drn.pth"

    def build(opt, device):
        inception = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        drn_net = DRNSeg("drn_d_105", 19)
        compat.load_network(drn_net, opt.drn_path)
        return inception, drn_net

    build.__globals__["InceptionV3"], build.__globals__["DRNSeg"] = _Net, _Net
    create = compat.optional_metric_models(build)
    opt = argparse.Namespace(no_fid=False, no_mIoU=False, drn_path=str(drn))
    torch.save(_Net().state_dict(), drn)
    inception, drn_net = create(opt, "cpu")
    assert isinstance(inception, _Net) and isinstance(drn_net, _Net)
    assert build.__globals__["InceptionV3"] is _Net  # restored after the call
    opt.no_fid, opt.drn_path = True, str(tmp_path / "missing.pth")
    assert create(opt, "cpu") == (None, None)
    out = capsys.readouterr().out
    assert "FID evaluation is skipped (logged as nan): --no_fid" in out
    assert f"--drn_path {tmp_path / 'missing.pth'} do not exist" in out
    build.__globals__["InceptionV3"] = _Offline
    opt.no_fid, opt.no_mIoU = False, True
    assert create(opt, "cpu") == (None, None)
    out = capsys.readouterr().out
    assert "put X at Y" in out and "Cityscapes mIoU evaluation is skipped (logged as nan): --no_mIoU" in out
    assert compat.optional_metric_models(create) is create  # fixing twice wraps once


def test_metrics_are_nan_without_model():
    calls = []
    get_fid = compat.nan_without_model(lambda fakes, model, npz, device: calls.append(model) or 1.0)
    assert np.isnan(get_fid([], None, {}, "cpu")) and get_fid([], "net", {}, device="cpu") == 1.0
    assert calls == ["net"]


def test_fid_weights_named_when_offline(tmp_path, monkeypatch):
    import urllib.error
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    url = "https://example.org/fid/" + compat.INCEPTION.file
    with pytest.raises(compat.MissingWeights) as err:
        compat.fid_weights(url, progress=True)
    assert str(tmp_path / "hub" / "checkpoints" / compat.INCEPTION.file) in str(err.value)
    assert url in str(err.value) and "Name or service" in str(err.value)


def test_single_device_distill_loss():
    """On CPU: the sum over mapping layers of MSE(netA(S), T), each stored as loss_G_distill<i>."""
    def original(self):
        raise AssertionError("upstream's replicate/gather path runs only on GPUs")

    model = types.SimpleNamespace(gpu_ids=[], mapping_layers=["model.9", "model.12"],
                                  netAs=[nn.Conv2d(2, 4, 1), nn.Conv2d(2, 4, 1)])
    model.Sacts = {"model.9cpu": torch.randn(1, 2, 3, 3), "model.12cpu": torch.randn(1, 2, 3, 3)}
    model.Tacts = {"model.9cpu": torch.randn(1, 4, 3, 3), "model.12cpu": torch.randn(1, 4, 3, 3)}
    loss = compat._single_device_distill_loss(original, lambda netA: {})(model)
    expected = [torch.nn.functional.mse_loss(a(model.Sacts[n + "cpu"]), model.Tacts[n + "cpu"])
                for a, n in zip(model.netAs, model.mapping_layers)]
    assert torch.allclose(loss, sum(expected))
    assert torch.allclose(model.loss_G_distill1, expected[1])
    loss.backward()
    assert model.netAs[0].weight.grad is not None


def test_output_padding_old_call():
    """SuperConvTranspose2d's pre-1.12 call of _output_padding works after the fix."""
    class Super(nn.ConvTranspose2d):
        def forward(self, x, output_size=None):
            padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size)
            return nn.functional.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                                  padding)

    compat.fix_super_modules({"SuperConvTranspose2d": Super})
    net = Super(2, 3, 3, stride=2, padding=1, output_padding=1)
    assert net(torch.randn(1, 2, 4, 4)).shape == (1, 3, 8, 8)
    assert net(torch.randn(1, 2, 4, 4), output_size=[7, 7]).shape == (1, 3, 7, 7)


def test_load_network_leaves_disabled_nets_alone(tmp_path):
    disabled = compat.Disabled("FID", "off")
    assert compat.load_network(disabled, tmp_path / "none.pth") is disabled
