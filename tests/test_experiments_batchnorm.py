import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

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
    n = len(inputs)
    # B close to N: sampling without replacement shrinks the spread by
    # sqrt((N - B) / (N - 1)) = 0.32 against sigma / sqrt(B)
    b = n - 40
    rows = exp.batch_mean_spread(inputs, [4, b], draws=400, seed=0)
    sigma = inputs.std(0, unbiased=False)
    naive = float((sigma / b**0.5).mean())
    assert np.isclose(
        rows[1]["theory"], naive * ((n - b) / (n - 1)) ** 0.5, rtol=1e-5
    )
    for r in rows:
        assert abs(r["ratio"] - 1) < 0.12
    assert rows[1]["measured"] < 0.5 * naive
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
        layer_index=1,
        batch_size=16,
    )
    assert [r["step"] for r in rows] == [20, 20, 40, 40]
    assert {r["momentum"] for r in rows} == {"0.1", "cumulative"}
    # momentum 0.1 equals torch's own running mean of the second layer,
    # compared with that layer's inputs under population-normalized
    # layers below: rebuild the run and compute them by hand
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(16, 0.01, 40))
    with torch.no_grad():
        h1 = net[0](d.x_train)
        z = (h1 - h1.mean(0)) / torch.sqrt(h1.var(0, unbiased=False) + 1e-5)
        h2 = net[3](torch.tanh(z * net[1].weight + net[1].bias))
    diff = (net[4].running_mean - h2.mean(0)).abs()
    last = [r for r in rows if r["step"] == 40 and r["momentum"] == "0.1"]
    assert np.isclose(last[0]["error"], float(diff.mean()), rtol=1e-4)
    sigma = h2.std(0, unbiased=False)
    rel = float((diff / sigma).mean())
    assert np.isclose(last[0]["rel_error"], rel, rtol=1e-3)


def test_update_work_counts_examples_per_update():
    d = data.mnist1d(num_samples=500)
    rows = exp.update_work(
        [100, 400], d.x_train, d.y_train, [40, 8, 6, 10], 16, repeats=2
    )
    got = {(r["n"], r["mode"]): r["examples"] for r in rows}
    for n in (100, 400):
        assert got[(n, "per batch")] == 16
        assert got[(n, "whole data, constant")] == n + 16
        assert got[(n, "whole data, differentiated")] == n + 16
    with pytest.raises(ValueError, match="batch_size <= n"):
        exp.update_work([8], d.x_train, d.y_train, [40, 8, 10], 16)


def test_progress_per_update_counts_work_and_drift():
    d = data.mnist1d(num_samples=500).subset(200)
    sizes = [40, 8, 6, 10]
    runs = {
        mode: exp.progress_per_update(d, sizes, mode, 20, 10, batch_size=16)
        for mode in exp.MODES
    }
    assert [r["step"] for r in runs["per batch"]] == [0, 10, 20]
    assert runs["per batch"][0]["examples"] == 0
    assert runs["per batch"][-1]["examples"] == 20 * 16
    assert runs["whole data, constant"][-1]["examples"] == 20 * (200 + 16)
    # statistics inside the gradient: biases before BatchNorm get none
    assert runs["per batch"][-1]["bias_drift"] < 1e-5
    assert runs["whole data, differentiated"][-1]["bias_drift"] < 1e-5
    drift = [r["bias_drift"] for r in runs["whole data, constant"]]
    assert drift[0] == 0 and 0.01 < drift[1] < drift[2]
    # the loss reported is that of the population-normalized network
    net = bn.bn_mlp(sizes, seed=0)
    bn.set_precise_stats(net, d.x_train)
    net.eval()
    with torch.no_grad():
        start = float(F.cross_entropy(net(d.x_train), d.y_train))
    for rows in runs.values():
        assert rows[-1]["loss"] < start
    with pytest.raises(ValueError, match="mode"):
        exp.progress_per_update(d, sizes, "sometimes", 2, 1)


