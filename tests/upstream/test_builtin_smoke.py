"""Every built-in adapter's smoke recipe passes the harness adapter authors use
(:mod:`vem_plugins.authoring.testing`): with ``--vem`` the estimator's terms reach upstream's log and its
saved state restores exactly; without vem-plugins' flags upstream runs with neither.

The runs are offline, with a ``TORCH_HOME`` that holds only the pretrained files an upstream
cannot train without (:data:`STAND_INS`), as random same-architecture stand-ins: a recipe that
needed any other download or pretrained file would fail here, as it would for a user without it.
"""
from __future__ import annotations

import importlib.metadata
import shutil

import pytest

from vem_plugins.plugins import ENTRY_POINT_GROUP, adapters, is_builtin
from vem_plugins.authoring.testing import offline_env, stand_in_weights
from vem_plugins.authoring.testing import vem_checkout, vem_dataset, vem_smoke  # noqa: F401 - fixtures

#: The built-in adapters' names, from vem-plugins' own entry points.
BUILTIN = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
                 if is_builtin(ep) and ".adapters." in ep.value)

#: Pretrained files an adapter's training itself loads (not evaluation, which the recipes
#: skip): file in ``$TORCH_HOME/hub/checkpoints`` -> torchvision builder of its architecture.
STAND_INS = {"omgd": {"vgg16-397923af.pth": "vgg16"}}  # OMGD's VGG feature loss


@pytest.fixture
def env(name, tmp_path):
    """Downloads fail at once; ``TORCH_HOME`` holds the adapter's :data:`STAND_INS` only (and
    is deleted afterwards: VGG16 is half a gigabyte)."""
    import torchvision

    home = stand_in_weights(tmp_path / "torch_home", **{
        file: getattr(torchvision.models, builder)()
        for file, builder in STAND_INS.get(name, {}).items()})
    yield {**offline_env(), "TORCH_HOME": str(home)}
    shutil.rmtree(home)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.needs(n)) for n in BUILTIN])
def test_builtin_smoke_recipe(name, vem_smoke, env):
    adapter = adapters()[name]  # registered through the plugin hook, as users get it
    run = vem_smoke(adapter, env=env)
    run.assert_ok()
    run.assert_mi_logged()
    run.assert_checkpoint_roundtrip()
    plain = vem_smoke(adapter, vem=False, env=env)
    plain.assert_ok()
    plain.assert_no_mi()

