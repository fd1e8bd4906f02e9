"""The energy network is the paper's, and its fast path computes exactly the textbook function."""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vem_plugins.method.energy import EnergyNet, SpectralNorm, max_blocks
from vem_plugins.method.estimators.vem import VEM
from vem_plugins.method.langevin import frozen, sample


def images(b=2, size=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g, dtype=dtype) * 2 - 1


def live_net(width=8, blocks=4, seed=0):
    """A float64 net whose residual branches matter (conv2 drawn at N(0, 1), not N(0, 1e-10))."""
    torch.manual_seed(seed)
    net = EnergyNet(3, 3, width, blocks).double()
    for block in net.blocks:
        block.conv2.weight.data.normal_()
    return net


class Convolutions(TorchDispatchMode):
    """Records the input shape of every convolution run inside the block."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.inputs.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("width,params", [(16, 107_473), (64, 1_708_609)])
def test_parameter_counts_identify_the_published_network(width, params):
    net = EnergyNet(3, 3, width, 7)
    assert sum(p.numel() for p in net.parameters()) == params
    assert [b.shortcut is not None for b in net.blocks] == [True, True] + [False] * 5
    assert net.stem.weight.shape == (width // 2, 6, 3, 3)  # one joint stem weight over [t, s]
    assert [tuple(b.conv2.weight.shape[:2]) for b in net.blocks[:3]] == \
        [(width, width // 2), (2 * width, width), (2 * width, 2 * width)]


def test_initialisation():
    torch.manual_seed(0)
    net = EnergyNet(3, 3, 64, 7)
    assert all(b.conv2.weight.abs().max() < 1e-8 for b in net.blocks)  # branches start at ~0
    assert 0.9 < net.blocks[0].conv1.weight.std() < 1.1 and net.stem.bias.abs().sum() == 0
    assert net.blocks[0].conv2.shrink_only and not net.blocks[0].conv1.shrink_only


@pytest.mark.parametrize("size,blocks", [(32, 4), (37, 4), (64, 5), (16, 1), (8, 0)])
@pytest.mark.parametrize("training", [True, False])
def test_fast_energy_equals_the_textbook_one_with_its_input_gradients(size, blocks, training):
    """Same energies and same gradients in t and s (float64, 1e-6 relative), in training mode
    (one power iteration from the same singular vectors) and in eval mode."""
    reference = live_net(blocks=blocks).train(training)
    fast = copy.deepcopy(reference)
    results = []
    for run in (lambda t, s: reference.textbook(t, s), lambda t, s: fast(t, s)):
        t, s = images(3, size).requires_grad_(), images(3, size, seed=1).requires_grad_()
        energy = run(t, s)
        grads = torch.autograd.grad((energy * torch.arange(1.0, 4.0, dtype=energy.dtype)).sum(), (t, s))
        results.append((energy, *grads))
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert results[0][1].abs().sum() > 0 and results[0][2].abs().sum() > 0
    for a, b in zip(reference.buffers(), fast.buffers()):
        assert torch.equal(a, b)  # the same power iteration happened


def test_fast_parameter_gradients_equal_the_textbook_ones():
    """The energy's own step (pos and neg through one conditioned call) gets the textbook grads."""
    reference = live_net().eval()
    fast = copy.deepcopy(reference)
    t, neg, s = images(2), images(2, seed=2), images(2, seed=1)
    loss_ref = reference.textbook(torch.cat([t, neg]), torch.cat([s, s])).pow(2).sum()
    loss_fast = fast.conditioned(s)(torch.cat([t, neg])).pow(2).sum()
    for a, b in zip(torch.autograd.grad(loss_fast, list(fast.parameters())),
                    torch.autograd.grad(loss_ref, list(reference.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_langevin_chain_equals_the_textbook_chain():
    """K steps on the fast energy land where K steps on the textbook energy (no power iteration
    in the chain, as the weights do not change there) land."""
    net = live_net().eval()
    s = images(2, seed=1)
    with frozen(net):
        fast = sample(net.conditioned(s), s, steps=5, step_size=0.01, noise=0.0)
        plain = sample(lambda x: net.textbook(x, s), s, steps=5, step_size=0.01, noise=0.0)
    assert not torch.equal(fast, s)
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-9)


def test_chain_runs_no_power_iteration_and_no_parameter_gradient_work(monkeypatch):
    calls = []
    monkeypatch.setattr(SpectralNorm, "power_iteration",
                        lambda self, f=SpectralNorm.power_iteration: (calls.append(self), f(self)))
    est = VEM(width=4, blocks=2, steps=6, step_size=10.0)
    layers = sum(isinstance(m, SpectralNorm) for m in est.energy.modules())
    est.prepare(images(2, 16, dtype=torch.float32), images(2, 16, seed=1, dtype=torch.float32))
    assert len(calls) == layers  # one power iteration per layer, for the whole chain
    assert all(p.grad is None for p in est.energy.parameters())
    est.update(images(2, 16, dtype=torch.float32), images(2, 16, seed=1, dtype=torch.float32))
    assert len(calls) == 2 * layers  # and one per estimator iteration


def test_student_share_of_the_stem_is_computed_once_per_batch():
    net = live_net(blocks=3)
    s = images(2, 32, seed=1)
    with Convolutions() as once:
        energy = net.conditioned(s)
    with Convolutions() as step:
        energy(images(2, 32))
    on_images = [shape for shape in once.inputs if shape[0] == 2]  # not the kernel folding
    assert on_images == [(2, 3, 16, 16)]  # s's half of the stem, at H/2
    # per Langevin step: t's half of the stem, then conv1 + conv2 (+ shortcut) per block
    assert len(step.inputs) == 1 + 3 + 3 + 2


def test_first_convolution_on_t_runs_at_half_resolution():
    net = live_net(blocks=5)
    energy = net.conditioned(images(1, 64, seed=1))
    with Convolutions() as convs:
        energy(images(1, 64))
    assert convs.inputs[0] == (1, 3, 32, 32)
    assert convs.inputs[1] == (1, 4, 32, 32)  # block 0's conv1 at H/2 too


def test_a_four_pixel_period_pattern_in_t_changes_the_energy_in_the_interior():
    """Detail finer than 4 px shapes the energy (the earlier network pooled it away)."""
    torch.manual_seed(0)
    net = EnergyNet(3, 3, 16, 5).double().train()
    t, s = images(1, 64), images(1, 64, seed=1)
    pattern = torch.zeros_like(t)
    pattern[..., 16:48, 16:48] = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=t.dtype).repeat(8) * 0.1
    net(t, s)  # one power iteration; then compare in eval mode (fixed normalisation)
    net.eval()
    base, changed = net(t, s), net(t + pattern, s)
    assert (changed - base).abs().item() > 1e-4 * base.abs().item() + 1e-12
    tt = t.clone().requires_grad_()
    (grad,) = torch.autograd.grad(net(tt, s).sum(), tt)
    period4 = grad[..., 20:44, 20:44].unfold(-1, 4, 4).mean(-1)  # the 4-px local means
    residual = grad[..., 20:44, 20:44] - period4.repeat_interleave(4, -1)
    assert residual.abs().max() > 0.1 * grad[..., 20:44, 20:44].abs().max()


@pytest.mark.parametrize("size,fit", [(256, 7), (255, 6), (64, 5), (17, 3), (4, 1), (2, 0), (1, 0)])
def test_max_blocks_ends_the_last_pooling_at_one_pixel(size, fit):
    assert max_blocks(size, size) == fit
    net = EnergyNet(3, 3, 4, fit).double()
    if size <= 64:
        assert net(images(1, size), images(1, size, seed=1)).shape == (1,)
    with pytest.raises(ValueError, match="--ebm_blocks"):
        EnergyNet(3, 3, 4, fit + 1)(images(1, size), images(1, size))


def test_odd_width_is_refused():
    with pytest.raises(ValueError, match="--ebm_width: must be an even number"):
        EnergyNet(3, 3, 5, 2)


def test_chain_without_power_iterations_matches_one_with_them_once_converged():
    """What skipping the power method in the chain costs: nothing measurable once the singular
    vectors have converged (as they do over training, where the weights move slowly)."""
    net = live_net(blocks=4)
    s = images(2, 32, seed=1)
    for _ in range(200):  # training forwards at fixed weights: the power method converges
        net(s, s)
    fast_net, plain_net = copy.deepcopy(net), copy.deepcopy(net)
    with frozen(fast_net), frozen(plain_net):
        fast = sample(fast_net.conditioned(s), s, steps=10, step_size=1e-3, noise=0.0)
        plain = sample(lambda x: plain_net.textbook(x, s), s, steps=10, step_size=1e-3, noise=0.0)
    moved = (fast - s).abs().max()
    assert moved > 0 and (fast - plain).abs().max() < 1e-5 * moved
