"""The facade patched upstream code calls, and the flags it reads."""
import argparse
import random
import re
import subprocess
import sys

import pytest
import torch

from vem_plugins.errors import OptionError
from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime


def parse(*argv):
    return options.add_options(argparse.ArgumentParser()).parse_args(list(argv))


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 16, 16, generator=g) * 1.8 - 0.9 for _ in range(3)]


TINY = ("--ebm_width", "4", "--ebm_blocks", "2", "--ebm_steps", "2")


def step(rt, student_net, seed=0):
    x, teacher, real = batch(seed)
    s = torch.tanh(student_net(x))
    rt.update(student=s, teacher=teacher, real=real)
    loss = rt.student_loss(student=s, teacher=teacher, real=real)
    return s, loss


def test_disabled_runtime_changes_nothing():
    rt = Runtime(parse())
    assert not rt.enabled and rt.update(student=batch()[0]) == {}
    assert rt.student_loss(student=batch()[0]) == 0.0
    assert rt.modules() == [] and rt.state_dict() == {} and rt.log_values() == {}


@pytest.mark.parametrize("argv,name,keys", [
    (("--vem",), "VEM", {"mi", "ebm_loss", "energy_gap", "mi_skipped"}),
    (("--mi", "vid"), "VID", {"mi", "vid_nll", "mi_skipped"}),
    (("--vem", "--mi", "crd"), "CRD", {"mi", "crd_loss", "crd_estimate", "mi_skipped"}),
])
def test_flags_select_the_estimator_and_its_log_values(argv, name, keys):
    rt = Runtime(parse(*argv, *TINY))
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    s, loss = step(rt, net)
    loss.backward()
    assert net.weight.grad.abs().sum() > 0
    assert [type(m).__name__ for m in rt.modules()] == [name]
    assert set(rt.log_values()) == keys
    assert rt.context.step == 1


def test_target_is_real_when_given_else_teacher():
    from vem_plugins.method.runtime import pick_target
    teacher, real = torch.zeros(1), torch.ones(1)
    assert pick_target(teacher, real, "auto") is not real and pick_target(teacher, real, "auto").item() == 1
    assert pick_target(teacher, None, "auto").item() == 0
    assert pick_target(teacher, real, "teacher").item() == 0
    with pytest.raises(ValueError, match="--mi_target real"):
        pick_target(teacher, None, "real")


def test_save_and_load_restore_the_estimator_and_its_optimiser(tmp_path):
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    a = Runtime(parse("--vem", *TINY))
    for i in range(2):
        step(a, net, i)
    a.save(tmp_path / "vem.pth")
    b = Runtime(parse("--vem", *TINY))
    b.load(tmp_path / "vem.pth")  # before any tensor: built from the saved configuration
    assert b.context.step == 2
    (ea,), (eb,) = a.modules(), b.modules()
    for x, y in zip([*ea.parameters(), *ea.buffers()], [*eb.parameters(), *eb.buffers()]):
        assert torch.equal(x, y)
    assert str(ea.optimizer.state_dict()) == str(eb.optimizer.state_dict())
    results = []
    for rt in (a, b):
        torch.manual_seed(5)
        results.append((step(rt, net, 9)[1].item(), rt.stats))
    assert results[0] == results[1]
    with pytest.raises(FileNotFoundError, match="no estimator checkpoint"):
        b.load(tmp_path / "missing.pth")


def test_loading_another_estimator_or_width_fails_clearly(tmp_path):
    a = Runtime(parse("--vem", *TINY))
    step(a, torch.nn.Conv2d(3, 3, 3, padding=1))
    a.save(tmp_path / "vem.pth")
    with pytest.raises(ValueError, match="the checkpoint holds a vem estimator but this run's "
                                         "--mi is vid"):
        Runtime(parse("--mi", "vid", *TINY)).load(tmp_path / "vem.pth")
    with pytest.raises(ValueError, match="'width': 4.*'width': 8"):
        Runtime(parse("--vem", *TINY, "--ebm_width", "8")).load(tmp_path / "vem.pth")


