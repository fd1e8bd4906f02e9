"""VEM, VID and CRD as plain modules: gradients, guards, state, bad input."""
import math

import pytest
import torch

from vem_plugins.errors import OptionError
from vem_plugins.method import options
from vem_plugins.method.estimators.crd import CRD
from vem_plugins.method.estimators.vem import VEM
from vem_plugins.method.estimators.vid import VID


def images(b=2, c=3, size=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g, dtype=dtype) * 1.8 - 0.9


def tiny_vem(**kw):
    args = dict(width=4, blocks=2, steps=3, step_size=10.0, noise=0.01)
    args.update(kw)
    return VEM(**args)


def test_ebm_loss_gradient_is_positive_minus_negative_expectation_of_grad_energy():
    """Eq. 6: with l2 = 0, dL/dtheta = E_p[dE/dtheta(t, s)] - E_q[dE/dtheta(t~, s)]."""
    torch.manual_seed(0)
    est = tiny_vem(l2=0.0).double()
    t, s = images(3, dtype=torch.float64), images(3, seed=1, dtype=torch.float64)
    est.prepare(t, s)
    params = list(est.energy.parameters())
    for p in params:
        p.requires_grad_(True)
    for block in est.energy.blocks:  # live residual branches, so every weight matters
        block.conv2.weight.data.normal_()
    loss, _ = est.objective(t, s)
    got = torch.autograd.grad(loss, params)
    est.energy.eval()  # same spectral-norm vectors as the forward above, no new power iteration

    def mean_grad(x):
        grads = [torch.autograd.grad(est.energy(x[i:i + 1], s[i:i + 1]).sum(), params)
                 for i in range(len(x))]
        return [sum(g[j] for g in grads) / len(x) for j in range(len(params))]

    expected = [a - b for a, b in zip(mean_grad(t), mean_grad(est.negatives))]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [tiny_vem, VID, lambda: VID(mean="learned", width=4),
                                  lambda: CRD(width=4, queue=8)])
def test_student_term_reaches_the_student_only(make):
    torch.manual_seed(0)
    est = make()
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    x, t = images(), images(seed=1)
    s = torch.tanh(student(x))
    est.update(t, s)
    before = [p.detach().clone() for p in est.parameters()]
    loss = est.loss(t, s)
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in est.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, est.parameters()))
    if isinstance(est, VEM):
        assert est.negatives.grad_fn is None and not est.negatives.requires_grad


def test_vem_update_changes_only_the_energy_and_reports_the_gap():
    torch.manual_seed(0)
    est = tiny_vem()
    s = images().requires_grad_()
    before = [p.detach().clone() for p in est.parameters()]
    stats = est.update(images(seed=1), s)
    assert set(stats) == {"ebm_loss", "energy_gap", "skipped"} and stats["skipped"] == 0
    assert any(not torch.equal(a, p) for a, p in zip(before, est.parameters()))
    assert s.grad is None


@pytest.mark.parametrize("mean", ["identity", "learned"])
def test_vid_loss_is_the_gaussian_negative_log_likelihood(mean):
    torch.manual_seed(0)
    est = VID(mean=mean, width=4)
    t, s = images(), images(seed=1)
    with torch.no_grad():
        est.raw_var.copy_(torch.tensor([-1.0, 0.5, 2.0]))
        mu, var = est.mean(s), est.variance().view(1, -1, 1, 1)
        reference = -torch.distributions.Normal(mu, var.sqrt()).log_prob(t).mean()
        assert est.nll(t, s).item() == pytest.approx(reference.item() - 0.5 * math.log(2 * math.pi),
                                                     rel=1e-6)
    assert torch.equal(mu, s) == (mean == "identity")
    assert VID().variance().tolist() == pytest.approx([5.0] * 3)


def test_vid_student_gradient_at_initialisation_points_from_s_toward_t():
    """The default VID (identity mean) pulls s toward t, weighted by the variance: cosine 1."""
    est = VID()
    t, s = images(), images(seed=1).requires_grad_()
    est.update(t, s)
    (grad,) = torch.autograd.grad(est.loss(t, s), s)
    cosine = torch.nn.functional.cosine_similarity((-grad).flatten(), (t - s).detach().flatten(), 0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-5)
    assert est.config == {"estimator": "VID", "t_channels": 3, "s_channels": 3, "mean": "identity"}


