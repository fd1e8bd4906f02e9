"""The GCC adapter's code on its own, without GCC: the compatibility fixes and the glue's checks
and conversions. GCC's real ``train.py`` with the adapter is in ``tests/upstream/test_gcc.py``.
"""
from __future__ import annotations

import math
import types

import pytest
import torch

from vem_plugins.adapters.gcc import compat as gcc_compat, glue as gcc_vem


def test_fix_models_int_betas_and_prune_signature():
    class SAGANModel:
        def __init__(self):
            self.opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], betas=(0, 0.9))

    class Pix2PixModel:
        def prune(self, threshold):
            return threshold

    with pytest.raises(ValueError):
        SAGANModel()
    gcc_compat.fix_models(types.SimpleNamespace(SAGANModel=SAGANModel),
                          types.SimpleNamespace(Pix2PixModel=Pix2PixModel))
    assert SAGANModel().opt.defaults["betas"] == (0.0, 0.9)
    assert torch.optim.Adam is not gcc_compat._FloatBetasAdam  # only while GCC builds a model
    assert Pix2PixModel().prune(0.5, lottery_path=None) == 0.5


def test_guarded_test_saves_a_checkpoint_when_evaluation_fails_or_is_skipped(tmp_path):
    saved, logged = [], []
    model = types.SimpleNamespace(save_models=lambda epoch, path: saved.append((epoch, path)))
    logger = types.SimpleNamespace(info=lambda *a: logged.append(a[0] % a[1:]),
                                   warning=lambda *a: logged.append(a[0] % a[1:]))

    def test(*args):
        raise RuntimeError("boom")

    opt = types.SimpleNamespace(no_eval=False, model="cyclegan", dataroot=str(tmp_path),
                                checkpoints_dir=str(tmp_path), name="x")
    result = gcc_compat.guarded_test(test)(model, opt, logger, 5, None)
    assert len(result) == 2 and all(math.isnan(v) for v in result)
    assert saved == [(5, str(tmp_path / "x" / "checkpoints"))]
    assert "RuntimeError: boom" in logged[0] and "real_stat_A.npz" in logged[0]
    opt.no_eval = True
    gcc_compat.guarded_test(test)(model, opt, logger, 10, None)
    assert saved[-1][0] == 10 and "skipped (--no_eval)" in logged[-1]


def test_vem_needs_online_distillation():
    opt = types.SimpleNamespace(vem=True, mi=None, online_distillation=False)
    with pytest.raises(ValueError, match="--online_distillation"):
        gcc_vem.attach(types.SimpleNamespace(), opt)


def test_from_imagenet_norm_inverts_srgan_normalisation():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normed = ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    (back,) = gcc_vem.from_imagenet_norm(normed)
    assert torch.allclose(back, x, atol=1e-6)