@pytest.mark.parametrize("argv,flag", [
    (("--ebm_steps", "0"), "--ebm_steps"), (("--lambda_mi", "-1"), "--lambda_mi"),
    (("--ebm_step_size", "0"), "--ebm_step_size"), (("--ebm_range", "1,-1"), "--ebm_range"),
])
def test_bad_flags_are_rejected_when_the_runtime_is_built(argv, flag):
    with pytest.raises(OptionError, match=flag):
        Runtime(parse("--vem", *argv))


def test_range_flag_parses_pairs_and_none():
    assert parse("--ebm_range", "0,255").ebm_range == (0.0, 255.0)
    assert parse("--ebm_range", "none").ebm_range is None
    with pytest.raises(SystemExit):
        parse("--ebm_range", "1")


def test_non_finite_student_output_adds_nothing(capsys):
    rt = Runtime(parse("--vem", *TINY))
    x, teacher, real = batch()
    s = torch.full_like(x, float("nan"), requires_grad=True)
    rt.update(student=s, teacher=teacher, real=real)
    assert "vem-plugins: non-finite VEM" in capsys.readouterr().out
    loss = rt.student_loss(student=s, teacher=teacher, real=real)
    assert loss.item() == 0.0 and rt.log_values()["mi_skipped"] == 1


def test_restore_vem_path_resumes_at_construction(tmp_path):
    a = Runtime(parse("--vem", *TINY))
    step(a, torch.nn.Conv2d(3, 3, 3, padding=1))
    a.save(tmp_path / "1_vem.pth")
    b = Runtime(parse("--vem", *TINY, "--restore_vem_path", str(tmp_path / "1_vem.pth")))
    assert b.context.step == 1 and len(b.modules()) == 1
    with pytest.raises(ValueError, match="--restore_vem_path: .* needs --vem"):
        Runtime(parse("--restore_vem_path", str(tmp_path / "1_vem.pth")))


def saved(tmp_path, *argv, name="1_vem.pth"):
    """A file Runtime.save wrote after one step of a runtime built from ``argv``."""
    rt = Runtime(parse(*argv, *TINY))
    step(rt, torch.nn.Conv2d(3, 3, 3, padding=1))
    rt.save(tmp_path / name)
    return tmp_path / name


def restore_error(path, *argv) -> str:
    """The one-line error ``--restore_vem_path path`` stops a --vem run with."""
    with pytest.raises(OptionError) as err:
        Runtime(parse("--vem", *TINY, *argv, "--restore_vem_path", str(path)))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--restore_vem_path {path}")
    assert err.value.__context__ is None or err.value.__suppress_context__  # no torch traceback
    return message


def test_restoring_a_file_without_estimator_state_says_what_it_holds(tmp_path, capsys):
    generator = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                                    torch.nn.Conv2d(8, 3, 3))
    torch.save({"model." + k: v for k, v in generator.state_dict().items()}, tmp_path / "net_G.pth")
    torch.save({"step": 7}, tmp_path / "step.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    assert restore_error(tmp_path / "net_G.pth").endswith(
        " holds no MI-estimator state: it looks like a network's state_dict (4 tensors, e.g. "
        "model.0.weight); give the <epoch>_vem.pth file written beside upstream's checkpoints")
    assert "holds no MI-estimator state: it holds a dict with keys step;" in \
        restore_error(tmp_path / "step.pth")
    assert "it holds a value of type list;" in restore_error(tmp_path / "list.pth")
    assert "restored" not in capsys.readouterr().out