def test_each_estimator_has_its_own_weight_flag_and_width():
    from vem_plugins.method import options
    from vem_plugins.method.estimators import crd, vem, vid
    opt = options.add_options(__import__("argparse").ArgumentParser()).parse_args(
        ["--lambda_mi", "0.3", "--lambda_vid", "2", "--lambda_crd", "0.5", "--ebm_width", "8",
         "--ebm_step_size", "100", "--vid_mean", "learned", "--vid_width", "6", "--crd_width", "10"])
    built = {m.__name__.split(".")[-1]: m.from_options(opt, (3, 3)) for m in (vem, vid, crd)}
    assert {k: e.term_weight for k, e in built.items()} == {"vem": 0.3, "vid": 2.0, "crd": 0.5}
    assert (built["vem"].config["width"], built["vid"].config["width"],
            built["crd"].config["width"]) == (8, 6, 10)
    with pytest.raises(OptionError, match="--lambda_vid"):
        VID(weight=-1.0)
    with pytest.raises(OptionError, match="--lambda_crd"):
        CRD(weight=-1.0)
    with pytest.raises(OptionError, match="--vid_mean: must be one of identity, learned"):
        VID(mean="gaussian")
    with pytest.raises(OptionError, match="--crd_width: must be >= 1, got 0"):
        CRD(width=0)


def test_crd_estimate_never_exceeds_log_n_and_batch_one_gets_queue_negatives():
    torch.manual_seed(0)
    est = CRD(width=4, queue=6)
    ns = []
    for i in range(5):
        t = images(1, seed=i)
        stats = est.update(t, t * 0.9)  # strongly dependent pair: a large estimate
        loss, n, _ = est.infonce(t, t * 0.9)
        ns.append(n)
        assert stats["crd_estimate"] <= math.log(n) + 1e-6
        assert math.log(n) - loss.item() <= math.log(n)
    assert ns == [2, 3, 4, 5, 6]  # the batch plus the growing queue
    assert int(est.queue_len) == 5


def test_state_round_trip_reproduces_losses_bit_for_bit():
    torch.manual_seed(0)
    a = tiny_vem()
    for i in range(3):
        a.update(images(seed=i), images(seed=10 + i))
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in a.state_dict().items()}
    b = tiny_vem()
    b.load_state_dict(state)
    outs = []
    for est in (a, b):
        torch.manual_seed(123)
        stats = est.update(images(seed=7), images(seed=8))
        outs.append((stats, est.loss(images(seed=7), images(seed=8)).item()))
    assert outs[0] == outs[1]


def test_loading_another_architecture_names_both_configurations():
    state = tiny_vem(width=4).state_dict()
    with pytest.raises(ValueError, match=r"'width': 4.*'width': 8"):
        tiny_vem(width=8).load_state_dict(state)
    with pytest.raises(ValueError, match="'estimator': 'VEM'.*'estimator': 'VID'"):
        VID(width=4).load_state_dict(state)


def test_non_finite_iteration_is_skipped_and_counted(capsys):
    torch.manual_seed(0)
    est = tiny_vem()
    t, s = images(), images(seed=1)
    t[0, 0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in est.parameters()]
    stats = est.update(t, s)
    assert "vem-plugins: non-finite VEM update" in capsys.readouterr().out
    assert stats["skipped"] == 1 and int(est.skipped) == 1
    assert all(torch.equal(a, p) for a, p in zip(before, est.parameters()))
    assert est.loss(t, s) is None
    est.update(images(), s)  # the next finite iteration trains again
    assert est.loss(images(), s).isfinite()


