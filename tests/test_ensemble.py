import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import data, ensemble, models, train


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(num_samples=600).subset(256, 100)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_handwritten_backward_equals_autograd(small, act):
    nets = [
        models.mlp([40, 12, 9, 10], activation=act, seed=s) for s in range(3)
    ]
    ens = ensemble.EnsembleMLP.from_models(nets, activation=act)
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
    ens = ensemble.EnsembleMLP.from_models(nets)
    hist = ensemble.train_ensemble(
        ens, small, 4, lrs, 60, seeds, eval_every=30
    )
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
    ens = ensemble.EnsembleMLP.from_models(nets)
    hist = ensemble.train_ensemble(
        ens, small, 8, [0.05, 1e7], 30, [0, 1], on_divergence="record"
    )
    assert hist.diverged.tolist() == [False, True]
    assert np.isfinite(hist.final_train_loss[0])
    assert np.isnan(hist.final_train_loss[1])
    ens = ensemble.EnsembleMLP.from_models(nets)
    with pytest.raises(train.DivergedError):
        ensemble.train_ensemble(ens, small, 8, [0.05, 1e7], 30, [0, 1])


def test_ensemble_rejects_batchnorm_and_mismatched_lists(small):
    with pytest.raises(ValueError, match="BatchNorm"):
        ensemble.EnsembleMLP.from_models(
            [models.mlp([4, 3, 2], batchnorm=True)]
        )
    ens = ensemble.EnsembleMLP.from_models([models.mlp([40, 3, 10])])
    with pytest.raises(ValueError, match="one learning rate"):
        ensemble.train_ensemble(ens, small, 4, [0.1, 0.1], 5, [0])


def test_epoch_batches_match_the_schedule():
    batches = ensemble.epoch_batches(10, 3, [0, 5])
    got = torch.stack([next(batches) for _ in range(7)], dim=1)
    for i, s in enumerate([0, 5]):
        assert torch.equal(got[i], train.batch_schedule(10, 3, 7, s))


def test_train_to_loss_stops_at_the_first_check_below_target(small):
    seeds, lrs, b, every = [0, 1, 2], [0.2, 0.05, 0.1], 8, 5
    nets = [models.mlp([40, 16, 10], seed=s) for s in seeds]
    ref = ensemble.EnsembleMLP.from_models(nets)
    hist = ensemble.train_ensemble(
        ref, small, b, lrs, 200, seeds, eval_every=every
    )
    target = float(np.median(hist.train_loss[:, -1])) + 0.05
    ens = ensemble.EnsembleMLP.from_models(nets)
    run = ensemble.train_to_loss(
        ens, small, b, lrs, target, 200 * b, seeds, every * b
    )
    for i in range(3):
        below = np.flatnonzero(hist.train_loss[i] < target)
        assert run.reached[i] == (len(below) > 0)
        want = hist.step[below[0]] if len(below) else 200
        assert run.steps[i] == want
        k = list(hist.step).index(want)
        assert np.isclose(run.train_loss[i], hist.train_loss[i, k], rtol=1e-4)
    assert run.reached.any() and not run.reached.all()
    np.testing.assert_array_equal(run.examples, run.steps * b)


