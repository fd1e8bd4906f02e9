"""Run an adapter's smoke recipe (:class:`vem_plugins.authoring.adapter.Smoke`) and judge what it wrote.

Shared by ``vem-plugins check`` and the pytest fixtures of :mod:`vem_plugins.authoring.testing`, so an
adapter author's CI and test suite check the same things:

* :func:`make_dataset` writes a tiny deterministic dataset in the layout upstream expects;
* :func:`run` runs the recipe's command in a checkout, as written (``--vem`` and the recipe's
  ``--ebm_*`` flags) or with every vem-plugins flag taken out (upstream's own behaviour);
* :class:`SmokeRun` then asserts that the MI terms reached upstream's log and that the estimator
  checkpoint upstream saved restores into a fresh :class:`~vem_plugins.method.runtime.Runtime`
  exactly — or, without ``--vem``, that neither happened.

Failures raise :class:`SmokeFailure` (an ``AssertionError``) with a message that says what is
missing and ends with the tail of upstream's output.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

LAYOUTS = {
    "aligned": ("train", "val", "test"),  # A|B side by side, pix2pix style
    "unaligned": ("trainA", "trainB", "valA", "valB", "testA", "testB"),  # CycleGAN style
    "unconditional": ("train",),  # one folder of images
}
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".pkl")


class SmokeFailure(AssertionError):
    """The smoke recipe failed or did not show what it must."""


def make_dataset(root, kind: str, size: int = 64, count: int = 8, seed: int = 0) -> Path:
    """Write ``count`` random RGB PNGs per split of a ``kind`` layout (see :data:`LAYOUTS`)
    under ``root``; the same arguments always give the same files. Aligned images are
    ``size`` x ``2*size`` (A on the left, B on the right)."""
    import numpy as np
    from PIL import Image

    if kind not in LAYOUTS:
        raise ValueError(f"unknown dataset kind {kind!r}; one of {', '.join(LAYOUTS)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    width = 2 * size if kind == "aligned" else size
    for split in LAYOUTS[kind]:
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i:04d}.png")
    return root


# --- vem-plugins' flags inside a command ------------------------------------------------------

def _flags() -> dict[str, bool]:
    """Every flag vem-plugins (and its plugins) add to upstream's parser -> takes a value."""
    from vem_plugins.method import options
    parser = options.add_options(argparse.ArgumentParser(add_help=False))
    return {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}


def _split(command, flags) -> tuple[list[str], list[str]]:
    """(the command without vem-plugins' flags, those flags). A word with spaces is a shell
    script (``bash -c "..."``): its flags are found and taken out word by word."""
    kept, taken = [], []
    words = iter(command)
    for word in words:
        if word.split("=", 1)[0] in flags:
            taken.append(word)
            if flags[word.split("=", 1)[0]] and "=" not in word:
                taken.append(next(words, ""))
        elif " " in word:
            pattern = "|".join(re.escape(f) + (r"(?:=|\s+)\S+" if value else "")
                               for f, value in sorted(flags.items(), key=lambda kv: -len(kv[0])))
            found = re.findall(rf"(?<!\S)(?:{pattern})(?!\S)", word)
            taken += [part for f in found for part in f.split(None, 1)]
            kept.append(re.sub(rf"[ \t]*(?<!\S)(?:{pattern})(?!\S)", "", word))
        else:
            kept.append(word)
    return kept, taken


def vem_options(args: list[str]) -> argparse.Namespace:
    """The parsed vem-plugins options of a flag list (defaults for the rest)."""
    from vem_plugins.method import options
    return options.add_options(argparse.ArgumentParser(add_help=False)).parse_known_args(args)[0]


def command(smoke, data, out, vem: bool = True, python: str = sys.executable) -> list[str]:
    """The recipe's argv with ``{python}``, ``{data}`` and ``{out}`` filled in; without
    ``vem``, minus every vem-plugins flag."""
    argv = [w.replace("{python}", python).replace("{data}", str(data)).replace("{out}", str(out))
            for w in smoke.command]
    return argv if vem else _split(argv, _flags())[0]


