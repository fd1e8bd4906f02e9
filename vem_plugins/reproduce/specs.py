"""Experiments as data: one TOML file per table row of the paper (``specs/*.toml``).

A spec says which adapter and dataset a row uses, the upstream commands that make its number
(upstream's own paper scripts, with the method's flags appended), the method variants it
compares, how the metric is read from upstream's log, and the number the paper reports for
each variant. Every spec has two scales: ``paper`` (upstream's settings, the prepared dataset)
and ``tiny`` (generated data in the same format, small widths, a few iterations: the same
pipeline on CPU in minutes, to check a set-up, not to measure anything).

Command templates are ``bash`` command lines run in the adapter's checkout; these words are
replaced (every other brace is left to bash):

``{python}``  the interpreter vem-plugins runs in
``{flags}``   the method's flags (``--vem``, ``--mi vid``, ..., nothing for ``plain``)
``{seed}``    the job's seed
``{out}``     the job's output folder (upstream's ``--log_dir`` / ``--checkpoints_dir``)
``{data}``    the dataset root (tiny: the generated data; paper: the prepared dataset)
``{job}``     the job's folder (``{out}`` is ``{job}/run``)

A stage upstream can resume names its checkpoints (``checkpoint``: a glob; the newest is the
file whose name holds the highest number) and the arguments that resume from one (``resume``,
which may also use ``{checkpoint}``, its path, ``{step}``, the number in its name, and
``{next}``, that number plus one); its ``run`` says where they go with ``{resume}``, which is
empty on a fresh start. A stage interrupted mid-way (a killed runner, a preempted Slurm job)
then goes on from upstream's last checkpoint, the estimator's state included where the adapter
saves it there, instead of starting over.

Users copy a file, edit it and pass its path instead of a name.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import re
import tomllib
from pathlib import Path

from vem_plugins.errors import UsageError

FOLDER = importlib.resources.files("vem_plugins.reproduce") / "specs"
#: the metrics a spec may name, and whether higher is better
METRICS = {"FID": False, "mIoU": True}
_PLACEHOLDERS = {"python", "flags", "seed", "out", "data", "job"}
#: what a stage's ``resume`` may use besides :data:`_PLACEHOLDERS`
RESUME_PLACEHOLDERS = {"checkpoint", "step", "next"}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_PLACEHOLDER = re.compile(r"(?<!\$)\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One upstream command of a job; a job runs its stages in order, and a finished stage is
    never rerun."""

    name: str
    run: str
    #: the arguments that resume from upstream's checkpoint (put at ``{resume}`` in ``run``)
    resume: str = ""
    #: upstream's checkpoints (a glob; the highest number in a file's name is the newest)
    checkpoint: str = ""


@dataclasses.dataclass(frozen=True)
class Needed:
    """A file or folder (relative to the checkout) that must exist before a job starts, and the
    command that makes it."""

    path: str
    make: str


@dataclasses.dataclass(frozen=True)
class Scale:
    """How a spec runs at one scale."""

    stages: tuple[Stage, ...]
    #: the dataset root given as ``{data}``: relative to the checkout (paper), or where the
    #: generated data goes (tiny: ``None``)
    data: str | None = None
    #: tiny: the generated dataset (``aligned``, ``unaligned`` or ``unconditional``), size, count
    generate: tuple[str, int, int] | None = None
    needs: tuple[Needed, ...] = ()
    #: files upstream loads from ``$TORCH_HOME/hub/checkpoints``
    weights: tuple[str, ...] = ()
    #: GPU-hours of one job on one modern GPU, and where the figure comes from
    gpu_hours: float | None = None
    gpu_hours_source: str = ""


@dataclasses.dataclass(frozen=True)
class Spec:
    """One table row of the paper."""

    name: str
    table: str
    row: str
    adapter: str
    dataset: str
    metric: str
    #: a regular expression with one group: the metric in the log (the last match counts)
    pattern: str
    #: the log file, relative to ``{out}`` (a glob)
    log: str
    #: method name -> its flags (``plain`` = no flags)
    methods: dict[str, str]
    #: the methods whose gain the report shows against each of the others
    ours: tuple[str, ...]
    #: method -> the number the paper reports
    reported: dict[str, float]
    scales: dict[str, Scale]
    #: where the reported numbers and commands come from
    source: str
    path: Path

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]


def builtin() -> dict[str, Path]:
    """The built-in specs by name."""
    return {Path(str(p)).stem: Path(str(p)) for p in sorted(FOLDER.iterdir(), key=str)
            if str(p).endswith(".toml")}


