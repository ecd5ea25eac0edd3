from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import data, models, noise, train


@pytest.fixture(scope="module")
def setup():
    d = data.mnist1d(num_samples=600)
    net = models.mlp([40, 12, 10], seed=0).double()
    return net, d.x_train[:200].double(), d.y_train[:200]


def test_fast_norms_match_vmap_per_sample_gradients(setup):
    net, x, y = setup
    G = noise.per_sample_grads(net, F.cross_entropy, x, y)
    sq, mean = noise.per_sample_sq_norms(net, x, y)
    assert torch.allclose(sq, G.pow(2).sum(1), rtol=1e-10)
    assert torch.allclose(mean, G.mean(0), atol=1e-12)
    full = torch.autograd.grad(
        F.cross_entropy(net(x), y), list(net.parameters())
    )
    assert torch.allclose(
        mean, torch.cat([g.reshape(-1) for g in full]), atol=1e-12
    )


def test_variance_law_is_exact_when_enumerating_all_batches():
    # N = 6 examples, B = 2: average over all 15 batches equals the law.
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    G = g.mean(0)
    trace = float(((g - G) ** 2).sum(1).mean())
    for b in (1, 2, 3, 6):
        devs = [
            float((g[list(c)].mean(0) - G).pow(2).sum())
            for c in combinations(range(6), b)
        ]
        assert np.isclose(np.mean(devs), noise.minibatch_variance(trace, 6, b))


def test_measured_variance_follows_the_law(setup):
    net, x, y = setup
    stats = noise.noise_stats(net, x, y)
    bs = [1, 10, 100, 200]
    measured = noise.measured_minibatch_variance(
        net, F.cross_entropy, x, y, bs, draws=200
    )
    theory = stats.minibatch_variance(np.array(bs))
    np.testing.assert_allclose(measured[:3], theory[:3], rtol=0.2)
    assert measured[3] < 1e-20 and theory[3] == 0
    assert stats.b_simple == stats.trace / stats.grad_sq_norm > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch sizes"):
        noise.minibatch_variance(1.0, 10, 0)
    with pytest.raises(ValueError, match="batch sizes"):
        noise.minibatch_variance(1.0, 10, 11)
    with pytest.raises(ValueError, match="nn.Linear"):
        noise.per_sample_sq_norms(
            models.mlp([4, 3, 2], batchnorm=True),
            torch.ones(5, 4),
            torch.zeros(5).long(),
        )


def test_noise_along_training_records_checkpoints():
    d = data.mnist1d(num_samples=300)
    net = models.mlp([40, 8, 10], seed=0)
    cfg = train.SGDConfig(8, 0.05, 20)
    rows = noise.noise_along_training(net, d, cfg, [0, 10, 20])
    assert [r["step"] for r in rows] == [0, 10, 20]
    final = noise.noise_stats(net, d.x_train, d.y_train)
    assert np.isclose(rows[-1]["b_simple"], final.b_simple)
    assert rows[-1]["loss"] < rows[0]["loss"]
    with pytest.raises(ValueError, match="checkpoints"):
        noise.noise_along_training(net, d, cfg, [30])


def test_noise_stats_match_a_loop_of_per_example_gradients(setup):
    # Independent of the fast norms and of vmap: one autograd call per
    # example, then the divide-by-N covariance of the stacked gradients.
    net, x, y = setup
    x, y = x[:60], y[:60]
    params = list(net.parameters())
    rows = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(net(x[i : i + 1]), y[i : i + 1])
        g = torch.autograd.grad(loss, params)
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    g = torch.stack(rows)  # (n, p)
    mean = g.mean(0)
    trace = float(((g - mean) ** 2).sum(1).mean())
    stats = noise.noise_stats(net, x, y)
    assert stats.n == 60
    assert np.isclose(stats.grad_sq_norm, float(mean @ mean), rtol=1e-9)
    assert np.isclose(stats.trace, trace, rtol=1e-9)
    assert np.isclose(stats.b_simple, trace / float(mean @ mean), rtol=1e-9)
    # The law for B = 7 against the trace of the covariance matrix.
    cov = torch.cov(g.T, correction=0)
    law = (60 - 7) / (7 * 59) * float(torch.trace(cov))
    assert np.isclose(stats.minibatch_variance(7), law, rtol=1e-9)
