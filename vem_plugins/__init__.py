"""vem-plugins: VEM (variational energy-based mutual information) for GAN-compression codebases.

The tree shows the architecture:

* :mod:`vem_plugins.hookspecs` (the extension API) and :mod:`vem_plugins.plugins` (the plugin
  manager: built-ins and third-party plugins alike come from the ``vem_plugins`` entry points);
* :mod:`vem_plugins.method`: the paper's method; patched upstream code calls its
  :class:`~vem_plugins.method.runtime.Runtime`;
* :mod:`vem_plugins.install`: fetching, verifying, patching and refreshing upstream checkouts;
* :mod:`vem_plugins.authoring`: what adapters are written and tested with;
* :mod:`vem_plugins.commands`: the command line and the commands behind it;
* :mod:`vem_plugins.errors`: the one error family the command line reports.

Modules of vem-plugins 0.2 that moved keep working under their old names (:data:`MOVED`) with a
``FutureWarning`` naming the new one, once per process.
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

import pluggy

__version__ = "0.3.0"

hookimpl = pluggy.HookimplMarker("vem_plugins")

#: Old module name -> its home since vem-plugins 0.3.
MOVED = {
    "vem_plugins.adapter": "vem_plugins.authoring.adapter",
    "vem_plugins.testing": "vem_plugins.authoring.testing",
    "vem_plugins.smoke": "vem_plugins.authoring.smoke",
    "vem_plugins.runtime": "vem_plugins.method.runtime",
    "vem_plugins.options": "vem_plugins.method.options",
    "vem_plugins.estimators": "vem_plugins.method.estimators",
    "vem_plugins.estimators.base": "vem_plugins.method.estimators.base",
    "vem_plugins.estimators.vem": "vem_plugins.method.estimators.vem",
    "vem_plugins.estimators.vid": "vem_plugins.method.estimators.vid",
    "vem_plugins.estimators.crd": "vem_plugins.method.estimators.crd",
    "vem_plugins.energy": "vem_plugins.method.energy",
    "vem_plugins.langevin": "vem_plugins.method.langevin",
    "vem_plugins.record": "vem_plugins.commands.record",
    "vem_plugins.paired_metrics": "vem_plugins.commands.paired_metrics",
    "vem_plugins.toy_pairs": "vem_plugins.commands.toy_pairs",
    "vem_plugins.gitops": "vem_plugins.install.git",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module that replaced it, warning once."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is deprecated: import {MOVED[spec.name]} instead",
                      FutureWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """The module is the new one, already executed."""


sys.meta_path.insert(0, _MovedModules())  # before the path finder, which would load a copy