@pytest.mark.parametrize("kwargs,flag", [
    (dict(steps=0), "--ebm_steps"), (dict(step_size=0.0), "--ebm_step_size"),
    (dict(noise=-1.0), "--ebm_noise"), (dict(weight=-0.1), "--lambda_mi"),
    (dict(l2=-1.0), "--ebm_l2"), (dict(value_range=(1, -1)), "--ebm_range"),
    (dict(lr=0.0), "--ebm_lr"), (dict(betas=(1.0, 0.9)), "--ebm_betas"),
    (dict(sampler="exact"), "--ebm_sampler"),
])
def test_bad_hyper_parameters_name_their_flag(kwargs, flag):
    with pytest.raises(OptionError, match=flag):
        tiny_vem(**kwargs)


@pytest.mark.parametrize("flag,value,build", [
    ("--ebm_steps", 0, lambda: tiny_vem(steps=0)),
    ("--ebm_range", (1.0, -1.0), lambda: tiny_vem(value_range=(1.0, -1.0))),
    ("--lambda_vid", -1.0, lambda: VID(weight=-1.0)),
    ("--vid_width", 0, lambda: VID(mean="learned", width=0)),
])
def test_an_argument_and_its_flag_obey_the_same_one_rule(flag, value, build):
    opt = options.defaults()
    setattr(opt, flag[2:], value)
    with pytest.raises(OptionError) as parsed:
        options.validate(opt)
    with pytest.raises(OptionError) as built:
        build()
    assert str(parsed.value) == str(built.value)
    assert str(built.value).startswith(flag + ": ") and "\n" not in str(built.value)


def test_bad_inputs_name_their_flag():
    est = tiny_vem()
    with pytest.raises(OptionError, match="--mi_target"):
        est.update(images(size=16), images(size=8))
    with pytest.raises(OptionError, match="--ebm_range"):
        est.update(images() * 255, images())
    with pytest.raises(RuntimeError, match="update"):
        tiny_vem().loss(images(), images())


def test_energy_net_handles_any_size_and_depth():
    est = tiny_vem(blocks=7)
    for size in (4, 17, 64):
        stats = est.update(images(size=size), images(size=size, seed=1))
        assert math.isfinite(stats["energy_gap"])


def test_update_under_autocast_matches_full_precision():
    """The estimator turns autocast off for its own work (and widens bf16 inputs)."""
    results = []
    for autocast in (False, True):
        torch.manual_seed(0)
        est = tiny_vem()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            stats = est.update(images(), images(seed=1))
            loss = est.loss(images(), images(seed=1))
        results.append((stats, loss.dtype, loss.item()))
    assert results[0] == results[1] and results[0][1] == torch.float32


def test_energy_network_uses_the_blocks_that_fit_and_says_so_once(capsys):
    torch.manual_seed(0)
    est = tiny_vem(blocks=7)
    assert len(est.energy.blocks) == 7
    for seed in range(2):
        est.update(images(size=16, seed=seed), images(size=16, seed=seed + 5))
    assert len(est.energy.blocks) == 3  # 16 px: pooled to 8, then 4, 2, 1
    out = capsys.readouterr().out
    assert out.count("uses the most that fit, 3") == 1 and "--ebm_blocks 7" in out
    # a saved state restores the trained block count into a freshly built estimator
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in est.state_dict().items()}
    fresh = tiny_vem(blocks=7)
    fresh.load_state_dict(state)
    assert len(fresh.energy.blocks) == 3
    torch.manual_seed(1)
    a = est.update(images(size=16), images(size=16, seed=1))
    torch.manual_seed(1)
    assert fresh.update(images(size=16), images(size=16, seed=1)) == a
    with pytest.raises(OptionError, match="--ebm_blocks: the energy network was trained with 3"):
        est.update(images(size=4), images(size=4, seed=1))


def test_state_of_the_earlier_energy_network_is_refused_saying_why():
    state = tiny_vem().state_dict()
    state["_extra_state"] = {**state["_extra_state"],
                             "config": {"estimator": "VEM", "t_channels": 3, "s_channels": 3,
                                        "width": 4, "blocks": 2}}  # what vem-plugins 0.1 saved
    with pytest.raises(ValueError, match=r"^this VEM state was saved by vem-plugins < 0\.2, whose "
                                         r"energy network is a different architecture") as err:
        tiny_vem().load_state_dict(state)
    assert "\n" not in str(err.value)
