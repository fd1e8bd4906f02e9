"""Adapter for https://github.com/snap-research/CAT (compression-aware training, inception students)."""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter

ADAPTER = Adapter(
    name="cat",
    url="https://github.com/snap-research/CAT",
    commit="1dbd048cc91e3cc2c59d4e4f0434e79ac260e7ed",
    entry_points=("distill.py",),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
