"""Input normalization and the Hessians it shapes.

* :func:`fit_transform` fits centring, standardization, PCA or ZCA
  whitening on training inputs and returns an :class:`InputTransform`.
* :func:`linear_regression_hessian`, :func:`logistic_hessian` give the
  closed-form Hessians of the mean squared and logistic losses.
* :class:`CenteredMLP` centres (and optionally rescales) every hidden
  layer's outputs over the data set, with or without compensating the
  next layer so the function is unchanged (Raiko, Valpola and LeCun 2012).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .ensemble import epoch_batches
from .models import mlp
from .train import is_diverged, validate_sgd

KINDS = ("raw", "center", "standardize", "pca", "zca")


@dataclass(frozen=True)
class InputTransform:
    """``x -> (x - mean) @ matrix``, fitted on training data.

    Attributes:
        kind: one of ``raw``, ``center``, ``standardize``, ``pca``, ``zca``.
        mean: shape ``(d,)``.
        matrix: shape ``(d, k)``; ``k < d`` when constant features were
            dropped.
    """

    kind: str
    mean: torch.Tensor
    matrix: torch.Tensor

    @property
    def out_features(self) -> int:
        """``k``, the number of features it gives."""
        return self.matrix.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to inputs of shape ``(n, d)``."""
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(
                f"inputs have {x.shape[-1]} features, the transform was "
                f"fitted on {self.mean.shape[0]}"
            )
        mean, matrix = self.mean.to(x.device), self.matrix.to(x.device)
        out = (x.double() - mean) @ matrix
        return out.to(x.dtype)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Covariance (divided by n) of inputs ``(n, d)``, float64 ``(d, d)``."""
    x = x.double()
    xc = x - x.mean(0)
    return xc.T @ xc / x.shape[0]


def varying(x: torch.Tensor) -> torch.Tensor:
    """Which features of inputs ``(n, d)`` are not constant: a boolean
    mask ``(d,)``. (scikit-learn's digits have three pixels that are zero
    in every image, and a training split can have more.)"""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need inputs of shape (n >= 2, d), got {x.shape}")
    return (x != x[:1]).any(0)


def fit_transform(
    x: torch.Tensor, kind: str, eps: float = 0.0, drop_constant: bool = False
) -> InputTransform:
    """Fit a normalization on training inputs ``x`` of shape ``(n, d)``.

    Args:
        x: training inputs.
        kind: ``raw`` (identity), ``center``, ``standardize`` (per-feature
            zero mean and unit variance), ``pca`` (rotate onto principal
            axes and scale to unit variance) or ``zca`` (PCA whitening
            rotated back, the whitening closest to the raw inputs).
        eps: added to the variances (or covariance eigenvalues) before
            dividing; needed when the covariance is (nearly) singular.
        drop_constant: first drop the features that are constant on
            ``x`` (:func:`varying`): they cannot be rescaled, and they add
            a zero row and column to any Hessian of a linear model. The
            transform then gives ``k <= d`` features, for every kind
            (``raw`` included).

    Returns:
        An :class:`InputTransform`.

    Raises:
        ValueError: unknown kind, or a (near) zero variance with
            ``eps == 0``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need inputs of shape (n >= 2, d), got {x.shape}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    eye = torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    keep = varying(x) if drop_constant else torch.ones_like(eye[0]).bool()
    select = eye[:, keep]  # (d, k): the features kept
    x = x[:, keep]
    d = x.shape[1]
    mean = select @ x.double().mean(0)
    eye = torch.eye(d, dtype=torch.float64, device=x.device)
    if kind == "raw":
        return InputTransform(kind, torch.zeros_like(mean), select)
    if kind == "center":
        return InputTransform(kind, mean, select)
    cov = covariance(x)
    if kind == "standardize":
        var = torch.diagonal(cov)
        _check_positive(var, eps, "a feature has zero variance")
        scale = torch.diag((var + eps) ** -0.5)
        return InputTransform(kind, mean, select @ scale)
    evals, evecs = torch.linalg.eigh(cov)
    _check_positive(evals, eps, "the input covariance is singular")
    scale = torch.diag((evals.clamp_min(0) + eps) ** -0.5)
    pca = evecs @ scale
    if kind == "pca":
        return InputTransform(kind, mean, select @ pca)
    return InputTransform(kind, mean, select @ pca @ evecs.T)


