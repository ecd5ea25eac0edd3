"""The Hessian of a loss: products with it, its extreme eigenvalues and,
for tiny models, the whole matrix.

The Hessian of a network is never formed except for tiny models; we only
multiply by it (Pearlmutter's trick, differentiating the gradient along a
vector). :class:`HessianOperator` keeps the gradient's graph at one point
so that every product there costs one extra backward pass.

* :func:`top_eigenvalues` -- the largest eigenvalues on that operator, by
  Lanczos with an early stop (:func:`batchlab.lanczos.lanczos_top`) or
  ARPACK's ``eigsh``.
* :func:`exact_hessian`, :func:`hessian_spectrum` -- the full matrix and
  its eigenvalues, for tiny models and tests.
* :func:`kronecker_factors` -- K-FAC's two factors of every linear
  layer's Gauss-Newton block: its inputs' and its output gradients'
  second moments.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call

from . import runtime
from .lanczos import Eigen, lanczos_top

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flat_params(model: nn.Module) -> torch.Tensor:
    """All trainable parameters as one vector, shape ``(p,)``."""
    return torch.cat([p.detach().reshape(-1) for p in _params(model)])


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def set_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Write a vector of shape ``(p,)`` into the model's parameters."""
    params = _params(model)
    total = sum(p.numel() for p in params)
    if flat.shape != (total,):
        raise ValueError(f"need a vector of {total} values, got {flat.shape}")
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict:
    """A vector ``(p,)`` as parameter views by name (``functional_call``)."""
    out, offset = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
    return out


class HessianOperator:
    """Products with the Hessian of ``loss_fn(model(x), y)`` at the
    model's current parameters.

    The gradient is computed once with ``create_graph=True``; each call of
    :meth:`matvec` then differentiates ``g . v`` (one backward pass).

    Args:
        model: the network; evaluated in its current mode (use ``eval()``
            for BatchNorm models unless batch statistics are meant).
        loss_fn: mean loss of outputs and targets.
        x: inputs, shape ``(n, d)``.
        y: targets, shape ``(n,)``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x, y):
        self.params = _params(model)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.loss = loss_fn(model(x), y)
        self.grads = torch.autograd.grad(
            self.loss, self.params, create_graph=True
        )
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(p,)``, computed on the model's
        device and returned on ``v``'s, in the model's dtype."""
        if v.shape != (self.dim,):
            raise ValueError(f"need a vector of {self.dim}, got {v.shape}")
        where = v.device
        v = v.to(device=self.device, dtype=self.dtype)
        dot = sum(
            (g * v_part.view_as(g)).sum()
            for g, v_part in zip(self.grads, _split(v, self.params))
        )
        hv = torch.autograd.grad(dot, self.params, retain_graph=True)
        self.n_products += 1
        return torch.cat([h.reshape(-1) for h in hv]).detach().to(where)

    def as_linear_operator(self) -> LinearOperator:
        """A scipy ``LinearOperator`` (float64) around :meth:`matvec`."""

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(v).ravel())
            return self.matvec(t).double().cpu().numpy()

        return LinearOperator((self.dim, self.dim), matvec=mv, dtype=float)


def _split(v: torch.Tensor, params: Sequence[torch.Tensor]):
    offset = 0
    for p in params:
        yield v[offset : offset + p.numel()]
        offset += p.numel()


def exact_hessian(
    model: nn.Module, loss_fn: LossFn, x, y, chunk: int | None = None
) -> torch.Tensor:
    """The full Hessian, shape ``(p, p)``; only for small models.

    With ``chunk``, the examples are taken ``chunk`` at a time and the
    Hessians of the chunks averaged, weighted by their sizes: the same
    matrix for a mean loss, in a fraction of the memory.
    """
    theta = flat_params(model)
    if theta.numel() > 5000:
        raise ValueError(
            f"exact_hessian forms a {theta.numel()}^2 matrix; use "
            "HessianOperator with top_eigenvalues for models this large"
        )
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive count, got {chunk}")
    n = x.shape[0]
    step = n if chunk is None else chunk
    total = theta.new_zeros(theta.numel(), theta.numel())
    for start in range(0, n, step):
        xs, ys = x[start : start + step], y[start : start + step]

        def loss_of(flat: torch.Tensor, xs=xs, ys=ys) -> torch.Tensor:
            out = functional_call(model, unflatten(model, flat), (xs,))
            return loss_fn(out, ys)

        part = torch.autograd.functional.hessian(
            loss_of, theta, vectorize=True
        )
        total += part * (xs.shape[0] / n)
    return total


