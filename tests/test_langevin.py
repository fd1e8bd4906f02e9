"""The short-run Langevin sampler: exact recursions on known energies, range, equivariance."""
import pytest
import torch

from vem_plugins.method.energy import EnergyNet
from vem_plugins.method.langevin import frozen, sample


def quadratic(mu, c):
    return lambda t: ((t - mu) ** 2).flatten(1).sum(1) / (2 * c)


def test_zero_step_and_zero_noise_returns_the_student_output():
    s = torch.rand(3, 2, 5, 5) * 2 - 1
    out = sample(quadratic(0.3, 1.0), s, steps=10, step_size=0.0, noise=0.0)
    assert torch.equal(out, s)


def test_zero_step_with_noise_has_variance_k_sigma_squared():
    torch.manual_seed(0)
    s = torch.zeros(64, 1, 32, 32)
    k, sigma = 10, 0.01
    out = sample(quadratic(0.0, 1.0), s, steps=k, step_size=0.0, noise=sigma, value_range=None)
    assert out.var().item() == pytest.approx(k * sigma**2, rel=0.03)
    assert out.mean().abs().item() < 5 * sigma * (k / out.numel()) ** 0.5  # 5 standard errors


@pytest.mark.parametrize("step,c,k", [(0.1, 1.0, 10), (0.5, 2.0, 7)])
def test_quadratic_energy_contracts_by_one_minus_step_over_c_per_step(step, c, k):
    mu = torch.full((2, 3, 4, 4), 0.2, dtype=torch.float64)
    s = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 2 - 1
    out = sample(quadratic(mu, c), s, steps=k, step_size=step, noise=0.0, value_range=None)
    expected = mu + (1 - step / c) ** k * (s - mu)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_samples_lie_in_the_clamp_range_and_carry_no_graph():
    energy = EnergyNet(3, 3, width=8, blocks=2)
    s = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    with frozen(energy):
        out = sample(energy.conditioned(s.detach()), s * 1.0, steps=5, step_size=1e4, noise=0.5, value_range=(-1, 1))
    assert out.min() >= -1 and out.max() <= 1
    assert not out.requires_grad and out.grad_fn is None
    assert all(p.grad is None for p in energy.parameters())


def test_permuting_the_batch_permutes_the_samples():
    torch.manual_seed(1)
    energy = EnergyNet(3, 3, width=8, blocks=3).eval()
    s = torch.rand(4, 3, 16, 16) * 2 - 1
    perm = torch.tensor([2, 0, 3, 1])
    with frozen(energy):
        a = sample(energy.conditioned(s), s, steps=4, step_size=50.0, noise=0.0)
        b = sample(energy.conditioned(s[perm]), s[perm], steps=4, step_size=50.0, noise=0.0)
    torch.testing.assert_close(b, a[perm], rtol=1e-5, atol=1e-6)
    assert not torch.equal(a, s)  # the chain moved


def test_sampler_runs_in_fp32_under_autocast():
    torch.manual_seed(2)
    energy = EnergyNet(3, 3, width=8, blocks=2).eval()
    s = torch.rand(2, 3, 16, 16) * 2 - 1
    with frozen(energy):
        energy_of_t = energy.conditioned(s)
        plain = sample(energy_of_t, s, steps=3, step_size=100.0, noise=0.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = sample(energy_of_t, s, steps=3, step_size=100.0, noise=0.0)
    assert auto.dtype == torch.float32
    assert torch.equal(plain, auto)
