"""Chapter 3, why normalize per batch: its configuration and experiments."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime
from ..batchnorm import (
    RunningTracker,
    bn_layers,
    bn_mlp,
    data_stats_forward,
    population_stats,
    renorm_limits,
    set_precise_stats,
)
from ..hessian import HessianOperator, top_eigenvalues
from ..normalize import CenteredMLP
from ..runtime import more_of, pick
from ..stacked import StackedNormMLP, stacked_accuracy, train_stacked
from ..train import SGDConfig, batch_schedule, train_sgd


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

    work_n: tuple[int, ...]  # data-set sizes of the work count
    work_repeats: int  # updates per size and mode
    progress_n: int  # training examples of the whole-data runs
    progress_steps: int  # SGD steps of the whole-data runs
    progress_every: int  # steps between their evaluations
    progress_lr: float  # their learning rate (B = 32)
    jump_steps: int  # SGD steps of the renormalization-jump runs
    jump_every: int  # steps between renormalizations
    noise_batches: tuple[int, ...]  # B values of the batch-statistics noise
    noise_draws: int  # batches drawn per B
    track_steps: int  # SGD steps of the running-average runs
    track_every: int  # steps between population checkpoints
    agree_batches: tuple[int, ...]  # B of the train/eval-mode comparison
    small_batches: tuple[int, ...]  # B values of the small-batch study
    small_steps: tuple[int, ...]  # SGD steps at each of those B
    small_lr: float  # learning rate of every small-batch run
    small_checkpoints: int  # test-accuracy checkpoints per small-batch run
    small_momentum: float  # momentum of BatchNorm's and Renorm's averages
    check_lrs: tuple[float, ...]  # other learning rates tried at B = 2
    check_longer: int  # factor of the longer B = 2 run
    momenta: tuple[float | None, ...]  # running averages compared
    track_lrs: tuple[float, float]  # slow and fast learning rates
    rate_batches: tuple[int, int]  # small and large B of the rate runs
    rate_lr: float  # their learning rate
    rate_steps: int  # their SGD steps
    rate_every: int  # steps between their records
    hessian_steps: int  # SGD steps before the Hessians
    hessian_examples: int  # training examples in each Hessian
    hessian_k: int  # top eigenvalues computed
    seeds: int  # seeds of every multi-seed experiment

    @classmethod
    def for_scale(cls, scale) -> BatchNormConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""

        book = cls(
            work_n=(500, 1000, 2000, 4000),
            work_repeats=1,
            progress_n=1000,
            progress_steps=240,
            progress_every=40,
            progress_lr=0.1,
            jump_steps=600,
            jump_every=100,
            noise_batches=(2, 4, 8, 32, 128),
            noise_draws=300,
            track_steps=1500,
            track_every=100,
            agree_batches=(2, 8, 32, 64),
            small_batches=(2, 8, 32, 128),
            small_steps=(2400, 1500, 1000, 800),
            small_lr=0.1,
            small_checkpoints=4,
            small_momentum=0.1,
            check_lrs=(0.03, 0.01),
            check_longer=3,
            momenta=(0.01, 0.1, 0.5, None),
            track_lrs=(0.01, 0.2),
            rate_batches=(4, 128),
            rate_lr=0.1,
            rate_steps=300,
            rate_every=50,
            hessian_steps=600,
            hessian_examples=500,
            hessian_k=20,
            seeds=3,
        )
        return pick(
            scale,
            quick=replace(
                book,
                work_n=(500, 4000),
                work_repeats=1,
                progress_steps=60,
                progress_every=20,
                jump_steps=100,
                jump_every=25,
                noise_batches=(4, 64),
                noise_draws=50,
                track_steps=800,
                agree_batches=(2, 32),
                small_batches=(2, 128),
                small_steps=(200, 100),
                check_lrs=(0.03,),
                check_longer=2,
                rate_steps=100,
                rate_every=20,
                hessian_steps=100,
                hessian_examples=200,
                hessian_k=12,
                seeds=2,
            ),
            book=book,
            full=more_of(book, noise_draws=1000, seeds=8),
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
        Rows with ``step``, ``momentum`` (``"cumulative"`` for None),
        ``error`` (mean absolute difference over units) and ``rel_error``
        (the same, each unit's difference divided by its population
        standard deviation).
    """
    net = bn_mlp(sizes, seed=seed)
    tracker = RunningTracker(bn_layers(net)[layer_index], momenta)
    rows = []

    def check_point(step: int, model: nn.Module) -> None:
        if step % every:
            return
        pop_mean, pop_var = population_stats(model, data.x_train)[layer_index]
        for m, est in tracker.means.items():
            diff = (est - pop_mean).abs()
            rows.append(
                dict(
                    step=step,
                    momentum="cumulative" if m is None else str(m),
                    error=float(diff.mean()),
                    rel_error=float((diff / pop_var.sqrt()).mean()),
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


# --------------------------------------------------------------------------
# Whole-data statistics: the work they cost and what they buy per update

# The three ways an update can normalize (see data_stats_forward).
MODES = ("per batch", "whole data, constant", "whole data, differentiated")


def _mode_loss(net, x, y, xs, mode: str) -> torch.Tensor:
    if mode == "per batch":
        return F.cross_entropy(net(x), y)
    differentiate = mode == "whole data, differentiated"
    return F.cross_entropy(data_stats_forward(net, x, xs, differentiate), y)


def _count_examples(net: nn.Module) -> tuple[list[int], object]:
    """A forward hook on the first layer counting the examples it sees."""
    seen = [0]
    first = next(m for m in net if isinstance(m, nn.Linear))

    def hook(module, args, out):
        seen[0] += args[0].shape[0]

    return seen, first.register_forward_hook(hook)


def update_work(
    n_values: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    sizes: Sequence[int],
    batch_size: int,
    repeats: int = 5,
) -> list[dict]:
    """Examples each SGD update sends through the network (counted by a
    hook on the first layer), per way of normalizing, for data sets of the
    first ``n`` examples; seconds per update only as an illustration.

    Returns:
        Rows with ``n``, ``mode``, ``examples`` (per update) and
        ``seconds``.
    """
    rows = []
    for n in n_values:
        if not batch_size <= n <= x.shape[0]:
            raise ValueError(f"need batch_size <= n <= {x.shape[0]}")
        for mode in MODES:
            net = bn_mlp(sizes, seed=0)
            opt = torch.optim.SGD(net.parameters(), lr=0.01)
            seen, hook = _count_examples(net)
            start = time.perf_counter()
            for _ in range(repeats):
                loss = _mode_loss(
                    net, x[:batch_size], y[:batch_size], x[:n], mode
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
            seconds = (time.perf_counter() - start) / repeats
            hook.remove()
            rows.append(
                dict(
                    n=n,
                    mode=mode,
                    examples=seen[0] // repeats,
                    seconds=seconds,
                )
            )
    return rows


def _pre_norm(net: nn.Sequential) -> list[nn.Linear]:
    """The linear layers that feed a BatchNorm layer."""
    return [a for a, b in zip(net, net[1:]) if isinstance(b, nn.BatchNorm1d)]


def _pre_norm_biases(net: nn.Sequential) -> torch.Tensor:
    return torch.cat([a.bias.detach() for a in _pre_norm(net)])


def _pre_norm_weight_norm2(net: nn.Sequential) -> float:
    """Mean squared norm of the incoming weights of normalized units."""
    norms = torch.cat(
        [(a.weight.detach() ** 2).sum(1) for a in _pre_norm(net)]
    )
    return float(norms.mean())


def progress_per_update(
    data,
    sizes: Sequence[int],
    mode: str,
    steps: int,
    every: int,
    lr: float = 0.05,
    batch_size: int = 32,
    seed: int = 0,
) -> list[dict]:
    """Train a BatchNorm MLP normalizing per batch or with whole-data
    statistics (held constant, or differentiated through) and record the
    loss of the population-normalized network, the examples processed and
    how far the biases before each BatchNorm layer drifted.

    Returns:
        Rows from step 0 with ``step``, ``examples`` (sent through the
        network so far), ``loss``, ``bias_drift`` (norm of the change of those
        biases since initialization) and ``weight_norm2`` (mean squared
        norm of the incoming weights of the normalized units).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    net = bn_mlp(sizes, seed=seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = batch_schedule(data.n_train, batch_size, steps, seed)
    x, y = data.x_train, data.y_train
    b0 = _pre_norm_biases(net)
    seen, hook = _count_examples(net)
    rows = []
    for step in range(steps + 1):
        if step:
            idx = order[step - 1]
            loss = _mode_loss(net, x[idx], y[idx], x, mode)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if step % every == 0 or step == steps:
            work = seen[0]
            with torch.no_grad():
                value = F.cross_entropy(
                    data_stats_forward(net, x, x, False), y
                )
            drift = (_pre_norm_biases(net) - b0).norm()
            rows.append(
                dict(
                    step=step,
                    examples=work,
                    loss=float(value),
                    bias_drift=float(drift),
                    weight_norm2=_pre_norm_weight_norm2(net),
                )
            )
            seen[0] = work
    hook.remove()
    return rows


# --------------------------------------------------------------------------
# The same inputs in training and in evaluation mode


@torch.no_grad()
def train_eval_agreement(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_sizes: Sequence[int],
    seed: int = 0,
) -> list[dict]:
    """Predict ``x`` in training mode, in batches of B drawn at random or
    holding one class each, and compare with evaluation mode.

    A copy of ``net`` is used, so its running averages stay untouched.

    Returns:
        Rows with ``B``, ``batches`` (``"random"`` or ``"one class"``),
        ``accuracy`` (training mode), ``eval_accuracy`` and
        ``agreement`` (share of predictions equal to evaluation mode's).
    """
    probe = copy.deepcopy(net).eval()
    eval_pred = probe(x).argmax(1)
    probe.train()
    gen = runtime.generator(seed)
    orders = {
        "random": torch.randperm(len(x), generator=gen),
        "one class": torch.argsort(y, stable=True),
    }
    rows = []
    for b in batch_sizes:
        if not 2 <= b <= len(x):
            raise ValueError(f"batch sizes must lie in [2, {len(x)}]: {b}")
        for kind, order in orders.items():
            pred = torch.empty_like(y)
            for chunk in _batches(order, y, b, kind == "one class"):
                pred[chunk] = probe(x[chunk]).argmax(1)
            rows.append(
                dict(
                    B=b,
                    batches=kind,
                    accuracy=float((pred == y).float().mean()),
                    eval_accuracy=float((eval_pred == y).float().mean()),
                    agreement=float((pred == eval_pred).float().mean()),
                )
            )
    return rows


def _batches(order: torch.Tensor, y: torch.Tensor, b: int, by_class: bool):
    """Cut ``order`` into batches of ``b``; with ``by_class`` no batch
    mixes classes (a class's last, short batch takes from its start)."""
    if not by_class:
        for i in range(0, len(order), b):
            chunk = order[i : i + b]
            if len(chunk) < 2:
                chunk = order[-b:]
            yield chunk
        return
    for c in torch.unique(y):
        members = order[y[order] == c]
        for i in range(0, len(members), b):
            chunk = members[i : i + b]
            if len(chunk) < b:
                chunk = members[-b:]
            yield chunk


# --------------------------------------------------------------------------
# Small batches: BatchNorm, Batch Renormalization, LayerNorm


def small_batch_study(
    data,
    sizes: Sequence[int],
    batch_sizes: Sequence[int],
    steps: Sequence[int],
    lr: float,
    seeds: int,
    checkpoints: int = 4,
    momentum: float = 0.1,
) -> list[dict]:
    """Train BatchNorm, Batch Renormalization (Ioffe's schedule: plain
    BatchNorm for the first eighth of the steps, then ``r_max`` relaxed to
    3 by half-way and ``d_max`` to 5 by three eighths) and LayerNorm MLPs,
    all with one momentum, for ``steps[i]`` steps at batch size
    ``batch_sizes[i]``, ``seeds`` seeds each, all members at once.

    Returns:
        Rows with ``B``, ``norm``, ``seed``, ``step`` (``checkpoints``
        evenly spaced) and ``test_acc`` (evaluation mode, running
        statistics).
    """
    if len(steps) != len(batch_sizes):
        raise ValueError("need one step count per batch size")
    norms = [n for n in StackedNormMLP.KINDS for _ in range(seeds)]
    members = [s for _ in StackedNormMLP.KINDS for s in range(seeds)]
    rows = []
    for b, total in zip(batch_sizes, steps):
        model = StackedNormMLP(sizes, norms, members, momentum)

        def limits(step: int, total=total) -> tuple[float, float]:
            return renorm_limits(step, total // 8, total // 2, 3 * total // 8)

        def record(step: int, b=b, model=model) -> None:
            acc = stacked_accuracy(model, data.x_test, data.y_test)
            for norm, seed, a in zip(norms, members, acc.tolist()):
                rows.append(
                    dict(B=b, norm=norm, seed=seed, step=step, test_acc=a)
                )

        every = max(total // checkpoints, 1)
        train_stacked(
            model,
            data.x_train,
            data.y_train,
            b,
            lr,
            total,
            members,
            limits=limits,
            on_step=record,
            every=every,
        )
    return rows


# --------------------------------------------------------------------------
# The effective learning rate of scale-invariant weights


def effective_rate(
    data,
    sizes: Sequence[int],
    norm: str,
    batch_size: int,
    lr: float,
    steps: int,
    every: int,
    seed: int = 0,
    stat_batch: int | None = None,
    eps: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """Follow the incoming weight vector ``w_j`` of every first-layer unit
    during SGD, with BatchNorm (``norm="batchnorm"``: ``w_j`` is scale
    invariant) or without (``"none"``).

    With ``stat_batch`` (at least ``batch_size``), each step sends
    ``stat_batch`` examples through the network, so that BatchNorm's
    statistics come from all of them, but the loss and gradient from the
    first ``batch_size`` only: gradient noise of the small batch,
    statistics noise of the large one (a ghost-batch style control).
    ``eps`` replaces the BatchNorm layers' own (PyTorch's ``1e-5``), which
    makes ``w_j`` only nearly scale invariant; ``dtype`` is that of the
    network and its inputs.

    Returns:
        Rows from step 0 with ``step``, ``norm2`` (mean of ``|w_j|^2``
        over units), ``rate`` (mean of ``lr / |w_j|^2``), ``rate_ratio``
        (``rate`` over its initial value), ``kicks`` (``lr^2`` times the
        summed ``|g_j|^2`` so far, mean over units), ``growth``
        (``norm2`` minus its initial value) and ``cos`` (largest
        ``|cos(w_j, g_j)|`` over units and steps so far).
    """
    forward = stat_batch or batch_size
    if forward < batch_size:
        raise ValueError(
            f"stat_batch ({stat_batch}) must be at least batch_size "
            f"({batch_size})"
        )
    if eps is not None and eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    net = bn_mlp(sizes, norm, seed=seed).to(dtype)
    if eps is not None:
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eps = eps
    w = net[0].weight
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = batch_schedule(data.n_train, forward, steps, seed)
    x, y = data.x_train.to(dtype), data.y_train
    # Norms, kicks and cosines are measured in float64: the growth of
    # |w|^2 is small against |w|^2 itself, and float32 sums would bury it.
    n0 = (w.detach().double() ** 2).sum(1)
    rate0 = float((lr / n0).mean())
    kicks, cos_max = n0.new_zeros(w.shape[0]), 0.0
    rows = []
    for step in range(steps + 1):
        if step:
            idx = order[step - 1]
            out = net(x[idx])
            loss = F.cross_entropy(out[:batch_size], y[idx][:batch_size])
            opt.zero_grad()
            loss.backward()
            g, w_before = w.grad.detach().double(), w.detach().double()
            kicks += lr**2 * (g**2).sum(1)
            cos = (g * w_before).sum(1) / (
                g.norm(dim=1) * w_before.norm(dim=1) + 1e-30
            )
            cos_max = max(cos_max, float(cos.abs().max()))
            opt.step()
        if step % every and step != steps:
            continue
        n2 = (w.detach().double() ** 2).sum(1)
        rate = float((lr / n2).mean())
        rows.append(
            dict(
                step=step,
                norm2=float(n2.mean()),
                rate=rate,
                rate_ratio=rate / rate0,
                kicks=float(kicks.mean()),
                growth=float(n2.mean() - n0.mean()),
                cos=cos_max,
            )
        )
    return rows


def pair_training(
    data,
    sizes: Sequence[int],
    lr: float,
    steps: int,
    seed: int = 0,
    pairs: int = 500,
) -> dict:
    """Train a BatchNorm MLP with batches of two, then look at it in the
    mode it was trained in.

    Returns:
        ``train_mode_acc`` (training-set accuracy in training mode, random
        pairs), ``eval_mode_acc`` (training set, running averages) and
        ``share_unit`` (share of the first BatchNorm layer's outputs on
        ``pairs`` random pairs, before its affine part, within 0.01 of
        +1 or -1).
    """
    net = bn_mlp(sizes, seed=seed)
    train_sgd(net, data, SGDConfig(2, lr, steps, seed=seed))
    x, y = data.x_train, data.y_train
    (row,) = train_eval_agreement(net, x, y, [2], seed=seed)[:1]
    idx = torch.randperm(len(x), generator=runtime.generator(seed))
    layer = bn_layers(net)[0]
    net.train()
    with torch.no_grad():
        h = net[0](x[idx[: 2 * pairs]]).reshape(pairs, 2, -1)
        z = torch.stack([layer(p) for p in h])
        z = (z - layer.bias) / layer.weight
    return dict(
        train_mode_acc=row["accuracy"],
        eval_mode_acc=row["eval_accuracy"],
        share_unit=float(((z.abs() - 1).abs() < 0.01).float().mean()),
    )


# --------------------------------------------------------------------------
# Ghorbani et al.: the Hessian's outliers with and without BatchNorm


def outlier_measures(ev: Sequence[float]) -> dict:
    """Outlier measures of the top ``k`` Hessian eigenvalues (descending):
    ``ratio`` = lambda_1 / lambda_k and ``gap`` = the largest
    ``lambda_i / lambda_{i+1}`` among them."""
    ev = np.sort(np.asarray(ev, dtype=float))[::-1]
    if len(ev) < 2 or ev[-1] <= 0:
        raise ValueError("need at least two eigenvalues, the last positive")
    return dict(ratio=ev[0] / ev[-1], gap=float((ev[:-1] / ev[1:]).max()))


def hessian_outliers(
    data,
    sizes: Sequence[int],
    steps: int,
    examples: int,
    k: int,
    seeds: int,
    activation: str = "relu",
    lr: float = 0.05,
    batch_size: int = 32,
) -> list[dict]:
    """Top-``k`` Hessian eigenvalues of the training loss on ``examples``
    examples after ``steps`` SGD steps, for a network without BatchNorm
    and for one with it, evaluated with the batch statistics of those
    examples (training mode, statistics inside the gradient) and with
    population statistics held constant (evaluation mode).

    Returns:
        Rows with ``seed``, ``network``, ``lambda_1``, ``lambda_k``,
        ``loss`` (the loss whose Hessian it is, on those examples),
        ``eigenvalues`` (all ``k``, largest first), ``ratio`` and
        ``gap`` (see :func:`outlier_measures`).
    """
    x, y = data.x_train[:examples], data.y_train[:examples]
    rows = []
    for seed in range(seeds):
        for norm in ("none", "batchnorm"):
            net = bn_mlp(sizes, norm, seed=seed, activation=activation)
            train_sgd(net, data, SGDConfig(batch_size, lr, steps, seed=seed))
            modes = ["batch"] if norm == "none" else ["batch", "population"]
            for mode in modes:
                probe = copy.deepcopy(net).train()
                if mode == "population":
                    set_precise_stats(probe, data.x_train)
                    probe.eval()
                with torch.no_grad():
                    loss = float(F.cross_entropy(probe(x), y))
                op = HessianOperator(probe, F.cross_entropy, x, y)
                ev = top_eigenvalues(op, k=k, tol=1e-2, seed=seed).values
                name = {"none": "no BatchNorm"}.get(
                    norm, f"BatchNorm, {mode} statistics"
                )
                rows.append(
                    dict(
                        seed=seed,
                        network=name,
                        lambda_1=ev[0],
                        lambda_k=ev[-1],
                        loss=loss,
                        eigenvalues=tuple(float(e) for e in ev),
                        **outlier_measures(ev),
                    )
                )
    return rows
