"""Small models: MLPs with optional BatchNorm, linear and logistic models.

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