def test_restoring_an_unreadable_file_is_one_line_naming_it(tmp_path):
    good = saved(tmp_path, "--vem").read_bytes()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "truncated.pth").write_bytes(good[:len(good) // 2])
    (tmp_path / "random.pth").write_bytes(random.Random(0).randbytes(512))
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    assert restore_error(tmp_path / "empty.pth").endswith(" is empty: give an <epoch>_vem.pth file "
                                                          "written beside upstream's checkpoints")
    assert restore_error(tmp_path / "truncated.pth").endswith(
        " cannot be read: it is truncated (a torch.save archive without its end: an interrupted "
        "save or copy?)")
    assert re.search(r" cannot be read: it is not a checkpoint vem-plugins wrote "
                     r"\(UnpicklingError: Unsupported operand \d+\)$",
                     restore_error(tmp_path / "random.pth"))
    assert " cannot be read: it is not a checkpoint vem-plugins wrote (" in \
        restore_error(tmp_path / "notes.txt")


def test_restoring_another_estimators_state_or_shapes_is_one_line_naming_it(tmp_path):
    assert restore_error(saved(tmp_path, "--mi", "vid")).endswith(
        ": the checkpoint holds a vid estimator but this run's --mi is vem: "
        "resume with the same --mi")
    assert "cannot load an estimator state saved with" in restore_error(saved(tmp_path, "--vem"),
                                                                        "--ebm_width", "8")
    state = torch.load(saved(tmp_path, "--vem"), weights_only=True)
    weights = state["estimator"]["state"]
    name = next(k for k in weights if k.endswith("weight"))
    weights[name] = torch.zeros(1)
    torch.save(state, tmp_path / "reshaped.pth")
    assert f"size mismatch for {name}: copying a param with shape torch.Size([1])" in \
        restore_error(tmp_path / "reshaped.pth")


def adam(rt):
    group = rt.estimator.optimizer.param_groups[0]
    return group["lr"], tuple(group["betas"])


def test_optimiser_flags_given_on_resume_win_over_the_saved_settings(tmp_path, capsys):
    path = saved(tmp_path, "--vem", "--ebm_lr", "0.0003", "--ebm_betas", "0.5,0.9")
    capsys.readouterr()
    # given, even at their defaults: they win, and the log says so
    rt = Runtime(parse("--vem", *TINY, "--ebm_lr", "0.0001", "--ebm_betas", "0,0.999",
                       "--restore_vem_path", str(path)))
    assert adam(rt) == (1e-4, (0.0, 0.999)) and (rt.estimator.lr, rt.estimator.betas) == adam(rt)
    assert rt.estimator.optimizer.state  # the Adam moments are still the saved ones
    out = capsys.readouterr().out
    assert ("vem-plugins: --ebm_lr 0.0001 given: overrides the saved learning rate 0.0003 of "
            f"{path}\n") in out
    assert ("vem-plugins: --ebm_betas 0,0.999 given: overrides the saved Adam betas 0.5,0.9 of "
            f"{path}\n") in out
    # not given: the saved settings are resumed, silently
    rt = Runtime(parse("--vem", *TINY, "--restore_vem_path", str(path)))
    assert adam(rt) == (3e-4, (0.5, 0.9)) and (rt.estimator.lr, rt.estimator.betas) == adam(rt)
    assert "overrides" not in capsys.readouterr().out
    # one given, the other resumed
    rt = Runtime(parse("--vem", *TINY, "--ebm_lr", "0.0002", "--restore_vem_path", str(path)))
    assert adam(rt) == (2e-4, (0.5, 0.9))
    out = capsys.readouterr().out
    assert "--ebm_lr 0.0002 given: overrides the saved learning rate 0.0003" in out
    assert "--ebm_betas" not in out


def test_only_flags_on_the_command_line_count_as_given():
    assert options.given(parse("--vem")) == set() and not hasattr(parse("--vem"), options.GIVEN)
    given = options.given(parse("--ebm_lr", "1e-4", "--ebm_betas", "0,0.999"))
    assert given == {"--ebm_lr", "--ebm_betas"}


@pytest.mark.parametrize("argv,dataset,step,why", [
    ((), None, 100.0, "the paper's default; it uses 50 on Cityscapes and FFHQ"),
    (("--dataroot", "database/cityscapes/"), None, 50.0,
     "the paper's value for Cityscapes, recognised from the data folder's name"),
    (("--dataroot", "/data/Cityscapes_pix2pix"), None, 50.0, "the paper's value for Cityscapes"),
    (("--dataroot", "/cityscapes/edges2shoes-r"), None, 100.0, "the paper's default"),
    ((), "ffhq", 50.0, "the paper's value for FFHQ, recognised from the adapter"),
    (("--dataroot", "database/cityscapes", "--ebm_step_size", "70"), None, 70.0,
     "set with --ebm_step_size"),
])
def test_langevin_step_size_is_the_papers_for_the_dataset_and_the_log_says_why(
        argv, dataset, step, why, capsys):
    parser = options.add_options(argparse.ArgumentParser())
    parser.add_argument("--dataroot", default="")
    opt = parser.parse_args(["--vem", *TINY, *argv])
    rt = Runtime(opt, dataset=dataset)
    assert f"vem-plugins: Langevin step size {step:g} ({why}" in capsys.readouterr().out
    rt.update(student=batch()[0], teacher=batch()[1])
    assert rt.modules()[0].step_size == step and rt.context.options.ebm_step_size == step
    assert opt.ebm_step_size == (None if "--ebm_step_size" not in argv else step)  # upstream's own


def test_baselines_do_not_log_a_langevin_step(capsys):
    Runtime(parse("--mi", "vid"))
    assert "Langevin" not in capsys.readouterr().out


class Model:
    """What pix2pix-lineage code logs from: ``loss_names`` and ``loss_<name>`` attributes."""

    def __init__(self):
        self.loss_names = ["G_GAN"]


def test_step_is_the_whole_sequence_and_publishes_one_naming_scheme(capsys):
    rt, net, model = Runtime(parse("--vem", *TINY)), torch.nn.Conv2d(3, 3, 3, padding=1), Model()
    x, teacher, real = batch()
    loss = torch.zeros(())
    total = rt.add_term(loss, student=net(x), teacher=teacher, real=real, log_to=model,
                        prefix="G_")
    total.backward()
    assert net.weight.grad.abs().sum() > 0 and rt.context.step == 1  # term added, step counted
    assert rt.estimator.optimizer.state  # the energy model took its own step first
    assert model.loss_names[0] == "G_GAN"
    assert set(model.loss_names[1:]) == {"G_mi", "G_energy_gap", "G_ebm_loss", "G_mi_skipped"}
    assert model.loss_G_mi == pytest.approx(float(rt.losses["mi"].detach()))
    assert model.loss_G_mi_skipped == 0
    out = capsys.readouterr().out
    assert out.count("vem-plugins: the vem estimator has") == 1  # said at the first step only
    rt.step(student=net(x), teacher=teacher, real=real, log_to=model, prefix="G_")
    assert model.loss_names.count("G_mi") == 1
    assert "estimator has" not in capsys.readouterr().out


def test_a_skipped_step_keeps_every_logged_column(capsys):
    rt, model = Runtime(parse("--vem", *TINY)), Model()
    x, teacher, real = batch()
    rt.step(student=x.clone().requires_grad_(), teacher=teacher, real=real, log_to=model)
    nan = torch.full_like(x, float("nan"), requires_grad=True)
    term = rt.step(student=nan, teacher=teacher, real=real, log_to=model)
    assert "1 skipped so far" in capsys.readouterr().out
    assert term.item() == 0.0
    assert sorted(model.loss_names[1:]) == ["ebm_loss", "energy_gap", "mi", "mi_skipped"]
    assert model.loss_mi == 0.0 and model.loss_mi_skipped == 1


def test_without_vem_step_returns_none_and_add_term_the_same_loss():
    rt, model, loss = Runtime(parse()), Model(), torch.ones(())
    assert rt.step(student=batch()[0], log_to=model) is None and rt.estimator is None
    assert rt.add_term(loss, student=batch()[0], log_to=model) is loss
    assert model.loss_names == ["G_GAN"]


def test_a_bad_restore_ends_an_upstream_script_in_one_line(tmp_path):
    """As upstream's own training script meets it: no traceback, exit status 1."""
    (tmp_path / "empty.pth").write_bytes(b"")
    script = ("import argparse\n"
              "from vem_plugins.method.options import add_options\n"
              "from vem_plugins.method.runtime import Runtime\n"
              "parser = argparse.ArgumentParser()\n"
              "add_options(parser)\n"
              f"Runtime(parser.parse_args(['--vem', '--restore_vem_path', "
              f"{str(tmp_path / 'empty.pth')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"vem-plugins: error: --restore_vem_path "
                                        f"{tmp_path / 'empty.pth'} is empty: give an "
                                        "<epoch>_vem.pth file written beside upstream's "
                                        "checkpoints"]
