"""Many MLPs trained at once: stacked weights, a hand-written backward.

:class:`EnsembleMLP` holds ``m`` MLPs of one shape; :func:`train_ensemble`
runs plain SGD on all of them, each with its own learning rate and batch
order, so that thousands of single-example steps stay affordable.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import runtime
from .data import Dataset
from .models import ACTIVATIONS, empty_linear
from .train import (
    DivergedError,
    History,
    batch_schedule,
    divergence_message,
    eval_points,
    is_diverged,
    validate_sgd,
)

_ACTS = {
    "tanh": (torch.tanh, lambda h: torch.rsub(h * h, 1)),
    "relu": (torch.relu, lambda h: (h > 0).to(h.dtype)),
}


class EnsembleMLP:
    """``m`` MLPs of one shape with stacked weights.

    Layer ``l`` holds ``W[l]`` of shape ``(m, d_in, d_out)`` and ``b[l]``
    of shape ``(m, 1, d_out)``; inputs are ``(m, B, d)``. The backward
    pass for softmax cross-entropy is written out, which avoids autograd's
    bookkeeping on steps of one example.
    """

    def __init__(
        self, weights: list[torch.Tensor], biases: list[torch.Tensor], act
    ):
        if act not in _ACTS:
            raise ValueError(f"activation must be one of {sorted(_ACTS)}")
        self.W = weights
        self.b = biases
        self.activation = act

    @classmethod
    def from_models(
        cls, models: Sequence[nn.Sequential], activation: str = "tanh"
    ) -> EnsembleMLP:
        """Stack MLPs built by :func:`batchlab.models.mlp` (no BatchNorm)."""
        if not models:
            raise ValueError("need at least one model to stack")
        allowed = (nn.Linear, ACTIVATIONS[activation])
        for mod in models:
            if not all(isinstance(layer, allowed) for layer in mod):
                raise ValueError(
                    "EnsembleMLP stacks plain Linear/"
                    f"{activation} MLPs (no BatchNorm), got {mod}"
                )
        linears = [
            [layer for layer in mod if isinstance(layer, nn.Linear)]
            for mod in models
        ]
        W = [
            torch.stack(
                [lin[i].weight.detach().T for lin in linears]
            ).contiguous()
            for i in range(len(linears[0]))
        ]
        b = [
            torch.stack(
                [lin[i].bias.detach()[None] for lin in linears]
            ).contiguous()
            for i in range(len(linears[0]))
        ]
        return cls(W, b, activation)

    @property
    def n_models(self) -> int:
        """Number of stacked models."""
        return self.W[0].shape[0]

    def member(self, i: int) -> nn.Sequential:
        """Model ``i`` as an ``nn.Sequential`` (a copy of its weights)."""
        layers: list[nn.Module] = []
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            lin = empty_linear(W.shape[1], W.shape[2])
            with torch.no_grad():
                lin.weight.copy_(W[i].T)
                lin.bias.copy_(b[i, 0])
            layers.append(lin)
            if k < len(self.W) - 1:
                layers.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*layers).to(self.W[0].device)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for inputs ``(m, B, d)`` or shared ``(B, d)``."""
        act = _ACTS[self.activation][0]
        h = x
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            h = torch.matmul(h, W) + b
            if k < len(self.W) - 1:
                h = act(h)
        return h

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Mean cross-entropy per model and its gradients.

        Args:
            x: inputs, shape ``(m, B, d)``.
            y: class indices, shape ``(m, B)``.

        Returns:
            ``(loss, dW, db)``: loss of shape ``(m,)`` and gradients
            shaped like ``W`` and ``b``.
        """
        act, dact = _ACTS[self.activation]
        hs = [x]
        h = x
        last = len(self.W) - 1
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            h = torch.baddbmm(b, h, W)
            if k < last:
                h = act(h)
            hs.append(h)
        logp = torch.log_softmax(h, dim=-1)  # (m, B, c)
        nll = -logp.gather(-1, y[..., None]).squeeze(-1)  # (m, B)
        loss = nll.mean(1)
        g = logp.exp()
        g.scatter_add_(-1, y[..., None], -torch.ones_like(g[..., :1]))
        g = g / x.shape[1]  # d loss / d logits
        dW: list[torch.Tensor] = [None] * len(self.W)  # type: ignore
        db: list[torch.Tensor] = [None] * len(self.W)  # type: ignore
        for k in range(last, -1, -1):
            dW[k] = torch.bmm(hs[k].transpose(1, 2), g)
            db[k] = g.sum(1, keepdim=True)
            if k > 0:
                g = torch.bmm(g, self.W[k].transpose(1, 2)) * dact(hs[k])
        return loss, dW, db

    def sgd_step(self, x, y, lr: torch.Tensor) -> torch.Tensor:
        """One SGD step per model with learning rates ``lr`` ``(m,)``.

        The same backward pass as :meth:`loss_and_grads`, with the rate
        folded into the output gradient so that each weight update is one
        fused ``baddbmm_`` (at B = 1 the update, not the product,
        dominates a step). Returns the loss before the step, ``(m,)``.
        """
        act, dact = _ACTS[self.activation]
        hs = [x]
        h = x
        last = len(self.W) - 1
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            h = torch.baddbmm(b, h, W)
            if k < last:
                h = act(h)
            hs.append(h)
        logp = torch.log_softmax(h, dim=-1)
        target = y.unsqueeze(-1)
        logp_y = logp.gather(-1, target)  # (m, B, 1)
        g = logp.exp()  # softmax; minus one at the label:
        g.scatter_(-1, target, logp_y.exp().sub_(1))
        g.mul_((lr / x.shape[1]).view(-1, 1, 1))  # rate x d loss / d logits
        for k in range(last, -1, -1):
            below = g
            if k > 0:
                g = torch.bmm(g, self.W[k].transpose(1, 2)).mul_(dact(hs[k]))
            self.W[k].baddbmm_(hs[k].transpose(1, 2), below, alpha=-1)
            self.b[k].sub_(below.sum(1, keepdim=True))
        return logp_y.mean((1, 2)).neg_()


def _ensemble_metrics(ens: EnsembleMLP, x, y) -> tuple[np.ndarray, ...]:
    logits = ens.logits(x)  # (m, n, c)
    loss = F.cross_entropy(
        logits.transpose(1, 2), y.expand(ens.n_models, -1), reduction="none"
    ).mean(1)
    acc = (logits.argmax(-1) == y).float().mean(1)
    return loss.cpu().numpy(), acc.cpu().numpy()


def train_ensemble(
    ens: EnsembleMLP,
    data: Dataset,
    batch_size: int,
    lrs: Sequence[float],
    steps: int,
    seeds: Sequence[int],
    eval_every: int = 0,
    on_divergence: str = "raise",
) -> History:
    """Train every model of ``ens`` in place with plain SGD.

    Model ``i`` uses learning rate ``lrs[i]`` and the batch order
    ``batch_schedule(n, B, steps, seeds[i])``, so it ends exactly where
    :func:`train_sgd` with those settings would (up to float rounding).

    Args:
        ens: the stacked models.
        data: training and test sets (class labels).
        batch_size: B, shared by all models.
        lrs: learning rate per model.
        steps: updates per model.
        seeds: batch-order seed per model.
        eval_every: steps between evaluations (0: start and end only).
        on_divergence: ``"raise"`` a :class:`DivergedError`, or
            ``"record"`` it in ``History.diverged`` and freeze that model.

    Returns:
        A :class:`History` with one row per model.
    """
    m = ens.n_models
    if len(lrs) != m or len(seeds) != m:
        raise ValueError(
            f"need one learning rate and one seed per model ({m}), got "
            f"{len(lrs)} and {len(seeds)}"
        )
    if on_divergence not in ("raise", "record"):
        raise ValueError("on_divergence must be 'raise' or 'record'")
    for lr in lrs:
        validate_sgd(batch_size, lr, steps, data.n_train)
    order = torch.stack(
        [batch_schedule(data.n_train, batch_size, steps, s) for s in seeds],
        dim=1,
    )  # (steps, m, B)
    device = ens.W[0].device
    order = order.to(device)
    lr = torch.tensor(lrs, dtype=ens.W[0].dtype, device=device)
    diverged = np.zeros(m, bool)
    points = eval_points(steps, eval_every)
    due = set(points)
    rows: list[tuple[np.ndarray, ...]] = []

    def record(step: int) -> None:
        tr = _ensemble_metrics(ens, data.x_train, data.y_train)
        te = _ensemble_metrics(ens, data.x_test, data.y_test)
        bad = is_diverged(tr[0])
        if bad.any() and on_divergence == "raise":
            i = int(np.flatnonzero(bad)[0])
            raise DivergedError(divergence_message(step, lrs[i], batch_size))
        newly = bad & ~diverged
        diverged[:] |= bad
        if newly.any():
            mask = torch.from_numpy(diverged).to(device)
            lr[mask] = 0.0
            for W, b in zip(ens.W, ens.b):
                W[mask] = float("nan")
                b[mask] = float("nan")
        rows.append((tr[0], te[0], tr[1], te[1]))

    x_all, y_all = data.x_train, data.y_train
    record(0)
    elapsed = 0.0
    with torch.no_grad():
        for step in range(1, steps + 1):
            start = time.perf_counter()
            idx = order[step - 1]
            ens.sgd_step(x_all[idx], y_all[idx], lr)
            elapsed += time.perf_counter() - start
            if step in due:
                record(step)
    arr = [np.stack(col, axis=1) for col in zip(*rows)]
    for a in arr:
        a[diverged] = np.nan
    return History(
        step=np.array(points),
        train_loss=arr[0],
        test_loss=arr[1],
        train_acc=arr[2],
        test_acc=arr[3],
        wall_time=elapsed,
        grad_evals=steps * batch_size,
        diverged=diverged,
    )


def _select(ens: EnsembleMLP, rows: np.ndarray) -> EnsembleMLP:
    """A new ensemble holding copies of the models ``rows`` of ``ens``."""
    idx = torch.from_numpy(rows).to(ens.W[0].device)
    return EnsembleMLP(
        [W[idx] for W in ens.W], [b[idx] for b in ens.b], ens.activation
    )


def _write_back(ens: EnsembleMLP, work: EnsembleMLP, rows) -> None:
    """Copy the models of ``work`` back into rows ``rows`` of ``ens``."""
    idx = torch.from_numpy(np.asarray(rows)).to(ens.W[0].device)
    for W, b, Ww, bw in zip(ens.W, ens.b, work.W, work.b):
        W[idx] = Ww
        b[idx] = bw


def epoch_batches(
    n: int, batch_size: int, seeds: Sequence[int]
) -> Iterator[torch.Tensor]:
    """The batches of :func:`batch_schedule` for several seeds, drawn one
    epoch at a time (so a long run never holds its whole schedule).

    Yields:
        Index tensors of shape ``(len(seeds), B)``, one per step, without
        end; model ``i`` sees exactly ``batch_schedule(n, B, steps,
        seeds[i])`` row by row.
    """
    validate_sgd(batch_size, 1.0, 1, n)
    gens = [runtime.generator(s) for s in seeds]
    per_epoch = n // batch_size
    usable = per_epoch * batch_size
    while True:
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens])
        batches = perms[:, :usable].reshape(len(gens), per_epoch, -1)
        for k in range(per_epoch):
            yield batches[:, k]


@dataclass
class TargetRun:
    """Where each model of a :func:`train_to_loss` run stopped.

    Attributes:
        steps: updates made by each model, shape ``(m,)``.
        train_loss: full training loss where it stopped, shape ``(m,)``.
        reached: whether the model got below the target, shape ``(m,)``.
        diverged: whether its loss blew up, shape ``(m,)``.
        batch_size: B, shared by all models.
        checks: evaluations of the full training loss per model (the
            first, before training, included), shape ``(m,)``.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    reached: np.ndarray
    diverged: np.ndarray
    batch_size: int
    checks: np.ndarray

    @property
    def examples(self) -> np.ndarray:
        """Per-example gradients each model computed, shape ``(m,)``."""
        return self.steps * self.batch_size


