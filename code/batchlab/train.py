"""Stochastic gradient descent for any batch size, one model or many.

* :func:`batch_schedule` is the order in which examples are visited:
  a fresh permutation every epoch, cut into batches of ``B`` (sampling
  without replacement; a remainder smaller than ``B`` is dropped).
* :func:`train_sgd` trains one ``nn.Module`` with autograd.
* :class:`EnsembleMLP` and :func:`train_ensemble` train many MLPs (seeds,
  learning rates) at once: the weights are stacked and every step is a
  handful of batched matrix products with a hand-written backward pass,
  which is what makes thousands of single-sample steps affordable.

Both trainers return a :class:`History` and stop with
:class:`DivergedError` when a loss is not finite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import runtime
from .data import Dataset


class DivergedError(ValueError):
    """Training produced a non-finite or exploding loss."""


# A loss above this is taken as divergence (cross-entropy starts near
# log(10) = 2.3 on ten classes; squared losses of our data sets near 1).
MAX_LOSS = 1e5


def is_diverged(loss: float | np.ndarray) -> np.ndarray:
    """Whether a loss is non-finite or above :data:`MAX_LOSS`."""
    loss = np.asarray(loss, dtype=float)
    return ~np.isfinite(loss) | (np.abs(loss) > MAX_LOSS)


class PlainSGD:
    """``torch.optim.SGD`` with heavy-ball ``momentum`` (no weight decay,
    dampening or Nesterov), without its per-step bookkeeping.

    The same arithmetic in the same order as PyTorch's single-tensor
    update (what ``torch.optim.SGD`` runs on the CPU), so the parameters
    agree to the last bit (``tests/test_train.py``); on the book's small
    networks the optimizer's overhead was a tenth of a step's time.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = buf
            p.add_(grad, alpha=-self.lr)


@dataclass(frozen=True)
class SGDConfig:
    """One SGD run."""

    batch_size: int  # examples per step, 1 <= B <= n
    lr: float  # learning rate, > 0
    steps: int  # number of updates, >= 1
    seed: int = 0  # seed of the batch order
    momentum: float = 0.0  # heavy-ball momentum in [0, 1)
    eval_every: int = 0  # steps between evaluations (0: start and end)

    def validate(self, n: int) -> None:
        """Raise ``ValueError`` when this run cannot be made on n examples."""
        validate_sgd(self.batch_size, self.lr, self.steps, n, self.momentum)


def validate_sgd(
    batch_size: int, lr: float, steps: int, n: int, momentum: float = 0.0
) -> None:
    """Check SGD settings against a data set of ``n`` examples."""
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch size must be between 1 and the number of training "
            f"examples ({n}), got {batch_size}"
        )
    if not lr > 0 or not np.isfinite(lr):
        raise ValueError(f"learning rate must be positive, got {lr}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")


