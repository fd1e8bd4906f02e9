"""The upstream tier: every test in this folder runs an upstream's own code (cloned at its pin,
patched by vem-plugins) on tiny data on CPU, and is marked ``upstream`` here, so
``python -m pytest -m "not upstream"`` leaves them all out.

A test names what it needs with ``@pytest.mark.needs(adapter, ..., requirements=True)`` (an
``Adapter`` or the name of a registered one; for a whole module, ``pytestmark``) and is skipped,
with the reason, never failed, when one of them is missing here:

- a package the adapter's upstream code imports (its ``requirements``: for the built-ins, the
  ``[upstream]`` extra), unless ``requirements=False`` (install alone needs none);
- the upstream repository: probed with ``git ls-remote``, which honours git's
  ``url.<base>.insteadOf``, so a local mirror counts.
"""
from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

from vem_plugins import plugins
from vem_plugins.authoring.adapter import requirement_modules
from vem_plugins.authoring.testing import require_upstream
from vem_plugins.commands.check import requirements_problem

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks
def pytest_collection_modifyitems(items):
    for item in items:  # the hook sees every item of the session: mark only this folder's
        if Path(item.path).is_relative_to(HERE):
            item.add_marker(pytest.mark.upstream)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for marker in item.iter_markers("needs"):
        for adapter in marker.args:
            if isinstance(adapter, str):
                adapter = plugins.adapters()[adapter]
            if marker.kwargs.get("requirements", True):
                reason = missing_requirements(adapter)
                if reason:
                    pytest.skip(reason)
            require_upstream(adapter.url)


def missing_requirements(adapter) -> str | None:
    """Why ``adapter``'s upstream code cannot run here, in one line with the fix, or None: a
    requirement not installed (the message ``vem-plugins try`` refuses with), or installed but
    failing to import (upstream would die of it too)."""
    problem = requirements_problem(adapter)
    if problem:
        return problem
    for requirement, modules in requirement_modules(adapter.requirements).items():
        for module in modules:
            try:
                with warnings.catch_warnings():  # e.g. thop's own DeprecationWarnings
                    warnings.simplefilter("ignore")
                    importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - whatever it is, upstream would die of it
                return (f"{adapter.name} needs {module} ({requirement}), installed but not "
                        f"importable: {type(exc).__name__}: {exc}")
    return None