def train_to_loss(
    ens: EnsembleMLP,
    data: Dataset,
    batch_size: int,
    lrs: Sequence[float],
    target: float,
    max_examples: int | Sequence[int],
    seeds: Sequence[int],
    check_examples: int,
    near: float = 1.0,
    near_steps: int = 0,
    estimate_far: bool = False,
) -> TargetRun:
    """Train every model of ``ens`` in place with plain SGD until its full
    training loss falls below ``target`` (equal training loss, not equal
    budget: models compared at one stage of training).

    Each model keeps its own schedule of checks, so that where it stops
    does not depend on the other models of the stack: its full training
    loss is computed every ``ceil(check_examples / B)`` steps, and every
    ``near_steps`` steps once its own loss at a check is below ``near *
    target`` (a small batch, whose coarse checks are many steps apart,
    then stops close to the target rather than far below it). A model
    below the target stops at that check, a model whose loss blows up
    stops as diverged, a model that has used ``max_examples`` examples
    stops short; the models still training are stepped as one smaller
    ensemble (so stopped models cost nothing).

    Args:
        ens: the stacked models, trained in place.
        data: the training set (class labels) is ``data.x_train``.
        batch_size: B, shared by all models.
        lrs: learning rate per model.
        target: the training loss to reach.
        max_examples: budget per model in examples (steps times B), one
            number or one per model.
        seeds: batch-order seed per model (as :func:`batch_schedule`).
        check_examples: examples between two checks of the loss.
        near: loss, as a multiple of ``target`` (>= 1), below which the
            checks become finer.
        near_steps: steps between two checks there (0: no finer checks).
        estimate_far: while a model's last full loss and the mean of its
            minibatch losses since its last check are both at least
            ``near * target``, skip the full loss at a coarse check (the
            minibatch losses, which training computes anyway, say it is
            still far from the target); the full loss is computed once
            the mean falls below, and from then on as above.

    Returns:
        A :class:`TargetRun`.
    """
    m = ens.n_models
    if len(lrs) != m or len(seeds) != m:
        raise ValueError(
            f"need one learning rate and one seed per model ({m}), got "
            f"{len(lrs)} and {len(seeds)}"
        )
    caps = np.broadcast_to(np.asarray(max_examples, int), (m,))
    if not target > 0 or caps.min() < batch_size or check_examples < 1:
        raise ValueError(
            "need target > 0, max_examples >= batch size and "
            f"check_examples >= 1, got {target}, {max_examples}, "
            f"{check_examples}"
        )
    if near < 1 or near_steps < 0:
        raise ValueError(
            f"need near >= 1 and near_steps >= 0, got {near}, {near_steps}"
        )
    for lr in lrs:
        validate_sgd(batch_size, lr, 1, data.n_train)
    device = ens.W[0].device
    lr = torch.tensor(lrs, dtype=ens.W[0].dtype, device=device)
    every = -(-check_examples // batch_size)
    fine = min(every, near_steps) if near_steps else every
    cap_steps = caps // batch_size
    steps = np.zeros(m, int)
    reached = np.zeros(m, bool)
    diverged = np.zeros(m, bool)
    x_all, y_all = data.x_train, data.y_train
    loss = _ensemble_metrics(ens, x_all, y_all)[0]
    checks = np.ones(m, int)

    def gap(i: np.ndarray) -> np.ndarray:  # steps to each model's next check
        return np.where(loss[i] < near * target, fine, every)

    next_check = gap(np.arange(m))
    batches = epoch_batches(data.n_train, batch_size, seeds)
    live = np.arange(m)  # models still training, stepped as one ensemble
    work, rows, lr_live = _select(ens, live), torch.from_numpy(live), lr
    # minibatch losses summed since each live model's last look (far phase)
    seen, since = torch.zeros(m, dtype=lr.dtype, device=device), np.zeros(m)
    with torch.no_grad():
        for step in range(1, int(cap_steps.max()) + 1):
            idx = next(batches)[rows].to(device)
            batch_loss = work.sgd_step(x_all[idx], y_all[idx], lr_live)
            steps[live] = step
            if estimate_far:
                seen[: len(live)] += batch_loss
            due = (next_check[live] <= step) | (cap_steps[live] == step)
            if not due.any():
                continue
            if estimate_far:  # far from the target: the mean batch loss
                pos = np.flatnonzero(due)
                ids = live[pos]
                mean = seen[pos].cpu().numpy() / (step - since[ids])
                skip = (
                    (loss[ids] >= near * target)
                    & (mean >= near * target)
                    & np.isfinite(mean)
                    & (cap_steps[ids] != step)
                )
                seen[pos], since[ids] = 0, step
                next_check[ids[skip]] = step + every
                due[pos[skip]] = False
                if not due.any():
                    continue
            mine = live[due]
            picked = _select(work, np.flatnonzero(due))
            loss[mine] = _ensemble_metrics(picked, x_all, y_all)[0]
            checks[mine] += 1
            diverged[mine] |= is_diverged(loss[mine])
            reached[mine] |= (loss[mine] < target) & ~diverged[mine]
            next_check[mine] = step + gap(mine)
            done = reached | diverged | (steps >= cap_steps)
            if done[live].any():
                _write_back(ens, work, live)
                kept = ~done[live]
                live = live[kept]
                if not len(live):
                    break
                seen[: len(live)] = seen[: len(kept)][torch.from_numpy(kept)]
                work, rows = _select(ens, live), torch.from_numpy(live)
                lr_live = lr[rows.to(device)]
    if len(live):
        _write_back(ens, work, live)
    loss = np.where(diverged, np.nan, loss)
    return TargetRun(steps, loss, reached, diverged, batch_size, checks)
