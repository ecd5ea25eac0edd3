"""BatchNorm written out, population statistics and running averages.

* :class:`ScratchBatchNorm1d` -- BatchNorm for ``(n, c)`` inputs written
  out for the text; equal to ``nn.BatchNorm1d`` in both modes.
* :class:`BatchRenorm1d` -- Batch Renormalization (Ioffe 2017).
* :func:`population_stats` / :func:`set_precise_stats` -- exact mean and
  variance of every BatchNorm layer's inputs over a data set under the
  current weights ("precise BN").
* :class:`RunningTracker` -- running averages of several momenta riding
  along one training run, compared with population statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn


def _check_momentum(momentum: float | None) -> None:
    if momentum is not None and not 0 <= momentum <= 1:
        raise ValueError(
            f"momentum must lie in [0, 1] (or be None for a cumulative "
            f"average), got {momentum}"
        )


def _check_batch(x: torch.Tensor, features: int) -> None:
    if x.ndim != 2 or x.shape[1] != features:
        raise ValueError(
            f"expected inputs of shape (n, {features}), got {tuple(x.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(
            "BatchNorm in training mode needs at least 2 examples per batch "
            "(the variance of one example is zero); use a larger batch or "
            "call .eval()"
        )


class ScratchBatchNorm1d(nn.Module):
    """BatchNorm over the batch dimension of ``(n, c)`` inputs.

    Training mode (``module.training``, not gradient mode) normalizes
    with the batch mean and biased variance and updates
    ``running = (1 - momentum) running + momentum * batch`` with the
    *unbiased* batch variance; ``momentum=None`` keeps a cumulative
    average. Evaluation mode normalizes with the running statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        super().__init__()
        _check_momentum(momentum)
        self.num_features, self.eps, self.momentum = (
            num_features,
            eps,
            momentum,
        )
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(n, c)``."""
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            _check_batch(x, self.num_features)
            mean, var = x.mean(0), x.var(0, unbiased=False)
            self._update(mean.detach(), x.var(0, unbiased=True).detach())
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight + self.bias

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var_unbiased: torch.Tensor):
        self.num_batches_tracked += 1
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(m * mean)
        self.running_var.mul_(1 - m).add_(m * var_unbiased)


class BatchRenorm1d(ScratchBatchNorm1d):
    """Batch Renormalization: batch statistics corrected towards the
    running ones by ``r`` and ``d``, treated as constants in the gradient.

    ``y = ((x - mu_B) / sigma_B * r + d) * weight + bias`` with
    ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
    ``d = clip((mu_B - mu) / sigma, -d_max, d_max)``. With ``r_max = 1``
    and ``d_max = 0`` it is BatchNorm.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.01,
        r_max: float = 3.0,
        d_max: float = 5.0,
    ):
        super().__init__(num_features, eps, momentum)
        if r_max < 1 or d_max < 0:
            raise ValueError("need r_max >= 1 and d_max >= 0")
        self.r_max, self.d_max = r_max, d_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(n, c)``."""
        if not self.training:
            return super().forward(x)
        _check_batch(x, self.num_features)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        sigma_b = torch.sqrt(var + self.eps)
        sigma = torch.sqrt(self.running_var + self.eps)
        with torch.no_grad():
            r = (sigma_b / sigma).clamp(1 / self.r_max, self.r_max)
            d = ((mean - self.running_mean) / sigma).clamp(
                -self.d_max, self.d_max
            )
        self._update(mean.detach(), x.var(0, unbiased=True).detach())
        x_hat = (x - mean) / sigma_b * r + d
        return x_hat * self.weight + self.bias


def bn_mlp(
    sizes: Sequence[int],
    norm: str = "batchnorm",
    seed: int = 0,
    momentum: float | None = 0.1,
) -> nn.Sequential:
    """A tanh MLP with ``nn.BatchNorm1d`` (``norm="batchnorm"``),
    :class:`BatchRenorm1d` (``"renorm"``) or nothing (``"none"``) before
    every hidden activation."""
    from .models import mlp

    if norm not in ("batchnorm", "renorm", "none"):
        raise ValueError(f"norm must be batchnorm, renorm or none: {norm!r}")
    net = mlp(sizes, batchnorm=norm != "none", seed=seed, bn_momentum=momentum)
    if norm == "renorm":
        for i, m in enumerate(net):
            if isinstance(m, nn.BatchNorm1d):
                net[i] = BatchRenorm1d(m.num_features, momentum=momentum)
    return net


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers (torch's and ours), in order."""
    kinds = (nn.BatchNorm1d, ScratchBatchNorm1d)
    return [m for m in model.modules() if isinstance(m, kinds)]


