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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset

# Batch sizes of the full-scale sweeps: powers of two, then all of
# MNIST-1D's 4000 training examples.
FULL_BATCH_SIZES = (*(2**k for k in range(12)), 4000)


class DivergedError(ValueError):
    """Training produced a non-finite or exploding loss."""


# A loss above this is taken as divergence (cross-entropy starts near
# log(10) = 2.3 on ten classes; squared losses of our data sets near 1).
MAX_LOSS = 1e5


def is_diverged(loss: float | np.ndarray) -> np.ndarray:
    """Whether a loss is non-finite or above :data:`MAX_LOSS`."""
    loss = np.asarray(loss, dtype=float)
    return ~np.isfinite(loss) | (np.abs(loss) > MAX_LOSS)


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
    gen = torch.Generator().manual_seed(seed)
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


def _divergence_message(step: int, lr: float, batch_size: int) -> str:
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
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> History:
    """Train ``model`` in place with minibatch SGD.

    Args:
        model: any module mapping ``(B, d)`` inputs to outputs that
            ``loss_fn`` compares with targets.
        data: the training and test sets.
        cfg: batch size, learning rate, steps, seed, momentum, evaluation.
        loss_fn: ``F.cross_entropy`` (default) or ``F.mse_loss`` etc.
        on_step: called as ``on_step(step, model)`` after every update.

    Returns:
        A :class:`History` with one row.

    Raises:
        ValueError: bad settings for this data set.
        DivergedError: a training loss became non-finite.
    """
    cfg.validate(data.n_train)
    order = batch_schedule(data.n_train, cfg.batch_size, cfg.steps, cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    points = eval_points(cfg.steps, cfg.eval_every)
    due = set(points)
    rows: list[tuple[float, float, float, float]] = []

    def record() -> None:
        tr = _metrics(model, data.x_train, data.y_train, loss_fn)
        te = _metrics(model, data.x_test, data.y_test, loss_fn)
        rows.append((tr[0], te[0], tr[1], te[1]))

    record()
    model.train()
    elapsed = 0.0
    for step in range(1, cfg.steps + 1):
        start = time.perf_counter()
        idx = order[step - 1]
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        if is_diverged(loss.item()):
            raise DivergedError(
                _divergence_message(step, cfg.lr, cfg.batch_size)
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed += time.perf_counter() - start
        if on_step is not None:
            on_step(step, model)
        if step in due:
            record()
    arr = np.array(rows).T[:, None, :]
    return History(
        step=np.array(points),
        train_loss=arr[0],
        test_loss=arr[1],
        train_acc=arr[2],
        test_acc=arr[3],
        wall_time=elapsed,
        grad_evals=cfg.steps * cfg.batch_size,
        diverged=np.zeros(1, bool),
    )


# --------------------------------------------------------------------------
# Many MLPs at once


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
        from .models import ACTIVATIONS

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
        from .models import ACTIVATIONS, empty_linear

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
    return loss.numpy(), acc.numpy()


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
    lr = torch.tensor(lrs, dtype=ens.W[0].dtype)
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
            raise DivergedError(_divergence_message(step, lrs[i], batch_size))
        newly = bad & ~diverged
        diverged[:] |= bad
        if newly.any():
            lr[torch.from_numpy(diverged)] = 0.0
            for W, b in zip(ens.W, ens.b):
                W[torch.from_numpy(diverged)] = float("nan")
                b[torch.from_numpy(diverged)] = float("nan")
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


# --------------------------------------------------------------------------
# The batch-size sweep


@dataclass(frozen=True)
class SweepConfig:
    """A batch-size sweep on one data set with one MLP shape."""

    sizes: tuple[int, ...]  # MLP widths, input first
    batch_sizes: tuple[int, ...]  # B values (N means full batch)
    seeds: int  # independent runs per setting
    base_lr: float  # learning rate at batch size base_batch
    base_batch: int  # the B at which the linear rule equals base_lr
    epochs: float  # budget of the equal-epochs runs
    steps: int  # budget of the equal-steps runs

    @classmethod
    def for_scale(cls, scale) -> SweepConfig:
        """The sweep for ``quick``, ``book`` or ``full``."""
        from .scale import pick

        book = cls(
            sizes=(40, 100, 100, 10),
            batch_sizes=(1, 4, 16, 64, 256, 1024, 4000),
            seeds=3,
            base_lr=0.05,
            base_batch=16,
            epochs=5,
            steps=200,
        )
        return pick(
            scale,
            quick=replace(
                book,
                sizes=(40, 32, 10),
                batch_sizes=(1, 16, 256, 4000),
                seeds=2,
                epochs=1,
                steps=40,
            ),
            book=book,
            full=replace(
                book,
                batch_sizes=FULL_BATCH_SIZES,
                seeds=5,
                epochs=20,
                steps=2000,
            ),
        )

    def lr(self, rule: str, batch_size: int) -> float:
        """Learning rate of ``rule`` (``fixed`` or ``linear``) at B."""
        if rule == "fixed":
            return self.base_lr
        if rule == "linear":
            return self.base_lr * batch_size / self.base_batch
        raise ValueError(f"rule must be 'fixed' or 'linear', got {rule!r}")


def batch_size_sweep(
    cfg: SweepConfig, data: Dataset, rules: Sequence[str] = ("fixed", "linear")
) -> tuple[list[dict], dict]:
    """Train every (budget, rule, B, seed) of the sweep.

    Models of one batch size and budget are trained together in one
    :class:`EnsembleMLP`; diverged runs are recorded, not raised.

    Returns:
        ``(rows, models)``: one row per run (``budget``, ``rule``, ``B``,
        ``seed``, ``lr``, ``steps``, ``train_loss``, ``test_loss``,
        ``test_acc``, ``gap``, ``grad_evals``, ``wall_time``,
        ``diverged``), and the trained models keyed by
        ``(budget, rule, B, seed)``.
    """
    from .models import mlp

    rows, trained = [], {}
    for budget in ("epochs", "steps"):
        for b in cfg.batch_sizes:
            steps = (
                epochs_to_steps(cfg.epochs, data.n_train, b)
                if budget == "epochs"
                else cfg.steps
            )
            keys = [(r, s) for r in rules for s in range(cfg.seeds)]
            nets = [mlp(cfg.sizes, seed=s) for _, s in keys]
            ens = EnsembleMLP.from_models(nets)
            lrs = [cfg.lr(r, b) for r, _ in keys]
            hist = train_ensemble(
                ens,
                data,
                b,
                lrs,
                steps,
                [s for _, s in keys],
                on_divergence="record",
            )
            for i, (rule, seed) in enumerate(keys):
                rows.append(
                    dict(
                        budget=budget,
                        rule=rule,
                        B=b,
                        seed=seed,
                        lr=lrs[i],
                        steps=steps,
                        train_loss=hist.train_loss[i, -1],
                        test_loss=hist.test_loss[i, -1],
                        train_acc=hist.train_acc[i, -1],
                        test_acc=hist.test_acc[i, -1],
                        gap=hist.test_loss[i, -1] - hist.train_loss[i, -1],
                        grad_evals=hist.grad_evals,
                        wall_time=hist.wall_time / len(keys),
                        diverged=bool(hist.diverged[i]),
                    )
                )
                trained[(budget, rule, b, seed)] = ens.member(i)
    return rows, trained