def _check_positive(values: torch.Tensor, eps: float, what: str) -> None:
    if eps == 0 and bool((values <= 1e-12 * values.abs().max()).any()):
        raise ValueError(
            f"{what}; whitening would divide by zero. Drop constant "
            "features (drop_constant=True) or pass eps > 0 to regularize "
            "(add eps to every variance)"
        )


def with_bias(x: torch.Tensor) -> torch.Tensor:
    """Append a column of ones, ``(n, d) -> (n, d + 1)``, float64."""
    x = x.double()
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.cat([x, ones], 1)


def linear_regression_hessian(
    x: torch.Tensor, bias: bool = True
) -> torch.Tensor:
    """Hessian of ``mean((x w + b - y)^2) / 2``: ``X^T X / n``.

    It does not depend on the targets or the weights. With ``bias`` the
    last row and column belong to the bias. Shape ``(d + 1, d + 1)``.
    """
    X = with_bias(x) if bias else x.double()
    return X.T @ X / X.shape[0]


def logistic_hessian(
    x: torch.Tensor, w: torch.Tensor, bias: bool = True
) -> torch.Tensor:
    """Hessian of the mean binary logistic loss at weights ``w``.

    ``X^T diag(p (1 - p)) X / n`` with ``p = sigmoid(X w)``; ``w`` has
    shape ``(d + 1,)`` with the bias last when ``bias``.
    """
    X = with_bias(x) if bias else x.double()
    if w.shape != (X.shape[1],):
        raise ValueError(f"w must have shape ({X.shape[1]},), got {w.shape}")
    p = torch.sigmoid(X @ w.double())
    return (X * (p * (1 - p))[:, None]).T @ X / X.shape[0]


# --------------------------------------------------------------------------
# Normalizing every hidden layer over the data set


class CenteredMLP(nn.Module):
    """A tanh MLP whose hidden outputs are shifted (and scaled) by
    data-set statistics held in buffers.

    Hidden layer ``l`` computes ``(tanh(W_l h + b_l) - shift_l) / scale_l``.
    :meth:`renormalize` sets the shifts (and scales) to the current
    statistics over a data set; with ``compensate=True`` it also changes
    the next layer's weights and bias so that the network's function is
    exactly unchanged.
    """

    def __init__(self, sizes: Sequence[int], seed: int = 0):
        super().__init__()
        base = mlp(sizes, activation="tanh", seed=seed)
        self.linears = nn.ModuleList(
            [m for m in base if isinstance(m, nn.Linear)]
        )
        for i, lin in enumerate(self.linears[:-1]):
            where = lin.weight.device
            self.register_buffer(
                f"shift{i}", torch.zeros(lin.out_features, device=where)
            )
            self.register_buffer(
                f"scale{i}", torch.ones(lin.out_features, device=where)
            )

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw hidden activations ``tanh(W h + b)`` before normalization."""
        outs, h = [], x
        for i, lin in enumerate(self.linears[:-1]):
            a = torch.tanh(lin(h))
            outs.append(a)
            h = (a - getattr(self, f"shift{i}")) / getattr(self, f"scale{i}")
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, c)``."""
        h = x
        for i, lin in enumerate(self.linears[:-1]):
            a = torch.tanh(lin(h))
            h = (a - getattr(self, f"shift{i}")) / getattr(self, f"scale{i}")
        return self.linears[-1](h)

    @torch.no_grad()
    def renormalize(
        self, x: torch.Tensor, compensate: bool = True, rescale: bool = False
    ) -> None:
        """Reset every hidden layer's shift (and scale) to the statistics
        of its activations over ``x``, lowest layer first.

        Args:
            x: the data set, shape ``(n, d)``.
            compensate: adjust the next layer so the output is unchanged.
            rescale: also divide by the standard deviation (else centre only).
        """
        for i in range(len(self.linears) - 1):
            a = self.hidden(x)[i]
            old_shift = getattr(self, f"shift{i}").clone()
            old_scale = getattr(self, f"scale{i}").clone()
            new_shift = a.mean(0)
            new_scale = a.std(0).clamp_min(1e-4) if rescale else old_scale
            if compensate:
                nxt = self.linears[i + 1]
                # old input (a - s0)/c0 = ((a - s1)/c1) * c1/c0 + (s1-s0)/c0
                ratio = new_scale / old_scale
                nxt.bias += nxt.weight @ ((new_shift - old_shift) / old_scale)
                nxt.weight *= ratio[None, :]
            getattr(self, f"shift{i}").copy_(new_shift)
            getattr(self, f"scale{i}").copy_(new_scale)


