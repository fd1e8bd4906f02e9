"""The command-line flags patched upstream parsers gain, and their validation.

:func:`add_options` is what a patch calls on upstream's parser; it runs the ``add_options`` hook
so that plugins add their own flags beside ours. Defaults follow the paper (K=10, step 100 or
50 on Cityscapes/FFHQ (:func:`step_size`), noise 0.005, lambda 0.1, Adam 1e-4 with betas
(0, 0.999), l2 0.05); the paper publishes no weight for the VID and CRD baselines.

Langevin parametrisation: the default ("paper") takes the step size and the noise scale
separately, t <- t - step * dE/dt + noise * eps; with the paper's values this is noisy gradient
descent on E (temperature noise^2 / (2 step) ~ 1e-7), so the energy acts as a local critic around
the student output. ``--ebm_sampler textbook`` uses noise std sqrt(2 * step) instead (a proper
Langevin sampler of exp(-E)), for experiments.

Each rule on a flag's value is written once, in :data:`RULES`. :func:`validate` applies them all
to the parsed options when the runtime is built, so a bad flag stops a run before upstream trains;
the estimators apply those of their own arguments (:func:`require`) because they are public
modules that may be built without a parser. What only an estimator can know, because it depends
on the tensors (the image range of the data, shapes, channels, the image size a trained energy
network needs), it checks itself with :func:`check`. Both raise
:class:`~vem_plugins.errors.OptionError`.
"""
from __future__ import annotations

import argparse
import math
import os

from vem_plugins import hookimpl
from vem_plugins.errors import OptionError
from vem_plugins.plugins import estimators, plugin_manager

SAMPLERS = ("paper", "textbook")
VID_MEANS = ("identity", "learned")


def add_options(parser, **defaults):
    """Add vem-plugins' flags (and every plugin's) to ``parser``.

    :param parser: upstream's ``argparse.ArgumentParser`` (or an argument group of it).
    :param defaults: per-upstream defaults, e.g. ``ebm_width=16`` for CycleGAN.
    :return: ``parser``.
    """
    plugin_manager().hook.add_options(parser=parser)
    if defaults:
        parser.set_defaults(**defaults)
    return parser


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
    return a, b


def _range(text: str) -> tuple[float, float] | None:
    return None if text.lower() == "none" else _pair(text)


#: the attribute of the parsed options that lists the flags :func:`given` reports
GIVEN = "vem_given"


class _Noted(argparse.Action):
    """Store the value and note the flag in ``opt.vem_given`` (only once given, so upstream's
    option dumps gain nothing otherwise). A resume keeps the estimator's saved optimiser settings
    except where the user gave the flag; comparing with the default cannot tell, since the
    default may be given on purpose."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, tuple(sorted({*getattr(namespace, GIVEN, ()), "--" + self.dest})))


def given(opt) -> set[str]:
    """The flags among ``--ebm_lr`` and ``--ebm_betas`` given on the command line ``opt`` was
    parsed from."""
    return set(getattr(opt, GIVEN, ()))


@hookimpl(specname="add_options")
def builtin_options(parser):
    """The built-in flags (documented in ``--help`` and the README)."""
    g = parser.add_argument_group("vem-plugins (mutual-information distillation)") \
        if hasattr(parser, "add_argument_group") else parser
    g.add_argument("--vem", action="store_true",
                   help="add the mutual-information term to the student loss (estimator: --mi)")
    g.add_argument("--mi", choices=sorted(estimators()), default=None,
                   help="MI estimator: vem (energy-based, the paper), vid or crd (baselines); "
                        "giving it implies --vem [vem]")
    g.add_argument("--lambda_mi", type=float, default=0.1,
                   help="weight of the VEM term in the student loss [0.1, the paper's]")
    g.add_argument("--lambda_vid", type=float, default=1.0,
                   help="weight of the VID term (--mi vid); the paper publishes none [1.0]")
    g.add_argument("--lambda_crd", type=float, default=0.8,
                   help="weight of the CRD term (--mi crd); the paper publishes none [0.8, CRD's own]")
    g.add_argument("--mi_target", choices=("auto", "teacher", "real"), default="auto",
                   help="what t is: the detached teacher output, the real target (paired data), "
                        "or auto = real when upstream passes one, else teacher [auto]")
    g.add_argument("--ebm_steps", type=int, default=10, help="Langevin steps K [10]")
    g.add_argument("--ebm_step_size", type=float, default=None,
                   help="Langevin step size on -dE/dt [the paper's: 100; 50 on Cityscapes and FFHQ]")
    g.add_argument("--ebm_noise", type=float, default=0.005, help="Langevin noise std [0.005]")
    g.add_argument("--ebm_sampler", choices=SAMPLERS, default="paper",
                   help="paper: noise std --ebm_noise; textbook: noise std sqrt(2*step) [paper]")
    g.add_argument("--ebm_range", type=_range, default=(-1.0, 1.0), metavar="LO,HI",
                   help="image range the Langevin samples are clamped to, or 'none' [-1,1]")
    g.add_argument("--ebm_lr", type=float, default=1e-4, action=_Noted,
                   help="learning rate of the estimator's own Adam (energy / VID / CRD nets); "
                        "when given, it overrides the one saved in --restore_vem_path [1e-4]")
    g.add_argument("--ebm_betas", type=_pair, default=(0.0, 0.999), metavar="B1,B2", action=_Noted,
                   help="Adam betas of the estimator; when given, they override the ones saved "
                        "in --restore_vem_path [0,0.999]")
    g.add_argument("--ebm_l2", type=float, default=0.05,
                   help="energy-magnitude regulariser alpha in the EBM loss [0.05]")
    g.add_argument("--ebm_width", type=int, default=64,
                   help="width nc of the energy network, even [64; 16 for CycleGAN]")
    g.add_argument("--ebm_blocks", type=int, default=7,
                   help="residual blocks of the energy network; at most log2(image size) - 1 are "
                        "used [7]")
    g.add_argument("--vid_mean", choices=VID_MEANS, default="identity",
                   help="VID's mean: the student output itself, or a learned conv regressor "
                        "[identity]")
    g.add_argument("--vid_width", type=int, default=64,
                   help="channels of VID's learned mean regressor [64]")
    g.add_argument("--crd_width", type=int, default=64, help="channels of CRD's encoders [64]")
    g.add_argument("--restore_vem_path", default=None, metavar="PATH",
                   help="resume the estimator and its optimiser from a <epoch>_vem.pth file "
                        "written beside upstream's checkpoints")


#: the paper's Langevin step size, and the datasets on which it uses another (key: a word of the
#: data folder's name, lower case)
STEP_SIZE = 100.0
DATASET_STEP_SIZE = {"cityscapes": ("Cityscapes", 50.0), "ffhq": ("FFHQ", 50.0)}


def dataset_of(opt) -> str | None:
    """The key of :data:`DATASET_STEP_SIZE` that upstream's data folder (``--dataroot``, or
    CAGC's ``--path``) names in its last component, if any."""
    for attr in ("dataroot", "path"):
        value = getattr(opt, attr, None)
        if isinstance(value, str) and value:
            folder = os.path.basename(os.path.normpath(value)).lower()
            for key in DATASET_STEP_SIZE:
                if key in folder:
                    return key
    return None


