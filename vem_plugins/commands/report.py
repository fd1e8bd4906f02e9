"""``vem-plugins report``: one self-contained HTML page (dominate) on one run or comparing runs.

It reads the record adapter glue writes with ``--vem_record``
(:mod:`vem_plugins.commands.record`) and shows, per run and side by side: the upstream pin and
patch hashes, the hyper-parameters, the student's size with and without VEM, upstream's metrics
and the held-out PSNR/SSIM, loss curves (student losses, the MI term, the energy gap
E(t,s) - E(t~,s), the EBM loss, skipped steps) as PNG plots, and image strips (input, target,
teacher, student, Langevin sample t~) at a few steps. Plots and images are embedded as data
URIs, so the page is one file to keep or send.

Nothing in a run directory is trusted to be complete: a run that crashed or is still going
gives a page that says what is missing (:attr:`Run.problems`) instead of an exception. Nor is it
trusted to be well-formed or to stay in its record folder: a malformed line is a problem naming
its file and line, and a file outside the folder (an absolute path, ``..``, a symlink) is not
read, since the page carries what it reads wherever it is sent.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path

import dominate
from dominate import tags as t

from vem_plugins.commands.record import FOLDER
from vem_plugins.errors import UsageError

#: vem-plugins' logged terms, in the order plotted, with what each plot shows.
VEM_TERMS = {
    "mi": "MI term in the student loss: lambda_mi * (E(t,s) - E(t~,s))",
    "energy_gap": "energy gap E(t,s) - E(t~,s)",
    "ebm_loss": "EBM (contrastive divergence) loss",
    "mi_skipped": "estimator steps skipped as non-finite (cumulative)",
}
#: Image columns, in the order shown.
COLUMNS = ("input", "target", "teacher", "student", "langevin")
#: At most this many sample steps per run are shown (evenly spread, first and last kept).
SAMPLE_ROWS = 6

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
.differs td { background: #fff6d5; }
.problems { color: #8a1c1c; }
img.plot { width: 420px; margin: 4px; }
img.grid { image-rendering: pixelated; }
code { font-size: 90%; }
"""


@dataclasses.dataclass
class Run:
    """What one run directory holds; ``problems`` lists what is missing or unreadable."""

    dir: Path
    info: dict | None = None
    models: dict | None = None
    scalars: list = dataclasses.field(default_factory=list)
    metrics: list = dataclasses.field(default_factory=list)
    samples: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def label(self) -> str:
        if self.info is None:
            return self.name
        vem = self.info.get("vem")
        mi = (self.info.get("options") or {}).get("mi") or "vem"
        return f"{self.name} ({'with ' + mi.upper() if vem else 'without VEM'})"

    @property
    def options(self) -> dict:
        return (self.info or {}).get("options") or {}


#: What the page reads from each record file without further checks, so an entry must have
#: this shape to be shown: a Python type, ``[shape]`` (a list of such items) or ``{key: shape}``
#: (an object; a key may be absent or null unless it ends in ``!``).
SHAPES = {
    "run.json": {"options": {"mi": str}, "argv": [str], "student_losses": [str],
                 "lock": {"patches": [{"name!": str, "sha256!": str}]}},
    "models.json": {"student": dict, "estimator": dict},
    "scalars.jsonl": {"step!": int, "upstream!": dict, "vem!": dict},
    "metrics.jsonl": {"step!": int, "values!": dict},
    "samples.jsonl": {"step!": int, "images!": dict},
}
#: Malformed lines of a file named one by one in :attr:`Run.problems`; the rest are counted.
SHOWN_LINES = 3
#: JSON's names for the types :func:`json.loads` gives.
_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer",
          float: "a number", bool: "true or false", type(None): "null"}


