"""The loss around a point: along directions, under random perturbations,
and at its worst within a box (Keskar et al.'s sharpness); and how often
a model's predictions change when its inputs are perturbed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from . import runtime
from .hessian import (
    HessianOperator,
    LossFn,
    flat_params,
    top_eigenvalues,
    unflatten,
)

#: Random directions the weight-noise measure of :func:`flatness_metrics`
#: averages over.
WEIGHT_DIRECTIONS = 4


def _loss_at(model, loss_fn, x, y, flat) -> float:
    with torch.no_grad():
        out = functional_call(model, unflatten(model, flat), (x,))
        return float(loss_fn(out, y))


def loss_along(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    direction: torch.Tensor,
    alphas: Sequence[float],
) -> np.ndarray:
    """Loss at ``theta + alpha * direction`` for each alpha, shape ``(k,)``.

    With ``direction = theta_b - theta_a`` and the model at ``theta_a``,
    alpha in [0, 1] walks the segment between two solutions.
    """
    theta = flat_params(model)
    if direction.shape != theta.shape:
        raise ValueError(
            f"direction has shape {tuple(direction.shape)}, parameters "
            f"{tuple(theta.shape)}"
        )
    return np.array(
        [_loss_at(model, loss_fn, x, y, theta + a * direction) for a in alphas]
    )


def perturbed_losses(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    radii: Sequence[float],
    n_directions: int = 8,
    seed: int = 0,
    relative: bool = True,
) -> np.ndarray:
    """Mean loss increase under random parameter perturbations.

    For each radius ``r`` the parameters move by ``r * |theta| * u`` (or
    ``r * u`` when ``relative`` is false) along random unit directions
    ``u``; the result is the average increase over ``n_directions``,
    shape ``(len(radii),)``.
    """
    theta = flat_params(model)
    base = _loss_at(model, loss_fn, x, y, theta)
    gen = runtime.generator(seed)
    dirs = torch.randn(n_directions, theta.numel(), generator=gen)
    dirs = dirs.to(theta.device)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    scale = theta.norm() if relative else 1.0
    out = []
    for r in radii:
        losses = [
            _loss_at(model, loss_fn, x, y, theta + r * scale * u) for u in dirs
        ]
        out.append(np.mean(losses) - base)
    return np.array(out)


def keskar_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    eps: float = 1e-3,
    steps: int = 10,
    seed: int = 0,
) -> float:
    """Sharpness in the sense of Keskar et al. (2017), in percent: ``100
    (max f - f) / (1 + f)`` over the box ``|delta_i| <= eps (|theta_i| +
    1)``.

    Keskar et al. maximize over the box with L-BFGS-B. Here the maximum
    is sought by ``steps`` steps of projected sign-gradient ascent from a
    random point of the box, and the largest loss seen is kept: a lower
    bound on their quantity, not the quantity itself.
    """
    if eps <= 0 or steps < 1:
        raise ValueError("need eps > 0 and steps >= 1")
    theta = flat_params(model)
    bound = eps * (theta.abs() + 1)
    gen = runtime.generator(seed)
    delta = (torch.rand(theta.shape, generator=gen) * 2 - 1).to(bound)
    delta = delta * bound
    base = _loss_at(model, loss_fn, x, y, theta)
    best = base
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        out = functional_call(model, unflatten(model, theta + d), (x,))
        loss = loss_fn(out, y)
        (g,) = torch.autograd.grad(loss, d)
        best = max(best, float(loss.detach()))
        delta = torch.clamp(delta + bound * g.sign(), -bound, bound)
    best = max(best, _loss_at(model, loss_fn, x, y, theta + delta))
    return 100.0 * (best - base) / (1.0 + base)


def flatness_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    radii: Sequence[float],
    seed: int = 0,
    eps: float = 1e-3,
) -> dict:
    """The flatness measures of one solution on ``(x, y)``: the largest
    Hessian eigenvalue (``lambda_max``), Keskar sharpness (``keskar``) and
    the mean loss increase under random relative weight perturbations of
    each radius (``weight_noise``, an array)."""
    op = HessianOperator(model, loss_fn, x, y)
    return dict(
        lambda_max=float(
            top_eigenvalues(op, k=1, tol=1e-3, seed=seed).values[0]
        ),
        keskar=keskar_sharpness(model, loss_fn, x, y, eps=eps, seed=seed),
        weight_noise=perturbed_losses(
            model,
            loss_fn,
            x,
            y,
            radii,
            n_directions=WEIGHT_DIRECTIONS,
            seed=seed,
        ),
    )


def input_noise_flips(
    model: nn.Module, x: torch.Tensor, sd: float, draws: int, seed: int = 0
) -> float:
    """Share of the predictions (arg max of the outputs) on ``x`` that
    change when Gaussian noise of standard deviation ``sd`` is added to
    the inputs, averaged over ``draws`` noisy copies.

    A measure of sensitivity to input noise that does not contain the
    accuracy: it compares the model with itself, never with the labels.
    Two calls with one ``seed`` use the same noisy copies, so models are
    compared on the same noise.

    Args:
        model: a classifier; ``x``: its inputs, shape ``(n, ...)``.
        sd: noise standard deviation (> 0); draws: copies (>= 1).
        seed: seed of the noise (offset by the seed set).
    """
    if not sd > 0 or draws < 1:
        raise ValueError(f"need sd > 0 and draws >= 1, got {sd}, {draws}")
    gen = runtime.generator(seed)
    noise = torch.randn((draws, *x.shape), generator=gen).to(x)
    with torch.no_grad():
        clean = model(x).argmax(-1)
        flipped = [model(x + sd * e).argmax(-1) != clean for e in noise]
    return float(torch.stack(flipped).float().mean())
