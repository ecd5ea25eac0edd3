"""Extreme eigenvalues of a symmetric operator from products alone.

An operator is anything with ``dim``, ``n_products`` and ``matvec``
(:class:`SymmetricOperator`): :class:`batchlab.hessian.HessianOperator`,
or a symmetric matrix wrapped in :class:`MatrixOperator`.

* :func:`top_eigenvalues` -- the book's one entry point: the ``k``
  largest eigenvalues by Lanczos (:func:`lanczos_top`), or by ARPACK
  (``scipy.sparse.linalg.eigsh``) for other ends of the spectrum and for
  references.
* :func:`lanczos_top` -- Lanczos with full reorthogonalization, stopped
  by :func:`ritz_estimate`, the one stopping rule.
* :func:`power_estimates` and :func:`lanczos_estimates` -- each method's
  estimate of the largest eigenvalue after every product, for comparing
  how fast they converge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from . import runtime


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric linear map known only through its products.

    Attributes:
        dim: the dimension ``p``.
        n_products: products computed so far (counts the work).
    """

    dim: int
    n_products: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The product with a vector ``(p,)``, returned on ``v``'s
        device."""
        ...


class MatrixOperator:
    """A symmetric matrix as a :class:`SymmetricOperator`, float64.

    Args:
        matrix: shape ``(p, p)``, symmetric (a tensor or an array); or,
            with ``diagonal=True``, the diagonal ``(p,)`` of a diagonal
            matrix (products then cost ``p``, not ``p^2``).

    Raises:
        ValueError: the matrix is not square or not symmetric.
    """

    def __init__(self, matrix, diagonal: bool = False):
        m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        if diagonal:
            if m.ndim != 1 or m.numel() < 2:
                raise ValueError(
                    f"a diagonal needs shape (p >= 2,), got {tuple(m.shape)}"
                )
        elif m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"matrix must be square, got {tuple(m.shape)}")
        elif not torch.allclose(m, m.T, rtol=1e-6, atol=1e-8 * m.abs().max()):
            raise ValueError("matrix must be symmetric (a Hessian is)")
        self.matrix, self.diagonal = m, diagonal
        self.dim = m.shape[0]
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` of shape ``(p,)``, in ``v``'s dtype."""
        if v.shape != (self.dim,):
            raise ValueError(f"need a vector of {self.dim}, got {v.shape}")
        self.n_products += 1
        m = self.matrix.to(v.device)
        out = m * v.double() if self.diagonal else m @ v.double()
        return out.to(v.dtype)


def as_operator(op) -> SymmetricOperator:
    """``op`` itself if it is a :class:`SymmetricOperator`, a
    :class:`MatrixOperator` if it is a square matrix.

    Raises:
        TypeError: anything else.
    """
    if isinstance(op, SymmetricOperator):
        return op
    if isinstance(op, torch.Tensor | np.ndarray):
        return MatrixOperator(op)
    raise TypeError(
        "need a symmetric operator (dim, n_products, matvec) or a square "
        f"matrix, got {type(op).__name__}"
    )


@dataclass(frozen=True)
class Eigen:
    """Eigenvalues (largest first), eigenvectors ``(p, k)`` and the number
    of products spent; from Lanczos also every Ritz value where it
    stopped (``ritz``, largest first), ``None`` from ARPACK."""

    values: np.ndarray
    vectors: np.ndarray
    n_products: int
    ritz: np.ndarray | None = None


def lanczos_steps(
    op: SymmetricOperator, v0: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Lanczos with full reorthogonalization, one step per product.

    Yields ``(alpha, beta, Q)`` after each product: the diagonal ``(j,)``,
    the off-diagonal ``(j,)`` (its last entry couples to the next, not yet
    computed, vector) and the basis ``(p, j)``, all float64. Stops on
    breakdown (an invariant subspace was found).
    """
    q = v0.double() / v0.double().norm()
    basis, alpha, beta = [q], [], []
    while True:
        w = op.matvec(q.to(v0.dtype)).double().to(q.device)
        alpha.append(torch.dot(w, q))
        Q = torch.stack(basis, 1)
        w = w - Q @ (Q.T @ w)
        w = w - Q @ (Q.T @ w)  # twice is enough (Kahan)
        b = w.norm()
        beta.append(b)
        yield torch.stack(alpha), torch.stack(beta), Q
        if b < 1e-10 * abs(alpha[-1]).clamp_min(1e-30) or len(basis) == len(q):
            return
        q = w / b
        basis.append(q)


def tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The Lanczos matrix ``T_j`` ``(j, j)`` from ``alpha`` ``(j,)`` and the
    first ``j - 1`` entries of ``beta``."""
    off = beta[: len(alpha) - 1]
    return torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)


