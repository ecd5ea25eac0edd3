"""Small models: MLPs with optional BatchNorm, a small convolutional
network for 8x8 images, linear and logistic models.

Every constructor takes a ``seed`` and initializes from its own
``torch.Generator``, so two calls with one seed give equal weights and the
global generator is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import runtime

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
# Normalization layers an MLP can place before each hidden activation.
NORMS = (None, "batchnorm", "layernorm", "groupnorm")


def empty_linear(d_in: int, d_out: int) -> nn.Linear:
    """An ``nn.Linear`` with uninitialized weights (no global RNG draw)."""
    return torch.nn.utils.skip_init(nn.Linear, d_in, d_out)


def _init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    # PyTorch's default (uniform in +-1/sqrt(fan_in)), drawn from `gen`.
    bound = 1.0 / layer.in_features**0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)


def mlp(
    sizes: Sequence[int],
    activation: str = "tanh",
    batchnorm: bool = False,
    seed: int = 0,
    bn_momentum: float | None = 0.1,
    norm: str | None = None,
    groups: int = 4,
    device: torch.device | str | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Each hidden layer is ``Linear``, then a normalization layer (when
    ``batchnorm`` or ``norm``), then the activation; the last layer is a
    plain ``Linear`` giving logits or a regression output.

    Args:
        sizes: layer widths, input first, output last (at least two).
        activation: ``"tanh"`` or ``"relu"``.
        batchnorm: insert ``BatchNorm1d`` before every hidden activation.
        seed: seed of the initialization.
        bn_momentum: momentum of the BatchNorm running averages (``None``
            for PyTorch's cumulative average).
        norm: ``"batchnorm"`` (as ``batchnorm=True``), ``"layernorm"``
            (``nn.LayerNorm``: each example over its own units) or
            ``"groupnorm"`` (``nn.GroupNorm`` with ``groups`` groups of
            units per example); the last two do not depend on the batch.
        groups: number of groups of ``"groupnorm"``; it must divide every
            hidden width.
        device: where the weights live; ``runtime.device()`` (a GPU only
            at full scale) when omitted. They are drawn on the CPU first,
            so a seed gives the same network on every device.

    Returns:
        An ``nn.Sequential``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"sizes needs at least two positive widths, got {sizes}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, "
            f"got {activation!r}"
        )
    if batchnorm:
        if norm not in (None, "batchnorm"):
            raise ValueError(f"batchnorm=True contradicts norm={norm!r}")
        norm = "batchnorm"
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "groupnorm" and any(w % groups for w in sizes[1:-1]):
        raise ValueError(
            f"groups={groups} must divide every hidden width {sizes[1:-1]}"
        )
    gen = runtime.generator(seed)
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = empty_linear(d_in, d_out)
        _init_linear(linear, gen)
        layers.append(linear)
        if i < len(sizes) - 2:
            if norm == "batchnorm":
                layers.append(nn.BatchNorm1d(d_out, momentum=bn_momentum))
            elif norm == "layernorm":
                layers.append(nn.LayerNorm(d_out))
            elif norm == "groupnorm":
                layers.append(nn.GroupNorm(groups, d_out))
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers).to(device or runtime.device())


# Normalization layers the convolutional network can place after each
# convolution.
CONV_NORMS = ("batchnorm", "groupnorm", "none")


def _init_conv(layer: nn.Conv2d, gen: torch.Generator) -> None:
    # PyTorch's default for convolutions, as for linear layers: uniform in
    # +-1/sqrt(fan_in) with fan_in = in_channels * kernel area.
    fan_in = layer.weight[0].numel()
    bound = 1.0 / fan_in**0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)


def conv_net(
    norm: str = "batchnorm",
    channels: Sequence[int] = (16, 32),
    classes: int = 10,
    groups: int = 4,
    momentum: float | None = 0.1,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> nn.Sequential:
    """A small convolutional network for one-channel images such as the
    8x8 handwritten digits (:func:`batchlab.data.digits` with
    ``flatten=False``).

    Two 3x3 convolutions (padding 1; the second with stride 2, halving
    the image), each followed by the normalization and a ReLU, then the
    mean over positions and a linear layer to the logits. BatchNorm
    (``nn.BatchNorm2d``) normalizes each channel over the batch and all
    positions, ``B x H x W`` values; GroupNorm (``nn.GroupNorm``) each
    example over a group of ``channels / groups`` channels and all
    positions, without looking at the batch.

    Args:
        norm: ``"batchnorm"``, ``"groupnorm"`` or ``"none"``.
        channels: output channels of the two convolutions.
        classes: outputs (logits).
        groups: GroupNorm's groups; it must divide both channel counts.
        momentum: BatchNorm's running-average momentum (``None``:
            cumulative).
        seed: seed of the initialization (drawn on the CPU, so a seed
            gives the same network on every device).
        device: where the weights live; ``runtime.device()`` if omitted.

    Returns:
        An ``nn.Sequential`` mapping ``(n, 1, H, W)`` to ``(n, classes)``.
    """
    channels = [int(c) for c in channels]
    if len(channels) != 2 or min(channels) < 1 or classes < 1:
        raise ValueError(
            f"need two positive channel counts and classes >= 1, got "
            f"channels={channels}, classes={classes}"
        )
    if norm not in CONV_NORMS:
        raise ValueError(f"norm must be one of {CONV_NORMS}, got {norm!r}")
    if norm == "groupnorm" and any(c % groups for c in channels):
        raise ValueError(
            f"groups={groups} must divide both channel counts {channels}"
        )
    gen = runtime.generator(seed)
    layers: list[nn.Module] = []
    for c_in, c_out, stride in zip([1, *channels[:1]], channels, (1, 2)):
        conv = torch.nn.utils.skip_init(
            nn.Conv2d, c_in, c_out, 3, stride=stride, padding=1
        )
        _init_conv(conv, gen)
        layers.append(conv)
        if norm == "batchnorm":
            layers.append(nn.BatchNorm2d(c_out, momentum=momentum))
        elif norm == "groupnorm":
            layers.append(nn.GroupNorm(groups, c_out))
        layers.append(nn.ReLU())
    head = empty_linear(channels[-1], classes)
    _init_linear(head, gen)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), head]
    return nn.Sequential(*layers).to(device or runtime.device())


def linear_model(d_in: int, d_out: int = 1, seed: int = 0) -> nn.Linear:
    """A linear (or, with cross-entropy, logistic/softmax) model."""
    if d_in < 1 or d_out < 1:
        raise ValueError("d_in and d_out must be positive")
    layer = empty_linear(d_in, d_out)
    _init_linear(layer, runtime.generator(seed))
    return layer


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
