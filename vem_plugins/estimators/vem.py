"""VEM: the energy-based variational bound of I(T; S) (Kang et al., NeurIPS 2022).

q(t|s) = exp(-E(t, s)) / Z(s). Each iteration: negatives t~ by short-run Langevin from sg(s);
the energy takes one Adam step on  mean E(t,s) - mean E(t~,s) + l2 (mean E(t,s)^2 + mean E(t~,s)^2)
(contrastive divergence, eq. 6, plus IGEBM's magnitude regulariser); then the student gets
lambda * (mean E(t,s) - mean E(t~,s)) with the same t~ and the updated energy.

The logged ``energy_gap`` is E(t,s) - E(t~,s): with short, non-mixing chains the energies are not
calibrated log-densities, so it is not a mutual-information estimate.
"""
from __future__ import annotations

import math

import torch

from vem_plugins.energy import EnergyNet
from vem_plugins.estimators.base import Estimator
from vem_plugins.langevin import sample
from vem_plugins.options import check


class VEM(Estimator):
    """The VEM estimator; arguments mirror the ``--ebm_*`` flags (see :mod:`vem_plugins.options`)."""

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, blocks: int = 7,
                 steps: int = 10, step_size: float = 100.0, noise: float = 0.005,
                 sampler: str = "paper", value_range=(-1.0, 1.0), l2: float = 0.05,
                 lambda_mi: float = 0.1, lr: float = 1e-4, betas=(0.0, 0.999)):
        check(steps >= 1, "--ebm_steps", f"must be >= 1, got {steps}")
        check(step_size > 0, "--ebm_step_size", f"must be > 0, got {step_size}")
        check(noise >= 0, "--ebm_noise", f"must be >= 0, got {noise}")
        check(sampler in ("paper", "textbook"), "--ebm_sampler", f"unknown sampler {sampler!r}")
        check(l2 >= 0, "--ebm_l2", f"must be >= 0, got {l2}")
        check(width >= 1, "--ebm_width", f"must be >= 1, got {width}")
        check(blocks >= 0, "--ebm_blocks", f"must be >= 0, got {blocks}")
        if value_range is not None:
            check(value_range[0] < value_range[1], "--ebm_range", f"needs LO < HI, got {value_range}")
        super().__init__(dict(t_channels=t_channels, s_channels=s_channels, width=width,
                              blocks=blocks), lambda_mi, lr, betas)
        self.energy = EnergyNet(t_channels, s_channels, width, blocks)
        self.steps, self.step_size, self.l2 = steps, step_size, l2
        self.noise = math.sqrt(2 * step_size) if sampler == "textbook" else noise
        self.value_range = tuple(value_range) if value_range is not None else None
        self.negatives = None
        self._range_checked = False
        self._init_optimizer()

    def check_inputs(self, t, s):
        super().check_inputs(t, s)
        if self.value_range is None or self._range_checked:
            return
        lo, hi = self.value_range
        tol = 1e-3 * (hi - lo)
        bounds = [(name, *map(float, torch.aminmax(x))) for name, x in (("t", t), ("the student output", s))]
        if not all(math.isfinite(v) for _, a, b in bounds for v in (a, b)):
            return  # non-finite input: the guard skips this iteration; check the next one
        for name, xmin, xmax in bounds:
            check(xmin >= lo - tol and xmax <= hi + tol, "--ebm_range",
                  f"{name} spans [{xmin:.3g}, {xmax:.3g}], outside the image range "
                  f"[{lo:g}, {hi:g}]; set --ebm_range to the data's range (or 'none')")
        self._range_checked = True

    def prepare(self, t, s):
        self.energy.eval()  # no spectral-norm power iteration inside the chain; params are frozen
        self.negatives = sample(self.energy.conditioned(s), s, self.steps, self.step_size,
                                self.noise, self.value_range)

    def _energies(self, t, s):
        pos, neg = self.energy(torch.cat([t, self.negatives]), torch.cat([s, s])).chunk(2)
        return pos, neg

    def objective(self, t, s):
        self.energy.train()
        pos, neg = self._energies(t, s)
        gap = pos.mean() - neg.mean()
        loss = gap + self.l2 * (pos.pow(2).mean() + neg.pow(2).mean())
        return loss, {"ebm_loss": loss, "energy_gap": gap}

    def student_objective(self, t, s):
        self.energy.eval()
        pos, neg = self._energies(t, s)
        return pos.mean() - neg.mean()


def from_options(opt, channels):
    """Build :class:`VEM` from parsed options and ``(t_channels, s_channels)``."""
    return VEM(*channels, width=opt.ebm_width, blocks=opt.ebm_blocks, steps=opt.ebm_steps,
               step_size=opt.ebm_step_size, noise=opt.ebm_noise, sampler=opt.ebm_sampler,
               value_range=opt.ebm_range, l2=opt.ebm_l2, lambda_mi=opt.lambda_mi,
               lr=opt.ebm_lr, betas=opt.ebm_betas)

