"""Adapter for https://github.com/SJLeo/GCC (generator-discriminator cooperative compression)."""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter

ADAPTER = Adapter(
    name="gcc",
    url="https://github.com/SJLeo/GCC",
    commit="a5b3cf681770146b0141b1846ae94b8bcfe39b68",
    entry_points=("train.py",),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
