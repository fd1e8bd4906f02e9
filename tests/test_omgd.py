"""The OMGD adapter's code on its own, without OMGD: the compatibility helpers and the mapping
of the runtime's values to names OMGD logs. OMGD's real ``distill.py`` with the adapter is in
``tests/upstream/test_omgd.py``.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vem_plugins.adapters.omgd import compat as omgd_compat, glue as omgd_vem


@pytest.mark.parametrize("mi", ["vem", "vid", "crd"])
def test_log_names_are_names_omgd_prints(mi):
    """Every value the runtime logs maps to a name OMGD's get_current_losses accepts and prints."""
    from vem_plugins.method.options import defaults
    from vem_plugins.method.runtime import Runtime

    opt = defaults()
    opt.vem, opt.mi, opt.ebm_width, opt.ebm_blocks, opt.ebm_steps = True, mi, 4, 1, 1
    rt = Runtime(opt, "cpu")
    s, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    rt.step(student=s.requires_grad_(), teacher=t)
    names = rt.log_values(omgd_vem.PREFIX)
    assert "S_mi" in names and "S_mi_skipped" in names
    for name in names:
        assert name.startswith("S_") and not re.search(r"\d", name)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_cityscapes_to_tensor_without_np_int(mode):
    """Same tensors as upstream's byte-buffer conversion, with an int64 label."""
    from PIL import Image
    rng = np.random.default_rng(1)
    channels = len(mode)
    pic = Image.fromarray(rng.integers(0, 256, (5, 7, channels), dtype=np.uint8).squeeze(-1)
                          if channels == 1 else rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    label = Image.fromarray(rng.integers(0, 19, (5, 7), dtype=np.uint8))
    assert pic.mode == mode
    img, lab = omgd_compat.to_tensor(None, pic, label)
    raw = torch.frombuffer(bytearray(pic.tobytes()), dtype=torch.uint8)
    expected = raw.view(5, 7, channels).transpose(0, 1).transpose(0, 2).float() / 255
    assert torch.equal(img, expected)
    assert lab.dtype == torch.int64 and torch.equal(lab, torch.from_numpy(np.array(label)).long())


class _Student(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, width, 1), nn.ReLU(), nn.Conv2d(width, 3, 1))

    def forward(self, x):
        return self.model(x)


def _fake_distiller(wrap):
    d = types.SimpleNamespace(opt=argparse.Namespace(lambda_CD=1.0, teacher_netG_w="toy"),
                              device=torch.device("cpu"), gpu_ids=[], Sacts={}, Tacts={},
                              mapping_layers={"toy": ["model.1"]})
    d.netG_teacher_w, d.netG_student = wrap(_Student(8)), wrap(_Student(4))
    d.netAs = [nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())]
    return d


def test_cd_loss_without_cuda():
    """calc_CD_loss on CPU: the mean-over-space feature MSE through the adaptor, as upstream."""
    d = _fake_distiller(lambda m: m)
    omgd_compat.record_activations(d.netG_teacher_w, d.Tacts, ["model.1"])
    omgd_compat.record_activations(d.netG_student, d.Sacts, ["model.1"])
    x = torch.randn(2, 3, 5, 5)
    d.netG_teacher_w(x), d.netG_student(x)
    assert set(d.Sacts) == set(d.Tacts) == {"model.1cpu"}
    loss = omgd_compat.cd_loss("teacher_netG_w")(d)
    s = d.netAs[0](d.Sacts["model.1cpu"]).mean(dim=(2, 3))
    assert torch.allclose(loss, ((s - d.Tacts["model.1cpu"].mean(dim=(2, 3))) ** 2).mean())
    loss.backward()
    assert d.netAs[0][0].weight.grad is not None


def test_cd_hooks_reach_inside_data_parallel():
    """Upstream's hooks miss DataParallel's ``module.`` names; the setup wrapper adds them."""
    d = _fake_distiller(nn.DataParallel)
    setup = omgd_compat.hook_data_parallel(lambda self, opt, verbose=True: None,
                                           "netG_teacher_w", "teacher_netG_w")
    setup(d, d.opt)
    x = torch.randn(1, 3, 4, 4)
    d.netG_teacher_w(x), d.netG_student(x)
    assert set(d.Tacts) == set(d.Sacts) == {"model.1cpu"}
    assert d.Sacts["model.1cpu"].shape[1] == 4


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    with pytest.raises(RuntimeError) as err:
        omgd_compat.needs_weights(offline, omgd_compat.VGG16, "the loss")()
    where = str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    assert where in str(err.value) and omgd_compat.VGG16.url in str(err.value)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    Path(where).write_bytes(b"")
    with pytest.raises(OSError, match="Name or service"):  # cached: the real error stands
        omgd_compat.needs_weights(offline, omgd_compat.VGG16, "the loss")()


def test_real_stats_only_needed_with_fid(tmp_path):
    init_calls = []
    init = omgd_compat.check_real_stats(lambda self, opt: init_calls.append(opt.real_stat_path),
                                        ("real_stat_path",))
    opt = argparse.Namespace(real_stat_path=None, no_fid=False, log_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--real_stat_path None.*--no_fid"):
        init(None, opt)
    opt.no_fid = True
    init(None, opt)
    assert np.load(init_calls[0])["mu"].size == 0


def test_wandb_fallback(monkeypatch):
    if "wandb" in sys.modules or importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed: the fallback leaves it alone")
    monkeypatch.setitem(sys.modules, "wandb", None)  # "not importable"; removed afterwards
    omgd_compat.wandb_fallback()
    import wandb
    with pytest.raises(ImportError, match="pip install wandb"):
        wandb.init(project="x")


def test_metrics_are_nan_without_model():
    calls = []
    get_fid = omgd_compat.nan_without_model(lambda fakes, model, npz: calls.append(model) or 1.0, 1)
    assert np.isnan(get_fid([], None, {})) and get_fid([], "model", {}) == 1.0
    assert calls == ["model"]
