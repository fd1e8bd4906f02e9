"""VID baseline (Ahn et al., 2019) as used for image outputs: q(t|s) = prod N(t | mu(s), var_c).

By default the mean is the student output itself (mu(s) = s, ``--vid_mean identity``), the
baseline VEM was compared with: its student term is a variance-weighted pull of s toward t. The
per-channel variance is softplus(a_c) + 1e-5, initially 5. The loss is the mean Gaussian negative
log-likelihood 1/2 [(t - mu)^2 / var + log var] (without the constant 1/2 log 2 pi).
``--vid_mean learned`` adds Ahn et al.'s feature-map form, a small conv regressor mu(s) of width
``--vid_width``. The estimator's parameters (a, and the regressor) take their own Adam step on
detached inputs just before the student step (alternating maximisation of the same bound), so
upstream's optimiser is untouched.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vem_plugins.method.estimators.base import Estimator
from vem_plugins.method.options import check, require

EPS = 1e-5


class VID(Estimator):
    """The VID estimator. ``mean``: ``identity`` (mu(s) = s) or ``learned`` (a conv regressor
    ``width`` channels wide)."""

    WEIGHT_FLAG = "--lambda_vid"

    def __init__(self, t_channels: int = 3, s_channels: int = 3, mean: str = "identity",
                 width: int = 64, init_var: float = 5.0, weight: float = 1.0, lr: float = 1e-4,
                 betas=(0.0, 0.999)):
        require("--vid_mean", mean)
        require("--vid_width", width)
        check(mean == "learned" or t_channels == s_channels, "--vid_mean",
              f"identity needs t and s with the same channels, got {t_channels} and "
              f"{s_channels}: use --vid_mean learned")
        config = dict(t_channels=t_channels, s_channels=s_channels, mean=mean)
        super().__init__({**config, "width": width} if mean == "learned" else config, weight, lr, betas)
        self.mean = nn.Identity() if mean == "identity" else nn.Sequential(
            nn.Conv2d(s_channels, width, 3, padding=1), nn.ReLU(),
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
    return VID(*channels, mean=opt.vid_mean, width=opt.vid_width, weight=opt.lambda_vid,
               lr=opt.ebm_lr, betas=opt.ebm_betas)
