"""Adapter for https://github.com/lychenyoko/content-aware-gan-compression (content-aware StyleGAN2 compression)."""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter

ADAPTER = Adapter(
    name="cagc",
    url="https://github.com/lychenyoko/content-aware-gan-compression",
    commit="64fd76b88a66e4699bad05515c8167c1289cbb85",
    entry_points=("train.py",),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