def _as_operator(op) -> tuple[LinearOperator, Callable[[], int]]:
    if isinstance(op, HessianOperator):
        start = op.n_products
        return op.as_linear_operator(), lambda: op.n_products - start
    if isinstance(op, torch.Tensor | np.ndarray):
        mat = np.asarray(op, dtype=float)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(f"matrix must be square, got {mat.shape}")
        if not np.allclose(mat, mat.T, rtol=1e-6, atol=1e-8 * abs(mat).max()):
            raise ValueError("matrix must be symmetric (a Hessian is)")
        count = [0]

        def mv(v):
            count[0] += 1
            return mat @ v

        return LinearOperator(
            mat.shape, matvec=mv, dtype=float
        ), lambda: count[0]
    raise TypeError("op must be a HessianOperator or a square matrix")


def top_eigenvalues(
    op,
    k: int = 1,
    tol: float = 1e-6,
    seed: int = 0,
    which: str = "LA",
    method: str = "auto",
) -> Eigen:
    """The ``k`` largest (``which="LA"``) or largest-magnitude (``"LM"``)
    eigenvalues.

    Args:
        op: a :class:`HessianOperator` or a symmetric matrix.
        k: how many eigenvalues, ``1 <= k < p``.
        tol: relative accuracy of the eigenvalues.
        seed: seed of the starting vector.
        which: ``"LA"`` (algebraically largest), ``"SA"`` or ``"LM"``.
        method: ``"lanczos"`` (:func:`lanczos_top`, early stopping),
            ``"arpack"`` (scipy's ``eigsh``, implicitly restarted), or
            ``"auto"``: Lanczos for the largest eigenvalues of a
            :class:`HessianOperator`, ARPACK otherwise.

    Returns:
        :class:`Eigen` sorted from largest to smallest.
    """
    if method not in ("auto", "lanczos", "arpack"):
        raise ValueError(f"method must be auto, lanczos or arpack: {method!r}")
    if method == "auto":
        lanczos_ok = isinstance(op, HessianOperator) and which == "LA"
        method = "lanczos" if lanczos_ok else "arpack"
    if method == "lanczos":
        if not isinstance(op, HessianOperator) or which != "LA":
            raise ValueError("method='lanczos' needs a HessianOperator, LA")
        return lanczos_top(op, k=k, tol=tol, seed=seed)
    lin, used = _as_operator(op)
    p = lin.shape[0]
    if not 1 <= k < p:
        raise ValueError(f"k must be between 1 and {p - 1} (p = {p}), got {k}")
    rng = runtime.rng(seed)
    v0 = rng.standard_normal(p)
    ncv = min(p, max(2 * k + 1, 20))
    vals, vecs = eigsh(lin, k=k, which=which, tol=tol, v0=v0, ncv=ncv)
    order = np.argsort(vals)[::-1]
    return Eigen(vals[order], vecs[:, order], used())


def condition_number(eigenvalues: np.ndarray | torch.Tensor) -> float:
    """Largest over smallest eigenvalue of a positive definite matrix.

    Raises:
        ValueError: the smallest eigenvalue is not positive (the matrix is
            singular or indefinite; a condition number would mislead).
    """
    ev = np.asarray(eigenvalues, dtype=float)
    lo, hi = ev.min(), ev.max()
    if lo <= 0:
        raise ValueError(
            f"smallest eigenvalue is {lo:.3g}: the matrix is not positive "
            "definite, so its condition number is undefined; compare the top "
            "eigenvalues with the bulk instead"
        )
    return float(hi / lo)


def reference_top_eigenvalues(
    model: nn.Module, loss_fn: LossFn, x, y, k: int = 1, tol: float = 1e-12
) -> np.ndarray:
    """The ``k`` largest Hessian eigenvalues computed in double precision
    (a float64 copy of the model and inputs, ARPACK at ``tol``): the
    reference against which float32 estimates are judged. Shape ``(k,)``."""
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(model64, loss_fn, x.double(), y)
    return top_eigenvalues(op, k=k, tol=tol, method="arpack").values


