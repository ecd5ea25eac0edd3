import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchlab import batchnorm as bn
from batchlab import data


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_scratch_equals_torch_in_both_modes(momentum):
    gen = torch.Generator().manual_seed(0)
    ours, ref = (
        bn.ScratchBatchNorm1d(4, momentum=momentum),
        nn.BatchNorm1d(4, momentum=momentum),
    )
    for _ in range(5):
        x = torch.randn(6, 4, generator=gen) * 3 + 2
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    # torch stores the unbiased batch variance in running_var
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-6)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_training_mode_is_respected_under_no_grad():
    layer = bn.ScratchBatchNorm1d(3)
    x = torch.randn(8, 3) + 5
    with torch.no_grad():
        out = layer(x)  # training mode: batch statistics, even without grad
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5)
    assert layer.num_batches_tracked == 1


def test_gradients_match_torch():
    x = torch.randn(10, 3, requires_grad=True)
    ours, ref = bn.ScratchBatchNorm1d(3), nn.BatchNorm1d(3)
    (g1,) = torch.autograd.grad((ours(x) ** 3).sum(), x)
    (g2,) = torch.autograd.grad((ref(x) ** 3).sum(), x)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_renorm_without_corrections_is_batchnorm():
    torch.manual_seed(0)
    rn = bn.BatchRenorm1d(4, momentum=0.1, r_max=1.0, d_max=0.0)
    ref = nn.BatchNorm1d(4, momentum=0.1)
    for _ in range(3):
        x = torch.randn(7, 4) * 2 - 1
        assert torch.allclose(rn(x), ref(x), atol=1e-5)
    assert torch.allclose(rn.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(rn.running_var, ref.running_var, atol=1e-6)


def _renorm_by_hand(x, mu, var, r_max, d_max, gamma, beta, eps=1e-5):
    """Batch Renorm written from the paper in float64 numpy; r and d are
    plain numbers, so autograd of the result treats them as constants."""
    xn = x.detach().double().numpy()
    mean_b, var_b = xn.mean(0), xn.var(0)
    sigma_b, sigma = np.sqrt(var_b + eps), np.sqrt(var + eps)
    r = np.clip(sigma_b / sigma, 1 / r_max, r_max)
    d = np.clip((mean_b - mu) / sigma, -d_max, d_max)
    xd = x.double()
    m, v = xd.mean(0), xd.var(0, unbiased=False)
    x_hat = (xd - m) / torch.sqrt(v + eps) * torch.from_numpy(r)
    return (x_hat + torch.from_numpy(d)) * gamma + beta, r, d


def test_renorm_corrections_match_a_hand_computation_and_get_no_gradient():
    gen = torch.Generator().manual_seed(1)
    rn = bn.BatchRenorm1d(4, momentum=0.1, r_max=2.0, d_max=0.5)
    mu = np.array([0.0, 3.0, -0.2, 0.1])
    var = np.array([1.0, 0.01, 25.0, 1.5])  # unit 1: r clips high, 2: low
    rn.running_mean.copy_(torch.from_numpy(mu))
    rn.running_var.copy_(torch.from_numpy(var))
    with torch.no_grad():
        rn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        rn.bias.copy_(torch.tensor([0.0, 0.1, -0.3, 0.2]))
    x = (torch.randn(9, 4, generator=gen) * 1.5).requires_grad_()
    out = rn(x)
    ref, r, d = _renorm_by_hand(
        x,
        mu,
        var,
        2.0,
        0.5,
        rn.weight.detach().double(),
        rn.bias.detach().double(),
    )
    assert r.max() == 2.0 and r.min() == 0.5  # clipping is exercised
    assert np.abs(d).max() == 0.5 and np.abs(d).min() < 0.5
    assert torch.allclose(out.double(), ref, atol=1e-5)
    # gradients: r and d are constants in the hand computation
    w = torch.randn(9, 4, generator=gen)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * w.double()).sum(), x)
    assert torch.allclose(g.double(), g_ref.double(), atol=1e-5)
    # running statistics move after the correction was taken
    assert torch.allclose(
        rn.running_mean,
        torch.from_numpy(0.9 * mu).float() + 0.1 * x.detach().mean(0),
        atol=1e-5,
    )