def test_train_to_loss_checks_every_near_step_close_to_target(small):
    """Close to the target a run is checked every near step, so it stops
    at the first step below it; without finer checks, at the next coarse
    check; and when the minibatch losses stand in for the full loss far
    from the target, it stops at the same step after far fewer checks."""
    seeds, lrs, b = [0, 1], [0.5, 0.3], small.n_train  # full batch: smooth
    nets = [models.mlp([40, 16, 10], seed=s) for s in seeds]
    ref = ensemble.EnsembleMLP.from_models(nets)
    hist = ensemble.train_ensemble(ref, small, b, lrs, 400, seeds, 1)
    target = float(hist.train_loss[:, 250].max())
    first = [int(np.flatnonzero(row < target)[0]) for row in hist.train_loss]
    checks = []
    for near, steps, estimate, want in [
        (1e6, 1, False, first),
        (1.0, 1, False, [-(-k // 40) * 40 for k in first]),
        (2.0, 1, False, first),
        (2.0, 1, True, first),
    ]:
        ens = ensemble.EnsembleMLP.from_models(nets)
        run = ensemble.train_to_loss(
            ens,
            small,
            b,
            lrs,
            target,
            400 * b,
            seeds,
            40 * b,
            near,
            steps,
            estimate,
        )
        assert run.reached.all() and run.steps.tolist() == want
        checks.append(run.checks)
    assert checks[1].tolist() == [-(-k // 40) + 1 for k in first]
    assert (checks[3] < checks[2]).all()
    with pytest.raises(ValueError, match="near"):
        ensemble.train_to_loss(
            ens, small, b, lrs, target, 120 * b, seeds, 8, 0.5, 1
        )


def test_train_to_loss_equals_plain_training_until_its_budget(small):
    nets = [models.mlp([40, 16, 10], seed=s) for s in (3, 4)]
    ref = ensemble.EnsembleMLP.from_models(nets)
    ensemble.train_ensemble(ref, small, 4, [0.05, 0.05], 30, [3, 4])
    ens = ensemble.EnsembleMLP.from_models(nets)
    run = ensemble.train_to_loss(
        ens, small, 4, [0.05, 0.05], 1e-9, [30 * 4, 10 * 4], [3, 4], 7
    )
    assert run.steps.tolist() == [30, 10] and not run.reached.any()
    for a, b in zip(ens.member(0).parameters(), ref.member(0).parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    short = ensemble.EnsembleMLP.from_models(nets[1:])
    ensemble.train_ensemble(short, small, 4, [0.05], 10, [4])
    for a, b in zip(ens.member(1).parameters(), short.member(0).parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_to_loss_records_divergence_and_rejects_bad_input(small):
    nets = [models.mlp([40, 16, 10], seed=s) for s in range(2)]
    ens = ensemble.EnsembleMLP.from_models(nets)
    run = ensemble.train_to_loss(
        ens, small, 8, [0.05, 1e7], 0.01, 80, [0, 1], 8
    )
    assert run.diverged.tolist() == [False, True]
    assert np.isnan(run.train_loss[1]) and np.isfinite(run.train_loss[0])
    with pytest.raises(ValueError, match="target"):
        ensemble.train_to_loss(ens, small, 8, [0.1, 0.1], 0.0, 80, [0, 1], 8)
    with pytest.raises(ValueError, match="one learning rate"):
        ensemble.train_to_loss(ens, small, 8, [0.1], 0.1, 80, [0, 1], 8)


@pytest.mark.parametrize("estimate", [False, True])
def test_train_to_loss_result_does_not_depend_on_stack_mates(small, estimate):
    """A run stops where it would alone, after as many checks: they
    follow its own loss, not the losses of the other runs in its stack,
    some faster, some stopped early by their budget."""
    seed, b, lr, target = 0, 4, 0.05, 1.45
    mates = [(0.4, 1, 900), (0.2, 2, 100), (0.05, 3, 150), (0.4, 4, 900)]

    def train(runs):
        nets = [models.mlp([40, 16, 10], seed=s) for _, s, _ in runs]
        ens = ensemble.EnsembleMLP.from_models(nets)
        run = ensemble.train_to_loss(
            ens,
            small,
            b,
            [r for r, _, _ in runs],
            target,
            [cap * b for _, _, cap in runs],
            [s for _, s, _ in runs],
            37 * b,
            near=1.1,
            near_steps=3,
            estimate_far=estimate,
        )
        return run, ens

    alone, ens_alone = train([(lr, seed, 900)])
    stacked, ens_stacked = train([*mates, (lr, seed, 900)])  # it comes last
    assert alone.reached[0] and stacked.reached[[0, 3]].all()
    assert stacked.steps[:-1].max() < alone.steps[0]  # the mates end first
    assert stacked.steps[-1] == alone.steps[0]
    assert stacked.checks[-1] == alone.checks[0]
    assert np.isclose(stacked.train_loss[-1], alone.train_loss[0], rtol=1e-5)
    for a, c in zip(
        ens_stacked.member(4).parameters(), ens_alone.member(0).parameters()
    ):
        assert torch.allclose(a, c, atol=1e-6)
