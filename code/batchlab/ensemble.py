"""Many MLPs trained at once: stacked weights, a hand-written backward.

:class:`EnsembleMLP` holds ``m`` MLPs of one shape; :func:`train_ensemble`
runs plain SGD on all of them, each with its own learning rate and batch
order, so that thousands of single-example steps stay affordable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    "tanh": (torch.tanh, lambda h: 1 - h * h),
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
        return nn.Sequential(*layers)

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
        """One SGD step per model with learning rates ``lr`` ``(m,)``."""
        loss, dW, db = self.loss_and_grads(x, y)
        scale = lr.view(-1, 1, 1)
        for W, b, gW, gb in zip(self.W, self.b, dW, db):
            W.sub_(gW * scale)
            b.sub_(gb * scale)
        return loss


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
