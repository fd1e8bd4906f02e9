"""PSNR and SSIM of generated images against their paired targets.

FID and mIoU need pretrained networks that offline runs may lack; these two need nothing, so a
report can compare runs on paired data (student output vs the real target of the held-out
split) anywhere. Images are NCHW tensors in [-1, 1] (the pix2pix-lineage range); both metrics
are computed per image on [0, 1] and summed, so batches can be accumulated and averaged.
SSIM follows Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True``:
an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, the mean over the valid region and
over channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float() + 1) / 2).clamp(0, 1)


def psnr_sum(output: torch.Tensor, target: torch.Tensor) -> float:
    """Sum over the batch of each image's PSNR in dB (identical images count as 100 dB)."""
    mse = (_unit(output) - _unit(target)).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).sum())


def _window(channels: int, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()


def ssim_sum(output: torch.Tensor, target: torch.Tensor) -> float:
    """Sum over the batch of each image's SSIM (images need at least 11 px a side)."""
    x, y = _unit(output), _unit(target)
    c = x.shape[1]
    w = _window(c).to(x.device)

    def blur(v):
        return F.conv2d(v, w, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.flatten(1).mean(1).sum())