def _malformed(value, shape, where: str = "") -> str | None:
    """Why ``value`` (at ``where`` in its JSON value) does not have ``shape``, or None."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the JSON value'} is {_KINDS[type(value)]}, not an object"
        for key, inner in shape.items():
            name = key.rstrip("!")
            path = f"{where}.{name}" if where else name
            if value.get(name) is None:
                if key.endswith("!"):
                    return f"{path} is missing"
            elif why := _malformed(value[name], inner, path):
                return why
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {_KINDS[type(value)]}, not a list"
        for i, item in enumerate(value):
            if why := _malformed(item, shape[0], f"{where}[{i}]"):
                return why
        return None
    if type(value) is not shape:  # not isinstance: True is no step number
        return f"{where} is {_KINDS[type(value)]}, not {_KINDS[shape]}"
    return None


def _parse(data: bytes):
    """JSON, with integers too big for a float read as floats (inf): plots cannot take them."""
    return json.loads(data, parse_int=lambda s: int(s) if len(s) < 19 else float(s))


def _inside(run: Run, rel: str) -> Path | None:
    """The file ``rel`` in the run's record folder resolved, or None where it leads out of the
    folder (an absolute path, ``..``, a symlink): the page shows what it reads, so it must read
    nothing else. A symlinked run directory is followed; a symlinked record folder is not."""
    folder = run.dir.resolve() / FOLDER
    path = (folder / rel).resolve()
    return path if path.is_relative_to(folder) else None


def _read(run: Run, name: str, what: str) -> bytes | None:
    if not (run.dir / FOLDER / name).exists():
        run.problems.append(f"{FOLDER}/{name} is missing: no {what}")
        return None
    try:
        path = _inside(run, name)
        if path is not None:
            return path.read_bytes()
        run.problems.append(f"{FOLDER}/{name} links out of {FOLDER}/: not read, no {what}")
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        run.problems.append(f"{FOLDER}/{name} cannot be read ({exc}): no {what}")
    return None


def _json(run: Run, name: str, what: str) -> dict | None:
    data = _read(run, name, what)
    if data is None:
        return None
    try:
        value = _parse(data)
    except (ValueError, RecursionError) as exc:
        run.problems.append(f"{FOLDER}/{name} is not valid JSON ({exc}): no {what}")
        return None
    if why := _malformed(value, SHAPES[name]):
        run.problems.append(f"{FOLDER}/{name}: {why}; no {what}")
        return None
    return value


def _lines(run: Run, name: str, what: str) -> dict[int, dict]:
    """The well-formed entries of a JSON-lines record by line number. Each malformed line is a
    problem naming it, so that a damaged record can be found and mended."""
    data = _read(run, name, what)
    if data is None:
        return {}
    entries, bad = {}, []
    lines = data.splitlines()
    for number, line in enumerate(lines, 1):
        try:
            entry = _parse(line)
        except (ValueError, RecursionError) as exc:
            cut = (" (the run stopped while writing it?)"
                   if number == len(lines) and not data.endswith(b"\n") else "")
            bad.append((number, f"not JSON ({exc}){cut}"))
            continue
        if why := _malformed(entry, SHAPES[name]):
            bad.append((number, why))
        else:
            entries[number] = entry
    run.problems += [f"{FOLDER}/{name} line {n}: {why}; skipped" for n, why in bad[:SHOWN_LINES]]
    if rest := bad[SHOWN_LINES:]:
        run.problems.append(f"{FOLDER}/{name}: {len(rest)} more malformed line(s) skipped, "
                            f"from line {rest[0][0]}")
    if not entries:
        run.problems.append(f"{FOLDER}/{name} has no entries yet: no {what}")
    return entries


def _images(run: Run, where: str, entry: dict) -> None:
    """Replace ``entry``'s image paths by the files they resolve to, dropping each that is not a
    file inside the record folder: the page embeds them, and must carry nothing else off the
    machine."""
    images = entry["images"]
    for column, rel in list(images.items()):
        if not isinstance(rel, str):
            run.problems.append(f"{where}: image path ({column}, step {entry['step']}) is "
                                f"{_KINDS[type(rel)]}, not a string; not shown")
            del images[column]
            continue
        try:
            path = _inside(run, rel)
            reason = (f"is outside {FOLDER}/" if path is None
                      else None if path.is_file() else "is missing")
        except (OSError, ValueError, RuntimeError):  # too long, a NUL byte, a symlink loop
            reason = "cannot be read"
        if reason:
            run.problems.append(f"{where}: image path {rel!r} ({column}, step {entry['step']}) "
                                f"{reason}; not shown")
            del images[column]
        else:
            images[column] = path


def recording_adapters() -> list[str]:
    """The registered adapters whose patched training writes run records: those with a ``try``
    recipe, which must pass ``--vem_record`` (:class:`~vem_plugins.authoring.adapter.Tryout`)."""
    from vem_plugins import plugins
    return sorted(name for name, adapter in plugins.adapters().items() if adapter.tryout)


def load(run_dir: str | Path) -> Run:
    """Read ``run_dir``'s record; never raises for missing or damaged files."""
    run = Run(Path(run_dir))
    if not run.dir.is_dir():
        run.problems.append(f"{run.dir} is not a directory")
        return run
    if not (run.dir / FOLDER).is_dir():
        hint = " (upstream's own log.txt is there)" if (run.dir / "log.txt").exists() else ""
        run.problems.append(f"no {FOLDER}/ in {run.dir}{hint}: train with --vem_record to write "
                            f"the record this report reads (adapters that add it: "
                            f"{', '.join(recording_adapters()) or 'none installed'})")
        return run
    run.info = _json(run, "run.json", "settings or upstream pin")
    run.models = _json(run, "models.json", "model sizes (written at the first student step)")
    run.scalars = list(_lines(run, "scalars.jsonl", "loss curves").values())
    run.metrics = list(_lines(run, "metrics.jsonl",
                              "evaluation (written at upstream's evaluations)").values())
    samples = _lines(run, "samples.jsonl", "image samples")
    for number, entry in samples.items():
        _images(run, f"{FOLDER}/samples.jsonl line {number}", entry)
    run.samples = list(samples.values())
    return run


