"""What adapters are written with: the declaration (:mod:`.adapter`), the compatibility toolkit
(:mod:`.compat`), and the smoke runs and pytest fixtures that test an adapter (:mod:`.smoke`,
:mod:`.testing`). Patched code itself calls :class:`vem_plugins.method.runtime.Runtime`."""
