import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchlab import batchnorm as bn
from batchlab import data, models, stacked, train


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_stacked_members_train_as_single_models(momentum):
    d = data.mnist1d(num_samples=400)
    sizes, norms, seeds = (
        [40, 7, 5, 10],
        ["batchnorm", "renorm", "layernorm"],
        [0, 1, 2],
    )
    stack = stacked.StackedNormMLP(sizes, norms, seeds, momentum)
    steps = 12

    def limits(step):
        return bn.renorm_limits(step, 2, 8, 6)

    stacked.train_stacked(
        stack, d.x_train, d.y_train, 4, 0.2, steps, seeds, limits=limits
    )
    acc = stacked.stacked_accuracy(stack, d.x_test, d.y_test)
    for m, (norm, seed) in enumerate(zip(norms, seeds)):
        net = bn.bn_mlp(sizes, norm, seed, momentum)

        def relax(step, model):
            bn.set_renorm_limits(model, *limits(step + 1))

        train.train_sgd(
            net, d, train.SGDConfig(4, 0.2, steps, seed=seed), on_step=relax
        )
        x = d.x_test[:32]
        for mode in (False, True):
            # copies: a training-mode call moves the running averages
            ours, theirs = copy.deepcopy(stack), copy.deepcopy(net)
            ours.train(mode)
            theirs.train(mode)
            with torch.no_grad():
                out = ours(x.expand(3, -1, -1).clone())[m]
                assert torch.allclose(out, theirs(x), atol=1e-4)
        net.eval()
        with torch.no_grad():
            a = (net(d.x_test).argmax(1) == d.y_test).float().mean()
        assert torch.isclose(acc[m], a)
    with pytest.raises(ValueError, match="norms must be among"):
        stacked.StackedNormMLP(sizes, ["groupnorm"], [0])


def test_new_helpers_explain_bad_inputs():
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn.data_stats_forward(
            nn.Sequential(nn.Linear(2, 2)),
            torch.ones(3, 2),
            torch.ones(5, 2),
            True,
        )
    stack = stacked.StackedNormMLP(
        [4, 6, 3], ["batchnorm", "layernorm"], [0, 1]
    )
    with pytest.raises(ValueError, match="expected inputs"):
        stack(torch.ones(3, 5, 4))
    with pytest.raises(ValueError, match="one batch-order seed"):
        stacked.train_stacked(
            stack, torch.ones(8, 4), torch.zeros(8).long(), 2, 0.1, 1, [0]
        )
    with pytest.raises(ValueError, match="one seed per norm"):
        stacked.StackedNormMLP([4, 6, 3], ["batchnorm"], [0, 1])
    with pytest.raises(ValueError, match="norm must be one of"):
        bn.bn_mlp([4, 6, 3], "weightnorm")
    with pytest.raises(ValueError, match="r_max >= 1"):
        bn.BatchRenorm1d(3).set_limits(0.5, 0.0)


@pytest.mark.parametrize("lrs", [0.1, [0.1, 0.05, 0.2, 0.1]])
def test_stacked_conv_members_train_as_single_models(lrs):
    d = data.digits(flatten=False)
    norms = ["batchnorm", "groupnorm", "batchnorm", "groupnorm"]
    seeds, steps = [0, 1, 2, 3], 8
    stack = stacked.StackedConvNet(norms, seeds, channels=(4, 8), groups=2)
    stacked.train_stacked(stack, d.x_train, d.y_train, 3, lrs, steps, seeds)
    loss, acc = stacked.stacked_metrics(stack, d.x_test, d.y_test)
    rates = lrs if isinstance(lrs, list) else [lrs] * 4
    for m, (norm, seed, lr) in enumerate(zip(norms, seeds, rates)):
        net = models.conv_net(norm, (4, 8), groups=2, seed=seed)
        train.train_sgd(net, d, train.SGDConfig(3, lr, steps, seed=seed))
        x = d.x_test[:16]
        for mode in (False, True):
            ours, theirs = copy.deepcopy(stack), copy.deepcopy(net)
            ours.train(mode)
            theirs.train(mode)
            with torch.no_grad():
                out = ours(x.expand(4, *x.shape).clone())[m]
                assert torch.allclose(out, theirs(x), atol=1e-4)
        net.eval()
        with torch.no_grad():
            out = net(d.x_test)
        assert torch.isclose(
            acc[m], (out.argmax(1) == d.y_test).float().mean()
        )
        assert torch.isclose(
            loss[m], F.cross_entropy(out, d.y_test), atol=1e-5
        )


def test_stacked_conv_explains_bad_inputs():
    stack = stacked.StackedConvNet(["batchnorm"], [0], channels=(4, 8))
    with pytest.raises(ValueError, match="expected images"):
        stack(torch.ones(1, 2, 8, 8))
    with pytest.raises(ValueError, match="norms must be among"):
        stacked.StackedConvNet(["layernorm"], [0])
    with pytest.raises(ValueError, match="one positive rate"):
        stacked.train_stacked(
            stack,
            torch.ones(4, 1, 8, 8),
            torch.zeros(4).long(),
            2,
            [0.1, 0.2],
            1,
            [0],
        )


def test_stacked_metrics_do_not_depend_on_the_chunk_size():
    # Evaluation mode: examples do not interact, so the chunk (which only
    # bounds memory) must not change a bit of the result.
    d = data.digits(flatten=False)
    norms, seeds = ["batchnorm", "groupnorm"], [0, 1]
    stack = stacked.StackedConvNet(norms, seeds, channels=(4, 8), groups=2)
    stacked.train_stacked(stack, d.x_train, d.y_train, 4, 0.1, 20, seeds)
    whole = stacked.stacked_metrics(stack, d.x_test, d.y_test, chunk=10**6)
    for chunk in (1, 7, 64):
        parts = stacked.stacked_metrics(stack, d.x_test, d.y_test, chunk=chunk)
        assert torch.equal(parts[1], whole[1])
        assert torch.allclose(parts[0], whole[0], rtol=1e-6, atol=0)
