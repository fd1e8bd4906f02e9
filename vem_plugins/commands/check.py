"""``vem-plugins check NAME``: is an adapter still good? For an adapter author's CI.

Four checks, each reported as ``ok`` or ``FAIL`` with the reason, in order:

1. *patches*: a fresh ``install`` into a temporary directory — the pin is fetched, every patched
   file has the recorded sha256, the series applies exactly, the added files fit;
2. *requirements*: each of ``Adapter.requirements`` is installed and its modules import
   (``install`` and ``try`` ask the cheaper half first: :func:`requirements_problem`);
3. *smoke --vem*: the smoke recipe runs as written, the estimator's terms reach upstream's log
   and the estimator checkpoint it saves restores exactly (:mod:`vem_plugins.authoring.smoke`);
4. *smoke without --vem*: the recipe without vem-plugins' flags runs, with no MI terms and no
   estimator checkpoint.

The smoke runs use the caller's environment (``TORCH_HOME``, proxies, ...). The scratch
directory is deleted when everything passed and kept, for inspection, when something failed.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import re
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from vem_plugins.install import checkout as installer
from vem_plugins.authoring import smoke
from vem_plugins.authoring.adapter import missing_requirements, requirement_modules
from vem_plugins.errors import InstallError, UsageError


@dataclasses.dataclass
class Outcome:
    """One check: its name, whether it passed (None: not run) and what was found."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        first, *rest = self.detail.splitlines() or [""]
        return "\n".join([f"{mark}  {self.name}: {first}", *("        " + r for r in rest)])


def check(adapter, source: str | None = None, work: Path | None = None,
          timeout: float = 600, smoke_runs: bool = True, report=print) -> list[Outcome]:
    """Run the checks, calling ``report(text)`` as each finishes; returns the outcomes.

    :param source: clone from this mirror, bundle or URL (``install --from``).
    :param work: scratch directory to use and keep (without an earlier check in it); by
        default a temporary one, deleted when every check passed.
    :param timeout: seconds each smoke run may take.
    :param smoke_runs: run the smoke recipe (else only patches and requirements).
    """
    keep = work is not None
    work = Path(work).absolute() if keep else \
        Path(tempfile.mkdtemp(prefix=f"vem-check-{adapter.name}-"))
    if keep and (work / adapter.name).exists():
        raise UsageError(f"{work} holds an earlier check of {adapter.name}; the patches are "
                         "checked on a fresh clone: remove it or choose another --keep")
    work.mkdir(parents=True, exist_ok=True)
    report(f"checking {adapter.name} ({adapter.url} at {adapter.commit[:12]}) in {work}")
    outcomes: list[Outcome] = []

    def done(outcome):
        outcomes.append(outcome)
        report(outcome.line())

    checkout = work / adapter.name
    done(_patches(adapter, checkout, source))
    done(_requirements(adapter))
    if smoke_runs and adapter.smoke is None:
        done(Outcome("smoke", False, "the adapter declares no smoke recipe (Adapter.smoke)"))
    elif smoke_runs and not outcomes[0].ok:
        done(Outcome("smoke", None, "not run: there is no checkout"))
    elif smoke_runs:
        done(_smoke(adapter, checkout, work, True, timeout))
        done(_smoke(adapter, checkout, work, False, timeout))
    failed = [o.name for o in outcomes if o.ok is False]
    if failed:
        report(f"{adapter.name}: {len(failed)} check(s) failed ({', '.join(failed)}); "
               f"files kept in {work}")
    else:
        report(f"{adapter.name}: all {sum(o.ok is True for o in outcomes)} checks passed")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return outcomes


def _patches(adapter, checkout, source) -> Outcome:
    start = time.monotonic()
    try:
        result = installer.install(adapter, checkout, source=source, progress=False)
    except InstallError as exc:
        return Outcome("patches", False, str(exc))
    parts = [f"{len(adapter.patches)} patch(es)"]
    if adapter.added_files:
        parts.append(f"{len(adapter.added_files)} added file(s)")
    detail = f"{' and '.join(parts)} apply to {adapter.commit[:12]} " \
             f"({time.monotonic() - start:.0f} s to clone and patch)"
    return Outcome("patches", True, "\n".join([detail, *result.warnings]))


def requirements_problem(adapter) -> str | None:
    """One line naming the requirements of ``adapter`` not installed in this environment and how
    to install them, or None when none is missing. ``try`` refuses with it before any work (its
    trainings would die on ModuleNotFoundError); ``install`` only warns (the patched source alone
    is of use, to read or to author an adapter)."""
    missing = missing_requirements(adapter)
    if not missing:
        return None
    if {r.strip().lower() for r in missing} <= _upstream_extra():  # as for the built-ins
        fix = ("install vem-plugins' upstream extra: pip install -e \".[upstream]\" in its "
               "source folder")
    else:
        fix = "pip install " + " ".join(map(shlex.quote, missing))
    return (f"{adapter.name} needs {', '.join(missing)}, not installed in this Python "
            f"environment; {fix}")


def _upstream_extra() -> set[str]:
    """The requirements in vem-plugins' ``upstream`` extra (pyproject.toml), from its metadata."""
    return {r.split(";")[0].strip().lower() for r in importlib.metadata.requires("vem-plugins")
            or () if re.search(r"""extra\s*==\s*["']upstream["']""", r)}


def _requirements(adapter) -> Outcome:
    if not adapter.requirements:
        return Outcome("requirements", True, "none declared")
    problems, fine = [], []
    for requirement, modules in requirement_modules(adapter.requirements).items():
        if modules is None:
            problems.append(f"{requirement}: not installed (pip install '{requirement}')")
            continue
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - reported, whatever it is
                problems.append(f"{requirement}: import {module} fails ({type(exc).__name__}: "
                                f"{exc})")
                break
        else:
            fine.append(f"{requirement} ({', '.join(modules) or 'no modules'})")
    if problems:
        return Outcome("requirements", False, "\n".join(problems))
    return Outcome("requirements", True, "import: " + ", ".join(fine))


def _smoke(adapter, checkout, work, vem, timeout) -> Outcome:
    name = "smoke --vem" if vem else "smoke without --vem"
    try:
        run = smoke.run(adapter, checkout, work / "smoke", vem=vem, timeout=timeout)
        run.assert_ok()
        if vem:
            counts = run.assert_mi_logged()
            where, step = run.assert_checkpoint_roundtrip()
            found = ", ".join(f"{k} x{n}" for k, n in counts.items())
            detail = f"{found} logged; the estimator checkpoint {where} (step {step}) restores " \
                     "exactly"
        else:
            run.assert_no_mi()
            detail = "no MI terms logged, no estimator checkpoint"
    except smoke.SmokeFailure as exc:
        return Outcome(name, False, str(exc).split(": ", 1)[1])
    except OSError as exc:  # the command itself cannot start
        return Outcome(name, False, f"cannot run the recipe's command: {exc}")
    return Outcome(name, True, f"{detail} ({run.seconds:.0f} s)")