def epochs_to_steps(epochs: float, n: int, batch_size: int) -> int:
    """Steps that visit ``epochs * n`` examples at batch size B (>= 1)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, round(epochs * n / batch_size))


def batch_schedule(
    n: int, batch_size: int, steps: int, seed: int
) -> torch.Tensor:
    """Indices of the examples each step uses, shape ``(steps, B)``.

    Every epoch is a new permutation of ``range(n)`` drawn from a
    generator seeded with ``seed``; it is cut into ``n // B`` batches.
    """
    validate_sgd(batch_size, 1.0, steps, n)
    gen = runtime.generator(seed)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    perms = [torch.randperm(n, generator=gen) for _ in range(epochs)]
    usable = per_epoch * batch_size
    order = torch.stack([p[:usable] for p in perms]).reshape(-1, batch_size)
    return order[:steps]


def eval_points(steps: int, eval_every: int) -> list[int]:
    """Steps after which a run is evaluated (0 is the initial point)."""
    if eval_every <= 0 or eval_every >= steps:
        return [0, steps]
    return sorted(set(range(0, steps, eval_every)) | {steps})


@dataclass
class History:
    """What a run recorded; arrays have one row per model.

    Attributes:
        step: evaluation steps, shape ``(k,)``.
        train_loss, test_loss, test_acc, train_acc: shape ``(m, k)``.
        wall_time: seconds spent training (evaluation excluded).
        grad_evals: per-example gradients computed per model.
        diverged: per model, whether a loss became non-finite.
    """

    step: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    wall_time: float
    grad_evals: int
    diverged: np.ndarray = field(default_factory=lambda: np.zeros(1, bool))

    @property
    def final_train_loss(self) -> np.ndarray:
        """Training loss at the last evaluation, shape ``(m,)``."""
        return self.train_loss[:, -1]

    @property
    def final_test_acc(self) -> np.ndarray:
        """Test accuracy at the last evaluation, shape ``(m,)``."""
        return self.test_acc[:, -1]


def divergence_message(step: int, lr: float, batch_size: int) -> str:
    return (
        f"training diverged: loss non-finite or above {MAX_LOSS:g} at "
        f"step {step} "
        f"(lr={lr:g}, batch size={batch_size}); lower the learning rate "
        "or raise the batch size"
    )


# --------------------------------------------------------------------------
# One model with autograd


def _metrics(model: nn.Module, x, y, loss_fn) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
        loss = float(loss_fn(out, y))
        acc = float((out.argmax(1) == y).float().mean()) if out.ndim > 1 else 0
    model.train(was_training)
    return loss, acc


def train_sgd(
    model: nn.Module,
    data: Dataset,
    cfg: SGDConfig,
    loss_fn: Callable = F.cross_entropy,
    on_step: Callable[[int, nn.Module], object] | None = None,
) -> History:
    """Train ``model`` in place with minibatch SGD.

    Args:
        model: any module mapping ``(B, d)`` inputs to outputs that
            ``loss_fn`` compares with targets.
        data: the training and test sets.
        cfg: batch size, learning rate, steps, seed, momentum, evaluation.
        loss_fn: ``F.cross_entropy`` (default) or ``F.mse_loss`` etc.
        on_step: called as ``on_step(step, model)`` after every update;
            when it returns ``True`` training stops after that update
            (the run is evaluated there; ``History.step[-1]`` is that
            step and ``grad_evals`` counts the updates made).

    Returns:
        A :class:`History` with one row.

    Raises:
        ValueError: bad settings for this data set.
        DivergedError: a training loss became non-finite.
    """
    cfg.validate(data.n_train)
    order = batch_schedule(data.n_train, cfg.batch_size, cfg.steps, cfg.seed)
    order = order.to(data.x_train.device)
    opt = PlainSGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    points = eval_points(cfg.steps, cfg.eval_every)
    due = set(points)
    rows: list[tuple[float, float, float, float]] = []

    def record() -> None:
        tr = _metrics(model, data.x_train, data.y_train, loss_fn)
        te = _metrics(model, data.x_test, data.y_test, loss_fn)
        rows.append((tr[0], te[0], tr[1], te[1]))

    record()
    model.train()
    elapsed, last = 0.0, cfg.steps
    for step in range(1, cfg.steps + 1):
        start = time.perf_counter()
        idx = order[step - 1]
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        if is_diverged(loss.item()):
            raise DivergedError(
                divergence_message(step, cfg.lr, cfg.batch_size)
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        elapsed += time.perf_counter() - start
        stop = on_step is not None and on_step(step, model) is True
        if step in due or stop:
            record()
        if stop:
            last = step
            points = [p for p in points if p < step] + [step]
            break
    arr = np.array(rows).T[:, None, :]
    return History(
        step=np.array(points),
        train_loss=arr[0],
        test_loss=arr[1],
        train_acc=arr[2],
        test_acc=arr[3],
        wall_time=elapsed,
        grad_evals=last * cfg.batch_size,
        diverged=np.zeros(1, bool),
    )


# --------------------------------------------------------------------------
# Many MLPs at once


# --------------------------------------------------------------------------
# The batch-size sweep
