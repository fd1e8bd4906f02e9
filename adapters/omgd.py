"""Adapter for https://github.com/bytedance/OMGD (online multi-granularity distillation)."""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter

ADAPTER = Adapter(
    name="omgd",
    url="https://github.com/bytedance/OMGD",
    commit="f2492a449498e6b88289666b02ddc47b2296465c",
    entry_points=("distill.py",),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