@torch.no_grad()
def population_stats(
    model: nn.Module, x: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mean and (biased) variance of each BatchNorm layer's inputs over
    all of ``x``, layer by layer: layer k's inputs are computed with the
    layers below normalized by *their* population statistics, as a single
    batch of the whole data set would do.

    Returns:
        One ``(mean, var)`` pair of shape ``(c,)`` per BatchNorm layer.
    """
    layers = bn_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer")
    was_training = model.training
    saved = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    stats = []
    try:
        for k, layer in enumerate(layers):
            inputs = layer_inputs(model, x, k)
            mean, var = inputs.mean(0), inputs.var(0, unbiased=False)
            stats.append((mean, var))
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
    finally:
        for m, (rm, rv) in zip(layers, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
        model.train(was_training)
    return stats


@torch.no_grad()
def set_precise_stats(model: nn.Module, x: torch.Tensor) -> None:
    """Replace every running average by the population statistics."""
    for layer, (mean, var) in zip(
        bn_layers(model), population_stats(model, x)
    ):
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)


def ema_variance(
    momentum: float, sigma2: float | np.ndarray, batch_size: int
) -> np.ndarray:
    """Stationary variance of an EMA of batch means around a fixed target:
    ``alpha / (2 - alpha) * sigma^2 / B``."""
    _check_momentum(momentum)
    return momentum / (2 - momentum) * np.asarray(sigma2) / batch_size


class RunningTracker:
    """Running means of one BatchNorm layer's inputs for several momenta,
    fed with the same batch means a training run produces.

    Because running statistics never affect training-mode outputs, every
    momentum can ride along one run; each tracked value equals what an
    ``nn.BatchNorm1d`` with that momentum would hold.
    """

    def __init__(self, layer: nn.Module, momenta: Sequence[float | None]):
        for m in momenta:
            _check_momentum(m)
        self.momenta = list(momenta)
        c = layer.num_features
        self.means = {m: torch.zeros(c) for m in self.momenta}
        self.count = 0
        self._hook = layer.register_forward_hook(self._see)

    def _see(self, module, args, out) -> None:
        if not module.training:
            return
        batch_mean = args[0].detach().mean(0)
        self.count += 1
        for m in self.momenta:
            a = 1.0 / self.count if m is None else m
            self.means[m].mul_(1 - a).add_(a * batch_mean)

    def remove(self) -> None:
        """Stop tracking."""
        self._hook.remove()


# --------------------------------------------------------------------------
# Experiments


def update_cost(
    n_values: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    sizes: Sequence[int],
    batch_size: int,
    repeats: int = 20,
) -> list[dict]:
    """Seconds per SGD update with per-batch BatchNorm and with every
    layer normalized by statistics of the whole (first ``n``) data set,
    recomputed before each update (a full forward pass).

    Returns:
        Rows with ``n``, ``per_batch_s``, ``full_data_s`` and ``ratio``.
    """
    import time

    import torch.nn.functional as F

    rows = []
    for n in n_values:
        if not batch_size <= n <= x.shape[0]:
            raise ValueError(f"need batch_size <= n <= {x.shape[0]}")
        net = bn_mlp(sizes, seed=0)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        xb, yb = x[:batch_size], y[:batch_size]
        times = {}
        for mode in ("per_batch", "full_data"):
            start = time.perf_counter()
            for _ in range(repeats):
                if mode == "full_data":
                    set_precise_stats(net, x[:n])
                    net.eval()  # normalize with the data-set statistics
                loss = F.cross_entropy(net(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                net.train()
            times[mode] = (time.perf_counter() - start) / repeats
        rows.append(
            dict(
                n=n,
                per_batch_s=times["per_batch"],
                full_data_s=times["full_data"],
                ratio=times["full_data"] / times["per_batch"],
            )
        )
    return rows


def bias_escape(
    steps: int, lr: float, inside: bool, seed: int = 0, n: int = 64
) -> list[dict]:
    """Ioffe and Szegedy's example: ``x_hat = x - E[x]`` with
    ``x = u + b``, trained on a squared loss.

    With ``inside=False`` the mean is computed outside the gradient (a
    constant), so every step moves ``b`` although the normalized output,
    and the loss, cannot change; with ``inside=True`` the gradient flows
    through the mean and ``b`` stays put.

    Returns:
        Rows with ``step``, ``bias`` and ``loss``.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n, generator=gen)
    target = torch.randn(n, generator=gen) + 1.0
    b = torch.zeros((), requires_grad=True)
    rows = []
    for step in range(steps + 1):
        x = u + b
        mean = x.mean() if inside else x.mean().detach()
        loss = ((x - mean - target) ** 2).mean()
        rows.append(dict(step=step, bias=b.item(), loss=loss.item()))
        (g,) = torch.autograd.grad(loss, b)
        with torch.no_grad():
            b -= lr * g
    return rows


