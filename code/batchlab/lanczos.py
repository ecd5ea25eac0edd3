"""Largest eigenvalues of a symmetric operator from products alone.

* :func:`lanczos_top` -- the top ``k`` eigenvalues by Lanczos with full
  reorthogonalization and an early stop on an estimate of Parlett's
  error bound.
* :func:`power_estimates` and :func:`lanczos_estimates` -- each method's
  estimate of the largest eigenvalue after every product, for comparing
  how fast they converge.

The operator is anything with ``dim``, ``matvec`` and ``n_products``
(:class:`batchlab.hessian.HessianOperator`), or a bare ``matvec``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .hessian import HessianOperator

from . import runtime


@dataclass(frozen=True)
class Eigen:
    """Eigenvalues (largest first), eigenvectors ``(p, k)`` and the number
    of Hessian-vector products spent."""

    values: np.ndarray
    vectors: np.ndarray
    n_products: int


def _lanczos_steps(
    matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor
):
    """Lanczos with full reorthogonalization, one step per iteration.

    Yields ``(alpha, beta, Q)`` after each product: the diagonal ``(j,)``,
    the off-diagonal ``(j,)`` (its last entry couples to the next, not yet
    computed, vector) and the basis ``(p, j)``, all float64. Stops on
    breakdown (an invariant subspace was found).
    """
    q = v0.double() / v0.double().norm()
    basis, alpha, beta = [q], [], []
    while True:
        w = matvec(q.to(v0.dtype)).double().to(q.device)
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


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    off = beta[: len(alpha) - 1]
    return torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)


def lanczos_top(
    op: HessianOperator,
    k: int = 1,
    tol: float = 1e-6,
    max_steps: int = 300,
    seed: int = 0,
) -> Eigen:
    """The ``k`` largest eigenvalues by plain Lanczos with an early stop.

    After every product the Ritz values of the tridiagonal matrix are
    computed; iteration stops when, for each of the top ``k``, the error
    estimate ``r^2 / gap`` (residual ``r = beta_j |s_j|``, gap to the next
    Ritz value) is below ``tol`` times the value. Parlett's bound ("The
    Symmetric Eigenvalue Problem") divides by the gap to the rest of the
    true spectrum, which is unknown; the Ritz gap can be larger, so this
    is an estimate, not a bound. Unlike ARPACK, which fills a
    20-vector Krylov space before its first test, this stops as soon as
    the estimate has converged.

    The estimate measures the distance to *some* eigenvalue. If the start is
    nearly orthogonal to the top eigenvector and the second eigenvalue is
    close to the first, the Ritz value can settle on the second for a few
    steps and the rule stops there (so can any rule that only watches the
    estimate); a tighter ``tol`` or another ``seed`` guards against it.

    Returns:
        :class:`Eigen`, largest first, with Ritz vectors ``(p, k)``.
    """
    if not 1 <= k < op.dim:
        raise ValueError(
            f"k must be between 1 and {op.dim - 1} (p = {op.dim}), got {k}"
        )
    start = op.n_products
    gen = runtime.generator(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    v0 = v0.to(getattr(op, "device", "cpu"))
    for state in _lanczos_steps(op.matvec, v0):
        alpha, beta, Q = state
        j = len(alpha)
        theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
        theta, S = theta.flip(0), S.flip(1)
        if j <= k:
            continue
        resid = (beta[-1] * S[-1, :k]).abs()
        gaps = (theta[:k] - theta[1 : k + 1]).clamp_min(1e-12)
        bound = resid**2 / gaps
        if bool((bound <= tol * theta[:k].abs()).all()) or j >= max_steps:
            break
    vectors = (Q @ S[:, :k]).cpu().numpy()
    return Eigen(theta[:k].cpu().numpy(), vectors, op.n_products - start)


def _check_start(v0: torch.Tensor, steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if v0.dim() != 1 or not bool(v0.abs().sum() > 0):
        raise ValueError("the start vector must be a non-zero 1-d tensor")


def power_estimates(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
    done: Callable[[float], bool] | None = None,
) -> np.ndarray:
    """Power iteration's estimate of the dominant eigenvalue after each of
    ``steps`` products: the Rayleigh quotient ``v . Hv`` of the current
    unit vector ``v``, which is then replaced by ``Hv / |Hv|``.

    This is the method of PyHessian and of most sharpness trackers; it
    converges to the eigenvalue of largest magnitude, with an error that
    shrinks like ``(lambda_2 / lambda_1)^(2j)`` once the start has a
    component along the top eigenvector. With ``done``, iteration ends
    after the first estimate for which ``done(estimate)`` is true.
    """
    _check_start(v0, steps)
    v = v0.double() / v0.double().norm()
    out = []
    for _ in range(steps):
        hv = matvec(v.to(v0.dtype)).double()
        out.append(float(torch.dot(v, hv)))
        norm = hv.norm()
        if norm == 0 or (done is not None and done(out[-1])):
            break
        v = hv / norm
    return np.array(out)


def lanczos_estimates(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
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
    for alpha, beta, _ in islice(_lanczos_steps(matvec, v0), steps):
        out.append(float(torch.linalg.eigvalsh(_tridiagonal(alpha, beta))[-1]))
    return np.array(out)


def lanczos_stop(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    tol: float,
    max_steps: int,
) -> tuple[int, float]:
    """Replay :func:`lanczos_top`'s stopping rule for the largest
    eigenvalue from the start ``v0``: stop once the error estimate
    ``r^2 / (theta_1 - theta_2)`` is at most ``tol * |theta_1|``.

    Returns:
        ``(products, estimate)`` when the rule fires, or after
        ``max_steps`` products (or on breakdown) if it never does.
    """
    _check_start(v0, max_steps)
    theta = torch.zeros(1)
    j = 0
    for alpha, beta, _ in islice(_lanczos_steps(matvec, v0), max_steps):
        j = len(alpha)
        theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
        theta, S = theta.flip(0), S.flip(1)
        if j < 2:
            continue
        resid = float((beta[-1] * S[-1, 0]).abs())
        gap = max(float(theta[0] - theta[1]), 1e-12)
        if resid**2 / gap <= tol * abs(float(theta[0])):
            break
    return j, float(theta[0])
