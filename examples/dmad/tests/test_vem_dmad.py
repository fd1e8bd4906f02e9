"""The dmad adapter's tests: DMAD's own distillation stage (``prune.py --finetune``) for two
iterations on tiny data on CPU, with and without --vem, plus the compatibility fixes alone.

The upstream tests skip, with the reason, when https://github.com/SJLeo/DMAD is unreachable.
"""
import argparse
import math
import re
import urllib.error
from pathlib import Path

import pytest

from vem_dmad import compat
from vem_dmad.adapter import ADAPTER
from vem_plugins.authoring.testing import offline_env, pythonpath
from vem_plugins.authoring.testing import vem_checkout, vem_dataset, vem_smoke  # noqa: F401 - fixtures

# offline (downloads fail at once), and the package importable by patched upstream code even
# when it is not pip-installed
ENV = {**offline_env(), **pythonpath(Path(__file__).parents[1])}
MI = {"G_mi", "G_energy_gap", "G_ebm_loss", "G_mi_skipped"}


def losses(run) -> list[dict]:
    """The losses of each logged iteration of DMAD's logger.log."""
    return [dict(re.findall(r"(\S+): (\S+)", line.split(") ", 1)[1]))
            for line in run.log().splitlines() if "(epoch:" in line]


def profile(run) -> list[str]:
    """DMAD's MACs/parameter lines for the pruned student (thop on netG)."""
    return [line.split(" | ", 1)[1] for line in run.log().splitlines()
            if "MACs" in line or "Params" in line]


@pytest.mark.upstream
def test_with_vem_the_mi_terms_are_logged_and_the_estimator_restores(vem_smoke):
    run = vem_smoke(ADAPTER, env=ENV)
    run.assert_ok()
    run.assert_mi_logged()
    where, step = run.assert_checkpoint_roundtrip()
    assert where == "finetune/latest_vem.pth" and step == 2  # two iterations of batch 1
    assert len(losses(run)) == 2 and all(MI <= set(row) for row in losses(run))


@pytest.mark.upstream
def test_without_vem_dmad_is_unchanged(vem_smoke):
    plain, vem = vem_smoke(ADAPTER, vem=False, env=ENV), vem_smoke(ADAPTER, env=ENV)
    plain.assert_ok()
    plain.assert_no_mi()
    assert [set(row) for row in losses(plain)] == [set(row) - MI for row in losses(vem)]
    assert profile(plain) and profile(plain) == profile(vem)  # the estimator is not counted
    assert "attention_distill" in losses(plain)[0]  # the co-attention distillation ran


def test_the_estimator_resumes_from_restore_vem_path(tmp_path):
    """What the patched model does (without DMAD): train, save, and a new model resumes."""
    import torch
    from vem_dmad import glue

    def model(*flags):
        opt = glue.add_options(argparse.ArgumentParser()).parse_args(
            ["--vem", "--ebm_width", "4", "--ebm_blocks", "1", "--ebm_steps", "1", *flags])
        return argparse.Namespace(opt=opt, device="cpu", loss_names=["G_GAN"])

    first = model()
    for _ in range(2):
        fake = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
        glue.add_mi_term(first, torch.zeros(()), student=fake, real=fake.detach().flip(-1))
    assert first.loss_names[0] == "G_GAN" and set(first.loss_names[1:]) == MI
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # save_models makes it first
    glue.save(first, str(tmp_path / "run" / "checkpoints"))
    resumed = model("--restore_vem_path", str(tmp_path / "run" / glue.CHECKPOINT))
    assert glue.runtime(resumed).context.step == 2
    assert glue.runtime(resumed).state_dict().keys() == first.vem.state_dict().keys()
    plain = argparse.Namespace(opt=glue.add_options(argparse.ArgumentParser()).parse_args([]),
                               device="cpu", loss_names=["G_GAN"])
    loss = torch.ones(())
    assert glue.add_mi_term(plain, loss, student=torch.zeros(1, 3, 4, 4)) is loss
    glue.save(plain, str(tmp_path / "plain" / "checkpoints"))
    assert not (tmp_path / "plain").exists() and plain.loss_names == ["G_GAN"]


def test_a_repeated_flag_is_ignored():
    parser = compat.fix_parser(argparse.ArgumentParser())
    first = parser.add_argument("--unmask_last_upconv", type=bool, default=False)
    assert parser.add_argument("--unmask_last_upconv", type=bool, default=False) is first
    assert parser.parse_args([]).unmask_last_upconv is False


def test_evaluation_never_stops_training(tmp_path, monkeypatch, capsys):
    def offline(model, opt):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_stats(model, opt):
        return open(tmp_path / "real_stat_B.npz")

    combined = []
    util = argparse.Namespace(combine_best_model=lambda *args: combined.append(args))
    scripts = {"test_pix2pix_fid": offline, "test_cyclegan_fid": no_stats, "util": util}
    compat.fix_evaluation(scripts)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    opt = argparse.Namespace(no_fid=False)
    assert math.isnan(scripts["test_pix2pix_fid"](None, opt))
    where = tmp_path / "torch" / "hub" / "checkpoints" / compat.INCEPTION.file
    assert str(where) in capsys.readouterr().out
    assert all(map(math.isnan, scripts["test_cyclegan_fid"](None, opt)))
    assert str(tmp_path / "real_stat_B.npz") in capsys.readouterr().out
    assert math.isnan(scripts["test_pix2pix_fid"](None, argparse.Namespace(no_fid=True)))

    (tmp_path / "checkpoints").mkdir()
    for epoch in (5, 10):
        (tmp_path / "checkpoints" / f"model_{epoch}.pth").write_bytes(b"")
    util.combine_best_model(0, 5, str(tmp_path / "checkpoints"), str(tmp_path), "pix2pix")
    assert combined == [(10, 5, str(tmp_path / "checkpoints"), str(tmp_path), "pix2pix")]
