"""Mutual-information estimators: VEM (the method) and the VID and CRD baselines.

Each is a plain ``torch.nn.Module`` usable without pluggy. This package is the built-in plugin
that registers them by name; a factory imports its module only when called, so loading the
plugins (every ``vem-plugins`` command) does not import torch.
"""
import importlib

from vem_plugins import hookimpl


def _factory(name: str):
    def build(opt, channels):
        return importlib.import_module(f"vem_plugins.method.estimators.{name}").from_options(opt, channels)
    return build


@hookimpl
def register_estimators(register):
    for name in ("vem", "vid", "crd"):
        register(name, _factory(name))
