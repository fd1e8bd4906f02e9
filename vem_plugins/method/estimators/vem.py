"""VEM: the energy-based variational bound of I(T; S) (Kang et al., NeurIPS 2022).

q(t|s) = exp(-E(t, s)) / Z(s). Each iteration: negatives t~ by short-run Langevin from sg(s);
the energy takes one Adam step on  mean E(t,s) - mean E(t~,s) + l2 (mean E(t,s)^2 + mean E(t~,s)^2)
(contrastive divergence, eq. 6, plus IGEBM's magnitude regulariser); then the student gets
lambda * (mean E(t,s) - mean E(t~,s)) with the same t~ and the updated energy.

Spectral norm runs one power iteration per iteration, where the chain starts (the energy's
training forward); the chain, the energy's step and the student term use the singular vectors it
left. The logged ``energy_gap`` is E(t,s) - E(t~,s): with short, non-mixing chains the energies are
not calibrated log-densities, so it is not a mutual-information estimate.
"""
from __future__ import annotations

import math

import torch

from vem_plugins.messages import tell
from vem_plugins.method.energy import EnergyNet, max_blocks, min_size
from vem_plugins.method.estimators.base import Estimator
from vem_plugins.method.langevin import sample
from vem_plugins.method.options import check, require

#: names the energy network in saved states; states of another architecture are refused
ARCHITECTURE = "kang2022"


class VEM(Estimator):
    """The VEM estimator; arguments mirror the ``--ebm_*`` flags (see :mod:`vem_plugins.method.options`).

    ``blocks`` is an upper bound: on images too small for it the energy network gets the most
    blocks that fit (:func:`vem_plugins.method.energy.max_blocks`), said once when the first batch comes.
    """

    def __init__(self, t_channels: int = 3, s_channels: int = 3, width: int = 64, blocks: int = 7,
                 steps: int = 10, step_size: float = 100.0, noise: float = 0.005,
                 sampler: str = "paper", value_range=(-1.0, 1.0), l2: float = 0.05,
                 weight: float = 0.1, lr: float = 1e-4, betas=(0.0, 0.999)):
        for flag, value in (("--ebm_steps", steps), ("--ebm_step_size", step_size),
                            ("--ebm_noise", noise), ("--ebm_sampler", sampler), ("--ebm_l2", l2)):
            require(flag, value)
        if value_range is not None:
            require("--ebm_range", value_range)
        super().__init__(dict(architecture=ARCHITECTURE, t_channels=t_channels,
                              s_channels=s_channels, width=width, blocks=blocks), weight, lr, betas)
        self.energy = EnergyNet(t_channels, s_channels, width, blocks)  # checks width and blocks
        self.steps, self.step_size, self.l2 = steps, step_size, l2
        self.noise = math.sqrt(2 * step_size) if sampler == "textbook" else noise
        self.value_range = tuple(value_range) if value_range is not None else None
        self.negatives = None
        self._range_checked = False
        self._init_optimizer()

    def _use_blocks(self, blocks: int) -> None:
        """Rebuild the (untrained) energy network with fewer blocks."""
        cfg = self.config
        self.energy = EnergyNet(cfg["t_channels"], cfg["s_channels"], cfg["width"], blocks)
        self.energy.to(self.skipped.device)
        self._init_optimizer()

    def check_inputs(self, t, s):
        super().check_inputs(t, s)
        fit = max_blocks(*s.shape[-2:])
        if fit < self.config["blocks"] and fit < len(self.energy.blocks):
            check(int(self.skipped) == 0 and not self.optimizer.state, "--ebm_blocks",
                  f"the energy network was trained with {len(self.energy.blocks)} blocks, which "
                  f"need images of at least {min_size(len(self.energy.blocks))} px; got "
                  f"{tuple(s.shape[-2:])}")
            tell(f"--ebm_blocks {self.config['blocks']} needs images of at least "
                 f"{min_size(self.config['blocks'])} px; at {s.shape[-2]}x{s.shape[-1]} the energy "
                 f"network uses the most that fit, {fit}")
            self._use_blocks(fit)
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
        self.energy.train()  # this iteration's one power iteration, in conditioned()
        energy = self.energy.conditioned(s)
        self.energy.eval()
        self.negatives = sample(energy, s, self.steps, self.step_size, self.noise, self.value_range)

    def _energies(self, t, s):
        return self.energy.conditioned(s)(torch.cat([t, self.negatives])).chunk(2)

    def objective(self, t, s):
        pos, neg = self._energies(t, s)
        gap = pos.mean() - neg.mean()
        loss = gap + self.l2 * (pos.pow(2).mean() + neg.pow(2).mean())
        return loss, {"ebm_loss": loss, "energy_gap": gap}

    def student_objective(self, t, s):
        pos, neg = self._energies(t, s)
        return pos.mean() - neg.mean()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a state; one of the earlier, different energy network is refused (saying why),
        and one trained on small images gets the block count it was trained with."""
        saved = state_dict.get("_extra_state", {}).get("config", {})
        if saved.get("estimator") == "VEM" and saved.get("architecture") != ARCHITECTURE:
            raise ValueError("this VEM state was saved by vem-plugins < 0.2, whose energy network "
                             "is a different architecture from the paper's one used now; it cannot "
                             "be loaded: start the estimator afresh (without --restore_vem_path)")
        trained = {int(k.split(".")[2]) + 1 for k in state_dict if k.startswith("energy.blocks.")}
        blocks = max(trained, default=0)
        if saved == self.config and blocks < len(self.energy.blocks):
            self._use_blocks(blocks)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def from_options(opt, channels):
    """Build :class:`VEM` from parsed options and ``(t_channels, s_channels)``."""
    return VEM(*channels, width=opt.ebm_width, blocks=opt.ebm_blocks, steps=opt.ebm_steps,
               step_size=opt.ebm_step_size, noise=opt.ebm_noise, sampler=opt.ebm_sampler,
               value_range=opt.ebm_range, l2=opt.ebm_l2, weight=opt.lambda_mi,
               lr=opt.ebm_lr, betas=opt.ebm_betas)
