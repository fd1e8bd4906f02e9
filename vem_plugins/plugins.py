"""The plugin manager: built-in plugins plus those found through the ``vem_plugins`` entry points.

Built-ins register through the same hooks as third-party plugins (the ``llm`` model): the
estimators, the command-line options and the five upstream adapters are plugin modules listed in
:data:`BUILTINS`. Set ``VEM_PLUGINS_DISABLE_AUTOLOAD=1`` to load the built-ins only.
"""
from __future__ import annotations

import functools
import importlib
import os

import pluggy

from vem_plugins import hookspecs

BUILTINS = (
    "vem_plugins.options",
    "vem_plugins.estimators",
    "vem_plugins.adapters.omgd",
    "vem_plugins.adapters.gan_compression",
    "vem_plugins.adapters.cat",
    "vem_plugins.adapters.gcc",
    "vem_plugins.adapters.cagc",
)
ENTRY_POINT_GROUP = "vem_plugins"


def new_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with every built-in and (unless disabled) every entry-point plugin."""
    pm = pluggy.PluginManager("vem_plugins")
    pm.add_hookspecs(hookspecs)
    for name in BUILTINS:
        pm.register(importlib.import_module(name), name=name)
    if not os.environ.get("VEM_PLUGINS_DISABLE_AUTOLOAD"):
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager used for registration hooks (estimators, adapters, options)."""
    return new_plugin_manager()


def _collect(hook_name: str, key) -> dict:
    items = {}

    def register(*args):
        name, value = key(*args)
        if name in items:
            raise ValueError(f"two plugins register the {hook_name[9:-1]} {name!r}")
        items[name] = value

    getattr(plugin_manager().hook, hook_name)(register=register)
    return items


def estimators() -> dict:
    """Estimator factories by name (``--mi NAME``)."""
    return _collect("register_estimators", lambda name, factory: (name, factory))


def adapters() -> dict:
    """Registered adapters by name."""
    return _collect("register_adapters", lambda adapter: (adapter.name, adapter))