def renormalization_jumps(
    data,
    sizes: Sequence[int],
    steps: int,
    every: int,
    lr: float,
    batch_size: int,
    compensate: bool,
    seed: int = 0,
) -> list[dict]:
    """Train a :class:`~batchlab.normalize.CenteredMLP` and standardize
    every hidden layer over the training set every ``every`` steps, with
    or without compensating the next layer.

    Returns:
        Rows with ``step``, ``loss`` (training loss over the whole set)
        and ``event`` (``"step"``, or ``"renormalized"`` just after one).
    """
    import torch.nn.functional as F

    from .normalize import CenteredMLP
    from .train import batch_schedule

    net = CenteredMLP(sizes, seed=seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = batch_schedule(data.n_train, batch_size, steps, seed)
    x, y = data.x_train, data.y_train
    rows = []

    def record(step, event):
        with torch.no_grad():
            rows.append(
                dict(
                    step=step,
                    event=event,
                    loss=float(F.cross_entropy(net(x), y)),
                )
            )

    for step in range(1, steps + 1):
        idx = order[step - 1]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            record(step, "step")
            net.renormalize(x, compensate=compensate, rescale=True)
            record(step, "renormalized")
    return rows


@dataclass(frozen=True)
class BatchNormConfig:
    """Sizes of the BatchNorm chapter's experiments."""

    cost_n: tuple[int, ...]  # data-set sizes of the cost comparison
    cost_repeats: int  # updates timed per size and method
    progress_steps: int  # SGD steps of the progress-per-compute runs
    progress_every: int  # steps between their evaluations
    jump_steps: int  # SGD steps of the renormalization-jump runs
    jump_every: int  # steps between renormalizations
    noise_batches: tuple[int, ...]  # B values of the batch-statistics noise
    noise_draws: int  # batches drawn per B
    track_steps: int  # SGD steps of the running-average runs
    track_every: int  # steps between population checkpoints
    small_batches: tuple[int, ...]  # B values of the small-batch study
    small_epochs: float  # epochs per small-batch run
    hessian_steps: int  # SGD steps of the Hessian comparison
    hessian_examples: int  # training examples in that Hessian
    seeds: int  # seeds where results are averaged

    @classmethod
    def for_scale(cls, scale) -> BatchNormConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""
        from .scale import pick

        book = cls(
            cost_n=(500, 1000, 2000, 4000),
            cost_repeats=20,
            progress_steps=600,
            progress_every=50,
            jump_steps=600,
            jump_every=100,
            noise_batches=(2, 4, 8, 32, 128),
            noise_draws=300,
            track_steps=1500,
            track_every=100,
            small_batches=(2, 4, 8, 32, 128),
            small_epochs=2,
            hessian_steps=600,
            hessian_examples=1000,
            seeds=2,
        )
        return pick(
            scale,
            quick=replace(
                book,
                cost_n=(500, 4000),
                cost_repeats=5,
                progress_steps=100,
                progress_every=50,
                jump_steps=100,
                jump_every=25,
                noise_batches=(4, 64),
                noise_draws=50,
                track_steps=800,
                small_batches=(2, 128),
                small_epochs=0.5,
                hessian_steps=100,
                hessian_examples=300,
                seeds=1,
            ),
            book=book,
            full=replace(
                book,
                jump_steps=3000,
                noise_batches=(2, 4, 8, 32, 128, 512),
                noise_draws=1000,
                track_steps=6000,
                track_every=200,
                small_epochs=10,
                hessian_steps=3000,
                seeds=5,
            ),
        )


@torch.no_grad()
def layer_inputs(
    model: nn.Module, x: torch.Tensor, index: int
) -> torch.Tensor:
    """Inputs of the ``index``-th BatchNorm layer for data ``x`` (eval
    mode, so layers below use their running statistics), ``(n, c)``."""
    layers = bn_layers(model)
    if not 0 <= index < len(layers):
        raise ValueError(f"index must be in [0, {len(layers) - 1}]")
    seen: dict = {}
    hook = layers[index].register_forward_hook(
        lambda mod, args, out: seen.setdefault("x", args[0])
    )
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        hook.remove()
        model.train(was_training)
    return seen["x"]


def batch_mean_spread(
    inputs: torch.Tensor, batch_sizes: Sequence[int], draws: int, seed: int = 0
) -> list[dict]:
    """Spread of batch means of ``inputs`` ``(N, c)`` against the law
    ``sigma sqrt((N - B) / (B (N - 1)))`` for sampling without replacement.

    Returns:
        Rows with ``B``, ``measured`` and ``theory`` (both averaged over
        units) and ``ratio`` (the per-unit ratio, averaged).
    """
    n = inputs.shape[0]
    if draws < 2:
        raise ValueError("need at least two draws to measure a spread")
    sigma = inputs.std(0, unbiased=False)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b in batch_sizes:
        if not 1 <= b < n:
            raise ValueError(f"batch sizes must lie in [1, {n - 1}], got {b}")
        means = torch.stack(
            [
                inputs[torch.randperm(n, generator=gen)[:b]].mean(0)
                for _ in range(draws)
            ]
        )
        spread = means.std(0)
        theory = sigma * ((n - b) / (b * (n - 1))) ** 0.5
        rows.append(
            dict(
                B=b,
                measured=float(spread.mean()),
                theory=float(theory.mean()),
                ratio=float((spread / theory).mean()),
            )
        )
    return rows


def running_vs_population(
    data,
    sizes: Sequence[int],
    lr: float,
    steps: int,
    every: int,
    momenta: Sequence[float | None],
    layer_index: int = 1,
    batch_size: int = 32,
    seed: int = 0,
) -> list[dict]:
    """Train a BatchNorm MLP and, every ``every`` steps, compare running
    means of several momenta with the exact population mean of one
    BatchNorm layer's inputs.

    Returns:
        Rows with ``step``, ``momentum`` (``"cumulative"`` for None) and
        ``error`` (mean absolute difference over units).
    """
    from .train import SGDConfig, train_sgd

    net = bn_mlp(sizes, seed=seed)
    tracker = RunningTracker(bn_layers(net)[layer_index], momenta)
    rows = []

    def check_point(step: int, model: nn.Module) -> None:
        if step % every:
            return
        pop_mean = population_stats(model, data.x_train)[layer_index][0]
        for m, est in tracker.means.items():
            rows.append(
                dict(
                    step=step,
                    momentum="cumulative" if m is None else str(m),
                    error=float((est - pop_mean).abs().mean()),
                )
            )

    try:
        train_sgd(
            net,
            data,
            SGDConfig(batch_size, lr, steps, seed=seed),
            on_step=check_point,
        )
    finally:
        tracker.remove()
    return rows


def progress_per_compute(
    data,
    sizes: Sequence[int],
    full_data: bool,
    steps: int,
    every: int,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
) -> list[dict]:
    """Train a BatchNorm MLP normalizing per batch, or with statistics of
    the whole training set recomputed before every update, and record the
    training loss against the seconds spent on updates.

    The loss is always that of the network normalized with population
    statistics, so both runs are judged as the same function.

    Returns:
        Rows with ``step``, ``seconds`` and ``loss``.
    """
    import time

    import torch.nn.functional as F

    from .train import batch_schedule

    net = bn_mlp(sizes, seed=seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = batch_schedule(data.n_train, batch_size, steps, seed)
    x, y = data.x_train, data.y_train
    rows, spent = [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        if full_data:
            set_precise_stats(net, x)
            net.eval()  # normalize by the data-set statistics
        idx = order[step - 1]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.train()
        spent += time.perf_counter() - start
        if step % every == 0 or step == steps:
            probe = copy.deepcopy(net)
            set_precise_stats(probe, x)
            probe.eval()
            with torch.no_grad():
                value = float(F.cross_entropy(probe(x), y))
            rows.append(dict(step=step, seconds=spent, loss=value))
    return rows
