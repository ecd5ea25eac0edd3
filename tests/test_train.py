import numpy as np
import pytest
import torch

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


def test_epochs_to_steps():
    assert train.epochs_to_steps(2, 100, 8) == 25
    assert train.epochs_to_steps(0.001, 100, 100) == 1
    with pytest.raises(ValueError):
        train.epochs_to_steps(0, 100, 8)


def test_on_step_returning_true_stops_training_there(small):
    cfg = train.SGDConfig(batch_size=8, lr=0.05, steps=40, eval_every=10)
    calls = []

    def stop_at_25(step, model):
        calls.append(step)
        return step == 25

    h = train.train_sgd(
        models.mlp([40, 16, 10], seed=1), small, cfg, on_step=stop_at_25
    )
    assert calls == list(range(1, 26))
    np.testing.assert_array_equal(h.step, [0, 10, 20, 25])
    assert h.train_loss.shape == (1, 4) and h.grad_evals == 25 * 8
    # the first 25 steps are those of an uninterrupted run
    full = train.train_sgd(
        models.mlp([40, 16, 10], seed=1),
        small,
        train.SGDConfig(batch_size=8, lr=0.05, steps=25, eval_every=10),
    )
    np.testing.assert_array_equal(h.train_loss, full.train_loss)
    # a callback that returns something else than True does not stop it
    h = train.train_sgd(
        models.mlp([40, 16, 10], seed=1), small, cfg, on_step=lambda s, m: 1
    )
    assert h.step[-1] == 40


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_plain_sgd_is_torch_sgd_to_the_last_bit(momentum):
    """PlainSGD replaces torch.optim.SGD in the trainers for speed only:
    the same parameters, bit for bit, after many steps (a BatchNorm MLP,
    whose running statistics are buffers, not parameters)."""
    from batchlab import batchnorm as bn

    torch.manual_seed(0)
    x, y = torch.randn(256, 12), torch.randint(0, 5, (256,))
    nets = [bn.bn_mlp([12, 16, 16, 5], "batchnorm", seed=3) for _ in range(2)]
    ours = train.PlainSGD(nets[0].parameters(), lr=0.1, momentum=momentum)
    theirs = torch.optim.SGD(nets[1].parameters(), lr=0.1, momentum=momentum)
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        idx = torch.randint(0, 256, (16,), generator=gen)
        for net, opt in zip(nets, (ours, theirs)):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(
        nets[0].state_dict().values(), nets[1].state_dict().values()
    ):
        assert torch.equal(a, b)
