"""The facade patched upstream code calls: one :class:`Runtime` built from the parsed options.

A patch adds a handful of lines to an upstream training loop::

    self.vem = Runtime(opt)                                   # after options are parsed
    self.vem.update(student=s, teacher=t, real=y)             # before the student's loss
    loss_G = loss_G + self.vem.student_loss(student=s, teacher=t, real=y)
    self.vem.save(path) / self.vem.load(path)                 # beside upstream's checkpoints
    exclude self.vem.modules() from MACs/parameter counts

Without ``--vem`` (or ``--mi``) every call is a no-op and ``student_loss`` returns ``0.0``, so
upstream behaves exactly as before. With it, the runtime owns a plugin manager on which the
selected estimator is registered as a plugin (:class:`EstimatorPlugin`); the training hooks of
every other installed plugin run beside it.
"""
from __future__ import annotations

import copy
import dataclasses
import os

import torch

from vem_plugins import hookimpl
from vem_plugins.method import options
from vem_plugins.plugins import estimators, new_plugin_manager


@dataclasses.dataclass
class Context:
    """What training hooks get besides the tensors.

    :param step: student steps taken so far.
    :param options: the parsed upstream options (with vem-plugins' flags).
    :param device: the training device, or None until the first tensors arrive.
    """

    step: int
    options: object
    device: torch.device | None = None


def pick_target(teacher, real, mode: str) -> torch.Tensor:
    """t for the bound: the real target (paired data) or the detached teacher output."""
    if mode == "auto":
        mode = "real" if real is not None else "teacher"
    t = real if mode == "real" else teacher
    if t is None:
        raise ValueError(f"--mi_target {mode}: upstream passed no {mode} image here")
    return t.detach()


class EstimatorPlugin:
    """The selected estimator as a plugin of the runtime; built at the first tensors it sees."""

    def __init__(self, name: str, factory, opt):
        self.name, self.factory, self.opt = name, factory, opt
        self.estimator = None

    def _build(self, channels, device=None):
        if self.estimator is None:
            self.estimator = self.factory(self.opt, tuple(channels))
            if device is not None:
                self.estimator.to(device)
        return self.estimator

    def _pair(self, teacher, student, real):
        t = pick_target(teacher, real, self.opt.mi_target)
        return self._build((t.shape[1], student.shape[1]), student.device), t

    @hookimpl
    def estimator_update(self, teacher, student, real, context):
        est, t = self._pair(teacher, student, real)
        return est.update(t, student)

    @hookimpl
    def student_loss(self, teacher, student, real, context):
        est, t = self._pair(teacher, student, real)
        value = est.loss(t, student)
        return {} if value is None else {"mi": value}

    @hookimpl
    def checkpoint_state(self, context):
        if self.estimator is None:
            return None
        return {"estimator": {"name": self.name, "state": self.estimator.state_dict()}}

    @hookimpl
    def load_checkpoint_state(self, state, context):
        saved = state.get("estimator")
        if saved is None:
            return
        if saved["name"] != self.name:
            raise ValueError(f"--mi {self.name}: the checkpoint holds a {saved['name']} estimator")
        config = saved["state"]["_extra_state"]["config"]
        est = self._build((config["t_channels"], config["s_channels"]), context.device)
        est.load_state_dict(saved["state"])


def _merge(results) -> dict:
    merged = {}
    for result in results:
        for key, value in (result or {}).items():
            if key in merged:
                raise ValueError(f"two vem_plugins plugins return the same name {key!r}")
            merged[key] = value
    return merged


