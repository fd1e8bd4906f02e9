"""``vem-plugins new-adapter``: the skeleton of a third-party adapter package.

The package holds what docs/api.md asks an adapter for: a ``pyproject.toml``
registering the adapter module in the ``vem_plugins`` entry-point group (so ``pip install -e``
makes ``vem-plugins list`` show it), the module with the :class:`~vem_plugins.authoring.adapter.Adapter`
declaration and its ``register_adapters`` hook, a ``glue`` module for the calls the patches
make, an empty patch series (``patches/``, filled by ``vem-plugins refresh``) and a smoke test
using :mod:`vem_plugins.authoring.testing`.
"""
from __future__ import annotations

import os
import re
import string
from pathlib import Path

from vem_plugins import __version__
from vem_plugins.errors import UsageError

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = $toml_dist
version = "0.1.0"
description = $toml_description
requires-python = ">=3.10"
dependencies = [$toml_requirement]

[project.optional-dependencies]
test = ["pytest>=7"]

# how vem-plugins finds the adapter: `pip install -e .` and `vem-plugins list` shows "$name"
[project.entry-points.vem_plugins]
$toml_name = $toml_module

[tool.setuptools]
packages = [$toml_pkg]

[tool.setuptools.package-data]
$toml_pkg = ["patches/*.patch", "patches/file_hashes.json", "files/**/*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
markers = ["upstream: needs the upstream repository (skipped with the reason when unreachable)"]
'''

_ADAPTER = '''\
"""vem-plugins adapter $name: upstream's repository ``ADAPTER.url``, pinned at $short.

Use::

    pip install -e .    # in this package's folder: registers the adapter
    vem-plugins install $name    # the pin, patched, in third_party/$name
    cd third_party/$name && python <upstream's training script> <its flags> --vem

Tell users here what gains ``--vem``, what t is (the paired target or the teacher's output),
where the estimator checkpoint goes and what is needed offline. Writing the patches: see
vem-plugins' docs/api.md.
"""
from pathlib import Path

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, patch_series  # noqa: F401 - Smoke: below

HERE = Path(__file__).parent

ADAPTER = Adapter(
    name=$py_name,
    url=$py_url,
    commit=$py_commit,
    # the patch series of patches/: its *.patch files in name order (01-compat.patch,
    # 02-vem.patch, ...) and file_hashes.json, the sha256 at the pin of every upstream file a
    # patch touches; `vem-plugins refresh $name` writes both from your edits of the checkout
    **patch_series(HERE / "patches"),
    # files of ours that upstream loads by name: path in the checkout -> source file, e.g.
    # {"models/vem_model.py": HERE / "files" / "models" / "vem_model.py"}
    added_files={},
    # pip names of what upstream imports on today's stack (vem-plugins check imports them)
    requirements=(),
    # upstream scripts that gain --vem
    entry_points=(),
    # large upstream files that may be left out (install --skip-assets): path -> what it disables
    assets={},
    # a few iterations of upstream's own training on tiny generated data, on CPU, with --vem and
    # tiny --ebm_* flags; {python}, {data} and {out} are filled in; `log` names the loss log.
    # Example:
    # smoke=Smoke(dataset="aligned", size=64, count=4, log="{out}/log.txt",
    #             command=("{python}", "train.py", "--dataroot", "{data}", "--gpu_ids", "-1",
    #                      "--checkpoints_dir", "{out}", "--vem", "--ebm_width", "8",
    #                      "--ebm_blocks", "2")),
    smoke=None,
    version="0.1.0",
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
'''

_GLUE = '''\
"""What the patches call: every line of logic lives here, never in upstream's files.

A pix2pix-lineage training loop needs about five inserted lines (vem-plugins' docs/api.md)::

    from $pkg import glue                                         # top of the model file
    glue.add_options(parser)                                      # where upstream adds flags
    self.vem = glue.attach(self)                                  # end of the model's __init__
    self.loss_G = glue.add_mi_term(self, self.loss_G, student=self.fake_B, real=self.real_B)
    self.vem.save(os.path.join(save_dir, f"{epoch}_vem.pth"))     # beside upstream's checkpoint

Everything is a no-op without ``--vem``: upstream behaves exactly as before.
"""
from vem_plugins.method import options
from vem_plugins.method.runtime import Runtime


def add_options(parser):
    """vem-plugins' flags (--vem, --mi, --lambda_mi, --ebm_*, --restore_vem_path) on upstream's
    parser."""
    return options.add_options(parser)


def attach(model):
    """The runtime for ``model`` (upstream's options are ``model.opt``), restored from
    ``--restore_vem_path`` when given. It is not a network of the model: upstream's profile,
    printouts and checkpoints stay the same."""
    return Runtime(model.opt, getattr(model, "device", None))


def add_mi_term(model, loss, student, teacher=None, real=None):
    """``loss`` plus the MI term after the estimator's own step (the EBM step); ``loss`` itself
    without --vem. Call it right before the student's ``backward()``. The values join upstream's
    loss log as ``G_mi``, ``G_energy_gap``, ``G_ebm_loss``, ``G_mi_skipped``."""
    return model.vem.add_term(loss, student=student, teacher=teacher, real=real, log_to=model,
                              prefix="G_")
'''

_TEST = '''\
"""The $name adapter's smoke test: upstream's own training, a few iterations, tiny data, CPU.

Run with ``python -m pytest``; it skips, with the reason, when the upstream
(``ADAPTER.url``) is unreachable.
"""
from pathlib import Path

import pytest

from $pkg.adapter import ADAPTER
from vem_plugins.authoring.testing import offline_env, pythonpath
from vem_plugins.authoring.testing import vem_checkout, vem_dataset, vem_smoke  # noqa: F401 - fixtures

# offline (downloads fail at once), and the package importable by patched upstream code even
# when it is not pip-installed
ENV = {**offline_env(), **pythonpath(Path(__file__).parents[1])}


@pytest.mark.upstream
def test_with_vem_the_mi_terms_are_logged_and_the_estimator_restores(vem_smoke):
    run = vem_smoke(ADAPTER, env=ENV)
    run.assert_ok()
    run.assert_mi_logged()
    run.assert_checkpoint_roundtrip()


@pytest.mark.upstream
def test_without_vem_upstream_runs_without_mi_terms(vem_smoke):
    run = vem_smoke(ADAPTER, vem=False, env=ENV)
    run.assert_ok()
    run.assert_no_mi()
'''

_CONFTEST = '''\
"""Makes ``$pkg`` importable when the tests run from a source tree that is not installed."""
'''

_README = '''\
# vem-$name

A vem-plugins adapter: VEM distillation (`--vem`) for $url at commit `$short`, without
forking it.

```bash
pip install -e .
vem-plugins install $name    # clones the pin into third_party/$name and patches it
vem-plugins check $name      # patches apply, requirements import, the smoke recipe runs
python -m pytest    # the smoke test
```
'''

FILES = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "conftest.py": _CONFTEST,
    "$pkg/__init__.py": '"""The vem-plugins adapter $name (its declaration: adapter.py)."""\n',
    "$pkg/adapter.py": _ADAPTER,
    "$pkg/glue.py": _GLUE,
    "$pkg/patches/file_hashes.json": "{}\n",
    "tests/test_$pkg.py": _TEST,
}


_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
# scheme://host/path (file:// may leave the host out) or scp-like user@host:path
_GIT_URL = re.compile(r"(?:(?:https?|ssh|git)://[^/\s]+|file://[^/\s]*)/\S*"
                      r"|[\w.-]+@[\w.-]+:\S+")


def package_name(name: str) -> str:
    """The import package of adapter ``name``: ``vem_`` + name with dashes as underscores
    (for a name :data:`_NAME` accepts, an identifier and never a keyword)."""
    return "vem_" + name.replace("-", "_")


def toml_string(s: str) -> str:
    """``s`` as a TOML basic string: quote, backslash and control characters escaped."""
    return '"' + re.sub(r'["\\\x00-\x1f\x7f]', lambda m: f"\\u{ord(m[0]):04x}", s) + '"'


def new_adapter(name: str, url: str, commit: str, dest: Path) -> list[Path]:
    """Write the package skeleton for adapter ``name`` into ``dest``; returns the files.

    Values reach generated code only as Python string literals (``repr``) and TOML strings
    (:func:`toml_string`); docstrings and comments show only the name, the package and the short
    commit, which the checks below confine to letters, digits, dashes and underscores."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"adapter name {name!r}: use lower-case letters and digits, joined by "
                         "single dashes or underscores, starting with a letter "
                         "(like gan-compression)")
    if not re.fullmatch(r"[0-9a-fA-F]{40}", commit):
        raise UsageError(f"--commit {commit!r}: give the full 40-character hex commit SHA to pin "
                         "(git rev-parse HEAD in a clone at the commit you tested)")
    url = url.strip()
    if not url:
        raise UsageError("--url: give the upstream repository's git URL")
    if not url.isprintable():
        raise UsageError(f"--url {url!r}: control characters, line breaks and other "
                         "non-printable characters are not allowed")
    if not (_GIT_URL.fullmatch(url) or os.path.exists(url)):
        raise UsageError(f"--url {url!r}: give a git URL (https://, http://, ssh:// or "
                         "git://HOST/PATH, file:///PATH, user@HOST:PATH) or an existing path")
    from vem_plugins.plugins import adapters
    if name in adapters():
        raise UsageError(f"an adapter named {name!r} is already registered "
                         "(vem-plugins list); choose another name")
    pkg, commit = package_name(name), commit.lower()
    raw = {"name": name, "pkg": pkg, "url": url, "commit": commit, "short": commit[:7],
           "dist": f"vem-{name}", "module": f"{pkg}.adapter",
           "requirement": f"vem-plugins>={__version__}",
           "description": f"vem-plugins adapter: VEM distillation for {url}"}
    values = {**raw, **{f"py_{k}": repr(v) for k, v in raw.items()},
              **{f"toml_{k}": toml_string(v) for k, v in raw.items()}}
    dest = Path(dest).absolute()
    try:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise UsageError(f"{str(dest)!r} exists and is not an empty folder; "
                             "choose another --dir")
        written = []
        for template, text in FILES.items():
            path = dest / string.Template(template).substitute(values)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(string.Template(text).substitute(values), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise UsageError(f"--dir {str(dest)!r}: cannot write the package there "
                         f"({exc.strerror or exc}); choose another --dir") from None
    return written
