"""The energy network E(t, s): one scalar per (teacher-or-real image, student image) pair.

IGEBM-style: both images are average-pooled (3x3, stride 2), then spectrally normalised 3x3
convolutions in residual blocks that downsample by average pooling, SiLU, global mean pooling and
a spectrally normalised linear layer. No batch or instance norm: they couple samples, and the
Langevin sampler needs per-sample input gradients. Residual branches start at zero (a learned
gain initialised to 0) so the initial energy is smooth. A block stops downsampling once the
feature map is 1x1, so any depth works at any image size.

Two choices keep the sampler's K forward/backward passes cheap, both exact rewrites of the
textbook layout (all the layers they move are linear):

* the stem convolution over the channel concatenation [t, s] is split into a convolution of t
  plus one of s, so s's part is computed once per batch (:meth:`EnergyNet.conditioned`) instead
  of at every Langevin step;
* the first block's 2x pooling happens before the stem, on the 3+3 input channels rather than on
  ``width`` feature channels, so no convolution runs above a quarter of the input resolution.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(cin: int, cout: int, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, 3, padding=1, bias=bias))


def _halve(h: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(h, 2) if min(h.shape[-2:]) >= 2 else h


class ResBlock(nn.Module):
    """(2x average pooling, down to 1x1,) then two SN convs on a zero-initialised branch."""

    def __init__(self, width: int, pool: bool = True):
        super().__init__()
        self.pool = pool
        self.conv1 = _conv(width, width)
        self.conv2 = _conv(width, width)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.pool:
            h = _halve(h)
        return h + self.gain * self.conv2(F.silu(self.conv1(F.silu(h))))


class EnergyNet(nn.Module):
    """E(t, s) for images ``t`` (``t_channels``) and ``s`` (``s_channels``) of the same size."""

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, blocks: int = 7):
        super().__init__()
        self.stem_t = _conv(t_channels, width)
        self.stem_s = _conv(s_channels, width, bias=False)
        # the first block's pooling is done on the input (see the module docstring)
        self.blocks = nn.Sequential(*(ResBlock(width, pool=i > 0) for i in range(blocks)))
        self.head = spectral_norm(nn.Linear(width, 1))

    def _inputs(self, image: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
        return _halve(x) if len(self.blocks) else x

    def conditioned(self, s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """E(., s) as a function of t, with s's share of the network computed once."""
        cond = self.stem_s(self._inputs(s))

        def energy(t: torch.Tensor) -> torch.Tensor:
            h = self.blocks(self.stem_t(self._inputs(t)) + cond)
            return self.head(F.silu(h).mean((2, 3))).squeeze(1)
        return energy

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.conditioned(s)(t)
