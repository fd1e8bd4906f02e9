"""CRD baseline (Tian et al., 2020): InfoNCE between embeddings of t and s.

Two small conv encoders map t and s to L2-normalised 128-d embeddings; the student's embedding
must pick its own t among the batch and a FIFO queue of past t embeddings (temperature 0.07), so
batch size 1 still has negatives. ``estimate = log N - loss`` (N candidates) is InfoNCE's lower
bound on I(T; S) and can never exceed log N.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vem_plugins.method.estimators.base import Estimator
from vem_plugins.method.options import require


def _encoder(channels: int, width: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, width, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, dim))


class CRD(Estimator):
    """The CRD estimator. ``queue`` past embeddings serve as extra negatives; ``width`` is the
    encoders' channel count (``--crd_width``)."""

    WEIGHT_FLAG = "--lambda_crd"

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, dim: int = 128,
                 queue: int = 1024, temperature: float = 0.07, weight: float = 0.8,
                 lr: float = 1e-4, betas=(0.0, 0.999)):
        require("--crd_width", width)
        super().__init__(dict(t_channels=t_channels, s_channels=s_channels, width=width, dim=dim,
                              queue=queue), weight, lr, betas)
        self.embed_t = _encoder(t_channels, width, dim)
        self.embed_s = _encoder(s_channels, width, dim)
        self.temperature = temperature
        self.register_buffer("queue", torch.zeros(queue, dim))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending = None
        self._init_optimizer()

    def infonce(self, t, s):
        """(loss, N candidates, t embeddings) for one batch against the batch and the queue."""
        zt = F.normalize(self.embed_t(t), dim=1)
        zs = F.normalize(self.embed_s(s), dim=1)
        bank = torch.cat([zt, self.queue[: int(self.queue_len)]])
        logits = zs @ bank.t() / self.temperature
        loss = F.cross_entropy(logits, torch.arange(len(zs), device=zs.device))
        return loss, bank.shape[0], zt

    def objective(self, t, s):
        loss, n, zt = self.infonce(t, s)
        self._pending = zt.detach()
        return loss, {"crd_loss": loss, "crd_estimate": math.log(n) - loss}

    def student_objective(self, t, s):
        return self.infonce(t, s)[0]

    def after_step(self):
        size = self.queue.shape[0]
        z = self._pending[-size:]
        ptr = int(self.queue_ptr)
        self.queue[(ptr + torch.arange(len(z), device=z.device)) % size] = z
        self.queue_ptr.fill_((ptr + len(z)) % size)
        self.queue_len.fill_(min(size, int(self.queue_len) + len(z)))


def from_options(opt, channels):
    """Build :class:`CRD` from parsed options and ``(t_channels, s_channels)``."""
    return CRD(*channels, width=opt.crd_width, weight=opt.lambda_crd, lr=opt.ebm_lr,
               betas=opt.ebm_betas)
