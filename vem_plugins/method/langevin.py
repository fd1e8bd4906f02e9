"""Short-run Langevin dynamics started at the (detached) student output.

t~0 = sg(s);  t~k = t~k-1 - step * dE/dt(t~k-1, sg(s)) + noise * eps_k,  k = 1..K;
then one clamp to the image range. Gradients are taken with respect to the sample only: the
energy's parameters must be frozen by the caller (see :func:`frozen`), so no parameter-gradient
work is done and no graph is kept across steps. The chain runs in fp32 (or the input's wider
dtype) with autocast off, because per-pixel gradients of ~1e-6 underflow in fp16.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn


def widen(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32; other dtypes unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Within the block, ``module``'s parameters need no gradient (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def sample(energy: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int,
           step_size: float, noise: float, value_range: tuple[float, float] | None = (-1.0, 1.0),
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw negatives t~ by Langevin dynamics from ``start`` (one chain per sample, batched).

    :param energy: ``energy(t) -> (B,)``, the energy already conditioned on the student output
        (e.g. :meth:`vem_plugins.method.energy.EnergyNet.conditioned`), its parameters frozen.
    :param start: where the chains start: the student images (B, C, H, W); detached here.
    :param steps: K, the number of Langevin steps.
    :param step_size: the step on -dE/dt.
    :param noise: standard deviation of the Gaussian noise added at each step.
    :param value_range: (lo, hi) clamp applied once at the end, or None.
    :param generator: optional RNG for the noise.
    :return: detached samples, same shape as ``start``, in ``start``'s dtype.
    """
    x = widen(start.detach()).clone()
    with torch.autocast(device_type=start.device.type, enabled=False):
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
            with torch.no_grad():
                x = x - step_size * grad
                if noise:
                    x = x + noise * torch.randn(x.shape, generator=generator, device=x.device,
                                                dtype=x.dtype)
    if value_range is not None:
        x = x.clamp(*value_range)
    return x.detach().to(start.dtype)
