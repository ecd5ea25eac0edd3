import numpy as np
import pytest
import torch
from batchlab import batchnorm as bn
from batchlab import data
from torch import nn


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


def test_bias_escape_and_jumps():
    out = bn.bias_escape(20, 0.5, inside=False)
    inn = bn.bias_escape(20, 0.5, inside=True)
    assert out[-1]["bias"] > 5 and abs(inn[-1]["bias"]) < 1e-6
    assert abs(out[-1]["loss"] - out[0]["loss"]) < 1e-4
    d = data.mnist1d(num_samples=500)
    rows = bn.renormalization_jumps(d, [40, 8, 10], 20, 10, 0.05, 16, True)
    losses = [r["loss"] for r in rows]
    assert abs(losses[1] - losses[0]) < 1e-5


def test_layer_inputs_and_batch_mean_spread():
    d = data.mnist1d(num_samples=500)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    inputs = bn.layer_inputs(net, d.x_train, 0)
    assert torch.allclose(inputs, net[0](d.x_train), atol=1e-6)
    assert net.training  # mode restored
    rows = bn.batch_mean_spread(inputs, [4, 64], draws=400, seed=0)
    for r in rows:
        assert abs(r["ratio"] - 1) < 0.15
    assert rows[0]["theory"] > rows[1]["theory"]
    with pytest.raises(ValueError, match="batch sizes"):
        bn.batch_mean_spread(inputs, [len(inputs)], draws=5)
    with pytest.raises(ValueError, match="index"):
        bn.layer_inputs(net, d.x_train, 5)


def test_running_vs_population_rows_match_a_direct_tracker():
    d = data.mnist1d(num_samples=500)
    rows = bn.running_vs_population(
        d,
        [40, 8, 6, 10],
        0.01,
        40,
        20,
        [0.1, None],
        layer_index=0,
        batch_size=16,
    )
    assert [r["step"] for r in rows] == [20, 20, 40, 40]
    assert {r["momentum"] for r in rows} == {"0.1", "cumulative"}
    # momentum 0.1 equals torch's own running mean: rebuild the run
    from batchlab import train

    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(16, 0.01, 40))
    pop = bn.population_stats(net, d.x_train)[0][0]
    err = float((net[1].running_mean - pop).abs().mean())
    last = [r for r in rows if r["step"] == 40 and r["momentum"] == "0.1"]
    assert np.isclose(last[0]["error"], err, rtol=1e-5)


def test_progress_per_compute_records_time_and_population_loss():
    d = data.mnist1d(num_samples=500)
    per_batch = bn.progress_per_compute(
        d, [40, 8, 6, 10], False, 20, 10, batch_size=16
    )
    full = bn.progress_per_compute(
        d, [40, 8, 6, 10], True, 20, 10, batch_size=16
    )
    assert [r["step"] for r in per_batch] == [10, 20]
    assert per_batch[0]["seconds"] < per_batch[1]["seconds"]
    # a full pass over the data before every update costs more time
    assert full[-1]["seconds"] > per_batch[-1]["seconds"]
    # the loss reported is that of the population-normalized network
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    bn.set_precise_stats(net, d.x_train)
    net.eval()
    with torch.no_grad():
        start = float(
            torch.nn.functional.cross_entropy(net(d.x_train), d.y_train)
        )
    assert per_batch[-1]["loss"] < start
