"""A training run's record: what ``vem-plugins report`` reads, written while upstream trains.

Upstream logs differ per codebase and hold neither the Langevin samples nor a paired metric, so
adapter glue that supports ``--vem_record`` (with or without ``--vem``) writes one common
record into ``<run dir>/vem_record/``:

* ``run.json``: provenance and settings: the adapter and its checkout's lock (upstream pin,
  patch hashes), the command line, every parsed option, whether the MI term was on;
* ``models.json``: parameter counts and MACs of the student (and of vem-plugins' estimator,
  which trains beside it and is not part of it);
* ``scalars.jsonl``: one line per logged step, ``{"step": n, "upstream": {name: value},
  "vem": {name: value}}``: upstream's loss terms as it names them, and vem-plugins' terms
  (``mi``, ``energy_gap``, ``ebm_loss``, ``mi_skipped``; none without ``--vem``);
* ``metrics.jsonl``: one line per evaluation: upstream's metrics (FID, mIoU) and ours
  (:mod:`vem_plugins.commands.paired_metrics` on the held-out split);
* ``samples.jsonl`` + ``samples/``: image strips (input, target, teacher, student, Langevin
  sample t~) at a few steps.

Lines are appended and flushed as they come, so a run that stops half-way leaves a readable
record; the report says what is missing.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

FOLDER = "vem_record"
#: Images per strip in ``samples/``.
STRIP = 3


def add_options(parser):
    """The flags of adapters whose glue writes a record."""
    g = parser.add_argument_group("vem-plugins run record (for `vem-plugins report`)") \
        if hasattr(parser, "add_argument_group") else parser
    g.add_argument("--vem_record", action="store_true",
                   help="write a run record (losses, metrics, image samples, model sizes) "
                        f"into <log dir>/{FOLDER} for `vem-plugins report`")
    g.add_argument("--vem_record_every", type=int, default=500, metavar="N",
                   help="with --vem_record: save image samples every N student steps [500]")
    return parser


def _plain(value):
    """``value`` as JSON can hold it (options may contain tuples, paths, devices)."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def model_size(net: torch.nn.Module, example: torch.Tensor | None = None) -> dict:
    """``{"params": n, "macs": m}`` of ``net``; MACs (torchprofile) on ``example[:1]``, or None."""
    if isinstance(net, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        net = net.module
    size = {"params": sum(p.numel() for p in net.parameters()), "macs": None}
    if example is not None:
        try:
            from torchprofile import profile_macs
        except ImportError:
            return size
        was = net.training
        net.eval()  # no batch-norm statistics updated by the traced forward
        with torch.no_grad():
            size["macs"] = int(profile_macs(net, (example[:1],)))
        net.train(was)
    return size


class RunRecord:
    """Writes ``<run dir>/vem_record``; ``every`` = student steps between image samples."""

    def __init__(self, run_dir: str | Path, every: int = 500):
        if every < 1:
            raise ValueError(f"--vem_record_every: must be >= 1, got {every}")
        self.dir = Path(run_dir) / FOLDER
        (self.dir / "samples").mkdir(parents=True, exist_ok=True)
        self.every = every

    def start(self, adapter: str, options, vem: bool, checkout: str | Path | None = None,
              student_losses=()):
        """Write ``run.json``: the adapter, its checkout's lock, argv, options, VEM on/off, and
        which of upstream's loss terms are the student's (``student_losses``)."""
        lock = None
        if checkout is not None:
            from vem_plugins.install.checkout import LOCK
            path = Path(checkout) / LOCK
            lock = json.loads(path.read_text()) if path.exists() else None
        info = {"adapter": adapter, "lock": lock, "argv": sys.argv, "vem": vem,
                "student_losses": list(student_losses), "options": _plain(dict(vars(options))),
                "started": time.time()}
        (self.dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")

    def models(self, **sizes: dict) -> None:
        """Write ``models.json``, e.g. ``models(student=model_size(...), estimator=...)``."""
        (self.dir / "models.json").write_text(json.dumps(sizes, indent=2) + "\n")

    def _append(self, name: str, entry: dict) -> None:
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(_plain(entry)) + "\n")

    def scalars(self, step: int, upstream: dict, vem: dict) -> None:
        self._append("scalars.jsonl", {"step": step, "upstream": upstream, "vem": vem,
                                       "time": time.time()})

    def metrics(self, step: int, values: dict) -> None:
        self._append("metrics.jsonl", {"step": step, "values": values})

    def wants_samples(self, step: int) -> bool:
        """Sample at the first step and every ``every`` steps."""
        return step == 1 or step % self.every == 0

    def samples(self, step: int, **images: torch.Tensor | None) -> None:
        """Save the first :data:`STRIP` images of each NCHW batch in [-1, 1] as a PNG strip."""
        from torchvision.utils import save_image
        files = {}
        for name, batch in images.items():
            if batch is None:
                continue
            rel = f"samples/{step:08d}_{name}.png"
            strip = ((batch[:STRIP].detach().float().cpu() + 1) / 2).clamp(0, 1)
            save_image(strip, self.dir / rel, nrow=STRIP, padding=2, pad_value=1.0)
            files[name] = rel
        self._append("samples.jsonl", {"step": step, "images": files})
