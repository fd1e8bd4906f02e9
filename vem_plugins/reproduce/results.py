"""The results of ``vem-plugins reproduce``: ``results.json`` and ``report.html`` in its
output folder, rewritten from the job folders whenever the runner ends (and by ``--status``).

Per table row and method: the metric of every seed, mean ± 95% t-interval over seeds, the
paper's number beside it; per method of ours (VEM) and each other method: ours − theirs with a
paired-by-seed interval, and whether it shows a gain (the interval on the better side of 0),
a loss, or no clear difference. Jobs that failed, or whose metric upstream did not log, are
listed with why; they count in no mean.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import dominate
from dominate import tags as t

from vem_plugins.commands import report as run_report
from vem_plugins.reproduce import jobs, statistics
from vem_plugins.reproduce.specs import Spec

LEVEL = 0.95


def collect(specs: list[Spec], folders: dict[tuple[str, str, int], Path], scale: str) -> dict:
    """The results object from the job folders (``(spec, method, seed) -> folder``)."""
    rows, listing = [], []
    for spec in specs:
        values: dict[str, dict[int, float]] = {}
        for (name, method, seed), folder in folders.items():
            if name != spec.name:
                continue
            status = jobs.status(folder)
            st = jobs.state(folder)
            entry = {"spec": name, "method": method, "seed": seed, "folder": str(folder),
                     "status": status}
            if status == "done":
                metric = st.get("metric")
                if isinstance(metric, (int, float)) and math.isfinite(metric):
                    values.setdefault(method, {})[seed] = float(metric)
                    entry["metric"] = metric
                else:
                    entry["problem"] = (f"no {spec.metric} in upstream's log "
                                        f"({spec.log}, pattern {spec.pattern!r})")
            elif status == "failed":
                entry["problem"] = st.get("failed", "failed")
                entry["tail"] = jobs.tail(folder)
            page = _run_page(folder)
            if page:
                entry["run_report"] = str(page)
            listing.append(entry)
        methods = [m for m in spec.methods if any(k[0] == spec.name and k[1] == m
                                                   for k in folders)]
        row = {"spec": spec.name, "table": spec.table, "row": spec.row,
               "adapter": spec.adapter, "dataset": spec.dataset, "metric": spec.metric,
               "higher_is_better": spec.higher_is_better, "methods": {}, "gains": []}
        for method in methods:
            interval = statistics.mean_interval(values.get(method, {}).values(), LEVEL)
            row["methods"][method] = {
                "seeds": {str(k): v for k, v in sorted(values.get(method, {}).items())},
                **_interval(interval), "reported": spec.reported.get(method)}
        for ours in (m for m in spec.ours if m in methods):
            for other in (m for m in methods if m not in spec.ours):
                diff = statistics.paired_difference(values.get(ours, {}),
                                                    values.get(other, {}), LEVEL)
                row["gains"].append({"ours": ours, "baseline": other, **_interval(diff),
                                     "verdict": _verdict(diff, spec.higher_is_better)})
        rows.append(row)
    return {"scale": scale, "level": LEVEL, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "rows": rows, "jobs": listing}


def write(results: dict, out: Path) -> tuple[Path, Path]:
    """``results.json`` and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data, page = out / "results.json", out / "report.html"
    jobs.write(data, results)
    page.write_text(_html(results, out))
    return data, page


def _interval(i: statistics.Interval) -> dict:
    return {"mean": _num(i.mean), "half_width": _num(i.half_width), "n": i.n}


def _num(x: float):
    return None if math.isnan(x) else x


def _verdict(diff: statistics.Interval, higher_is_better: bool) -> str:
    if diff.n < 2:
        return "fewer than 2 seeds with both"
    if not diff.excludes_zero():
        return "no clear difference"
    return "gain" if (diff.mean > 0) == higher_is_better else "loss"


def _run_page(folder: Path) -> Path | None:
    """The per-run report of a job whose upstream run wrote a ``--vem_record``."""
    run = folder / "run"
    if not (run / run_report.FOLDER).is_dir():
        return None
    page = folder / "report.html"
    try:
        run_report.write([run], page)
    except Exception:  # noqa: BLE001 - a page on one run must not cost the summary
        return None
    return page


def _fmt(mean, half, n) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f}" if half is None else f"{mean:.3f} ± {half:.3f} (n={n})"


def _html(results: dict, out: Path) -> str:
    doc = dominate.document(title="vem-plugins reproduce")
    with doc.head:
        t.style(run_report.STYLE + ".gain td.v { background: #dcf5dc; } "
                                   ".loss td.v { background: #f8dada; }")
    with doc:
        t.h1(f"vem-plugins reproduce ({results['scale']} scale)")
        t.p(f"Written {results['written']}. Mean ± half-width of the {results['level']:.0%} "
            "t-interval over seeds; ours − baseline is paired by seed. "
            + ("The tiny scale checks the pipeline; its numbers say nothing about the paper."
               if results["scale"] == "tiny" else ""))
        for row in results["rows"]:
            better = "higher" if row["higher_is_better"] else "lower"
            t.h2(f"{row['row']}")
            t.p(f"{row['table']} · spec {row['spec']} · adapter {row['adapter']} · "
                f"{row['dataset']} · {row['metric']} ({better} is better)")
            with t.table():
                t.tr(t.th("method"), t.th("seeds"), t.th(f"{row['metric']} mean ± CI"),
                     t.th("paper"))
                for method, m in row["methods"].items():
                    t.tr(t.td(method), t.td(", ".join(f"{k}: {v:.3f}"
                                                      for k, v in m["seeds"].items()) or "–"),
                         t.td(_fmt(m["mean"], m["half_width"], m["n"])),
                         t.td("not in the spec" if m["reported"] is None
                              else f"{m['reported']:.2f}"))
            if row["gains"]:
                with t.table():
                    t.tr(t.th("ours − baseline"), t.th("paired difference ± CI"),
                         t.th("verdict"))
                    for g in row["gains"]:
                        with t.tr(cls=g["verdict"]):
                            t.td(f"{g['ours']} − {g['baseline']}")
                            t.td(_fmt(g["mean"], g["half_width"], g["n"]))
                            t.td(g["verdict"], cls="v")
        t.h2("Jobs")
        with t.table():
            t.tr(t.th("spec"), t.th("method"), t.th("seed"), t.th("status"), t.th("metric"),
                 t.th("run"))
            for job in results["jobs"]:
                with t.tr():
                    t.td(job["spec"]), t.td(job["method"]), t.td(str(job["seed"]))
                    t.td(job["status"])
                    cell = t.td(f"{job['metric']:.3f}" if "metric" in job else "")
                    if "problem" in job:
                        cell.add(t.div(job["problem"], cls="problems"))
                    if job.get("tail"):
                        cell.add(t.pre(job["tail"]))
                    link = t.td()
                    if "run_report" in job:
                        link.add(t.a("report", href=_relative(job["run_report"], out)))
                    link.add(" ")
                    link.add(t.a("console", href=_relative(
                        str(Path(job["folder"]) / "console.txt"), out)))
    return doc.render()


def _relative(path: str, out: Path) -> str:
    return os.path.relpath(path, out)
