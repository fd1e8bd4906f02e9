"""The example adapters under ``examples/`` (third-party packages made with ``vem-plugins
new-adapter``) pass their own test suites, run the way their authors run them: ``python -m pytest``
in the package's folder, the package importable from its source tree."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml"))


def adapter_of(example: Path):
    """The ``ADAPTER`` an example package declares (its ``<package>/adapter.py``), read without
    putting the package on this session's path."""
    (path,) = example.glob("*/adapter.py")
    spec = importlib.util.spec_from_file_location(f"_example_{example.name}_adapter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ADAPTER


@pytest.mark.parametrize("example", [pytest.param(p, marks=pytest.mark.needs(adapter_of(p)),
                                                  id=p.name) for p in EXAMPLES])
def test_example_suite_passes(example, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "t")], cwd=example, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    skipped = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", proc.stdout, re.M)
    if skipped:  # e.g. the upstream is unreachable: what ran passed, the rest is reported
        pytest.skip(f"{example.name}: {'; '.join(sorted(set(skipped)))}")