def resolve(given: str) -> Spec:
    """A spec by built-in name or by path to a TOML file; unknown names are refused with close
    matches."""
    specs = builtin()
    if given in specs:
        return load(specs[given])
    if given.endswith(".toml") or "/" in given:
        if not Path(given).is_file():
            raise UsageError(f"spec file {given} does not exist")
        return load(Path(given))
    close = difflib.get_close_matches(given, specs, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown spec {given!r}; {hint}(`vem-plugins reproduce --list` shows the "
                     f"{len(specs)} built-in specs; a path to a .toml file works too)")


def load(path: Path) -> Spec:
    """Read and check a spec file; every problem is one line naming the file and the key."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read spec {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"spec {path} is not valid TOML: {exc}") from None
    r = _Reader(path, data)
    name = r.get("name", str)
    if not _NAME.match(name):
        r.fail("name", "lower-case letters, digits, '.', '_' and '-' only")
    metric = r.get("metric", str)
    if metric not in METRICS:
        r.fail("metric", f"one of {', '.join(METRICS)}, got {metric!r}")
    pattern = r.get("pattern", str)
    try:
        if re.compile(pattern).groups != 1:
            r.fail("pattern", "needs exactly one group (the number)")
    except re.error as exc:
        r.fail("pattern", f"not a regular expression ({exc})")
    methods = r.get("methods", dict)
    for method, flags in methods.items():
        if not isinstance(flags, str) or not _NAME.match(method):
            r.fail(f"methods.{method}", "a lower-case name mapped to a string of flags")
    ours = tuple(r.get("ours", list, ["vem"]))
    reported = r.get("reported", dict, {})
    for key in [*ours, *reported]:
        if key not in methods:
            r.fail("ours" if key in ours else f"reported.{key}",
                   f"{key!r} is not one of the methods ({', '.join(methods)})")
    for key, value in reported.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            r.fail(f"reported.{key}", "a number")
    scales = {scale: _scale(r, scale) for scale in ("paper", "tiny")}
    return Spec(name=name, table=r.get("table", str), row=r.get("row", str),
                adapter=r.get("adapter", str), dataset=r.get("dataset", str), metric=metric,
                pattern=pattern, log=r.get("log", str), methods=dict(methods), ours=ours,
                reported={k: float(v) for k, v in reported.items()}, scales=scales,
                source=r.get("source", str), path=Path(path))


def _scale(r: "_Reader", scale: str) -> Scale:
    table = r.get(scale, dict)
    sub = _Reader(r.path, table, f"{scale}.")
    stages = []
    for i, stage in enumerate(sub.get("stages", list)):
        st = _Reader(r.path, stage if isinstance(stage, dict) else {}, f"{scale}.stages[{i}].")
        resume, checkpoint = st.get("resume", str, ""), st.get("checkpoint", str, "")
        run = st.get("run", str)
        for key, known in (("run", _PLACEHOLDERS | ({"resume"} if resume else set())),
                           ("resume", _PLACEHOLDERS | RESUME_PLACEHOLDERS),
                           ("checkpoint", _PLACEHOLDERS)):
            unknown = placeholders(st.data.get(key, "")) - known
            if unknown:
                st.fail(key, f"unknown placeholder {{{sorted(unknown)[0]}}} (known here: "
                             f"{', '.join(sorted(known))})")
        if resume and "resume" not in placeholders(run):
            st.fail("run", "has no {resume}: where the resume arguments go")
        if bool(resume) != bool(checkpoint):
            st.fail("checkpoint" if resume else "resume",
                    "missing (a stage that resumes needs both resume and checkpoint)")
        stages.append(Stage(st.get("name", str), run, resume, checkpoint))
    if not stages:
        sub.fail("stages", "at least one stage")
    needs = tuple(Needed(**_Reader(r.path, n if isinstance(n, dict) else {},
                                   f"{scale}.needs[{i}].").pick("path", "make"))
                  for i, n in enumerate(sub.get("needs", list, [])))
    generate = sub.get("generate", dict, None)
    if generate is not None:
        g = _Reader(r.path, generate, f"{scale}.generate.")
        generate = (g.get("kind", str), g.get("size", int), g.get("count", int))
    elif scale == "tiny":
        sub.fail("generate", "the tiny scale's generated dataset: kind, size, count")
    hours = sub.get("gpu_hours", (int, float), None)
    return Scale(stages=tuple(stages), data=sub.get("data", str, None), generate=generate,
                 needs=needs, weights=tuple(sub.get("weights", list, [])),
                 gpu_hours=None if hours is None else float(hours),
                 gpu_hours_source=sub.get("gpu_hours_source", str, ""))


def placeholders(template: str) -> set[str]:
    """The words in braces a command template uses (``${...}`` is bash's, not ours)."""
    return set(_PLACEHOLDER.findall(template))


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with the placeholders named in ``values`` replaced; the others stay, to be
    filled later (``{resume}`` once the job knows where it goes on from) or left to bash."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)


class _Reader:
    """Typed access to one table of a spec file, with one-line errors naming file and key."""

    def __init__(self, path, data: dict, prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, what: str):
        raise UsageError(f"spec {self.path}: {self.prefix}{key}: {what}")

    _MISSING = object()

    def get(self, key: str, kind, default=_MISSING):
        if key not in self.data:
            if default is self._MISSING:
                self.fail(key, "missing")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(key, f"must be {names}, got {type(value).__name__}")
        return value

    def pick(self, *keys: str) -> dict:
        return {k: self.get(k, str) for k in keys}
