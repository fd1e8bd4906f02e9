"""Run an upstream script with every random generator seeded, for upstreams without a seed flag
(GCC, CAGC): ``python -m vem_plugins.reproduce.seeded SEED script.py ARGS...``.

It seeds Python's ``random``, NumPy and torch (all devices) and then runs the script as
``python script.py ARGS`` would (``__main__``, ``sys.argv``, the script's folder first on
``sys.path``), so each seed of ``vem-plugins reproduce`` starts from its own known state.
"""
from __future__ import annotations

import random
import runpy
import sys
from pathlib import Path


def seed_everything(seed: int) -> None:
    import numpy
    import torch
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator too


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].lstrip("-").isdigit():
        sys.exit("usage: python -m vem_plugins.reproduce.seeded SEED script.py [ARGS...]")
    seed_everything(int(argv[0]))
    script = argv[1]
    sys.argv = argv[1:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
