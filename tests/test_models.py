import pytest
import torch
from torch import nn

from batchlab import models


def test_mlp_layout_and_parameter_count():
    net = models.mlp([40, 100, 100, 10])
    assert models.n_parameters(net) == 40 * 100 + 100 + 100 * 100 + 100 + 1010
    assert [type(m) for m in net] == [
        nn.Linear,
        nn.Tanh,
        nn.Linear,
        nn.Tanh,
        nn.Linear,
    ]


def test_mlp_with_batchnorm_places_it_before_the_activation():
    net = models.mlp(
        [5, 8, 3], activation="relu", batchnorm=True, bn_momentum=None
    )
    assert [type(m) for m in net] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    ]
    assert net[1].momentum is None


def test_seed_determines_weights_without_touching_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a = models.mlp([4, 6, 2], seed=3)
    assert torch.rand(1) == expected
    b = models.mlp([4, 6, 2], seed=3)
    c = models.mlp([4, 6, 2], seed=4)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_initialization_is_uniform_within_fan_in_bound():
    lin = models.linear_model(400, 3, seed=1)
    assert lin.weight.abs().max() <= 400**-0.5
    assert lin.weight.std() > 0.8 * 400**-0.5 / 3**0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sizes": [3]}, "two positive"),
        ({"sizes": [3, 0, 2]}, "positive"),
        ({"sizes": [3, 2], "activation": "gelu"}, "activation"),
    ],
)
def test_bad_arguments_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mlp(**kwargs)


def test_layernorm_and_groupnorm_options():
    net = models.mlp([5, 8, 8, 3], norm="layernorm")
    assert [type(m) for m in net] == [
        nn.Linear,
        nn.LayerNorm,
        nn.Tanh,
        nn.Linear,
        nn.LayerNorm,
        nn.Tanh,
        nn.Linear,
    ]
    gn = models.mlp([5, 8, 3], norm="groupnorm", groups=2)
    assert isinstance(gn[1], nn.GroupNorm) and gn[1].num_groups == 2
    # GroupNorm standardizes each example within each group of units
    h = gn[0](torch.randn(4, 5))
    out = gn[1](h).detach().view(4, 2, 4)
    assert torch.allclose(out.mean(2), torch.zeros(4, 2), atol=1e-5)
    assert torch.allclose(
        out.var(2, unbiased=False), torch.ones(4, 2), atol=1e-3
    )
    assert isinstance(
        models.mlp([5, 8, 3], norm="batchnorm")[1], nn.BatchNorm1d
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"norm": "weightnorm"}, "norm must be one of"),
        ({"norm": "groupnorm", "groups": 3}, "must divide"),
        ({"norm": "layernorm", "batchnorm": True}, "contradicts"),
    ],
)
def test_bad_norms_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mlp([4, 8, 2], **kwargs)


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm", "none"])
def test_conv_net_layout_shapes_and_seed(norm):
    net = models.conv_net(norm, channels=(8, 12), groups=4, seed=2)
    kinds = {"batchnorm": nn.BatchNorm2d, "groupnorm": nn.GroupNorm}
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12]
    assert [c.stride for c in convs] == [(1, 1), (2, 2)]
    if norm != "none":
        norms = [m for m in net if isinstance(m, kinds[norm])]
        assert len(norms) == 2
        # each normalization sits right after its convolution
        for conv, layer in zip(convs, norms):
            assert list(net).index(layer) == list(net).index(conv) + 1
    x = torch.randn(5, 1, 8, 8)
    assert net(x).shape == (5, 10)
    again = models.conv_net(norm, channels=(8, 12), groups=4, seed=2)
    assert torch.equal(net(x), again(x))
    # PyTorch's default bound 1/sqrt(fan_in), fan_in = 8 * 3 * 3
    assert convs[1].weight.abs().max() <= 1 / (8 * 9) ** 0.5
    assert convs[1].weight.abs().max() > 0.9 / (8 * 9) ** 0.5


def test_conv_net_explains_bad_arguments():
    with pytest.raises(ValueError, match="must divide"):
        models.conv_net("groupnorm", channels=(6, 8), groups=4)
    with pytest.raises(ValueError, match="norm must be"):
        models.conv_net("layernorm")
    with pytest.raises(ValueError, match="two positive"):
        models.conv_net(channels=(8,))