def test_renorm_limits_follow_ioffes_schedule():
    assert bn.renorm_limits(0, 10, 50, 30) == (1.0, 0.0)
    assert bn.renorm_limits(10, 10, 50, 30) == (1.0, 0.0)
    r, d = bn.renorm_limits(30, 10, 50, 30)
    assert np.isclose(r, 2.0) and np.isclose(d, 5.0)
    assert bn.renorm_limits(80, 10, 50, 30) == (3.0, 5.0)
    net = bn.bn_mlp([4, 6, 6, 2], "renorm")
    assert bn.set_renorm_limits(net, 2.5, 1.0) == 2
    assert net[1].r_max == 2.5 and net[4].d_max == 1.0
    with pytest.raises(ValueError, match="warmup"):
        bn.renorm_limits(0, 50, 50, 60)


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm"])
def test_batch_independent_norms_do_not_mix_examples(norm):
    net = bn.bn_mlp([5, 8, 8, 3], norm, seed=0)
    x = torch.randn(6, 5)
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_data_stats_forward_equals_batchnorm_in_both_schemes():
    d = data.mnist1d(num_samples=500)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    x, xb, yb = d.x_train, d.x_train[:16], d.y_train[:16]

    def grads(out):
        loss = torch.nn.functional.cross_entropy(out, yb)
        return torch.autograd.grad(loss, list(net.parameters()))

    # differentiated: batch statistics of the whole set, inside the
    # gradient, as training mode on one batch of all of x
    out = bn.data_stats_forward(net, xb, x, differentiate=True)
    full = net(torch.cat([xb, x]))  # train mode; stats of xb + x, not x
    ref = net(x)[:16]
    assert not torch.allclose(out, full[:16], atol=1e-4)
    assert torch.allclose(out, ref, atol=1e-5)
    for a, b in zip(grads(out), grads(ref)):
        assert torch.allclose(a, b, atol=1e-5)
    # constant: evaluation mode with precise statistics
    probe = bn.bn_mlp([40, 8, 6, 10], seed=0)
    bn.set_precise_stats(probe, x)
    probe.eval()
    out = bn.data_stats_forward(net, xb, x, differentiate=False)
    assert torch.allclose(out, probe(xb), atol=1e-4)
    loss = torch.nn.functional.cross_entropy(probe(xb), yb)
    g_ref = torch.autograd.grad(loss, list(probe.parameters()))
    for a, b in zip(grads(out), g_ref):
        assert torch.allclose(a, b, atol=1e-4)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="at least 2 examples"):
        bn.ScratchBatchNorm1d(3)(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\]"):
        bn.ScratchBatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="shape"):
        bn.ScratchBatchNorm1d(3)(torch.ones(4, 2))
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn.population_stats(nn.Linear(2, 2), torch.ones(3, 2))


def test_population_stats_equal_a_direct_computation():
    d = data.mnist1d(num_samples=500)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    x = d.x_train
    stats = bn.population_stats(net, x)
    # direct: one batch of the whole set in training mode normalizes each
    # layer by exactly these statistics
    h1 = net[0](x)
    assert torch.allclose(stats[0][0], h1.mean(0), atol=1e-5)
    assert torch.allclose(stats[0][1], h1.var(0, unbiased=False), atol=1e-5)
    z = torch.tanh(
        (h1 - h1.mean(0))
        / torch.sqrt(h1.var(0, unbiased=False) + 1e-5)
        * net[1].weight
        + net[1].bias
    )
    h2 = net[3](z)
    assert torch.allclose(stats[1][0], h2.mean(0), atol=1e-4)
    assert torch.allclose(stats[1][1], h2.var(0, unbiased=False), atol=1e-4)
    bn.set_precise_stats(net, x)
    net.eval()
    with torch.no_grad():
        eval_out = net(x)
    net.train()
    with torch.no_grad():
        train_out = net(x)
    assert torch.allclose(eval_out, train_out, atol=1e-4)


