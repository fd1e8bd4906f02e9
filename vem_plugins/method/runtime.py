"""The facade patched upstream code calls: one :class:`Runtime` built from the parsed options.

A patch adds a handful of lines to an upstream training loop, each one call::

    self.vem = Runtime(opt)                                   # after options are parsed
    loss_G = self.vem.add_term(loss_G, student=s, teacher=t, real=y, log_to=self, prefix="G_")
    self.vem.save(path)                                       # beside upstream's checkpoints

:meth:`Runtime.add_term` (or :meth:`Runtime.step` for the term alone) is the whole per-step
sequence: the estimators' own step (for VEM: Langevin negatives and the energy model's update),
then the weighted student term with the same negatives, then the values published into
upstream's loss log. Without ``--vem`` (or ``--mi``) every call is a no-op and ``add_term``
returns ``loss`` itself, so upstream behaves exactly as before. The runtime owns a plugin manager
on which the selected estimator is registered as a plugin (:class:`EstimatorPlugin`); the
training hooks of every other installed plugin run beside it.

Logged values, one scheme for every adapter (:meth:`Runtime.log_values`), under the adapter's
prefix (``G_`` in pix2pix-lineage code, ``S_`` for OMGD's student):

* ``<prefix>mi``: the weighted student term (0.0 on a skipped step);
* ``<prefix>energy_gap`` (E(t,s) - E(t~,s)) and ``<prefix>ebm_loss`` for VEM,
  ``<prefix>vid_nll`` for VID, ``<prefix>crd_loss`` and ``<prefix>crd_estimate`` for CRD;
* ``<prefix>mi_skipped``: estimator steps skipped so far as non-finite;
* the terms and statistics of any other plugin, under the names it returns.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import zipfile

import torch

from vem_plugins import hookimpl
from vem_plugins.errors import OptionError, one_line_in_upstream
from vem_plugins.messages import tell
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
        raise OptionError(f"--mi_target {mode}: upstream passed no {mode} image here")
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
            raise OptionError(f"the checkpoint holds a {saved['name']} estimator but this run's "
                              f"--mi is {self.name}: resume with the same --mi")
        config = saved["state"]["_extra_state"]["config"]
        est = self._build((config["t_channels"], config["s_channels"]), context.device)
        est.load_state_dict(saved["state"])


#: flag -> the estimator's optimiser setting it sets, and the setting's name in messages
OPTIMIZER_FLAGS = {"--ebm_lr": ("lr", "learning rate"), "--ebm_betas": ("betas", "Adam betas")}


def _as_flag(value) -> str:
    """A setting written as its flag takes it (``0.0002``, ``0.5,0.999``)."""
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"


def _read(path) -> object:
    """``torch.load`` (``weights_only``) of a ``--restore_vem_path`` file; a file it cannot read
    is an :class:`OptionError`, one line naming the file and why."""
    if os.path.getsize(path) == 0:
        raise OptionError(f"--restore_vem_path {path} is empty: give an <epoch>_vem.pth file "
                          "written beside upstream's checkpoints")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file fails anywhere in torch's unpickler
        with open(path, "rb") as f:
            cut = f.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(path)
        if cut:  # torch's own error for it varies with where the file ends
            reason = ("it is truncated (a torch.save archive without its end: an interrupted "
                      "save or copy?)")
        else:
            # torch's messages run over lines; its weights_only refusal opens with a paragraph on
            # torch's defaults, and the reason follows this marker
            text = str(exc).split("WeightsUnpickler error:")[-1]
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            said = type(exc).__name__ + (f": {lines[0].split('. ')[0]}" if lines else "")
            reason = f"it is not a checkpoint vem-plugins wrote ({said})"
        raise OptionError(f"--restore_vem_path {path} cannot be read: {reason}") from None


def _holds_estimator(state) -> bool:
    """Whether a loaded file holds what :meth:`Runtime.save` writes for a built estimator."""
    saved = state.get("estimator") if isinstance(state, dict) else None
    return (isinstance(saved, dict) and "name" in saved and isinstance(saved.get("state"), dict)
            and "_extra_state" in saved["state"])


def _describe(obj) -> str:
    """What a file without estimator state holds, for the error that says so."""
    if not isinstance(obj, dict):
        return f"it holds a value of type {type(obj).__name__}"
    if not obj:
        return "it holds an empty dict"
    keys = [str(k) for k in obj]
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"it looks like a network's state_dict ({len(keys)} tensors, e.g. {keys[0]})"
    return "it holds a dict with keys " + ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


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
        one_line_in_upstream()
        self.enabled = options.enabled(opt)
        self.stats: dict[str, float] = {}
        self.losses: dict[str, torch.Tensor] = {}
        self._logged: list[str] = []
        self._plugin = None
        if self.enabled:
            options.validate(opt)
            name = opt.mi or "vem"
            step, why = options.step_size(opt, dataset)
            if step != opt.ebm_step_size:
                opt = copy.copy(opt)  # upstream's options stay as parsed
                opt.ebm_step_size = step
            if name == "vem":
                tell(f"Langevin step size {step:g} ({why})")
        self.context = Context(step=0, options=opt,
                               device=torch.device(device) if device is not None else None)
        if self.enabled:
            self._plugin = EstimatorPlugin(name, estimators()[name], opt)
            self.pm = new_plugin_manager()
            self.pm.register(self._plugin, name="vem_plugins.active_estimator")
        path = getattr(opt, "restore_vem_path", None)
        if path:
            if not self.enabled:
                raise OptionError("--restore_vem_path: restoring the MI estimator needs --vem "
                                  "(or --mi)")
            self.load(path)
            tell(f"restored the estimator from {path} (step {self.context.step})")

    @property
    def estimator(self):
        """The active estimator (a :class:`vem_plugins.method.estimators.base.Estimator`), or None:
        disabled, or not built yet (it is built at the first tensors it sees)."""
        return self._plugin.estimator if self._plugin else None

    def _args(self, student, teacher, real):
        if self.context.device is None:
            self.context.device = student.device
        return dict(teacher=None if teacher is None else teacher.detach(), student=student,
                    real=None if real is None else real.detach(), context=self.context)

    def step(self, student, teacher=None, real=None, *, log_to=None, prefix: str = ""):
        """One student step's whole share of vem-plugins; call right before the student's
        ``backward()``.

        Runs the estimators' own step (:meth:`update`), then returns the weighted student term
        (:meth:`student_loss`) computed with the same Langevin samples, and publishes the values
        (:meth:`publish`) into ``log_to`` when given. Returns None without ``--vem``.

        :param student: the student output, with its graph.
        :param teacher: the teacher output for the same input (detached here), or None.
        :param real: the paired real target, or None (unpaired or unconditional data).
        :param log_to: upstream's model object whose ``loss_names`` drive its loss logging.
        :param prefix: prepended to every logged name (``G_``, ``S_``, ...).
        """
        if not self.enabled:
            return None
        first = self.estimator is None
        self.update(student=student, teacher=teacher, real=real)
        term = self.student_loss(student=student, teacher=teacher, real=real)
        if first:
            count = sum(p.numel() for m in self.modules() for p in m.parameters())
            tell(f"the {self.context.options.mi or 'vem'} estimator has {count / 1e6:.3f} M "
                 "parameters (trained beside the student, not part of it)")
        if log_to is not None:
            self.publish(log_to, prefix)
        return term

    def add_term(self, loss, student, teacher=None, real=None, *, log_to=None, prefix: str = ""):
        """``loss`` plus :meth:`step`'s term; ``loss`` itself (the same object) without --vem."""
        term = self.step(student, teacher, real, log_to=log_to, prefix=prefix)
        return loss if term is None else loss + term

    def update(self, student, teacher=None, real=None) -> dict[str, float]:
        """The estimators' own step alone (:meth:`step` runs it); returns their statistics."""
        if not self.enabled:
            return {}
        self.stats = _merge(self.pm.hook.estimator_update(**self._args(student, teacher, real)))
        return self.stats

    def student_loss(self, student, teacher=None, real=None):
        """Sum of every plugin's student terms alone (:meth:`step` computes it; 0.0 when
        disabled); the terms stay in ``losses``."""
        if not self.enabled:
            return 0.0
        self.losses = _merge(self.pm.hook.student_loss(**self._args(student, teacher, real)))
        self.context.step += 1
        return sum(self.losses.values(), torch.zeros((), device=student.device))

    def log_values(self, prefix: str = "") -> dict[str, float]:
        """The last step's terms and statistics as floats, named by the module docstring's scheme.

        Every name logged once stays, as 0.0 on a step that skipped it (a non-finite step adds
        no term), so upstream's loss tables keep their columns.
        """
        values = {"mi": 0.0} if self.enabled else {}
        values.update({name: float(v.detach()) for name, v in self.losses.items()})
        values.update({("mi_skipped" if k == "skipped" else k): v for k, v in self.stats.items()})
        for name in self._logged:
            values.setdefault(name, 0.0)
        self._logged += [name for name in values if name not in self._logged]
        return {prefix + name: value for name, value in values.items()}

    def publish(self, model, prefix: str = "") -> None:
        """Put :meth:`log_values` where pix2pix-lineage code logs losses: ``model.loss_<name>``
        for every name, appended to ``model.loss_names``."""
        for name, value in self.log_values(prefix).items():
            setattr(model, "loss_" + name, value)
            if name not in model.loss_names:
                model.loss_names.append(name)

    def modules(self) -> list[torch.nn.Module]:
        """Networks vem-plugins added: keep them out of the student's MACs and parameter counts."""
        return [] if self.estimator is None else [self.estimator]

    def negatives(self) -> torch.Tensor | None:
        """The estimator's last Langevin samples t~ (None without them: disabled, VID, CRD)."""
        return getattr(self.estimator, "negatives", None)

    def state_dict(self) -> dict:
        if not self.enabled:
            return {}
        state = _merge(self.pm.hook.checkpoint_state(context=self.context))
        state["step"] = self.context.step
        return state

    def load_state_dict(self, state: dict, source: str = "the checkpoint") -> None:
        """Restore what :meth:`state_dict` returned (``source``, e.g. its file, names it in
        messages). The estimator's Adam resumes with its saved settings, except those whose flag
        (:data:`OPTIMIZER_FLAGS`) was given on the command line: the user asked for them."""
        if not self.enabled:
            return
        self.pm.hook.load_checkpoint_state(state=state, context=self.context)
        self.context.step = state.get("step", 0)
        if self.estimator is None:
            return
        opt = self.context.options
        for flag in sorted(options.given(opt)):
            setting, what = OPTIMIZER_FLAGS[flag]
            value, saved = getattr(opt, flag[2:]), getattr(self.estimator, setting)
            if value != saved:
                self.estimator.set_optimizer(**{setting: value})
                tell(f"{flag} {_as_flag(value)} given: overrides the saved {what} "
                     f"{_as_flag(saved)} of {source}")

    def save(self, path: str | os.PathLike) -> None:
        """Write the state beside upstream's checkpoint (nothing when disabled)."""
        if self.enabled:
            torch.save(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a state written by :meth:`save`.

        A missing file is a ``FileNotFoundError``; one that cannot be read, holds no estimator
        state (a network's weights, say) or the state of another estimator is an
        :class:`OptionError`, one line naming the file and why: a resume must never go on with a
        fresh estimator as if restored.
        """
        if not self.enabled:
            return
        if not os.path.exists(path):
            raise FileNotFoundError(f"vem-plugins: no estimator checkpoint at {path}")
        state = _read(path)
        if not _holds_estimator(state):
            raise OptionError(f"--restore_vem_path {path} holds no MI-estimator state: "
                              f"{_describe(state)}; give the <epoch>_vem.pth file written beside "
                              "upstream's checkpoints")
        try:
            self.load_state_dict(state, source=str(path))
        except (ValueError, RuntimeError) as exc:  # another estimator, configuration or shapes
            raise OptionError(f"--restore_vem_path {path}: {' '.join(str(exc).split())}") from None