# --------------------------------------------------------------------------
# Experiments


def linear_conditioning(
    x: torch.Tensor,
    kinds: Sequence[str] = KINDS,
    eps: float = 0.0,
    drop_constant: bool = False,
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Linear-regression Hessian spectra after each normalization.

    Args:
        x: training inputs ``(n, d)``.
        kinds: normalizations to compare (see :func:`fit_transform`).
        eps, drop_constant: passed on to :func:`fit_transform`.

    Returns:
        ``(spectra, rows)``: eigenvalues per kind (descending, float64) and
        one row per kind with ``lambda_max``, ``lambda_min`` and
        ``condition``, ready for ``pandas.DataFrame``.
    """
    spectra, rows = {}, []
    for kind in kinds:
        z = fit_transform(x, kind, eps=eps, drop_constant=drop_constant)(x)
        ev = torch.linalg.eigvalsh(linear_regression_hessian(z)).flip(0)
        spectra[kind] = ev
        rows.append(
            {
                "inputs": kind,
                "lambda_max": float(ev[0]),
                "lambda_min": float(ev[-1]),
                "condition": float(ev[0] / ev[-1]),
            }
        )
    return spectra, rows


def train_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    eval_every: int,
) -> list[dict]:
    """Full-batch gradient descent on binary logistic regression from
    ``w = 0``, recording the loss and the Hessian's condition number.

    Args:
        x: inputs ``(n, d)``; y: labels in {0, 1}, shape ``(n,)``.

    Returns:
        Rows with ``step``, ``loss``, ``lambda_max``, ``lambda_min`` and
        ``condition``.
    """
    if not set(torch.unique(y).tolist()) <= {0, 1}:
        raise ValueError("labels must be 0 or 1 for binary logistic loss")
    X = with_bias(x)
    t = y.double()
    w = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    rows = []
    for step in range(steps + 1):
        z = X @ w
        if step % eval_every == 0 or step == steps:
            ev = torch.linalg.eigvalsh(logistic_hessian(x, w))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, t)
            rows.append(
                {
                    "step": step,
                    "loss": float(loss),
                    "lambda_max": float(ev[-1]),
                    "lambda_min": float(ev[0]),
                    "condition": float(ev[-1] / ev[0]),
                }
            )
        w = w - lr * X.T @ (torch.sigmoid(z) - t) / X.shape[0]
    return rows


# --------------------------------------------------------------------------
# Many centred MLPs trained at once

#: What :class:`CenteredEnsemble` does to each model's hidden layers.
HIDDEN_MODES = ("none", "centre", "standardize")


class CenteredEnsemble:
    """``m`` tanh MLPs of one shape, each with its hidden layers left
    alone, centred or standardized over a data set, trained at once.

    Model ``i`` computes what a :class:`CenteredMLP` does: hidden layer
    ``l`` outputs ``(tanh(h W_l + b_l) - shift_l) / scale_l``. Weights are
    stacked, ``W[l]`` of shape ``(m, d_in, d_out)`` and ``b[l]``, ``shift``
    and ``scale`` of shape ``(m, 1, d_out)``; the backward pass for softmax
    cross-entropy is written out, as in :class:`batchlab.ensemble.
    EnsembleMLP`.

    Args:
        sizes: layer widths, input first.
        seeds: initialization seed per model (model ``i`` starts as
            ``CenteredMLP(sizes, seed=seeds[i])``).
        modes: per model, one of :data:`HIDDEN_MODES`.
    """

    def __init__(
        self, sizes: Sequence[int], seeds: Sequence[int], modes: Sequence[str]
    ):
        if len(seeds) != len(modes) or not seeds:
            raise ValueError(
                f"need one mode per seed, got {len(seeds)} seeds and "
                f"{len(modes)} modes"
            )
        bad = sorted(set(modes) - set(HIDDEN_MODES))
        if bad:
            raise ValueError(f"modes {bad} unknown; use {HIDDEN_MODES}")
        nets = [CenteredMLP(sizes, seed=s) for s in seeds]
        self.W = [
            torch.stack([n.linears[k].weight.detach().T for n in nets])
            for k in range(len(sizes) - 1)
        ]
        self.b = [
            torch.stack([n.linears[k].bias.detach()[None] for n in nets])
            for k in range(len(sizes) - 1)
        ]
        self.shift = [torch.zeros_like(b) for b in self.b[:-1]]
        self.scale = [torch.ones_like(b) for b in self.b[:-1]]
        self.modes = tuple(modes)
        self.sizes = tuple(int(s) for s in sizes)

    @property
    def n_models(self) -> int:
        """Number of stacked models."""
        return self.W[0].shape[0]

    def _forward(self, x: torch.Tensor) -> tuple[list, torch.Tensor]:
        """Inputs of every layer and the raw hidden activations: returns
        ``([h_0, t_1, h_1, ...], logits)`` for ``x`` ``(m, B, d)`` or
        shared ``(B, d)``."""
        h, kept = x, [x]
        if x.ndim == 2:  # one batch for every model (a view, no copy)
            h = x.expand(self.n_models, -1, -1)
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            z = torch.baddbmm(b, h, W)  # the bias added in the product
            if k == len(self.W) - 1:
                return kept, z
            t = z.tanh_()
            h = torch.sub(t, self.shift[k]).div_(self.scale[k])
            kept += [t, h]
        raise AssertionError("unreachable")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(m, n, c)`` for inputs ``(m, n, d)`` or ``(n, d)``."""
        return self._forward(x)[1]

    def sgd_step(
        self, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor
    ) -> None:
        """One SGD step per model on batches ``x`` ``(m, B, d)``, ``y``
        ``(m, B)`` with learning rates ``lr`` ``(m,)``."""
        kept, z = self._forward(x)
        g = torch.softmax(z, -1)
        g.scatter_add_(-1, y[..., None], -torch.ones_like(g[..., :1]))
        g = g / x.shape[1]  # d loss / d logits
        scale = lr.view(-1, 1, 1)
        for k in range(len(self.W) - 1, -1, -1):
            h_in = kept[2 * k]
            if k > 0:  # gradient at the raw activation below, pre-update
                t = kept[2 * k - 1]
                below = torch.bmm(g, self.W[k].transpose(1, 2))
                below = below / self.scale[k - 1] * (1 - t * t)
            step = g * scale  # (m, B, d_out): cheaper to scale than W
            self.W[k].baddbmm_(h_in.transpose(1, 2), step, alpha=-1)
            self.b[k].sub_(step.sum(1, keepdim=True))
            if k > 0:
                g = below

    @torch.no_grad()
    def renormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Reset the shift (and, for ``standardize``, the scale) of every
        normalized model's hidden layers to its activations' statistics
        over ``x`` ``(n, d)``, compensating the next layer so that every
        model computes the same function as before (as
        :meth:`CenteredMLP.renormalize`).

        Returns:
            The logits ``(m, n, c)`` on ``x`` (the same before and after).
        """
        kept, logits = self._forward(x)
        rows = [i for i, m in enumerate(self.modes) if m != "none"]
        if not rows:
            return logits
        idx = torch.tensor(rows, device=x.device)
        scaled = torch.tensor(
            [self.modes[i] == "standardize" for i in rows], device=x.device
        ).view(-1, 1, 1)
        every = len(rows) == self.n_models  # no copies needed
        for k in range(len(self.W) - 1):
            t = kept[2 * k + 1]  # unchanged by the layers below
            t = t if every else t[idx]
            s0, c0 = self.shift[k][idx], self.scale[k][idx]
            s1 = t.mean(1, keepdim=True)
            c1 = c0
            if bool(scaled.any()):  # two passes: as exact as t.std, faster
                var = (t - s1).square_().sum(1, keepdim=True)
                sd = (var / (t.shape[1] - 1)).sqrt_().clamp_min(1e-4)
                c1 = torch.where(scaled, sd, c0)
            W, b = self.W[k + 1], self.b[k + 1]
            b[idx] += torch.bmm((s1 - s0) / c0, W[idx])
            W[idx] *= (c1 / c0).transpose(1, 2)
            self.shift[k][idx], self.scale[k][idx] = s1, c1
        return logits

    def select(self, rows: Sequence[int]) -> CenteredEnsemble:
        """A new ensemble holding copies of the models ``rows``."""
        idx = torch.as_tensor(list(rows), device=self.W[0].device)
        out = copy.copy(self)
        out.W = [w[idx] for w in self.W]
        out.b = [b[idx] for b in self.b]
        out.shift = [s[idx] for s in self.shift]
        out.scale = [c[idx] for c in self.scale]
        out.modes = tuple(self.modes[int(i)] for i in rows)
        return out

    def write_back(self, work: CenteredEnsemble, rows: Sequence[int]):
        """Copy the models of ``work`` into rows ``rows`` of this one."""
        idx = torch.as_tensor(list(rows), device=self.W[0].device)
        for mine, theirs in [
            (self.W, work.W),
            (self.b, work.b),
            (self.shift, work.shift),
            (self.scale, work.scale),
        ]:
            for a, b in zip(mine, theirs):
                a[idx] = b

    def member(self, i: int) -> CenteredMLP:
        """Model ``i`` as a :class:`CenteredMLP` (a copy)."""
        net = CenteredMLP(self.sizes, seed=0)
        with torch.no_grad():
            for k, lin in enumerate(net.linears):
                lin.weight.copy_(self.W[k][i].T)
                lin.bias.copy_(self.b[k][i, 0])
            for k in range(len(self.shift)):
                getattr(net, f"shift{k}").copy_(self.shift[k][i, 0])
                getattr(net, f"scale{k}").copy_(self.scale[k][i, 0])
        return net.to(self.W[0].device)


@dataclass
class CenteredRun:
    """What :func:`train_centered` recorded, one row per model.

    Attributes:
        checks: the steps of the checks, ``(k,)`` (0 first).
        loss: the loss on the monitor examples at each check, ``(m, k)``
            (NaN after a model stopped).
        steps: where each model stopped, ``(m,)``: the first check at or
            below its target (with ``stop_at_target``) or the budget.
        reached: the step of the first check at or below its target
            (NaN if never), ``(m,)``.
        test_acc: test accuracy where the model stopped, ``(m,)``.
        reached_acc: test accuracy at ``reached`` (NaN if never).
        diverged: whether its loss blew up (it was then frozen), ``(m,)``.
        matched: for the models asked to be kept, a copy at ``reached``.
    """

    checks: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    reached: np.ndarray
    test_acc: np.ndarray
    reached_acc: np.ndarray
    diverged: np.ndarray
    matched: dict[int, CenteredMLP] = field(default_factory=dict)


def _accuracy(ens: CenteredEnsemble, x, y) -> np.ndarray:
    with torch.no_grad():
        return (ens.logits(x).argmax(-1) == y).float().mean(1).cpu().numpy()


def train_centered(
    ens: CenteredEnsemble,
    data: Dataset,
    lrs: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    batch_size: int = 32,
    every: int = 50,
    monitor: int = 1000,
    targets: Sequence[float] | None = None,
    stop_at_target: bool = False,
    keep: Sequence[int] = (),
) -> CenteredRun:
    """Train every model of ``ens`` in place with plain SGD; every
    ``every`` steps (and at the start) renormalize the normalized models'
    hidden layers over the first ``monitor`` training examples and
    record every model's loss on them.

    Model ``i`` uses learning rate ``lrs[i]`` and the batch order of
    :func:`batchlab.train.batch_schedule` with ``seeds[i]``, so it ends
    where :func:`batchlab.train.train_sgd` with a hook calling
    :meth:`CenteredMLP.renormalize` every ``every`` steps would.

    Args:
        targets: per model, a loss to reach (checked at the checks).
        stop_at_target: stop each model at its first check at or below
            its target (stopped models cost nothing).
        keep: models of which to keep a copy there.

    Returns:
        A :class:`CenteredRun`.
    """
    m = ens.n_models
    if len(lrs) != m or len(seeds) != m:
        raise ValueError(
            f"need one rate and one seed per model ({m}), got {len(lrs)} "
            f"and {len(seeds)}"
        )
    for lr in lrs:
        validate_sgd(batch_size, lr, steps, data.n_train)
    if every < 1 or not 1 <= monitor <= data.n_train:
        raise ValueError(
            f"need every >= 1 and 1 <= monitor <= {data.n_train}, got "
            f"{every} and {monitor}"
        )
    goal = np.full(m, -np.inf) if targets is None else np.asarray(targets)
    device = ens.W[0].device
    lr = torch.tensor(list(lrs), dtype=ens.W[0].dtype, device=device)
    xm, ym = data.x_train[:monitor], data.y_train[:monitor]
    checks = list(range(0, steps, every)) + [steps]
    loss = np.full((m, len(checks)), np.nan)
    reached = np.full(m, np.nan)
    reached_acc = np.full(m, np.nan)
    stopped = np.full(m, steps)
    diverged = np.zeros(m, bool)
    matched: dict[int, CenteredMLP] = {}
    live = np.arange(m)
    work = ens.select(live)
    batches = epoch_batches(data.n_train, batch_size, list(seeds))
    for c, step in enumerate(checks):
        if c:
            with torch.no_grad():
                for _ in range(step - checks[c - 1]):
                    idx = next(batches)[live].to(device)
                    work.sgd_step(
                        data.x_train[idx], data.y_train[idx], lr[live]
                    )
        logits = work.renormalize(xm)
        with torch.no_grad():
            now = (
                F.cross_entropy(
                    logits.transpose(1, 2),
                    ym.expand(len(live), -1),
                    reduction="none",
                )
                .mean(1)
                .cpu()
                .numpy()
            )
        loss[live, c] = now
        bad = is_diverged(now)
        hit = (now <= goal[live]) & ~bad & np.isnan(reached[live])
        if hit.any():
            rows = np.flatnonzero(hit)
            reached[live[rows]] = step
            reached_acc[live[rows]] = _accuracy(
                work.select(rows), data.x_test, data.y_test
            )
            for r in rows:
                if live[r] in keep:
                    matched[int(live[r])] = work.member(int(r))
        diverged[live[bad]] = True
        done = bad | (hit & stop_at_target)
        if done.any() or step == steps:
            ens.write_back(work, live)
            stopped[live[done]] = step
            live = live[~done]
            if not len(live):
                break
            work = ens.select(live)
    test_acc = _accuracy(ens, data.x_test, data.y_test)
    test_acc[diverged] = np.nan
    return CenteredRun(
        np.array(checks),
        loss,
        stopped,
        reached,
        test_acc,
        reached_acc,
        diverged,
        matched,
    )
