"""The plugin manager: every plugin comes from the ``vem_plugins`` entry-point group.

Built-ins are plugins found the same way as third-party ones (the ``llm`` model): the
estimators, the command-line options and the five upstream adapters are entry points that
vem-plugins' own ``pyproject.toml`` declares. Set ``VEM_PLUGINS_DISABLE_AUTOLOAD=1`` to load the
built-ins only.

A third-party plugin written for another version of vem-plugins must not break this one: one
that fails to import, implements a hook this version does not specify (unless marked
``@hookimpl(optionalhook=True)``) or implements a hook with arguments the spec lacks is skipped
with a :class:`PluginSkipped` warning naming the plugin and the hook. A built-in that fails is a
bug and raises.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import warnings

import pluggy

from vem_plugins import __version__, hookspecs
from vem_plugins.errors import VemPluginsError

ENTRY_POINT_GROUP = "vem_plugins"
#: The distribution whose entry points are the built-ins.
DISTRIBUTION = "vem-plugins"


class PluginSkipped(UserWarning):
    """A third-party plugin was left out (it would not work with this version)."""


def new_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with every built-in and (unless disabled) every entry-point plugin."""
    pm = pluggy.PluginManager("vem_plugins")
    pm.add_hookspecs(hookspecs)
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    builtins = [ep for ep in entry_points if is_builtin(ep)]
    if not builtins:
        raise VemPluginsError("vem-plugins' built-in plugins are missing from its installed "
                              "metadata; reinstall it: pip install -e <its source folder>")
    for ep in builtins:
        pm.register(ep.load(), name=ep.name)
    if not os.environ.get("VEM_PLUGINS_DISABLE_AUTOLOAD"):
        for ep in entry_points:
            if not pm.has_plugin(ep.name) and not pm.is_blocked(ep.name):
                _register_third_party(pm, ep)
    return pm


def is_builtin(ep) -> bool:
    """Whether entry point ``ep`` is one of vem-plugins' own."""
    return ep.dist is not None and re.sub(r"[-_.]+", "-", ep.dist.name).lower() == DISTRIBUTION


def _register_third_party(pm: pluggy.PluginManager, ep) -> None:
    """Register one entry point's plugin, or skip it with a warning saying why."""
    where = f"plugin {ep.name!r} ({ep.value}"
    where += f", from {ep.dist.name} {ep.dist.version})" if ep.dist else ")"

    def skip(why):
        warnings.warn(f"vem-plugins {__version__}: skipped {where}: {why}", PluginSkipped,
                      stacklevel=4)

    try:
        plugin = ep.load()
    except Exception as exc:  # a broken plugin must not break every command
        return skip(f"it failed to import ({type(exc).__name__}: {exc})")
    try:
        pm.register(plugin, name=ep.name)
    except pluggy.PluginValidationError as exc:  # e.g. a hook argument the spec lacks
        return skip(str(exc).replace("\n", "; "))
    unknown = [hc.name for hc in pm.get_hookcallers(plugin) or () if not hc.has_spec()
               and any(i.plugin is plugin and not i.optionalhook for i in hc.get_hookimpls())]
    if unknown:
        pm.unregister(plugin)
        skip(f"it implements hook(s) {', '.join(map(repr, unknown))}, which this version does "
             "not have (upgrade vem-plugins, or mark them @hookimpl(optionalhook=True))")


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