# --------------------------------------------------------------------------
# The loss around a point


def hessian_spectrum(
    model: nn.Module, loss_fn: LossFn, x, y, chunk: int | None = None
) -> np.ndarray:
    """All eigenvalues of a small model's Hessian, descending, float64
    (``chunk``: see :func:`exact_hessian`)."""
    H = exact_hessian(model, loss_fn, x, y, chunk=chunk).double()
    H = (H + H.T) / 2
    return torch.linalg.eigvalsh(H).flip(0).cpu().numpy()


def spectrum_summary(ev: np.ndarray, n_outliers: int) -> dict:
    """Summary of an (indefinite) Hessian spectrum, descending ``ev``.

    ``outlier_ratio`` is the largest eigenvalue over the first eigenvalue
    after ``n_outliers`` (the edge of the bulk); ``negative_mass`` is the
    share of the absolute spectrum carried by negative eigenvalues.
    """
    ev = np.sort(np.asarray(ev, dtype=float))[::-1]
    if not 0 < n_outliers < len(ev):
        raise ValueError(f"n_outliers must be between 1 and {len(ev) - 1}")
    return {
        "lambda_max": ev[0],
        "lambda_min": ev[-1],
        "bulk_edge": ev[n_outliers],
        "outlier_ratio": ev[0] / ev[n_outliers],
        "negative_mass": np.abs(ev[ev < 0]).sum() / np.abs(ev).sum(),
    }


# --------------------------------------------------------------------------
# Kronecker factors of the Gauss-Newton matrix, layer by layer


@dataclass(frozen=True)
class KroneckerFactors:
    """The two factors of one linear layer's Gauss-Newton block.

    Attributes:
        inputs: ``A = E[a a^T]``, the second moment of the layer's inputs
            with a constant one appended for the bias, ``(d_in + 1,
            d_in + 1)``, float64 (the last row and column belong to the
            bias).
        outputs: ``G = E[J^T (diag p - p p^T) J]``, the second moment of
            the loss gradient with respect to the layer's outputs (``d``)
            under labels drawn from the model's softmax, ``(d_out,
            d_out)``, float64; ``J`` is the Jacobian of the logits with
            respect to those outputs.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor


def kronecker_factors(
    model: nn.Module, x: torch.Tensor
) -> list[KroneckerFactors]:
    """K-FAC's factors ``A`` and ``G`` for every ``nn.Linear`` of a
    classifier with softmax cross-entropy, in forward order.

    For one example the Gauss-Newton block of a layer's weight ``W``
    (flattened row by row, as PyTorch stores it) is exactly
    ``G_i (x) a_i a_i^T``; over a data set it is the mean of those
    products, which K-FAC approximates by ``G (x) A``, the product of
    the means (Martens and Grosse 2015).

    Args:
        model: maps inputs ``(n, d)`` to logits ``(n, c)``, treating
            examples independently (no BatchNorm in training mode).
        x: inputs ``(n, d)``.

    Returns:
        One :class:`KroneckerFactors` per linear layer.
    """
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"need inputs of shape (n >= 1, d), got {x.shape}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer")
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out))
        )
        for m in linears
    ]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    p = torch.softmax(logits.detach().double(), dim=1)
    out_hessian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    outs = [seen[m][1] for m in linears]
    # Examples are independent, so the gradient of a summed logit k with
    # respect to a layer's outputs holds every example's Jacobian row k.
    rows = [
        torch.autograd.grad(logits[:, k].sum(), outs, retain_graph=True)
        for k in range(logits.shape[1])
    ]
    n = x.shape[0]
    factors = []
    for j, m in enumerate(linears):
        jac = torch.stack([r[j] for r in rows], 1).double()  # (n, c, out)
        G = torch.einsum("nko,nkl,nlp->op", jac, out_hessian, jac) / n
        a = seen[m][0].detach().double()
        a = torch.cat([a, a.new_ones(n, 1)], 1)
        factors.append(KroneckerFactors(a.T @ a / n, G))
    return factors
