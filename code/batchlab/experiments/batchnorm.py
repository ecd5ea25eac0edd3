"""Chapter 3, why normalize per batch: its configuration and experiments."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime
from ..batchnorm import (
    RunningTracker,
    bn_layers,
    bn_mlp,
    population_stats,
    set_precise_stats,
)
from ..normalize import CenteredMLP
from ..runtime import pick
from ..train import SGDConfig, batch_schedule, train_sgd


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
    gen = runtime.generator(seed)
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
    gen = runtime.generator(seed)
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
