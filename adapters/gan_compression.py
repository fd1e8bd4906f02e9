"""Adapter for https://github.com/mit-han-lab/gan-compression (GAN Compression, once-for-all distillation)."""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter

ADAPTER = Adapter(
    name="gan-compression",
    url="https://github.com/mit-han-lab/gan-compression",
    commit="111093fc62d459226f052cad5b950c80a3683197",
    entry_points=("distill.py", "train_supernet.py"),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