def test_train_eval_agreement():
    d = data.mnist1d(num_samples=500)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(16, 0.1, 100))
    x, y = d.x_test, d.y_test
    bn.set_precise_stats(net, x)  # evaluation mode = one batch of all x
    saved = net[1].running_mean.clone()
    rows = exp.train_eval_agreement(net, x, y, [2, len(x)])
    assert torch.equal(net[1].running_mean, saved)  # a copy was used
    whole = [r for r in rows if r["B"] == len(x) and r["batches"] == "random"]
    assert whole[0]["agreement"] > 0.99
    assert {r["batches"] for r in rows} == {"random", "one class"}
    with torch.no_grad():
        net.eval()
        acc = float((net(x).argmax(1) == y).float().mean())
    assert all(np.isclose(r["eval_accuracy"], acc) for r in rows)
    # batches that hold one class never mix labels
    for chunk in exp._batches(torch.argsort(y, stable=True), y, 7, True):
        labels = torch.unique(y[chunk])
        assert len(labels) == 1
        assert len(chunk) == min(7, int((y == labels[0]).sum()))
    with pytest.raises(ValueError, match="batch sizes"):
        exp.train_eval_agreement(net, x, y, [1])


def test_effective_rate_with_and_without_batchnorm():
    d = data.mnist1d(num_samples=500)
    sizes = [40, 8, 6, 10]
    with_bn = exp.effective_rate(d, sizes, "batchnorm", 8, 0.2, 30, 10)
    plain = exp.effective_rate(d, sizes, "none", 8, 0.2, 30, 10)
    assert [r["step"] for r in with_bn] == [0, 10, 20, 30]
    assert with_bn[0]["rate_ratio"] == 1 and with_bn[0]["kicks"] == 0
    last = with_bn[-1]
    # scale invariance: g is orthogonal to w, so |w|^2 grows by lr^2 |g|^2
    assert last["cos"] < 1e-2
    assert np.isclose(last["growth"], last["kicks"], rtol=1e-3)
    assert last["rate_ratio"] < 1
    net = bn.bn_mlp(sizes, seed=0)
    w2 = (net[0].weight.detach() ** 2).sum(1)
    assert np.isclose(
        last["rate"], float((0.2 / (w2 + last["growth"])).mean()), rtol=0.2
    )
    assert plain[-1]["cos"] > 0.05
    assert not np.isclose(plain[-1]["growth"], plain[-1]["kicks"], rtol=0.1)


def test_batchnorm_eps_is_what_breaks_orthogonality():
    """w.g = eps / (var + eps) * sum(dL/dy_hat * y_hat) for a BatchNorm
    unit: with PyTorch's eps the cosine is small but not zero; with a
    negligible eps in float64 it vanishes to rounding."""
    d = data.mnist1d(num_samples=500)
    sizes = [40, 8, 6, 10]
    default = exp.effective_rate(
        d, sizes, "batchnorm", 4, 0.2, 30, 30, dtype=torch.float64
    )
    tiny = exp.effective_rate(
        d, sizes, "batchnorm", 4, 0.2, 30, 30, eps=1e-14, dtype=torch.float64
    )
    assert tiny[-1]["cos"] < 1e-9 < default[-1]["cos"]
    assert np.isclose(tiny[-1]["growth"], tiny[-1]["kicks"], rtol=1e-9)
    with pytest.raises(ValueError, match="eps must be positive"):
        exp.effective_rate(d, sizes, "batchnorm", 4, 0.2, 3, 1, eps=0.0)


