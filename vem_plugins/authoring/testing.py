"""Test helpers for vem-plugins and for adapter authors; also a pytest plugin.

Use it from a test suite in either way::

    # conftest.py at the root of your tests (pytest only reads pytest_plugins there)
    pytest_plugins = ["vem_plugins.authoring.testing"]

    # or, in a test module: importing the fixtures makes them available to it
    from vem_plugins.authoring.testing import vem_checkout, vem_smoke  # noqa: F401

An adapter's smoke test then reads::

    @pytest.mark.upstream
    def test_smoke(vem_smoke):
        run = vem_smoke(ADAPTER)                    # install once, tiny data, the Smoke recipe
        run.assert_ok()
        run.assert_mi_logged()                      # the estimator's terms reached the log
        run.assert_checkpoint_roundtrip()           # the saved estimator restores exactly
        plain = vem_smoke(ADAPTER, vem=False)       # the same recipe without vem-plugins' flags
        plain.assert_ok()
        plain.assert_no_mi()

The fixtures are session-scoped factories that cache by their arguments, so every test of a
session shares one install and one run of each kind. Tests that need an upstream repository
probe it with ``git ls-remote`` (which honours git's ``url.<base>.insteadOf`` rewriting, so a
local mirror counts) and skip with the reason when it cannot be reached.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from pathlib import Path

import pytest

from vem_plugins.authoring.smoke import SmokeFailure, SmokeRun, make_dataset, run  # noqa: F401 - API

#: Proxies nothing listens on: downloads fail at once, as on a machine without network.
OFFLINE = "http://127.0.0.1:9"


@functools.cache
def unreachable(url: str) -> str | None:
    """Why ``url`` cannot be listed with ``git ls-remote`` (None when it can)."""
    try:
        proc = subprocess.run(["git", "ls-remote", "--heads", url], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git ls-remote {url} failed: {exc}"
    if proc.returncode:
        err = proc.stderr.strip().splitlines()
        return f"upstream {url} is unreachable ({err[-1] if err else proc.returncode}); fetch a " \
               f"mirror and set git's url.<mirror>.insteadOf {url}"
    return None


def require_upstream(url: str) -> None:
    """Skip the calling test, with the reason, when ``url`` is unreachable."""
    reason = unreachable(url)
    if reason:
        pytest.skip(reason)


def install_adapter(adapter, dest, source: str | None = None, pristine: bool = False,
                    patches: int | None = None) -> Path:
    """Install ``adapter`` (its pin, patches and added files) into ``dest`` the way
    ``vem-plugins install`` does; skip the calling test when the upstream is unreachable.

    :param source: clone from this local clone, mirror, bundle or URL instead of the adapter's URL.
    :param pristine: upstream's tree at the pin only (no patches, no added files), to compare
        against.
    :param patches: apply only the first ``patches`` patches of the series (e.g. 1: upstream
        with the compatibility patch alone, runnable on today's stack, to compare against).
    """
    from vem_plugins.install import checkout as installer

    require_upstream(source or adapter.url)
    if pristine:
        adapter = dataclasses.replace(adapter, patches=(), added_files={})
    elif patches is not None:
        adapter = dataclasses.replace(adapter, patches=adapter.patches[:patches])
    installer.install(adapter, Path(dest), source=source, progress=False)
    return Path(dest)


def offline_env() -> dict[str, str]:
    """Environment variables under which downloads fail at once (add them to a smoke ``env``)."""
    return {k: OFFLINE for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")} | \
        {"no_proxy": "", "NO_PROXY": ""}


def stand_in_weights(torch_home, **modules) -> Path:
    """Save random weights of the same architecture as pretrained files upstream loads from
    ``$TORCH_HOME/hub/checkpoints``, e.g. ``stand_in_weights(home, **{"vgg16-397923af.pth":
    torchvision.models.vgg16()})``; returns ``torch_home`` (put it in the smoke ``env``)."""
    import torch

    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for filename, module in modules.items():
        torch.save(module.state_dict(), folder / filename)
    return Path(torch_home)


def _key(adapter) -> tuple:
    """What a checkout of ``adapter`` depends on."""
    return (adapter.name, adapter.commit, tuple(str(p) for p in adapter.patches),
            tuple(sorted((k, str(v)) for k, v in adapter.added_files.items())))


# --- pytest plugin -----------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "upstream: needs the upstream repositories (skipped with "
                                       "the reason when unreachable)")


@pytest.fixture(scope="session")
def vem_checkout(tmp_path_factory):
    """``vem_checkout(adapter, source=None, pristine=False) -> Path``: the adapter installed
    (once per session) in a temporary directory; see :func:`install_adapter`."""
    made: dict[tuple, Path] = {}

    def get(adapter, source: str | None = None, pristine: bool = False) -> Path:
        key = (*_key(adapter), source, pristine)
        if key not in made:
            kind = "pristine" if pristine else "patched"
            root = tmp_path_factory.mktemp(f"{adapter.name}-{kind}")
            made[key] = install_adapter(adapter, root / adapter.name, source, pristine)
        return made[key]

    return get


@pytest.fixture(scope="session")
def vem_dataset(tmp_path_factory):
    """``vem_dataset(kind, size=64, count=8, seed=0) -> Path``: a tiny deterministic dataset
    (``aligned``, ``unaligned`` or ``unconditional``; see :func:`make_dataset`)."""
    made: dict[tuple, Path] = {}

    def get(kind: str, size: int = 64, count: int = 8, seed: int = 0) -> Path:
        key = (kind, size, count, seed)
        if key not in made:
            made[key] = make_dataset(tmp_path_factory.mktemp(f"{kind}-data"), *key)
        return made[key]

    return get


@pytest.fixture(scope="session")
def vem_smoke(vem_checkout, vem_dataset, tmp_path_factory):
    """``vem_smoke(adapter, vem=True, source=None, env=None, timeout=600, pristine=False)
    -> SmokeRun``: the adapter's smoke recipe run once per session per argument set, with
    ``--vem`` (as written) or without vem-plugins' flags (``vem=False``; with ``pristine``, in
    upstream's unpatched tree). ``env`` adds environment variables (see :func:`offline_env`,
    :func:`stand_in_weights`). Assert on the result with its ``assert_*`` methods."""
    runs: dict[tuple, SmokeRun] = {}

    def get(adapter, vem: bool = True, source: str | None = None, env: dict | None = None,
            timeout: float = 600, pristine: bool = False) -> SmokeRun:
        if pristine and vem:
            raise ValueError("pristine upstream has no --vem: pass vem=False")
        if adapter.smoke is None:
            pytest.fail(f"adapter {adapter.name} declares no smoke recipe (Adapter.smoke)")
        key = (*_key(adapter), adapter.smoke, vem, source, tuple(sorted((env or {}).items())),
               pristine)
        if key not in runs:
            checkout = vem_checkout(adapter, source, pristine)
            smoke = adapter.smoke
            data = vem_dataset(smoke.dataset, smoke.size, smoke.count)
            work = tmp_path_factory.mktemp(f"{adapter.name}-smoke")
            runs[key] = run(adapter, checkout, work, vem=vem, env=env, timeout=timeout, data=data)
        return runs[key]

    return get


def pythonpath(*paths) -> dict[str, str]:
    """``{"PYTHONPATH": ...}`` for a smoke ``env``: lets patched upstream code import an adapter
    package that is importable in the tests but not installed (e.g. run from its source tree)."""
    return {"PYTHONPATH": os.pathsep.join(str(Path(p).absolute()) for p in paths)}