# --- figures -----------------------------------------------------------------------------------

def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def plot(title: str, series: list[tuple[str, list, list]], ylabel: str = "") -> str:
    """A line plot of ``(label, steps, values)`` series as a PNG data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.6, 3.4), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, steps, values in series:
        ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("student step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return _data_uri(out.getvalue())


def _series(run: Run, group: str, name: str):
    pairs = [(e["step"], e.get(group, {}).get(name)) for e in run.scalars]
    pairs = [(s, float(v)) for s, v in pairs if isinstance(v, (int, float))]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _curves(runs: list[Run]):
    """``(title, series)`` per plot: each student loss, then each vem-plugins term."""
    student = []
    for run in runs:
        names = (run.info or {}).get("student_losses") or sorted(
            {n for e in run.scalars for n in e.get("upstream", {})})
        student += [n for n in names if n not in student]
    plots = [(f"student loss {name} (upstream's)", "upstream", name) for name in student]
    plots += [(text, "vem", name) for name, text in VEM_TERMS.items()]
    for title, group, name in plots:
        series = [(run.label, *_series(run, group, name)) for run in runs]
        series = [s for s in series if s[1]]
        if series:
            yield title, series


# --- page --------------------------------------------------------------------------------------

def _fmt(value) -> str:
    if value == "nan":  # the record writes non-finite numbers as strings (strict JSON)
        value = math.nan
    if isinstance(value, float):
        return "not computed (nan)" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return "-" if value is None else str(value)


def _table(header, rows, differs=None):
    with t.table():
        t.tr([t.th(h) for h in header])
        for i, row in enumerate(rows):
            t.tr([t.td(_fmt(c)) for c in row], cls="differs" if differs and differs[i] else None)


def _provenance(runs):
    rows = []
    for run in runs:
        info, lock = run.info or {}, (run.info or {}).get("lock") or {}
        patches = lock.get("patches") or []
        digest = hashlib.sha256("".join(p["sha256"] for p in patches).encode()).hexdigest()
        rows.append((run.label, info.get("adapter"), lock.get("url"), lock.get("commit"),
                     ", ".join(f"{p['name']} {p['sha256'][:12]}" for p in patches) or None,
                     digest[:12] if patches else None, lock.get("vem_plugins_version")))
    _table(("run", "adapter", "upstream", "pin", "patches (sha256)", "adapter hash",
            "vem-plugins"), rows)


def _options(runs):
    names = sorted({k for run in runs for k in run.options})
    if not names:
        t.p("No hyper-parameters recorded.")
        return
    values = [[run.options.get(n) for run in runs] for n in names]
    known = [i for i, run in enumerate(runs) if run.options]
    differs = [len({json.dumps(row[i]) for i in known}) > 1 for row in values]
    mis = {run.options.get("mi") for run in runs}
    keep = [i for i, n in enumerate(names)
            if differs[i] or n in ("vem", "mi", "lambda_mi") or n.startswith("ebm_")
            or (n in ("lambda_vid", "vid_mean", "vid_width") and "vid" in mis)
            or (n in ("lambda_crd", "crd_width") and "crd" in mis)]
    t.p("Settings that differ between the runs (highlighted) and vem-plugins' own; every "
        "option below.")
    _table(["option", *[r.label for r in runs]], [[names[i], *values[i]] for i in keep],
           [differs[i] for i in keep])
    with t.details():
        t.summary(f"all {len(names)} options")
        _table(["option", *[r.label for r in runs]], [[n, *v] for n, v in zip(names, values)],
               differs)
        for run in runs:
            t.p(t.b(run.label + ": "), t.code(" ".join((run.info or {}).get("argv") or [])))


def _sizes(runs):
    rows = []
    for run in runs:
        models = run.models or {}
        student, est = models.get("student") or {}, models.get("estimator") or {}
        rows.append((run.label, student.get("params"), student.get("macs"), est.get("params")))
    t.p("The estimator trains beside the student and is dropped afterwards: the compressed "
        "student is the same size with and without VEM.")
    _table(("run", "student parameters", "student MACs (1 image)",
            "estimator parameters (training only)"), rows)


def _computed(value) -> bool:
    """Upstream logs a skipped metric as nan, and its best-so-far as a 1e9 sentinel."""
    return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) < 1e9


def _metrics(runs):
    names = []
    for run in runs:
        for entry in run.metrics:
            names += [n for n in entry.get("values", {}) if n not in names]
    if not names:
        t.p("No evaluation recorded yet.")
        return
    last = [run.metrics[-1] if run.metrics else {"values": {}} for run in runs]
    skipped = [n for n in names if not any(_computed(e["values"].get(n)) for e in last)]
    names = [n for n in names if n not in skipped]
    t.p("At the last evaluation. heldout_psnr (dB) / heldout_ssim: the student against the real "
        "targets of the held-out split, computed by vem-plugins (higher is better); upstream's "
        "own metrics (FID: lower is better) when it computed them.")
    _table(["run", "step", *names],
           [[run.label, e.get("step"), *[e["values"].get(n) for n in names]]
            for run, e in zip(runs, last)])
    if skipped:
        t.p("Not computed by upstream in these runs (e.g. --no_fid, or weights missing "
            "offline): " + ", ".join(skipped))
    for name in ("heldout_psnr", "heldout_ssim"):
        series = []
        for run in runs:
            pts = [(e["step"], e["values"].get(name)) for e in run.metrics]
            pts = [(s, v) for s, v in pts if isinstance(v, (int, float))]
            if len(pts) > 1:
                series.append((run.label, [s for s, _ in pts], [v for _, v in pts]))
        if series:
            t.img(src=plot(f"held-out {name[8:].upper()}", series), cls="plot", alt=name)


def _samples(run: Run):
    rows = run.samples
    if len(rows) > SAMPLE_ROWS:
        picks = {round(i * (len(rows) - 1) / (SAMPLE_ROWS - 1)) for i in range(SAMPLE_ROWS)}
        rows = [rows[i] for i in sorted(picks)]
    columns = [c for c in COLUMNS if any(c in e["images"] for e in rows)]
    if not rows:
        t.p("No image samples recorded.")
        return
    with t.table():
        t.tr(t.th("step"), [t.th("Langevin sample t~" if c == "langevin" else c)
                            for c in columns])
        for entry in rows:
            with t.tr():
                t.td(entry["step"])
                for column in columns:
                    path = entry["images"].get(column)  # a file load() checked
                    if path is None:
                        t.td("-")
                        continue
                    try:
                        png = path.read_bytes()
                    except OSError as exc:  # e.g. no read permission
                        t.td(f"unreadable ({exc.strerror})")
                        continue
                    t.td(t.img(src=_data_uri(png), cls="grid", alt=f"{column} {entry['step']}"))


def build(runs: list[Run]) -> str:
    """The HTML page for ``runs``."""
    doc = dominate.document(title="vem-plugins report: " + ", ".join(r.name for r in runs))
    with doc.head:
        t.meta(charset="utf-8")
        t.style(STYLE)
    with doc:
        t.h1("vem-plugins report")
        t.p("Runs: " + "; ".join(f"{r.label} in {r.dir}" for r in runs))
        for run in runs:
            if run.problems:
                with t.div(cls="problems"):
                    t.h3(f"Missing in {run.name}")
                    t.ul([t.li(p) for p in run.problems])
        t.h2("Upstream and adapter")
        _provenance(runs)
        t.h2("Hyper-parameters")
        _options(runs)
        t.h2("Model size")
        _sizes(runs)
        t.h2("Evaluation")
        _metrics(runs)
        t.h2("Loss curves")
        curves = list(_curves(runs))
        if not curves:
            t.p("No losses recorded yet.")
        with t.div():
            for title, series in curves:
                t.img(src=plot(title, series), cls="plot", alt=title)
        t.h2("Image samples")
        t.p("Each strip shows the first images of the training batch at that step: the input, "
            "the real target, the teacher's output, the student's output and the Langevin "
            "sample t~ drawn from the energy model starting at the student's output. Runs "
            "with and without VEM see different batches once the Langevin noise has drawn "
            "random numbers; the held-out metrics above compare them on the same images.")
        for run in runs:
            t.h3(run.label)
            _samples(run)
    return doc.render()


def write(run_dirs, out: str | Path) -> tuple[Path, list[Run]]:
    """Write the page for ``run_dirs`` to ``out``; return its path and the runs read. A page
    that cannot be written is a :class:`~vem_plugins.errors.UsageError` saying why."""
    runs = [load(d) for d in run_dirs]
    out = Path(out)
    page = build(runs)
    try:
        if not out.parent.exists():  # not mkdir(exist_ok=True): "File exists" for a file there
            out.parent.mkdir(parents=True)
        out.write_text(page)
    except OSError as exc:  # a directory, a file as parent, no permission, disk full
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out, runs

