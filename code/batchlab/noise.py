"""Gradient noise: per-sample gradients, minibatch variance, noise scale.

For a loss that is a mean over ``N`` examples, the per-sample gradients
``g_i`` have mean ``G`` (the full gradient) and covariance ``Sigma``. A
minibatch of ``B`` examples drawn without replacement has gradient
variance (trace of its covariance)

    E|g_B - G|^2 = (N - B) / (B (N - 1)) * tr(Sigma),

which is ``tr(Sigma) / B`` for ``B << N`` and zero for ``B = N``. The
"simple" noise scale of McCandlish et al. (2018) is
``B_simple = tr(Sigma) / |G|^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from . import runtime
from .train import train_sgd


def per_sample_grads(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    """Every example's gradient, shape ``(n, p)`` (``torch.func.vmap``).

    ``loss_fn(output, target)`` must accept a batch of one.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        out = functional_call(model, p, (xi[None],))
        return loss_fn(out, yi[None])

    grads = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.reshape(x.shape[0], -1) for g in grads.values()], 1)


def per_sample_sq_norms(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared norms of per-sample cross-entropy gradients and the mean
    gradient, without forming the per-sample gradients.

    For a linear layer ``z = a W^T + b`` the gradient of example ``i`` is
    ``delta_i a_i^T`` (and ``delta_i`` for the bias), whose squared norm is
    ``|delta_i|^2 (|a_i|^2 + 1)``. One forward and one backward pass of
    the summed loss give every ``a_i`` and ``delta_i``.

    Args:
        model: an ``nn.Sequential`` whose parameters all sit in
            ``nn.Linear`` layers (no BatchNorm: it couples the examples).
        x: inputs ``(n, d)``; y: class labels ``(n,)``.

    Returns:
        ``(sq_norms, mean_grad)``: shapes ``(n,)`` and ``(p,)``.
    """
    linears = [m for m in model if isinstance(m, nn.Linear)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if sum(p.numel() for m in linears for p in m.parameters()) != trainable:
        raise ValueError(
            "per_sample_sq_norms needs every parameter in nn.Linear layers; "
            "use per_sample_grads for other models"
        )
    inputs, outputs = [], []

    def keep(module, args, out):
        inputs.append(args[0].detach())
        out.retain_grad()
        outputs.append(out)

    hooks = [m.register_forward_hook(keep) for m in linears]
    try:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    sq = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for a, z in zip(inputs, outputs):
        sq += z.grad.pow(2).sum(1) * (a.pow(2).sum(1) + 1)
    mean = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return sq.detach(), mean.detach() / x.shape[0]


@dataclass(frozen=True)
class NoiseStats:
    """Gradient statistics at one point.

    Attributes:
        grad_sq_norm: ``|G|^2``, the squared norm of the full gradient.
        trace: ``tr(Sigma)``, the total per-sample gradient variance.
        n: number of examples.
    """

    grad_sq_norm: float
    trace: float
    n: int

    @property
    def b_simple(self) -> float:
        """McCandlish et al.'s simple noise scale ``tr(Sigma) / |G|^2``."""
        return self.trace / self.grad_sq_norm

    def minibatch_variance(self, batch_size: int | np.ndarray) -> np.ndarray:
        """Exact ``E|g_B - G|^2`` for sampling without replacement."""
        return minibatch_variance(self.trace, self.n, batch_size)


def noise_stats(model: nn.Sequential, x, y) -> NoiseStats:
    """:class:`NoiseStats` of the cross-entropy of ``model`` on ``(x, y)``."""
    sq, mean = per_sample_sq_norms(model, x, y)
    g2 = float(mean.double().pow(2).sum())
    trace = float(sq.double().mean()) - g2
    return NoiseStats(g2, trace, x.shape[0])


def minibatch_variance(
    trace: float, n: int, batch_size: int | np.ndarray
) -> np.ndarray:
    """``(N - B) / (B (N - 1)) tr(Sigma)``: the variance of the mean of
    ``B`` of ``N`` per-sample gradients drawn without replacement."""
    b = np.asarray(batch_size, dtype=float)
    if np.any(b < 1) or np.any(b > n):
        raise ValueError(f"batch sizes must lie in [1, {n}], got {b}")
    if n < 2:
        raise ValueError("need at least two examples")
    return (n - b) / (b * (n - 1)) * trace


def minibatch_deviations(
    model: nn.Module,
    loss_fn,
    x,
    y,
    batch_sizes: Sequence[int],
    draws: int,
    seed: int = 0,
) -> np.ndarray:
    """``|g_B - G|^2`` for ``draws`` real minibatch gradients (autograd,
    sampling without replacement) per batch size.

    Returns:
        Shape ``(len(batch_sizes), draws)``; the row means estimate
        ``E|g_B - G|^2`` and their spread gives its sampling error.
    """
    n = x.shape[0]
    params = [p for p in model.parameters() if p.requires_grad]

    def gradient(idx):
        idx = idx.to(x.device)
        g = torch.autograd.grad(loss_fn(model(x[idx]), y[idx]), params)
        return torch.cat([t.reshape(-1) for t in g]).double()

    full = gradient(torch.arange(n))
    gen = runtime.generator(seed)
    out = []
    for b in batch_sizes:
        if not 1 <= b <= n:
            raise ValueError(f"batch size must lie in [1, {n}], got {b}")
        out.append(
            [
                float(
                    (gradient(torch.randperm(n, generator=gen)[:b]) - full)
                    .pow(2)
                    .sum()
                )
                for _ in range(draws)
            ]
        )
    return np.array(out)


def measured_minibatch_variance(
    model: nn.Module,
    loss_fn,
    x,
    y,
    batch_sizes: Sequence[int],
    draws: int,
    seed: int = 0,
) -> np.ndarray:
    """``E|g_B - G|^2`` estimated by computing ``draws`` real minibatch
    gradients (autograd, sampling without replacement) per batch size.

    Returns:
        Shape ``(len(batch_sizes),)``.
    """
    return minibatch_deviations(
        model, loss_fn, x, y, batch_sizes, draws, seed
    ).mean(1)


def noise_along_training(
    model: nn.Sequential, data, cfg, checkpoints: Sequence[int]
) -> list[dict]:
    """Train ``model`` with :func:`batchlab.train.train_sgd` under ``cfg``
    and record the full-data loss, ``tr(Sigma)``, ``|G|^2`` and
    ``B_simple`` at the given steps (0 is the initial point).

    Returns:
        One row per checkpoint: ``step``, ``loss``, ``trace``, ``grad_sq``
        and ``b_simple``.
    """
    due = set(int(c) for c in checkpoints)
    if any(c < 0 or c > cfg.steps for c in due):
        raise ValueError(f"checkpoints must lie in [0, {cfg.steps}]")
    rows: list[dict] = []

    def record(step: int, net: nn.Module) -> None:
        if step not in due:
            return
        s = noise_stats(net, data.x_train, data.y_train)
        with torch.no_grad():
            loss = float(F.cross_entropy(net(data.x_train), data.y_train))
        rows.append(
            dict(
                step=step,
                loss=loss,
                trace=s.trace,
                grad_sq=s.grad_sq_norm,
                b_simple=s.b_simple,
            )
        )

    record(0, model)
    train_sgd(model, data, cfg, on_step=record)
    return rows
