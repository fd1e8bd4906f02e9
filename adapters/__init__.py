"""Built-in adapters, one module per upstream repository (installed as ``vem_plugins.adapters``).

Each module declares its :class:`vem_plugins.authoring.adapter.Adapter` through the ``register_adapters``
hook and holds the runtime code that its patches call into.
"""
