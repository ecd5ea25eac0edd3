"""Curvature of a loss: Hessian-vector products, eigenvalues, densities.

The Hessian of a network is never formed except for tiny models; we only
multiply by it (Pearlmutter's trick, differentiating the gradient along a
vector). :class:`HessianOperator` keeps the gradient's graph at one point
so that every product there costs one extra backward pass.

* :func:`top_eigenvalues` -- the largest eigenvalues on that operator, by
  our Lanczos with an early stop (:func:`lanczos_top`) or ARPACK's ``eigsh``.
* :func:`spectral_density` -- stochastic Lanczos quadrature.
* :func:`exact_hessian` -- the full matrix, for tiny models and tests.
* :func:`loss_along`, :func:`perturbed_losses`, :func:`keskar_sharpness`
  -- the loss around a point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call

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


def _unflatten(model: nn.Module, flat: torch.Tensor) -> dict:
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
        self.loss = loss_fn(model(x), y)
        self.grads = torch.autograd.grad(
            self.loss, self.params, create_graph=True
        )
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(p,)``."""
        if v.shape != (self.dim,):
            raise ValueError(f"need a vector of {self.dim}, got {v.shape}")
        v = v.to(self.dtype)
        dot = sum(
            (g * v_part.view_as(g)).sum()
            for g, v_part in zip(self.grads, _split(v, self.params))
        )
        hv = torch.autograd.grad(dot, self.params, retain_graph=True)
        self.n_products += 1
        return torch.cat([h.reshape(-1) for h in hv]).detach()

    def as_linear_operator(self) -> LinearOperator:
        """A scipy ``LinearOperator`` (float64) around :meth:`matvec`."""

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(v).ravel())
            return self.matvec(t).double().numpy()

        return LinearOperator((self.dim, self.dim), matvec=mv, dtype=float)


def _split(v: torch.Tensor, params: Sequence[torch.Tensor]):
    offset = 0
    for p in params:
        yield v[offset : offset + p.numel()]
        offset += p.numel()


def exact_hessian(model: nn.Module, loss_fn: LossFn, x, y) -> torch.Tensor:
    """The full Hessian, shape ``(p, p)``; only for small models."""
    theta = flat_params(model)
    if theta.numel() > 5000:
        raise ValueError(
            f"exact_hessian forms a {theta.numel()}^2 matrix; use "
            "HessianOperator with top_eigenvalues for models this large"
        )

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, _unflatten(model, flat), (x,))
        return loss_fn(out, y)

    return torch.autograd.functional.hessian(loss_of, theta, vectorize=True)


