"""The energy network E(t, s) of the paper: one scalar per (teacher-or-real image, student image).

The function class is the published one (IGEBM-style, as in the first author's code), exactly:

* input: t and s each average-pooled 3x3, stride 2, padding 1 (zeros counted), concatenated;
* stem: a spectrally normalised (SN) 3x3 conv 6 -> nc/2 at half resolution, LeakyReLU(0.01);
* blocks 0..n-1 (widths nc/2 -> nc, nc -> 2nc, then 2nc -> 2nc):
  ``LeakyReLU(avgpool2(shortcut(x) + conv2(LeakyReLU(conv1(x)))))`` with SN 3x3 convs; conv2's
  normalisation only shrinks (W / max(sigma, 1)) and it starts at N(0, 1e-10), so every residual
  branch starts at ~0; the shortcut is an SN 3x3 conv where the width changes, else identity;
* head: ReLU, spatial mean, SN linear 2nc -> 1.

Spectral norm: sigma comes from one power iteration per forward in training mode (none in eval
mode, where the stored singular vectors are used) and is a constant in the backward pass.
At nc = 16 / 64 with 7 blocks the net has 107,473 / 1,708,609 parameters.

:meth:`EnergyNet.textbook` computes this function literally. :meth:`EnergyNet.conditioned`, which
the estimator uses, computes the same function faster through exact rewrites only (each is
checked against :meth:`EnergyNet.textbook` in ``tests/test_energy.py``, energies and input
gradients, in float64):

* the stem is linear in the concatenation [t, s]: its ONE jointly normalised weight is split into
  a t half and an s half, and s's share is computed once per batch, not at every Langevin step;
* the normalised weights are computed once per call of :meth:`EnergyNet.conditioned`, so the
  Langevin chain runs no power iteration (and, with the parameters frozen, no parameter-gradient
  work). The weights do not change in the chain, so this is the textbook function with sigma
  held for the iteration; against a textbook chain that also iterates the power method at every
  step it differs only while the singular vectors are still converging (at initialisation), and
  by ~1e-7 of the chain's displacement once they have converged (tested);
* a 2x2 average pooling that FOLLOWS a 3x3 convolution is the same linear map as one 4x4 stride-2
  convolution whose kernel is the 3x3 kernel box-filtered (borders included, since zero padding
  commutes with it). Each block's conv2 and shortcut conv are run that way, computing only the
  outputs the pooling keeps (4/9 of the multiply-adds). The reverse move, pooling BEFORE a
  convolution, is not exact and is not made;
* images are stored channels-last (the same values in another memory order), for which the CPU
  and GPU convolution kernels are faster.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vem_plugins.errors import OptionError
from vem_plugins.method import options

LEAK = 0.01


class SpectralNorm(nn.Module):
    """A weight (conv or linear) divided by its largest singular value sigma.

    ``u`` and ``v`` are the power-iteration estimates of the singular vectors; sigma = u' W v is
    detached, so no gradient flows through it. ``shrink_only`` divides by max(sigma, 1) instead.
    They start random, as in IGEBM: run one forward in training mode (a power iteration) before
    evaluating in eval mode, as the VEM estimator does at the start of every iteration.
    """

    def __init__(self, shape: tuple[int, ...], init_std: float = 1.0, shrink_only: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(shape) * init_std)
        self.bias = nn.Parameter(torch.zeros(shape[0]))
        self.register_buffer("u", F.normalize(torch.randn(shape[0]), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(math.prod(shape[1:])), dim=0))
        self.shrink_only = shrink_only

    def power_iteration(self) -> None:
        """One step of the power method, in place on ``u`` and ``v``."""
        with torch.no_grad():
            w = self.weight.flatten(1)
            self.v.copy_(F.normalize(w.t() @ self.u, dim=0))
            self.u.copy_(F.normalize(w @ self.v, dim=0))

    def normalised(self) -> torch.Tensor:
        """W / sigma (or W / max(sigma, 1)), differentiable in W with sigma held constant."""
        sigma = (self.u @ self.weight.flatten(1) @ self.v).detach()
        if self.shrink_only:
            sigma = sigma.clamp(min=1.0)
        return self.weight / sigma


def _conv(cin: int, cout: int, **kw) -> SpectralNorm:
    return SpectralNorm((cout, cin, 3, 3), **kw)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK)


def _pool_input(image: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(image, 3, stride=2, padding=1)  # zeros counted in the mean


def _channels_last(image: torch.Tensor) -> torch.Tensor:
    """The same values stored pixel-major, which oneDNN's and cuDNN's convolutions run faster."""
    return image.contiguous(memory_format=torch.channels_last)


def _pooled_kernel(w3: torch.Tensor) -> torch.Tensor:
    """The 4x4 stride-2 kernel equal to a 3x3 (padding 1) convolution followed by 2x2 pooling."""
    box = torch.full((1, 1, 2, 2), 0.25, dtype=w3.dtype, device=w3.device)
    cout, cin = w3.shape[:2]
    return F.conv2d(w3.reshape(cout * cin, 1, 3, 3), box, padding=1).reshape(cout, cin, 4, 4)


class Block(nn.Module):
    """One residual block; :meth:`EnergyNet.textbook` and :meth:`EnergyNet.conditioned` run it."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv(cin, cin)
        self.conv2 = _conv(cin, cout, init_std=1e-10, shrink_only=True)
        self.shortcut = _conv(cin, cout) if cin != cout else None


