"""The energy network E(t, s): one scalar per (teacher-or-real image, student image) pair.

IGEBM-style: both images are average-pooled (3x3, stride 2) and concatenated on channels, then
spectrally normalised 3x3 convolutions in residual blocks that downsample by average pooling
(before their convolutions),
SiLU, global mean pooling and a spectrally normalised linear layer. No batch or instance norm:
they couple samples, and the Langevin sampler needs per-sample input gradients. Residual branches
start at zero (a learned gain initialised to 0) so the initial energy is smooth. A block stops
downsampling once the feature map is 1x1, so any depth works at any image size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(cin: int, cout: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))


class ResBlock(nn.Module):
    """2x average pooling (down to 1x1), then two SN convs on a zero-initialised residual branch.

    Pooling first keeps every convolution below the input's resolution: at 256x256 the first
    block runs at 64x64, which makes the energy net ~4x cheaper than pooling after the convs.
    """

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = _conv(width, width)
        self.conv2 = _conv(width, width)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if min(h.shape[-2:]) >= 2:
            h = F.avg_pool2d(h, 2)
        return h + self.gain * self.conv2(F.silu(self.conv1(F.silu(h))))


class EnergyNet(nn.Module):
    """E(t, s) for images ``t`` (``t_channels``) and ``s`` (``s_channels``) of the same size."""

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, blocks: int = 7):
        super().__init__()
        self.stem = _conv(t_channels + s_channels, width)
        self.blocks = nn.Sequential(*(ResBlock(width) for _ in range(blocks)))
        self.head = spectral_norm(nn.Linear(width, 1))

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.cat([t, s], 1), 3, stride=2, padding=1, count_include_pad=False)
        h = self.blocks(self.stem(x))
        return self.head(F.silu(h).mean((2, 3))).squeeze(1)
