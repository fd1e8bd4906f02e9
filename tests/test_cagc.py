"""The CAGC adapter's code on its own, without CAGC: the compatibility fixes and the glue (the
paper's FFHQ settings, the estimator's state in CAGC's checkpoint). CAGC's real ``train.py`` with
the adapter is in ``tests/upstream/test_cagc.py``.
"""
from __future__ import annotations

import argparse
import types

import numpy as np
import pytest
import torch

from vem_plugins.adapters.cagc import compat as cagc_compat, glue as cagc_vem

TINY_EBM = ["--ebm_width", "8", "--ebm_blocks", "2", "--ebm_steps", "2"]


def test_bool_flags_parse_as_booleans():
    parser = argparse.ArgumentParser()
    parser.add_argument("--content_aware_KD", type=bool, default=True)
    assert parser.parse_args(["--content_aware_KD", "False"]).content_aware_KD is True  # upstream
    cagc_compat.add_options(parser)
    for text, value in (("False", False), ("", False), ("0", False), ("True", True), ("yes", True)):
        assert parser.parse_args(["--content_aware_KD", text]).content_aware_KD is value
    with pytest.raises(SystemExit):
        parser.parse_args(["--content_aware_KD", "maybe"])
    assert parser.parse_args(["--no_fid"]).no_fid


def test_layerwise_scores_sum_per_layer_with_ragged_widths():
    batches = [[np.full(4, b + 1.0), np.full(4, 1.0), np.full(2, 2.0)] for b in range(3)]
    with pytest.raises(ValueError):  # what prune.py does on NumPy >= 1.24
        np.array([np.array(scores) for scores in batches])
    stacked = np.array([np.array(scores) for scores in cagc_compat.layerwise_scores(batches)])
    total = np.sum(stacked, axis=0)  # prune.py's next line
    assert [list(layer) for layer in total] == [[6.0] * 4, [3.0] * 4, [6.0] * 2]


def test_devices_follow_what_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert cagc_compat.present_devices([0, 1], "cuda:0") == ([0], "cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cagc_compat.present_devices([0, 1], "cuda:0") == ([0], "cuda:0")
    assert cagc_compat.present_devices([1, 2], "cuda:1") == ([0], "cuda:0")


def test_guarded_fid_reports_instead_of_raising(tmp_path, capsys):
    args = types.SimpleNamespace(no_fid=False, size=64)

    def fid(**kwargs):
        raise ValueError("Image Size is Invalid!")

    text = cagc_compat.guarded_fid(fid, args)(batch_size=2)
    assert "vem-plugins: FID failed" in capsys.readouterr().out and "FFHQ statistics for 64 px" in text
    assert text.startswith("failed (ValueError: Image Size is Invalid!)")
    args.no_fid = True
    assert cagc_compat.guarded_fid(fid, args)() == "skipped (--no_fid)"


def test_glue_takes_the_papers_ffhq_settings_and_its_state_round_trips(capsys):
    parser = argparse.ArgumentParser()
    cagc_vem.add_options(parser)
    args = parser.parse_args(["--vem", *TINY_EBM])
    assert args.ebm_range is None  # the StyleGAN2 student is unbounded: no clamp
    assert args.lambda_mi == 0.05 and args.ebm_step_size is None
    cagc_vem.attach(args, "cpu")
    assert "Langevin step size 50 (the paper's value for FFHQ" in capsys.readouterr().out
    student = (torch.randn(2, 3, 8, 8) * 3).requires_grad_()
    cagc_vem.capture_teacher(args, torch.randn(2, 3, 8, 8).requires_grad_())
    loss = cagc_vem.add_mi_term(args, torch.zeros(()), student)
    loss.backward()
    assert student.grad.abs().sum() > 0
    (estimator,) = args.vem_glue.runtime.modules()
    assert estimator.step_size == 50.0
    state = cagc_vem.checkpoint_entries(args)["vem"]
    again = parser.parse_args(["--vem", *TINY_EBM, "--ebm_step_size", "20"])
    cagc_vem.attach(again, "cpu")
    assert "Langevin step size 20 (set with --ebm_step_size)" in capsys.readouterr().out
    cagc_vem.restore(again, {"vem": state})
    restored = again.vem_glue.runtime.modules()[0].state_dict()
    assert all(torch.equal(restored[k], v) for k, v in estimator.state_dict().items()
               if isinstance(v, torch.Tensor))