class Runtime:
    """vem-plugins inside one upstream training run.

    :param opt: upstream's parsed options, including the flags of :mod:`vem_plugins.method.options`;
        ``--restore_vem_path`` restores the estimator right away. ``context.options`` holds them
        with the Langevin step size resolved.
    :param device: the training device (inferred from the first tensors if None).
    :param dataset: the paper dataset trained on when the adapter knows it (e.g. ``"ffhq"``),
        else it is recognised from the data folder's name (:func:`vem_plugins.method.options.step_size`);
        it chooses the paper's Langevin step size unless ``--ebm_step_size`` is given.
    """

    def __init__(self, opt, device: torch.device | str | None = None, dataset: str | None = None):
        self.enabled = options.enabled(opt)
        self.stats: dict[str, float] = {}
        self.losses: dict[str, torch.Tensor] = {}
        self.plugin = None
        if self.enabled:
            options.validate(opt)
            name = opt.mi or "vem"
            step, why = options.step_size(opt, dataset)
            if step != opt.ebm_step_size:
                opt = copy.copy(opt)  # upstream's options stay as parsed
                opt.ebm_step_size = step
            if name == "vem":
                print(f"vem-plugins: Langevin step size {step:g} ({why})", flush=True)
        self.context = Context(step=0, options=opt,
                               device=torch.device(device) if device is not None else None)
        if self.enabled:
            self.plugin = EstimatorPlugin(name, estimators()[name], opt)
            self.pm = new_plugin_manager()
            self.pm.register(self.plugin, name="vem_plugins.active_estimator")
        path = getattr(opt, "restore_vem_path", None)
        if path:
            if not self.enabled:
                raise ValueError("--restore_vem_path: restoring the MI estimator needs --vem (or --mi)")
            self.load(path)
            print(f"vem-plugins: restored the estimator from {path} (step {self.context.step})",
                  flush=True)

    def _args(self, student, teacher, real):
        if self.context.device is None:
            self.context.device = student.device
        return dict(teacher=None if teacher is None else teacher.detach(), student=student,
                    real=None if real is None else real.detach(), context=self.context)

    def update(self, student, teacher=None, real=None) -> dict[str, float]:
        """The estimators' own step; call once per student step, before :meth:`student_loss`."""
        if not self.enabled:
            return {}
        self.stats = _merge(self.pm.hook.estimator_update(**self._args(student, teacher, real)))
        return self.stats

    def student_loss(self, student, teacher=None, real=None):
        """Sum of every plugin's student terms (0.0 when disabled); the terms stay in ``losses``."""
        if not self.enabled:
            return 0.0
        self.losses = _merge(self.pm.hook.student_loss(**self._args(student, teacher, real)))
        self.context.step += 1
        return sum(self.losses.values(), torch.zeros((), device=student.device))

    def log_values(self) -> dict[str, float]:
        """The last iteration's terms and statistics as floats, for upstream's loss logging."""
        values = {name: float(v.detach()) for name, v in self.losses.items()}
        values.update(self.stats)
        return values

    def _estimator(self):
        return self.plugin.estimator if self.plugin else None

    def modules(self) -> list[torch.nn.Module]:
        """Networks vem-plugins added: keep them out of the student's MACs and parameter counts."""
        est = self._estimator()
        return [] if est is None else [est]

    def negatives(self) -> torch.Tensor | None:
        """The estimator's last Langevin samples t~ (None without them: disabled, VID, CRD)."""
        return getattr(self._estimator(), "negatives", None)

    def state_dict(self) -> dict:
        if not self.enabled:
            return {}
        state = _merge(self.pm.hook.checkpoint_state(context=self.context))
        state["step"] = self.context.step
        return state

    def load_state_dict(self, state: dict) -> None:
        if not self.enabled:
            return
        self.pm.hook.load_checkpoint_state(state=state, context=self.context)
        self.context.step = state.get("step", 0)

    def save(self, path: str | os.PathLike) -> None:
        """Write the state beside upstream's checkpoint (nothing when disabled)."""
        if self.enabled:
            torch.save(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a state written by :meth:`save`; a missing file is an error naming it."""
        if not self.enabled:
            return
        if not os.path.exists(path):
            raise FileNotFoundError(f"vem-plugins: no estimator checkpoint at {path}")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
