"""The CAT adapter's code on its own, without CAT: the compatibility fixes and the VEM wiring,
on stand-ins with upstream's method shapes. CAT's real scripts with the adapter are in
``tests/upstream/test_cat.py``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import types

import torch

from vem_plugins.adapters.cat import compat as cat_compat, glue as cat_vem


def test_stdlib_profile_wins_over_a_local_profile_py(tmp_path):
    """A profile.py first on sys.path (CAT's, run from its root) no longer breaks cProfile."""
    (tmp_path / "profile.py").write_text("raise ImportError('the local profile.py was imported')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from vem_plugins.adapters.cat.compat import fix; fix({'__name__': 'data'});"
            "import cProfile, profile; print(profile.__file__)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == os.path.join(sysconfig.get_paths()["stdlib"], "profile.py")


def test_cuda_synchronize_needs_no_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    ns = {"torch": torch}
    cat_compat.fix_common(ns)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ns["torch"].cuda.synchronize()
    assert calls == [] and ns["torch"].nn is torch.nn and ns["torch"].cuda.manual_seed is torch.cuda.manual_seed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ns["torch"].cuda.synchronize()
    assert calls == [None]


def test_model_profiling_on_cpu_without_cuda(monkeypatch):
    seen = []

    def model_profiling(model, height, width, batch=1, channel=3, use_cuda=True, num_forwards=10):
        seen.append((use_cuda, num_forwards))

    ns = {"torch": torch, "model_profiling": model_profiling}
    cat_compat.fix_model_profiling(ns)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ns["model_profiling"](None, 8, 8, num_forwards=0)
    ns["model_profiling"](None, 8, 8, 1, 3, True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ns["model_profiling"](None, 8, 8)
    ns["model_profiling"](None, 8, 8, use_cuda=False)
    assert seen == [(False, 0), (False, 10), (True, 10), (False, 10)]


def test_prune_continue_loads_pruned_checkpoints_after_pruning():
    class Distiller:
        def load_networks(self, verbose=True, teacher_only=False, restore_pretrain=True):
            self.seen.append({k: getattr(self.opt, k) for k in sorted(vars(self.opt))
                              if k.startswith("restore")})

    cat_compat.resume_after_pruning(Distiller)
    d = Distiller()
    d.seen, d.opt = [], argparse.Namespace(prune_continue=True, restore_pretrained_G_path="P",
                                           restore_student_G_path="S", restore_A_path="A",
                                           restore_O_path="O", restore_D_path="D")
    d.load_networks()  # setup(), before pruning
    d.load_networks(restore_pretrain=False)  # trainer.py, after pruning
    assert d.seen == [dict(restore_pretrained_G_path="P", restore_student_G_path=None,
                           restore_A_path=None, restore_O_path=None, restore_D_path="D"),
                      dict(restore_pretrained_G_path=None, restore_student_G_path="S",
                           restore_A_path="A", restore_O_path="O", restore_D_path="D")]
    assert d.opt.restore_student_G_path == "S" and d.opt.restore_pretrained_G_path == "P"
    d.opt.prune_continue = False
    d.load_networks()
    assert d.seen[-1]["restore_student_G_path"] == "S"  # upstream's behaviour otherwise


def _fake_cat(monkeypatch):
    """A stand-in for distillers.inception_distiller with upstream's method shapes."""
    events = []

    class InceptionDistiller:
        @staticmethod
        def modify_commandline_options(parser, is_train):
            parser.add_argument("--dataset_mode", default="aligned")
            return parser

        def __init__(self, opt):
            self.opt, self.device, self.loss_names = opt, torch.device("cpu"), ["G_gan"]

        def backward_G(self, steps):
            events.append(("upstream backward", self.input.grad is not None))
            (self.Sfake_B ** 2).sum().backward()

        def save_networks(self, epoch):
            events.append(("upstream save", epoch))

    module = types.ModuleType("distillers.inception_distiller")
    module.InceptionDistiller = InceptionDistiller
    monkeypatch.setitem(sys.modules, "distillers.inception_distiller", module)
    return InceptionDistiller, events


def test_vem_wiring_adds_the_term_inside_backward_G(monkeypatch, tmp_path):
    cls, events = _fake_cat(monkeypatch)
    cat_vem.install()
    cat_vem.install()  # twice: wired once
    argv = ["--dataset_mode", "unaligned", "--vem", "--ebm_blocks", "1", "--ebm_steps", "1",
            "--lambda_mi", "100"]
    monkeypatch.setattr(sys, "argv", ["distill.py", *argv])  # upstream's parsers read sys.argv
    opt = cls.modify_commandline_options(argparse.ArgumentParser(), True).parse_args(argv)
    assert opt.ebm_width == 16  # CycleGAN's width from --dataset_mode unaligned
    model = cls(opt)
    model.save_dir = str(tmp_path)
    x = model.input = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    model.Sfake_B, model.Tfake_B = x.tanh(), torch.rand(2, 3, 8, 8) * 2 - 1
    model.backward_G(1)
    # the MI term reached the student before upstream's own backward; the gradients add up
    assert events[0] == ("upstream backward", True)
    upstream = 2 * x.tanh() * (1 - x.tanh() ** 2)
    assert (x.grad - upstream).abs().max() > 1e-4
    assert {"G_mi", "G_energy_gap"} <= set(model.loss_names)
    model.save_networks("latest")
    assert events[-1] == ("upstream save", "latest") and (tmp_path / "latest_vem.pth").is_file()


def test_vem_wiring_is_inert_without_the_flag(monkeypatch, tmp_path):
    cls, events = _fake_cat(monkeypatch)
    cat_vem.install()
    monkeypatch.setattr(sys, "argv", ["distill.py"])
    opt = cls.modify_commandline_options(argparse.ArgumentParser(), True).parse_args([])
    model = cls(opt)
    model.save_dir = str(tmp_path)
    model.Sfake_B = model.input = torch.ones(1, 3, 2, 2, requires_grad=True)
    model.backward_G(1)
    model.save_networks(1)
    assert model.loss_names == ["G_gan"] and not list(tmp_path.iterdir())
    assert torch.equal(model.Sfake_B.grad, 2 * torch.ones(1, 3, 2, 2))  # upstream's gradient only