class EnergyNet(nn.Module):
    """E(t, s) for images ``t`` (``t_channels``) and ``s`` (``s_channels``) of the same size.

    :param width: nc (``--ebm_width``): 16 for CycleGAN, 64 for pix2pix and StyleGAN2 in the paper.
    :param blocks: n; images need at least 2 ** (n + 1) pixels a side (:func:`max_blocks`).
    """

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, blocks: int = 7):
        super().__init__()
        options.require("--ebm_width", width)
        options.require("--ebm_blocks", blocks)
        self.t_channels = t_channels
        widths = [width // 2, width] + [2 * width] * max(blocks - 1, 0)
        self.stem = _conv(t_channels + s_channels, width // 2)
        self.blocks = nn.ModuleList(Block(widths[i], widths[i + 1]) for i in range(blocks))
        self.head = SpectralNorm((1, widths[blocks]))

    def _check_size(self, image: torch.Tensor) -> None:
        if max_blocks(*image.shape[-2:]) < len(self.blocks):
            raise OptionError(f"--ebm_blocks: {len(self.blocks)} blocks need images of at least "
                             f"{min_size(len(self.blocks))} px a side, got "
                             f"{tuple(image.shape[-2:])}")

    def _layers(self) -> list[SpectralNorm]:
        return [m for m in self.modules() if isinstance(m, SpectralNorm)]

    # -- the plain computation ------------------------------------------------------------------
    def textbook(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """E(t, s) computed literally: concatenate, one forward through the plain layers, with a
        power iteration for every layer first when training. The reference for the fast path."""
        self._check_size(t)
        if self.training:
            for layer in self._layers():
                layer.power_iteration()

        def conv(layer, x):
            return F.conv2d(x, layer.normalised(), layer.bias, padding=1)

        h = _lrelu(conv(self.stem, torch.cat([_pool_input(t), _pool_input(s)], 1)))
        for b in self.blocks:
            skip = h if b.shortcut is None else conv(b.shortcut, h)
            h = _lrelu(F.avg_pool2d(skip + conv(b.conv2, _lrelu(conv(b.conv1, h))), 2))
        return F.linear(F.relu(h).mean((2, 3)), self.head.normalised(), self.head.bias).squeeze(1)

    # -- the fast computation -------------------------------------------------------------------
    def conditioned(self, s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """E(., s) as a function of t (equal to :meth:`textbook`), with the normalised weights and
        s's share of the stem computed once here; one power iteration here when training.

        The returned ``energy(t)`` takes a batch of ``k * len(s)`` images: ``t[i]`` is paired
        with ``s[i % len(s)]`` (e.g. ``torch.cat([t, t_negative])``).
        """
        self._check_size(s)
        if self.training:
            for layer in self._layers():
                layer.power_iteration()
        stem = self.stem.normalised()
        stem_t, stem_s = stem[:, :self.t_channels], stem[:, self.t_channels:]
        cond = F.conv2d(_pool_input(_channels_last(s)), stem_s, self.stem.bias, padding=1)
        blocks = [(b.conv1.normalised(), b.conv1.bias, _pooled_kernel(b.conv2.normalised()),
                   b.conv2.bias, None if b.shortcut is None else _pooled_kernel(b.shortcut.normalised()),
                   None if b.shortcut is None else b.shortcut.bias) for b in self.blocks]
        head = self.head.normalised()

        def energy(t: torch.Tensor) -> torch.Tensor:
            repeats = t.shape[0] // cond.shape[0]
            h = F.conv2d(_pool_input(_channels_last(t)), stem_t, padding=1)
            h = _lrelu(h + (cond if repeats == 1 else cond.repeat(repeats, 1, 1, 1)))
            for w1, b1, w2, b2, wsc, bsc in blocks:
                branch = F.conv2d(_lrelu(F.conv2d(h, w1, b1, padding=1)), w2, b2, stride=2, padding=1)
                skip = F.avg_pool2d(h, 2) if wsc is None else F.conv2d(h, wsc, bsc, stride=2, padding=1)
                h = _lrelu(skip + branch)
            return F.linear(F.relu(h).mean((2, 3)), head, self.head.bias).squeeze(1)
        return energy

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.conditioned(s)(t)


def min_size(blocks: int) -> int:
    """The smallest image side that ``blocks`` blocks fit (the inverse of :func:`max_blocks`)."""
    return 2 ** (blocks + 1)


def max_blocks(height: int, width: int) -> int:
    """The most blocks an image fits: log2(size) - 1, so the last pooling ends at 1x1."""
    return max(int(math.floor(math.log2(min(height, width)))) - 1, 0)