def ritz_estimate(
    alpha: torch.Tensor, beta: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Ritz values and vectors of ``T_j`` and the error estimate of
    the top ``k``: the stopping rule of :func:`lanczos_top`.

    For Ritz value ``theta_i`` with unit eigenvector ``s_i`` of ``T_j``
    the residual is ``r_i = beta_j |s_i[j]|`` and the estimate
    ``r_i^2 / (theta_i - theta_{i+1})``. Parlett's bound divides by the
    gap to the rest of the true spectrum, which is unknown; the Ritz gap
    can be larger, so this is an estimate, not a bound.

    Returns:
        ``(theta, S, error)``: Ritz values ``(j,)`` descending, vectors
        ``(j, j)`` in that order, and the estimates ``(k,)`` (infinite
        while ``j <= k``).
    """
    theta, S = torch.linalg.eigh(tridiagonal(alpha, beta))
    theta, S = theta.flip(0), S.flip(1)
    if len(alpha) <= k:
        return theta, S, torch.full((k,), float("inf"), dtype=theta.dtype)
    resid = (beta[-1] * S[-1, :k]).abs()
    gaps = (theta[:k] - theta[1 : k + 1]).clamp_min(1e-12)
    return theta, S, resid**2 / gaps


def _start(op: SymmetricOperator, seed: int) -> torch.Tensor:
    gen = runtime.generator(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    return v0.to(getattr(op, "device", "cpu"))


def lanczos_top(
    op: SymmetricOperator,
    k: int = 1,
    tol: float = 1e-6,
    max_steps: int = 300,
    seed: int = 0,
    v0: torch.Tensor | None = None,
) -> Eigen:
    """The ``k`` largest eigenvalues by Lanczos with an early stop.

    After every product the Ritz values are computed; iteration stops
    when, for each of the top ``k``, :func:`ritz_estimate` is at most
    ``tol`` times the value, or after ``max_steps`` products. Unlike
    ARPACK, which fills a 20-vector Krylov space before its first test,
    this stops as soon as the estimate has converged.

    The estimate measures the distance to *some* eigenvalue. If the start
    is nearly orthogonal to the top eigenvector, the Ritz value can settle
    on the second for a few steps and the rule stops there (so can any
    rule that only watches the iteration); a tighter ``tol``, a second
    start or block Lanczos guards against it.

    Args:
        op: the operator (:class:`SymmetricOperator`).
        k: how many eigenvalues, ``1 <= k < p``.
        tol: relative accuracy the estimate must reach.
        max_steps: products at most.
        seed: seed of the Gaussian start (ignored when ``v0`` is given).
        v0: the start vector ``(p,)``.

    Returns:
        :class:`Eigen`, largest first, with Ritz vectors ``(p, k)``.
    """
    if not 1 <= k < op.dim:
        raise ValueError(
            f"k must be between 1 and {op.dim - 1} (p = {op.dim}), got {k}"
        )
    if max_steps <= k:
        raise ValueError(f"max_steps must exceed k = {k}, got {max_steps}")
    start = op.n_products
    v0 = _start(op, seed) if v0 is None else v0
    for state in islice(lanczos_steps(op, v0), max_steps):
        alpha, beta, Q = state  # Q, the basis, is kept for the vectors
        theta, S, error = ritz_estimate(alpha, beta, k)
        if len(theta) > k and bool((error <= tol * theta[:k].abs()).all()):
            break
    kk = min(k, len(theta))
    vectors = (Q @ S[:, :kk]).cpu().numpy()
    ritz = theta.cpu().numpy()
    return Eigen(ritz[:kk], vectors, op.n_products - start, ritz)


def _scipy(op: SymmetricOperator) -> LinearOperator:
    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v).ravel())
        return op.matvec(t).double().cpu().numpy()

    return LinearOperator((op.dim, op.dim), matvec=mv, dtype=float)


def top_eigenvalues(
    op,
    k: int = 1,
    tol: float = 1e-6,
    seed: int = 0,
    which: str = "LA",
    method: str = "auto",
) -> Eigen:
    """The ``k`` largest (``which="LA"``), smallest (``"SA"``) or
    largest-magnitude (``"LM"``) eigenvalues of a symmetric operator.

    Args:
        op: a :class:`SymmetricOperator` or a symmetric matrix.
        k: how many eigenvalues, ``1 <= k < p``.
        tol: relative accuracy of the eigenvalues.
        seed: seed of the starting vector.
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        method: ``"lanczos"`` (:func:`lanczos_top`, largest only),
            ``"arpack"`` (scipy's ``eigsh``, implicitly restarted, its
            own residual test), or ``"auto"``: Lanczos for ``"LA"``,
            ARPACK otherwise.

    Returns:
        :class:`Eigen` sorted from largest to smallest.
    """
    if method not in ("auto", "lanczos", "arpack"):
        raise ValueError(f"method must be auto, lanczos or arpack: {method!r}")
    if which not in ("LA", "SA", "LM"):
        raise ValueError(f"which must be LA, SA or LM, got {which!r}")
    op = as_operator(op)
    if method == "auto":
        method = "lanczos" if which == "LA" else "arpack"
    if method == "lanczos":
        if which != "LA":
            raise ValueError("method='lanczos' finds the largest (LA) only")
        return lanczos_top(op, k=k, tol=tol, seed=seed)
    if not 1 <= k < op.dim:
        raise ValueError(
            f"k must be between 1 and {op.dim - 1} (p = {op.dim}), got {k}"
        )
    start = op.n_products
    v0 = runtime.rng(seed).standard_normal(op.dim)
    ncv = min(op.dim, max(2 * k + 1, 20))
    vals, vecs = eigsh(_scipy(op), k=k, which=which, tol=tol, v0=v0, ncv=ncv)
    order = np.argsort(vals)[::-1]
    return Eigen(vals[order], vecs[:, order], op.n_products - start)


def _check_start(v0: torch.Tensor, steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if v0.dim() != 1 or not bool(v0.abs().sum() > 0):
        raise ValueError("the start vector must be a non-zero 1-d tensor")


def power_estimates(
    op: SymmetricOperator,
    v0: torch.Tensor,
    steps: int,
    done=None,
) -> np.ndarray:
    """Power iteration's estimate of the dominant eigenvalue after each of
    ``steps`` products: the Rayleigh quotient ``v . Hv`` of the current
    unit vector ``v``, which is then replaced by ``Hv / |Hv|``.

    This is the method of PyHessian and of most sharpness trackers; it
    converges to the eigenvalue of largest magnitude, with an error that
    shrinks like ``(lambda_2 / lambda_1)^(2j)`` once the start has a
    component along the top eigenvector. With ``done`` (a function of
    the estimate), iteration ends after the first estimate for which
    ``done(estimate)`` is true.
    """
    _check_start(v0, steps)
    v = v0.double() / v0.double().norm()
    out = []
    for _ in range(steps):
        hv = op.matvec(v.to(v0.dtype)).double()
        out.append(float(torch.dot(v, hv)))
        norm = hv.norm()
        if norm == 0 or (done is not None and done(out[-1])):
            break
        v = hv / norm
    return np.array(out)


def lanczos_estimates(
    op: SymmetricOperator, v0: torch.Tensor, steps: int
) -> np.ndarray:
    """Lanczos's estimate of the largest eigenvalue after each of ``steps``
    products: the largest Ritz value, the maximum of the Rayleigh quotient
    over the Krylov space ``span(v0, H v0, ..., H^(j-1) v0)``.

    Power iteration's ``j``-th vector lies in the same space, so in exact
    arithmetic this estimate is never below :func:`power_estimates` from
    the same start, and never above the largest eigenvalue. Fewer than
    ``steps`` values come back if the Krylov space becomes invariant.
    """
    _check_start(v0, steps)
    out = []
    for alpha, beta, _ in islice(lanczos_steps(op, v0), steps):
        out.append(float(torch.linalg.eigvalsh(tridiagonal(alpha, beta))[-1]))
    return np.array(out)
