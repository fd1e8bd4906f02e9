"""vem-plugins: VEM (variational energy-based mutual information) for GAN-compression codebases.

Patched upstream code talks to :mod:`vem_plugins.runtime`; plugins implement the hooks in
:mod:`vem_plugins.hookspecs` with :data:`hookimpl`.
"""
import pluggy

__version__ = "0.2.0"

hookimpl = pluggy.HookimplMarker("vem_plugins")
