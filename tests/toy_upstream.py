"""A tiny pix2pix-shaped upstream and a third-party adapter package for it, made the way an
author makes one (``vem-plugins new-adapter``), for the tests of the authoring tools.

The upstream trains a one-layer student against a fixed teacher for ``--n_iters`` steps on the
first images of ``<dataroot>/train`` (aligned A|B), logs its losses to
``<checkpoints_dir>/log.txt`` and saves ``latest_net_G.pth``; it is seeded, so two runs log the
same numbers. :data:`VEM_EDITS` are the lines an author inserts to give it ``--vem``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import git

SCRIPT = Path(sys.executable).with_name("vem-plugins")

UPSTREAM = {
    "options.py": '''\
import argparse


def parse():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--checkpoints_dir", default="./checkpoints")
    parser.add_argument("--n_iters", type=int, default=3)
    return parser.parse_args()
''',
    "models/model.py": '''\
import os

import torch
from torch import nn


class Model:
    def __init__(self, opt):
        self.opt = opt
        self.device = torch.device("cpu")
        self.teacher = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())
        self.student = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Tanh())
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=1e-3)
        self.loss_names = ["G_L1", "G_distill"]

    def set_input(self, a, b):
        self.real_A, self.real_B = a, b

    def optimize_parameters(self):
        with torch.no_grad():
            self.Tfake_B = self.teacher(self.real_A)
        self.Sfake_B = self.student(self.real_A)
        self.loss_G_L1 = (self.Sfake_B - self.real_B).abs().mean()
        self.loss_G_distill = (self.Sfake_B - self.Tfake_B).pow(2).mean()
        self.loss_G = self.loss_G_L1 + self.loss_G_distill
        self.optimizer.zero_grad()
        self.loss_G.backward()
        self.optimizer.step()

    def current_losses(self):
        return {name: float(getattr(self, "loss_" + name)) for name in self.loss_names}

    def save_networks(self, epoch):
        path = os.path.join(self.opt.checkpoints_dir, f"{epoch}_net_G.pth")
        torch.save(self.student.state_dict(), path)
''',
    "train.py": '''\
import os

import numpy as np
import torch
from PIL import Image

import options
from models.model import Model

opt = options.parse()
os.makedirs(opt.checkpoints_dir, exist_ok=True)
torch.manual_seed(0)
model = Model(opt)
files = sorted(os.listdir(os.path.join(opt.dataroot, "train")))
with open(os.path.join(opt.checkpoints_dir, "log.txt"), "w") as log:
    for i in range(opt.n_iters):
        ab = np.asarray(Image.open(os.path.join(opt.dataroot, "train", files[i % len(files)])))
        ab = torch.from_numpy(ab.copy()).permute(2, 0, 1).float().unsqueeze(0) / 127.5 - 1
        w = ab.shape[-1] // 2
        model.set_input(ab[..., :w], ab[..., w:])
        model.optimize_parameters()
        losses = " ".join(f"{k}: {v:.4f}" for k, v in model.current_losses().items())
        log.write(f"(iters: {i + 1}) {losses}\\n")
model.save_networks("latest")
''',
}

#: (file, anchor line, lines an author inserts after it) for --vem, using the template's glue.
VEM_EDITS = [
    ("options.py", "import argparse\n", "from vem_toy_gan import glue\n"),
    ("options.py", '    parser.add_argument("--n_iters", type=int, default=3)\n',
     "    glue.add_options(parser)\n"),
    ("models/model.py", "from torch import nn\n", "from vem_toy_gan import glue\n"),
    ("models/model.py", '        self.loss_names = ["G_L1", "G_distill"]\n',
     "        self.vem = glue.attach(self)\n"),
    ("models/model.py", "        self.loss_G = self.loss_G_L1 + self.loss_G_distill\n",
     "        self.loss_G = glue.add_mi_term(self, self.loss_G, student=self.Sfake_B,\n"
     "                                       teacher=self.Tfake_B, real=self.real_B)\n"),
    ("models/model.py", "        torch.save(self.student.state_dict(), path)\n",
     '        self.vem.save(os.path.join(self.opt.checkpoints_dir, f"{epoch}_vem.pth"))\n'),
]

SMOKE = '''smoke=Smoke(dataset="aligned", size=16, count=2, log="{out}/log.txt",
                command=("{python}", "train.py", "--dataroot", "{data}", "--checkpoints_dir",
                         "{out}", "--vem", "--ebm_width", "4", "--ebm_blocks", "1",
                         "--ebm_steps", "2")),
'''


def make_upstream(root: Path, files=UPSTREAM) -> tuple[Path, str]:
    """A git repository with ``files`` committed; returns it and the commit."""
    repo = root / "upstream"
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin")
    return repo, git(repo, "rev-parse", "HEAD").strip()


def insert(checkout: Path, edits=VEM_EDITS) -> None:
    """Insert each edit's lines after its anchor line, as an author does in a checkout."""
    for path, anchor, lines in edits:
        text = (checkout / path).read_text()
        assert text.count(anchor) == 1, (path, anchor)
        (checkout / path).write_text(text.replace(anchor, anchor + lines))


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """``vem-plugins ARGS`` through the installed console script."""
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def scaffold(root: Path, url, commit, name="toy-gan") -> Path:
    """``vem-plugins new-adapter``, registered on ``PYTHONPATH`` the way ``pip install -e``
    does (the package's folder on the path, a dist-info with its entry point)."""
    pkg = root / f"vem-{name}"
    proc = cli("new-adapter", name, "--url", url, "--commit", commit, "--dir", pkg)
    assert proc.returncode == 0, proc.stderr
    module = "vem_" + name.replace("-", "_")
    info = pkg / f"{module}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vem-{name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[vem_plugins]\n{name} = {module}.adapter\n")
    return pkg


def set_smoke(pkg: Path, smoke: str = SMOKE, module="vem_toy_gan") -> None:
    """Declare a smoke recipe in the scaffolded adapter module."""
    adapter = pkg / module / "adapter.py"
    adapter.write_text(adapter.read_text().replace("    smoke=None,\n", "    " + smoke))


def env_with(*paths, **extra) -> dict:
    """The environment with ``paths`` on ``PYTHONPATH`` and the variables ``extra``."""
    env = dict(os.environ, **{k: str(v) for k, v in extra.items()})
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    return env
