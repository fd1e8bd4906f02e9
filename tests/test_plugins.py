"""Hook specifications, their documentation, and plugin discovery through entry points."""
import inspect
import os
import pathlib
import re
import subprocess
import sys
import textwrap

from vem_plugins import hookspecs
from vem_plugins.plugins import adapters, estimators

DOCS = pathlib.Path(__file__).parents[1] / "docs" / "api.md"


def specs():
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "vem_plugins_spec")}


def test_every_hookspec_is_documented_with_its_signature():
    section = DOCS.read_text().split("## Hooks", 1)[1]
    documented = dict(re.findall(r"^### `(\w+)(\(.*\))`$", section, re.M))
    actual = {name: str(inspect.signature(fn)) for name, fn in specs().items()}
    assert documented == actual


def test_every_hookspec_has_a_docstring_with_params_and_return():
    for name, fn in specs().items():
        doc = inspect.getdoc(fn) or ""
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, (name, param)
        assert ":return:" in doc, name


def test_builtins_are_plugins():
    assert {"vem", "vid", "crd"} <= set(estimators())
    assert {"omgd", "gan-compression", "cat", "gcc", "cagc"} <= set(adapters())


def test_third_party_estimator_loads_from_an_entry_point(tmp_path):
    (tmp_path / "toy_estimator.py").write_text(textwrap.dedent('''
        from vem_plugins import hookimpl
        from vem_plugins.method.estimators.vid import VID

        @hookimpl
        def register_estimators(register):
            register("toy", lambda opt, channels: VID(*channels, width=2))
    '''))
    dist = tmp_path / "toy_estimator-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-estimator\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vem_plugins]\ntoy = toy_estimator\n")
    code = ("from vem_plugins.plugins import estimators; from vem_plugins.method import options;"
            "print(sorted(estimators())); print(options.defaults().mi)")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "'toy'" in out
    env["VEM_PLUGINS_DISABLE_AUTOLOAD"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "'toy'" not in out and "'vem'" in out