def mi_names(opt) -> list[str]:
    """The statistic names the selected estimator logs besides the MI term itself (``energy_gap``
    and ``ebm_loss`` for VEM), found by running it once on tiny tensors, with ``mi_skipped``
    (the names of :meth:`~vem_plugins.method.runtime.Runtime.log_values`). ``mi`` is left out:
    an adapter may log the term itself under upstream's own name for it."""
    import torch
    from vem_plugins.method.runtime import Runtime

    tiny = argparse.Namespace(**{**vars(opt), "vem": True, "ebm_width": 2, "ebm_blocks": 1,
                                 "ebm_steps": 1})
    rt = Runtime(tiny, "cpu")
    g = torch.Generator().manual_seed(0)
    s, t = (torch.rand(2, 3, 8, 8, generator=g) * 2 - 1 for _ in range(2))
    rt.update(student=s, teacher=t)
    rt.student_loss(student=s.requires_grad_(), teacher=t)
    return sorted(k for k in rt.log_values() if k != "mi")


# --- running -------------------------------------------------------------------------------

def run(adapter, checkout, work, vem: bool = True, env: dict | None = None,
        timeout: float = 600, data=None) -> "SmokeRun":
    """Run ``adapter``'s smoke recipe in ``checkout``; data and output go under ``work``.

    :param vem: run the command as written (with ``--vem``), else without vem-plugins' flags.
    :param env: variables added to the environment (``PYTHONPATH`` is prepended to the
        current one), e.g. ``TORCH_HOME`` with stand-in weights. ``OMP_NUM_THREADS`` is 1
        unless the environment or ``env`` sets it.
    :param data: an existing dataset root; by default one is made under ``work/data``.
    """
    smoke = adapter.smoke
    if smoke is None:
        raise SmokeFailure(f"adapter {adapter.name} declares no smoke recipe (Adapter.smoke)")
    work = Path(work).absolute()
    if data is None:
        data = work / "data"
        if not data.exists():
            make_dataset(data, smoke.dataset, smoke.size, smoke.count)
    out = work / ("vem" if vem else "plain")
    out.mkdir(parents=True, exist_ok=True)
    full = command(smoke, data, out)
    kept, flags = _split(full, _flags())
    argv = full if vem else kept
    # One OpenMP thread unless the caller chose: at these sizes torch's thread pool only
    # spins, and on a small shared machine it made the runs up to ten times slower.
    full_env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if key == "PYTHONPATH" and os.environ.get("PYTHONPATH"):
            value = os.pathsep.join([str(value), os.environ["PYTHONPATH"]])
        full_env[key] = str(value)
    start = time.monotonic()
    with open(work / f"{out.name}.output.txt", "w+") as log:
        proc = subprocess.Popen(argv, cwd=checkout, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own group: a timeout kills all
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:  # the timeout, or an interrupt of ours
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
            rc = None
        log.seek(0)
        output = log.read()
    return SmokeRun(adapter.name, argv, flags, vem, rc, output, out,
                    smoke.log.replace("{out}", str(out)).replace("{data}", str(data)),
                    time.monotonic() - start, timeout)


@dataclasses.dataclass
class SmokeRun:
    """What one run of a smoke recipe did.

    :ivar argv: the command run.
    :ivar flags: the recipe's vem-plugins flags (left out of ``argv`` when not ``vem``).
    :ivar returncode: the command's exit status (None when it ran past ``timeout``).
    :ivar output: its stdout and stderr.
    :ivar out: the scratch output directory (``{out}``).
    :ivar log_pattern: the recipe's ``log`` path (a glob) with the placeholders filled in.
    """

    adapter: str
    argv: list[str]
    flags: list[str]
    vem: bool
    returncode: int | None
    output: str
    out: Path
    log_pattern: str
    seconds: float
    timeout: float

    def fail(self, message: str):
        """Raise :class:`SmokeFailure` with ``message``, the command and its last output."""
        tail = "\n".join(self.output.rstrip().splitlines()[-25:])
        raise SmokeFailure(f"{self.adapter} smoke {'with' if self.vem else 'without'} --vem: "
                           f"{message}\n--- command: {' '.join(self.argv)}\n--- last output:\n"
                           f"{tail}")

    # -- what the run wrote --
    def log(self) -> str:
        """The text of the loss log file(s) the recipe names ('' when there is none)."""
        paths = sorted(glob.glob(self.log_pattern))
        return "".join(Path(p).read_text(errors="replace") for p in paths if os.path.isfile(p))

    def values(self, name: str) -> list[float]:
        """Every number logged under a name ending in ``name`` (``S_energy_gap: 0.12``,
        ``'mi_energy_gap': 0.12``, ``MI_energy_gap=0.12``), in order."""
        pattern = rf"(?<![A-Za-z0-9])(?:\w*_)?{re.escape(name)}\b['\"]?\s*[:=]?\s*({_NUMBER})"
        return [float(v) for v in re.findall(pattern, self.log())]

    def states(self) -> dict[str, dict]:
        """vem-plugins estimator states saved under ``out``: ``path[:key]`` -> state. A state
        is the dict :meth:`Runtime.state_dict` returns, saved as a file of its own or as one
        entry of upstream's checkpoint dict."""
        import torch

        found = {}
        for path in sorted(self.out.rglob("*")):
            if path.suffix not in _CHECKPOINT_SUFFIXES or not path.is_file():
                continue
            with warnings.catch_warnings():  # e.g. about an old pickle protocol
                warnings.simplefilter("ignore")
                try:
                    obj = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - our own run's output: any pickle may be read
                    try:
                        obj = torch.load(path, map_location="cpu", weights_only=False)
                    except Exception:  # noqa: BLE001 - not a torch file
                        continue
            rel = str(path.relative_to(self.out))
            if _is_state(obj):
                found[rel] = obj
            elif isinstance(obj, dict):
                found.update({f"{rel}:{k}": v for k, v in obj.items() if _is_state(v)})
        return found

    # -- assertions --
    def assert_ok(self) -> None:
        """The command finished in time with exit status 0."""
        if self.returncode is None:
            self.fail(f"still running after {self.timeout:.0f} s (killed)")
        if self.returncode:
            self.fail(f"exit status {self.returncode}")

    def assert_mi_logged(self) -> dict[str, int]:
        """Upstream's loss log holds every statistic of the estimator the recipe selects, as
        finite numbers; returns how often each was logged."""
        names = mi_names(vem_options(self.flags))
        counts = {}
        if not self.log():
            self.fail(f"no log at {self.log_pattern} (Smoke.log)")
        for name in names:
            values = self.values(name)
            if not values:
                self.fail(f"no '{name}' in the log {self.log_pattern}: the MI terms did not "
                          "reach upstream's loss logging")
            if not all(math.isfinite(v) for v in values):
                self.fail(f"non-finite '{name}' values in the log: {values}")
            counts[name] = len(values)
        return counts

    def assert_checkpoint_roundtrip(self) -> tuple[str, int]:
        """An estimator checkpoint was saved, and loading it into a fresh Runtime (built from
        the recipe's flags) gives back exactly the saved state; returns (where, its step)."""
        from vem_plugins.method.runtime import Runtime

        states = self.states()
        if not states:
            self.fail(f"no vem-plugins estimator checkpoint under {self.out} (a dict with "
                      "'estimator' and 'step', as Runtime.save / state_dict write it)")
        where, state = max(states.items(), key=lambda kv: kv[1]["step"])
        if state["step"] < 1:
            self.fail(f"the estimator checkpoint {where} is at step {state['step']}")
        opt = vem_options(self.flags)
        opt.vem = True
        runtime = Runtime(opt, "cpu")
        try:
            runtime.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - reported with the file it came from
            self.fail(f"the estimator checkpoint {where} does not load into a Runtime built "
                      f"from the recipe's flags: {type(exc).__name__}: {exc}")
        if not state_equal(runtime.state_dict(), state):
            self.fail(f"the estimator checkpoint {where} does not round-trip: a Runtime that "
                      "loaded it saves a different state")
        return where, state["step"]

    def assert_no_mi(self) -> None:
        """Without --vem: no MI statistic in the log and no estimator checkpoint."""
        names = mi_names(vem_options(self.flags))
        logged = [n for n in names if self.values(n)]
        if logged:
            self.fail(f"{', '.join(logged)} logged although vem-plugins' flags were left out")
        if states := self.states():
            self.fail(f"estimator checkpoint(s) {', '.join(states)} written although "
                      "vem-plugins' flags were left out")


def _is_state(obj) -> bool:
    return isinstance(obj, dict) and "estimator" in obj and "step" in obj


def state_equal(a, b) -> bool:
    """Structural equality of nested dicts/lists of tensors (tensors compared exactly)."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype \
            and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k])
                                                                   for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) \
            and all(state_equal(x, y) for x, y in zip(a, b))
    return a == b