def test_effective_rate_control_takes_statistics_from_the_large_batch():
    d = data.mnist1d(num_samples=500)
    sizes = [40, 8, 6, 10]
    same = exp.effective_rate(d, sizes, "batchnorm", 8, 0.2, 3, 1)
    also = exp.effective_rate(d, sizes, "batchnorm", 8, 0.2, 3, 1, 0, 8)
    assert same == also
    ghost = exp.effective_rate(d, sizes, "batchnorm", 4, 0.2, 1, 1, 0, 16)
    # by hand: 16 examples through the network, the loss on the first 4
    net = bn.bn_mlp(sizes, seed=0)
    idx = train.batch_schedule(d.n_train, 16, 1, 0)[0]
    out = net(d.x_train[idx])
    F.cross_entropy(out[:4], d.y_train[idx][:4]).backward()
    kick = 0.2**2 * float((net[0].weight.grad ** 2).sum(1).mean())
    assert np.isclose(ghost[-1]["kicks"], kick, rtol=1e-5)
    small = exp.effective_rate(d, sizes, "batchnorm", 4, 0.2, 1, 1)
    assert not np.isclose(small[-1]["kicks"], kick, rtol=1e-3)
    with pytest.raises(ValueError, match="stat_batch"):
        exp.effective_rate(d, sizes, "batchnorm", 8, 0.2, 3, 1, 0, 4)


def test_pair_training_sees_only_signs():
    d = data.mnist1d(num_samples=500)
    out = exp.pair_training(d, [40, 8, 6, 10], 0.1, 20, pairs=50)
    assert out["share_unit"] > 0.9
    # the training-mode accuracy is that of an identically trained copy
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(2, 0.1, 20))
    rows = exp.train_eval_agreement(net, d.x_train, d.y_train, [2])
    assert np.isclose(out["train_mode_acc"], rows[0]["accuracy"])
    assert np.isclose(out["eval_mode_acc"], rows[0]["eval_accuracy"])


def test_outlier_measures_and_hessian_rows():
    m = exp.outlier_measures([1.0, 8.0, 2.0, 4.0])
    assert m["ratio"] == 8.0 and m["gap"] == 2.0
    assert exp.outlier_measures([9.0, 3.0, 2.0])["gap"] == 3.0
    with pytest.raises(ValueError, match="positive"):
        exp.outlier_measures([1.0, -1.0])
    d = data.mnist1d(num_samples=500)
    rows = exp.hessian_outliers(d, [40, 6, 5, 10], 5, 50, 4, seeds=1)
    assert [r["network"] for r in rows] == [
        "no BatchNorm",
        "BatchNorm, batch statistics",
        "BatchNorm, population statistics",
    ]
    for r in rows:
        assert r["lambda_1"] >= r["lambda_k"] > 0 or r["lambda_k"] <= 0
        assert len(r["eigenvalues"]) == 4
        assert r["eigenvalues"][0] == r["lambda_1"]
        assert r["eigenvalues"][-1] == r["lambda_k"]
    # the loss is that of the network the Hessian belongs to
    net = bn.bn_mlp([40, 6, 5, 10], "none", seed=0, activation="relu")
    train.train_sgd(net, d, train.SGDConfig(32, 0.05, 5))
    with torch.no_grad():
        loss = float(F.cross_entropy(net(d.x_train[:50]), d.y_train[:50]))
    assert np.isclose(rows[0]["loss"], loss, rtol=1e-5)


def test_small_batch_study_rows():
    d = data.mnist1d(num_samples=500)
    rows = exp.small_batch_study(
        d, [40, 6, 5, 10], [2, 16], [8, 4], 0.1, seeds=2, checkpoints=2
    )
    frame = pd.DataFrame(rows)
    assert set(frame["norm"]) == {"batchnorm", "renorm", "layernorm"}
    assert sorted(frame.groupby("B")["step"].unique().map(list)) == [
        [2, 4],
        [4, 8],
    ]
    assert len(frame) == 2 * 2 * 3 * 2
    assert frame["test_acc"].between(0, 1).all()
    with pytest.raises(ValueError, match="step count"):
        exp.small_batch_study(d, [40, 6, 10], [2], [8, 4], 0.1, seeds=1)
