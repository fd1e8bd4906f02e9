"""VID baseline (Ahn et al., 2019): a fully factorised Gaussian q(t|s) = prod N(t | mu(s), var_c).

mu is a small conv net on s; the per-channel variance is softplus(a_c) + 1e-5, initially 5. The
loss is the mean Gaussian negative log-likelihood 1/2 [(t - mu)^2 / var + log var] (without the
constant 1/2 log 2 pi). Its parameters take their own Adam step on detached inputs just before the
student step (alternating maximisation of the same bound), so upstream's optimiser is untouched.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vem_plugins.estimators.base import Estimator

EPS = 1e-5


class VID(Estimator):
    """The VID estimator. ``width`` is the mean network's channel count (``--ebm_width``)."""

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64,
                 init_var: float = 5.0, lambda_mi: float = 0.1, lr: float = 1e-4,
                 betas=(0.0, 0.999)):
        super().__init__(dict(t_channels=t_channels, s_channels=s_channels, width=width),
                         lambda_mi, lr, betas)
        self.mean = nn.Sequential(nn.Conv2d(s_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, t_channels, 3, padding=1))
        raw = math.log(math.expm1(init_var - EPS))  # softplus^-1
        self.raw_var = nn.Parameter(torch.full((t_channels,), raw))
        self._init_optimizer()

    def variance(self) -> torch.Tensor:
        return F.softplus(self.raw_var) + EPS

    def nll(self, t, s):
        """Mean Gaussian negative log-likelihood of t under q(t|s), without 1/2 log 2 pi."""
        var = self.variance().view(1, -1, 1, 1)
        return 0.5 * ((t - self.mean(s)).pow(2) / var + var.log()).mean()

    def objective(self, t, s):
        loss = self.nll(t, s)
        return loss, {"vid_nll": loss}

    def student_objective(self, t, s):
        return self.nll(t, s)



def from_options(opt, channels):
    """Build :class:`VID` from parsed options and ``(t_channels, s_channels)``."""
    return VID(*channels, width=opt.ebm_width, lambda_mi=opt.lambda_mi, lr=opt.ebm_lr,
               betas=opt.ebm_betas)