@dataclass(frozen=True)
class Eigen:
    """Eigenvalues (largest first), eigenvectors ``(p, k)`` and the number
    of Hessian-vector products spent."""

    values: np.ndarray
    vectors: np.ndarray
    n_products: int


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
    rng = np.random.default_rng(seed)
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
        w = matvec(q.to(v0.dtype)).double()
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


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lanczos tridiagonalization with full reorthogonalization.

    Returns:
        ``(alpha, beta)``: the diagonal ``(m,)`` and off-diagonal ``(m-1,)``
        of the tridiagonal matrix (``m <= steps``; stops early on breakdown).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    *_, (alpha, beta, _) = islice(_lanczos_steps(matvec, v0), steps)
    return alpha, beta[: len(alpha) - 1]


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
    bound ``r^2 / gap`` (residual ``r = beta_j |s_j|``, gap to the next
    Ritz value) is below ``tol`` times the value (Parlett, "The Symmetric
    Eigenvalue Problem", section 11.7). Unlike ARPACK, which fills a
    20-vector Krylov space before its first test, this stops as soon as
    the estimate has converged.

    The bound measures the distance to *some* eigenvalue. If the start is
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
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
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
    vectors = (Q @ S[:, :k]).numpy()
    return Eigen(theta[:k].numpy(), vectors, op.n_products - start)


def reference_top_eigenvalues(
    model: nn.Module, loss_fn: LossFn, x, y, k: int = 1, tol: float = 1e-12
) -> np.ndarray:
    """The ``k`` largest Hessian eigenvalues computed in double precision
    (a float64 copy of the model and inputs, ARPACK at ``tol``): the
    reference against which float32 estimates are judged. Shape ``(k,)``."""
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(model64, loss_fn, x.double(), y)
    return top_eigenvalues(op, k=k, tol=tol, method="arpack").values


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


def gapped_spectrum(dim: int, gap: float) -> torch.Tensor:
    """Eigenvalues ``(dim,)`` of a test matrix: ``1``, then ``gap`` (the
    ratio ``lambda_2 / lambda_1``), then ``dim - 2`` values spread evenly
    over ``gap * [-0.1, 0.9]``, a bulk with a few negative eigenvalues like
    a network's. Use ``lambda v: spectrum * v`` as the matrix."""
    if dim < 3:
        raise ValueError(f"dim must be at least 3, got {dim}")
    if not 0 < gap < 1:
        raise ValueError(f"gap (lambda_2 / lambda_1) must be in (0, 1): {gap}")
    bulk = gap * torch.linspace(-0.1, 0.9, dim - 2, dtype=torch.float64)
    return torch.cat([torch.tensor([1.0, gap], dtype=torch.float64), bulk])


def stop_on_change(estimates: np.ndarray, tol: float) -> tuple[int, float]:
    """Replay the stopping rule "stop when the estimate changes by less
    than ``tol``, relatively" (PyHessian's, with its ``+1e-6`` guard) on a
    sequence of estimates, one per product.

    Returns:
        ``(products, value)``: the products spent when the rule fires and
        the estimate it returns (the one before the last, as PyHessian
        does).

    Raises:
        ValueError: the rule never fires on ``estimates``.
    """
    est = np.asarray(estimates, dtype=float)
    for i in range(1, len(est)):
        if abs(est[i - 1] - est[i]) / (abs(est[i - 1]) + 1e-6) < tol:
            return i + 1, float(est[i - 1])
    raise ValueError(
        f"the estimate never changed by less than {tol:g} in {len(est)} "
        "products; run more"
    )


@dataclass(frozen=True)
class Race:
    """Power iteration against Lanczos from the same starts.

    ``power`` and ``lanczos`` hold relative errors ``(starts, steps)``
    after each product (a Lanczos row that broke down early repeats its
    last value). ``*_to_target`` give the products after which the error
    first is at most ``target`` (NaN if never). ``change_products`` and
    ``change_error`` are where power iteration's change-between-estimates
    rule at ``change_tol`` stops, and the error it returns. A start's power
    iteration ends early once its error is at most ``floor`` (if given);
    the rest of its row is NaN.
    """

    power: np.ndarray
    lanczos: np.ndarray
    power_to_target: np.ndarray
    lanczos_to_target: np.ndarray
    change_products: np.ndarray
    change_error: np.ndarray


def _first_at_most(errors: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(errors <= target)
    return float(hit[0] + 1) if len(hit) else float("nan")


def race_top_eigenvalue(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    reference: float,
    starts: int,
    power_steps: int,
    lanczos_steps: int,
    target: float = 1e-4,
    change_tol: float = 1e-3,
    seed: int = 0,
    floor: float | None = None,
) -> Race:
    """Estimate the largest eigenvalue by power iteration and by Lanczos
    from ``starts`` seeded Gaussian vectors, against a known ``reference``
    (which must be the largest eigenvalue and also the largest in
    magnitude, or power iteration converges elsewhere)."""
    if reference <= 0:
        raise ValueError(
            f"reference must be a positive largest eigenvalue, got {reference}"
        )
    if starts < 1:
        raise ValueError(f"starts must be at least 1, got {starts}")

    def converged(estimate: float) -> bool:
        return floor is not None and abs(estimate / reference - 1) <= floor

    gen = torch.Generator().manual_seed(seed)
    power, lanczos_err, stops = [], [], []
    for _ in range(starts):
        v0 = torch.randn(dim, generator=gen, dtype=torch.float64)
        p = power_estimates(matvec, v0, power_steps, done=converged)
        lz = lanczos_estimates(matvec, v0, lanczos_steps)
        lz = np.pad(lz, (0, lanczos_steps - len(lz)), mode="edge")
        err = np.full(power_steps, np.nan)
        err[: len(p)] = np.abs(p - reference) / reference
        power.append(err)
        lanczos_err.append(np.abs(lz - reference) / reference)
        stops.append(stop_on_change(p, change_tol))
    power_a, lanczos_a = np.array(power), np.array(lanczos_err)
    return Race(
        power=power_a,
        lanczos=lanczos_a,
        power_to_target=np.array([_first_at_most(r, target) for r in power_a]),
        lanczos_to_target=np.array(
            [_first_at_most(r, target) for r in lanczos_a]
        ),
        change_products=np.array([s[0] for s in stops]),
        change_error=np.array(
            [abs(s[1] - reference) / reference for s in stops]
        ),
    )


def spectral_density(
    op: HessianOperator,
    grid: np.ndarray,
    n_probes: int = 4,
    steps: int = 60,
    sigma: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature estimate of the eigenvalue density.

    Each Rademacher probe gives a Lanczos tridiagonal matrix whose Ritz
    values (nodes) and squared first eigenvector components (weights)
    approximate the spectral measure; the density is their Gaussian
    smoothing with width ``sigma`` on ``grid``.

    Returns:
        ``(density, nodes, weights)``: density on ``grid`` (integrates to
        about one), and all probes' nodes and weights (weights sum to one).
    """
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for _ in range(n_probes):
        v = torch.randint(0, 2, (op.dim,), generator=gen).double() * 2 - 1
        a, b = lanczos(op.matvec, v, steps)
        T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        theta, U = torch.linalg.eigh(T)
        nodes.append(theta.numpy())
        weights.append((U[0] ** 2).numpy() / n_probes)
    nodes_a, weights_a = np.concatenate(nodes), np.concatenate(weights)
    if sigma is None:
        sigma = (grid.max() - grid.min()) / 200
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes_a[None]) / sigma) ** 2)
    density = kernel @ weights_a / (sigma * np.sqrt(2 * np.pi))
    return density, nodes_a, weights_a


# --------------------------------------------------------------------------
# The loss around a point


def _loss_at(model, loss_fn, x, y, flat) -> float:
    with torch.no_grad():
        out = functional_call(model, _unflatten(model, flat), (x,))
        return float(loss_fn(out, y))


def loss_along(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    direction: torch.Tensor,
    alphas: Sequence[float],
) -> np.ndarray:
    """Loss at ``theta + alpha * direction`` for each alpha, shape ``(k,)``.

    With ``direction = theta_b - theta_a`` and the model at ``theta_a``,
    alpha in [0, 1] walks the segment between two solutions.
    """
    theta = flat_params(model)
    if direction.shape != theta.shape:
        raise ValueError(
            f"direction has shape {tuple(direction.shape)}, parameters "
            f"{tuple(theta.shape)}"
        )
    return np.array(
        [_loss_at(model, loss_fn, x, y, theta + a * direction) for a in alphas]
    )


def perturbed_losses(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    radii: Sequence[float],
    n_directions: int = 8,
    seed: int = 0,
    relative: bool = True,
) -> np.ndarray:
    """Mean loss increase under random parameter perturbations.

    For each radius ``r`` the parameters move by ``r * |theta| * u`` (or
    ``r * u`` when ``relative`` is false) along random unit directions
    ``u``; the result is the average increase over ``n_directions``,
    shape ``(len(radii),)``.
    """
    theta = flat_params(model)
    base = _loss_at(model, loss_fn, x, y, theta)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_directions, theta.numel(), generator=gen)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    scale = theta.norm() if relative else 1.0
    out = []
    for r in radii:
        losses = [
            _loss_at(model, loss_fn, x, y, theta + r * scale * u) for u in dirs
        ]
        out.append(np.mean(losses) - base)
    return np.array(out)


def keskar_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    eps: float = 1e-3,
    steps: int = 10,
    seed: int = 0,
) -> float:
    """Sharpness in the sense of Keskar et al. (2017), in percent.

    The largest loss over the box ``|delta_i| <= eps (|theta_i| + 1)``,
    found by projected sign-gradient ascent from a random corner, as
    ``100 (max f - f) / (1 + f)``.
    """
    if eps <= 0 or steps < 1:
        raise ValueError("need eps > 0 and steps >= 1")
    theta = flat_params(model)
    bound = eps * (theta.abs() + 1)
    gen = torch.Generator().manual_seed(seed)
    delta = (torch.rand(theta.shape, generator=gen) * 2 - 1) * bound
    base = _loss_at(model, loss_fn, x, y, theta)
    best = base
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        out = functional_call(model, _unflatten(model, theta + d), (x,))
        loss = loss_fn(out, y)
        (g,) = torch.autograd.grad(loss, d)
        best = max(best, float(loss.detach()))
        delta = torch.clamp(delta + bound * g.sign(), -bound, bound)
    best = max(best, _loss_at(model, loss_fn, x, y, theta + delta))
    return 100.0 * (best - base) / (1.0 + base)


def gd_steps_on_quadratic(
    H: torch.Tensor,
    lr: float,
    tol: float = 1e-6,
    max_steps: int = 100_000,
    seed: int = 0,
) -> int:
    """Gradient descent steps on ``f(w) = w^T H w / 2`` until the error
    ``|w_t| / |w_0|`` falls below ``tol`` (``max_steps`` if never).

    The start is a random unit vector; ``H`` must be symmetric.
    """
    H = torch.as_tensor(H, dtype=torch.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square, got {tuple(H.shape)}")
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
    w /= w.norm()
    for t in range(1, max_steps + 1):
        w = w - lr * (H @ w)
        norm = float(w.norm())
        if not np.isfinite(norm) or norm > 1e12:
            return max_steps
        if norm < tol:
            return t
    return max_steps


def hessian_spectrum(model: nn.Module, loss_fn: LossFn, x, y) -> np.ndarray:
    """All eigenvalues of a small model's Hessian, descending, float64."""
    H = exact_hessian(model, loss_fn, x, y).double()
    H = (H + H.T) / 2
    return torch.linalg.eigvalsh(H).flip(0).numpy()


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


def flatness_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    x,
    y,
    radii: Sequence[float],
    seed: int = 0,
    eps: float = 1e-3,
) -> dict:
    """The flatness measures of one solution on ``(x, y)``: the largest
    Hessian eigenvalue (``lambda_max``), Keskar sharpness (``keskar``) and
    the mean loss increase under random relative weight perturbations of
    each radius (``weight_noise``, an array)."""
    op = HessianOperator(model, loss_fn, x, y)
    return dict(
        lambda_max=float(
            top_eigenvalues(op, k=1, tol=1e-3, seed=seed).values[0]
        ),
        keskar=keskar_sharpness(model, loss_fn, x, y, eps=eps, seed=seed),
        weight_noise=perturbed_losses(
            model, loss_fn, x, y, radii, n_directions=4, seed=seed
        ),
    )
