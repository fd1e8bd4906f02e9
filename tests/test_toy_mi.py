"""A 1-D toy with analytic mutual information, evaluated exactly by quadrature.

s ~ N(0, 1), b = +-1, t = b s + 0.5 n: I(T; S) = 0.3901 nats; no Gaussian conditional (VID's
family, even with an s-dependent variance) reaches more than 0.2234. The energy is trained through
the real VEM update (contrastive divergence, our Adam step, our guard) with exact negatives drawn
from q(t|s) on a grid, and its Barber-Agakov bound H(T) + E[log q(t|s)] is computed by quadrature
with log Z(s) by quadrature too: it must beat every Gaussian and never exceed the true MI.
"""
import math

import torch
from torch import nn

from vem_plugins.method.estimators.vem import VEM
from vem_plugins.method.estimators.vid import VID

TRUE_MI, BEST_GAUSSIAN = 0.3901, 0.2234
S = torch.linspace(-5, 5, 201, dtype=torch.float64)
T = torch.linspace(-7, 7, 561, dtype=torch.float64)
DT = float(T[1] - T[0])
GRID = torch.linspace(-7, 7, 141)  # the sampler's grid (coarser: it runs every iteration)


def normal(x, mu, sd):
    return torch.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def joint():
    """p(s, t) on the grid (rows s, columns t) and its quadrature weights."""
    ps = normal(S, 0, 1)[:, None]
    pt_s = 0.5 * (normal(T[None], S[:, None], 0.5) + normal(T[None], -S[:, None], 0.5))
    w = ps * pt_s * float(S[1] - S[0]) * DT
    return w / w.sum()


ENTROPY_T = 0.5 * math.log(2 * math.pi * math.e * 1.25)  # t ~ N(0, 1.25)


def as_images(x):
    return x.reshape(-1, 1, 1, 1)


class MLPEnergy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(),
                                 nn.Linear(64, 1))

    def forward(self, t, s):
        return self.net(torch.cat([t.flatten(1), s.flatten(1)], 1)).squeeze(1)

    def conditioned(self, s):
        """E(., s) in the form VEM calls: t[i] pairs with s[i % len(s)]."""
        return lambda t: self(t, s.repeat(len(t) // len(s), 1, 1, 1))


def bound(log_q):
    """H(T) + E_p[log q(t|s)] by quadrature; ``log_q`` is on the (S, T) grid."""
    return ENTROPY_T + (joint() * log_q).sum().item()


def energy_grid(energy):
    with torch.no_grad():
        ss, tt = torch.meshgrid(S.float(), T.float(), indexing="ij")
        return energy(as_images(tt.reshape(-1)), as_images(ss.reshape(-1))).reshape(ss.shape).double()


class ExactVEM(VEM):
    """VEM whose negatives are exact draws from q(t|s) on the grid (a "proper" sampler)."""

    def prepare(self, t, s):
        with torch.no_grad():
            e = self.energy(as_images(GRID.repeat(len(s))),
                            as_images(s.flatten().repeat_interleave(len(GRID)))).reshape(len(s), -1)
            idx = torch.multinomial(torch.softmax(-e, 1), 1).squeeze(1)
            jitter = (torch.rand(len(s)) - 0.5) * float(GRID[1] - GRID[0])
            self.negatives = as_images(GRID[idx] + jitter)


def toy_batch(n):
    s = torch.randn(n)
    b = torch.randint(0, 2, (n,)) * 2 - 1
    return as_images(b * s + 0.5 * torch.randn(n)), as_images(s)


def test_vem_bound_beats_every_gaussian_and_stays_below_the_true_mi():
    torch.manual_seed(0)
    est = ExactVEM(1, 1, width=2, blocks=0, l2=0.0, weight=1.0, lr=3e-3, betas=(0.5, 0.999),
                   value_range=None)
    est.energy = MLPEnergy()
    est._init_optimizer()
    for _ in range(300):
        est.update(*toy_batch(128))
    e = energy_grid(est.energy)
    log_q = -e - torch.logsumexp(-e, 1, keepdim=True) - math.log(DT)
    vem = bound(log_q)
    assert BEST_GAUSSIAN < vem <= TRUE_MI + 1e-3, vem
    assert int(est.skipped) == 0


def test_vid_bound_stays_below_the_best_gaussian():
    torch.manual_seed(0)
    est = VID(1, 1, mean="learned", width=16, weight=1.0, lr=3e-3)
    for _ in range(300):
        est.update(*toy_batch(128))
    with torch.no_grad():
        mu = est.mean(as_images(S.float())).flatten().double()[:, None]
        var = est.variance().double()
    log_q = -0.5 * ((T[None] - mu) ** 2 / var + torch.log(2 * math.pi * var))
    assert bound(log_q) <= BEST_GAUSSIAN + 1e-3