def test_tracker_equals_torch_running_mean():
    torch.manual_seed(0)
    layer = nn.BatchNorm1d(3, momentum=0.1)
    tracker = bn.RunningTracker(layer, [0.1, None])
    cumulative = nn.BatchNorm1d(3, momentum=None)
    for _ in range(6):
        x = torch.randn(5, 3) + 1
        layer(x)
        cumulative(x)
    assert torch.allclose(tracker.means[0.1], layer.running_mean, atol=1e-6)
    assert torch.allclose(
        tracker.means[None], cumulative.running_mean, atol=1e-6
    )


def test_ema_variance_law_by_simulation():
    rng = np.random.default_rng(0)
    alpha, b = 0.2, 4
    xs = rng.standard_normal((200_000, b)).mean(1)
    m, vals = 0.0, []
    for t, x in enumerate(xs):
        m = (1 - alpha) * m + alpha * x
        if t > 100:
            vals.append(m)
    assert np.isclose(np.var(vals), bn.ema_variance(alpha, 1.0, b), rtol=0.05)


def test_ghost_batchnorm_is_batchnorm_of_each_group():
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(12, 5, generator=gen) * 2 + 1).requires_grad_()
    ghost = bn.GhostBatchNorm1d(5, group=4, momentum=0.2)
    with torch.no_grad():
        ghost.weight.uniform_(0.5, 2.0, generator=gen)
        ghost.bias.uniform_(-1, 1, generator=gen)
    ref = nn.BatchNorm1d(5, momentum=0.2)
    ref.load_state_dict(ghost.state_dict())
    out = ghost(x)
    chunks = [ref(c) for c in x.split(4)]  # one BatchNorm call per group
    assert torch.allclose(out, torch.cat(chunks), atol=1e-5)
    (g_ours,) = torch.autograd.grad((out**3).sum(), x)
    (g_ref,) = torch.autograd.grad((torch.cat(chunks) ** 3).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-4)
    # one running update with the mean over groups of their statistics
    groups = x.detach().reshape(3, 4, 5)
    mean = 0.2 * groups.mean(1).mean(0)
    var = 0.8 + 0.2 * groups.var(1, unbiased=True).mean(0)
    assert torch.allclose(ghost.running_mean, mean, atol=1e-6)
    assert torch.allclose(ghost.running_var, var, atol=1e-6)
    ghost.eval(), ref.eval()
    ref.load_state_dict(ghost.state_dict())
    assert torch.allclose(ghost(x), ref(x), atol=1e-6)


def test_ghost_batchnorm_with_one_group_is_torch_batchnorm():
    x = torch.randn(8, 3) * 3
    ghost, ref = bn.GhostBatchNorm1d(3, group=8), nn.BatchNorm1d(3)
    assert torch.allclose(ghost(x), ref(x), atol=1e-5)
    assert torch.allclose(ghost.running_var, ref.running_var, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of group"):
        ghost(torch.randn(6, 3))
    with pytest.raises(ValueError, match="at least 2"):
        bn.GhostBatchNorm1d(3, group=1)
    net = bn.bn_mlp([4, 6, 3], seed=0, group=2)
    assert isinstance(net[1], bn.GhostBatchNorm1d) and net[1].group == 2
    with pytest.raises(ValueError, match="group is for"):
        bn.bn_mlp([4, 6, 3], "layernorm", group=2)


def test_whole_data_module_and_population_loss():
    d = data.mnist1d(num_samples=200)
    net = bn.bn_mlp([40, 7, 5, 10], seed=3)
    x, xs = d.x_train[:9], d.x_train
    for differentiate in (False, True):
        model = bn.WholeDataBatchNorm(net, xs, differentiate)
        want = bn.data_stats_forward(net, x, xs, differentiate)
        assert torch.equal(model(x), want)
        assert list(model.parameters()) == list(net.parameters())
    # normalizing with population statistics: precise statistics, eval
    probe = copy.deepcopy(net)
    bn.set_precise_stats(probe, d.x_train)
    probe.eval()
    with torch.no_grad():
        want = F.cross_entropy(probe(d.x_train), d.y_train).item()
    assert np.isclose(
        bn.population_loss(net, d.x_train, d.y_train), want, rtol=1e-5
    )
    assert net.training
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn.WholeDataBatchNorm(nn.Sequential(nn.Linear(2, 2)), xs, True)
