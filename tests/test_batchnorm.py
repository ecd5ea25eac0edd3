import numpy as np
import pytest
import torch
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
    rn2 = bn.BatchRenorm1d(4, momentum=0.1)
    rn2.running_mean.fill_(1.0)
    x = torch.randn(7, 4)
    assert not torch.allclose(rn2(x), nn.BatchNorm1d(4)(x), atol=1e-3)


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
