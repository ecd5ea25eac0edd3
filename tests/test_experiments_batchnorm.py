import numpy as np
import pytest
import torch

from batchlab import batchnorm as bn
from batchlab import data, train
from batchlab.experiments import batchnorm as exp


def test_bias_escape_and_jumps():
    out = exp.bias_escape(20, 0.5, inside=False)
    inn = exp.bias_escape(20, 0.5, inside=True)
    assert out[-1]["bias"] > 5 and abs(inn[-1]["bias"]) < 1e-6
    assert abs(out[-1]["loss"] - out[0]["loss"]) < 1e-4
    d = data.mnist1d(num_samples=500)
    rows = exp.renormalization_jumps(d, [40, 8, 10], 20, 10, 0.05, 16, True)
    losses = [r["loss"] for r in rows]
    assert abs(losses[1] - losses[0]) < 1e-5


def test_layer_inputs_and_batch_mean_spread():
    d = data.mnist1d(num_samples=500)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    inputs = bn.layer_inputs(net, d.x_train, 0)
    assert torch.allclose(inputs, net[0](d.x_train), atol=1e-6)
    assert net.training  # mode restored
    rows = exp.batch_mean_spread(inputs, [4, 64], draws=400, seed=0)
    for r in rows:
        assert abs(r["ratio"] - 1) < 0.15
    assert rows[0]["theory"] > rows[1]["theory"]
    with pytest.raises(ValueError, match="batch sizes"):
        exp.batch_mean_spread(inputs, [len(inputs)], draws=5)
    with pytest.raises(ValueError, match="index"):
        bn.layer_inputs(net, d.x_train, 5)


def test_running_vs_population_rows_match_a_direct_tracker():
    d = data.mnist1d(num_samples=500)
    rows = exp.running_vs_population(
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
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(16, 0.01, 40))
    pop = bn.population_stats(net, d.x_train)[0][0]
    err = float((net[1].running_mean - pop).abs().mean())
    last = [r for r in rows if r["step"] == 40 and r["momentum"] == "0.1"]
    assert np.isclose(last[0]["error"], err, rtol=1e-5)


def test_progress_per_compute_records_time_and_population_loss():
    d = data.mnist1d(num_samples=500)
    per_batch = exp.progress_per_compute(
        d, [40, 8, 6, 10], False, 20, 10, batch_size=16
    )
    full = exp.progress_per_compute(
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