def step_size(opt, dataset: str | None = None) -> tuple[float, str]:
    """The Langevin step size to use and why: ``--ebm_step_size`` when given, else the paper's
    value for ``dataset`` (default: :func:`dataset_of`)."""
    if opt.ebm_step_size is not None:
        return opt.ebm_step_size, "set with --ebm_step_size"
    key = dataset or dataset_of(opt)
    if key in DATASET_STEP_SIZE:
        name, value = DATASET_STEP_SIZE[key]
        source = "the adapter" if dataset else "the data folder's name"
        return value, (f"the paper's value for {name}, recognised from {source}; "
                       f"--ebm_step_size sets another")
    return STEP_SIZE, ("the paper's default; it uses 50 on Cityscapes and FFHQ, recognised from "
                       "the data folder's name; --ebm_step_size sets another")


def enabled(opt) -> bool:
    """Whether the parsed options ask for an MI term (``--vem`` or an explicit ``--mi``)."""
    return bool(getattr(opt, "vem", False) or getattr(opt, "mi", None))


def _at_least(low):
    return (lambda v: v >= low), f"must be >= {low}"


#: flag -> (whether a value obeys the rule, the rule as the error message states it)
RULES = {
    "--ebm_steps": _at_least(1),
    "--ebm_step_size": (lambda v: v > 0, "must be > 0"),
    "--ebm_noise": _at_least(0),
    "--ebm_sampler": (lambda v: v in SAMPLERS, f"must be one of {', '.join(SAMPLERS)}"),
    "--ebm_range": (lambda v: math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1],
                    "needs finite LO < HI (or 'none')"),
    "--ebm_l2": _at_least(0),
    "--ebm_lr": (lambda v: v > 0, "must be > 0"),
    "--ebm_betas": (lambda v: all(0 <= b < 1 for b in v), "each beta must be in [0, 1)"),
    "--ebm_width": (lambda v: v >= 2 and v % 2 == 0, "must be an even number >= 2"),
    "--ebm_blocks": _at_least(0),
    "--lambda_mi": _at_least(0),
    "--lambda_vid": _at_least(0),
    "--lambda_crd": _at_least(0),
    "--vid_mean": (lambda v: v in VID_MEANS, f"must be one of {', '.join(VID_MEANS)}"),
    "--vid_width": _at_least(1),
    "--crd_width": _at_least(1),
}


def check(ok: bool, flag: str, message: str) -> None:
    """Raise the :class:`OptionError` users see, one line naming ``flag``, unless ``ok``."""
    if not ok:
        raise OptionError(f"{flag}: {message}")


def require(flag: str, value) -> None:
    """Check ``value`` against ``flag``'s rule in :data:`RULES`."""
    ok, rule = RULES[flag]
    check(ok(value), flag, f"{rule}, got {value!r}")


def validate(opt) -> None:
    """Check the parsed options against every rule; :class:`OptionError` names the first bad
    flag. None, where a flag allows it, is the paper's value (``--ebm_step_size``) or no clamp
    (``--ebm_range none``) and is not checked."""
    for flag in RULES:
        value = getattr(opt, flag[2:])
        if value is not None:
            require(flag, value)


def defaults() -> argparse.Namespace:
    """The parsed defaults of every flag: handy for using the library without upstream."""
    return add_options(argparse.ArgumentParser()).parse_args([])
