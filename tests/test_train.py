import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batchlab import data, models, train


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(num_samples=600).subset(256, 100)


def test_schedule_visits_every_example_once_per_epoch():
    order = train.batch_schedule(n=10, batch_size=3, steps=6, seed=0)
    assert order.shape == (6, 3)
    first, second = order[:3].flatten(), order[3:].flatten()
    assert len(set(first.tolist())) == 9 and len(set(second.tolist())) == 9
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0, lr=0.1, steps=1), "batch size"),
        (dict(batch_size=257, lr=0.1, steps=1), "batch size"),
        (dict(batch_size=4, lr=0.0, steps=1), "learning rate"),
        (dict(batch_size=4, lr=-1.0, steps=1), "learning rate"),
        (dict(batch_size=4, lr=0.1, steps=0), "steps"),
        (dict(batch_size=4, lr=0.1, steps=1, momentum=1.0), "momentum"),
    ],
)
def test_bad_settings_are_explained(small, kwargs, match):
    cfg = train.SGDConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        train.train_sgd(models.mlp([40, 8, 10]), small, cfg)


def test_same_seed_same_history_bit_for_bit(small):
    cfg = train.SGDConfig(batch_size=8, lr=0.05, steps=40, eval_every=10)
    h1 = train.train_sgd(models.mlp([40, 16, 10], seed=1), small, cfg)
    h2 = train.train_sgd(models.mlp([40, 16, 10], seed=1), small, cfg)
    np.testing.assert_array_equal(h1.train_loss, h2.train_loss)
    np.testing.assert_array_equal(h1.step, [0, 10, 20, 30, 40])
    assert h1.final_train_loss[0] < h1.train_loss[0, 0]
    assert h1.grad_evals == 320


def test_diverging_run_stops_with_a_clear_error(small):
    cfg = train.SGDConfig(batch_size=16, lr=1e6, steps=50)
    with pytest.raises(train.DivergedError, match="lower the learning rate"):
        train.train_sgd(models.mlp([40, 16, 10]), small, cfg)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_handwritten_backward_equals_autograd(small, act):
    nets = [
        models.mlp([40, 12, 9, 10], activation=act, seed=s) for s in range(3)
    ]
    ens = train.EnsembleMLP.from_models(nets, activation=act)
    x = small.x_train[:15].expand(3, -1, -1).contiguous()
    y = small.y_train[:15].expand(3, -1).contiguous()
    loss, dW, db = ens.loss_and_grads(x, y)
    for i, net in enumerate(nets):
        ref = F.cross_entropy(net(x[i]), y[i])
        ref.backward()
        assert torch.allclose(loss[i], ref, atol=1e-6)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for k, lin in enumerate(linears):
            assert torch.allclose(dW[k][i], lin.weight.grad.T, atol=1e-6)
            assert torch.allclose(db[k][i, 0], lin.bias.grad, atol=1e-6)


def test_ensemble_training_equals_sequential_training(small):
    seeds, lrs = [0, 1, 2], [0.05, 0.1, 0.02]
    nets = [models.mlp([40, 16, 10], seed=s) for s in seeds]
    ens = train.EnsembleMLP.from_models(nets)
    hist = train.train_ensemble(ens, small, 4, lrs, 60, seeds, eval_every=30)
    for i, (s, lr) in enumerate(zip(seeds, lrs)):
        net = models.mlp([40, 16, 10], seed=s)
        cfg = train.SGDConfig(
            batch_size=4, lr=lr, steps=60, seed=s, eval_every=30
        )
        ref = train.train_sgd(net, small, cfg)
        np.testing.assert_allclose(
            hist.train_loss[i], ref.train_loss[0], rtol=1e-5
        )
        np.testing.assert_allclose(hist.test_acc[i], ref.test_acc[0])
        member = ens.member(i)
        for a, b in zip(member.parameters(), net.parameters()):
            assert torch.allclose(a, b, atol=1e-5)


def test_ensemble_records_or_raises_divergence(small):
    nets = [models.mlp([40, 16, 10], seed=s) for s in range(2)]
    ens = train.EnsembleMLP.from_models(nets)
    hist = train.train_ensemble(
        ens, small, 8, [0.05, 1e7], 30, [0, 1], on_divergence="record"
    )
    assert hist.diverged.tolist() == [False, True]
    assert np.isfinite(hist.final_train_loss[0])
    assert np.isnan(hist.final_train_loss[1])
    ens = train.EnsembleMLP.from_models(nets)
    with pytest.raises(train.DivergedError):
        train.train_ensemble(ens, small, 8, [0.05, 1e7], 30, [0, 1])


def test_ensemble_rejects_batchnorm_and_mismatched_lists(small):
    with pytest.raises(ValueError, match="BatchNorm"):
        train.EnsembleMLP.from_models([models.mlp([4, 3, 2], batchnorm=True)])
    ens = train.EnsembleMLP.from_models([models.mlp([40, 3, 10])])
    with pytest.raises(ValueError, match="one learning rate"):
        train.train_ensemble(ens, small, 4, [0.1, 0.1], 5, [0])


def test_epochs_to_steps():
    assert train.epochs_to_steps(2, 100, 8) == 25
    assert train.epochs_to_steps(0.001, 100, 100) == 1
    with pytest.raises(ValueError):
        train.epochs_to_steps(0, 100, 8)


def test_sweep_config_rules_and_sweep_rows(small):
    cfg = train.SweepConfig((40, 8, 10), (4, 256), 2, 0.05, 16, 1, 5)
    assert cfg.lr("fixed", 256) == 0.05
    assert cfg.lr("linear", 32) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="rule"):
        cfg.lr("sqrt", 4)
    rows, nets = train.batch_size_sweep(cfg, small)
    assert len(rows) == 2 * 2 * 2 * 2 == len(nets)
    r = next(r for r in rows if r["budget"] == "epochs" and r["B"] == 4)
    assert r["steps"] == 64 and r["grad_evals"] == 256
