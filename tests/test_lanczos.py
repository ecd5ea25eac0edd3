from itertools import islice

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import hessian, lanczos, models, runtime


@pytest.fixture(scope="module")
def tiny():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1).double()
    return net, x, y


def test_lanczos_top_stops_early_and_is_accurate(tiny):
    net, x, y = tiny
    ev = hessian.hessian_spectrum(net, F.cross_entropy, x, y)
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    top = lanczos.lanczos_top(op, k=2, tol=1e-10, seed=1)
    np.testing.assert_allclose(top.values, ev[:2], rtol=1e-7)
    assert top.n_products < op.dim  # stopped before exhausting the space
    H = hessian.exact_hessian(net, F.cross_entropy, x, y).numpy()
    v = top.vectors[:, 0]
    assert np.allclose(H @ v, ev[0] * v, atol=1e-5)
    loose = lanczos.lanczos_top(
        hessian.HessianOperator(net, F.cross_entropy, x, y),
        k=1,
        tol=1e-3,
        seed=1,
    )
    assert loose.n_products < top.n_products


def test_power_estimates_are_the_closed_form_rayleigh_quotients():
    # For a diagonal matrix the j-th power iterate is D^j c / |D^j c|, so
    # its Rayleigh quotient is sum c^2 d^(2j+1) / sum c^2 d^(2j).
    gen = torch.Generator().manual_seed(3)
    bulk = torch.linspace(-0.3, 0.3, 38, dtype=torch.float64)
    d = torch.cat([bulk, torch.tensor([0.6, 1.0], dtype=torch.float64)])
    c = torch.randn(40, generator=gen, dtype=torch.float64)
    got = lanczos.power_estimates(lambda v: d * v, c, steps=25)
    j = torch.arange(25, dtype=torch.float64)[:, None]
    w = c**2 * d.abs() ** (2 * j)
    want = (w * d).sum(1) / w.sum(1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)
    # the error then shrinks by (lambda_2 / lambda_1)^2 per product
    err = 1.0 - got
    rate = err[-1] / err[-2]
    assert abs(rate - 0.6**2) < 1e-3


def test_lanczos_estimates_bound_power_iteration_and_match_krylov():
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(30, 30, generator=gen, dtype=torch.float64)
    A = (A + A.T) / 2
    top = float(torch.linalg.eigvalsh(A)[-1])
    v0 = torch.randn(30, generator=gen, dtype=torch.float64)
    lan = lanczos.lanczos_estimates(lambda v: A @ v, v0, steps=30)
    pow_ = lanczos.power_estimates(lambda v: A @ v, v0, steps=30)
    assert np.all(np.diff(lan) >= -1e-12)  # more space, larger maximum
    assert np.all(lan <= top + 1e-10)
    assert np.all(lan >= pow_ - 1e-10)
    assert abs(lan[-1] - top) < 1e-10
    # independent: Rayleigh-Ritz on an orthonormal Krylov basis from QR
    for j in (1, 3, 5):
        K = torch.stack(
            [torch.linalg.matrix_power(A, i) @ v0 for i in range(j)], 1
        )
        Qk, _ = torch.linalg.qr(K)
        ritz = float(torch.linalg.eigvalsh(Qk.T @ A @ Qk)[-1])
        assert abs(lan[j - 1] - ritz) < 1e-9 * abs(top)


def test_estimates_reject_bad_starts():
    for fn in (lanczos.power_estimates, lanczos.lanczos_estimates):
        with pytest.raises(ValueError, match="steps"):
            fn(lambda v: v, torch.ones(3), steps=0)
        with pytest.raises(ValueError, match="non-zero"):
            fn(lambda v: v, torch.zeros(3), steps=2)


class MatrixOperator:
    """A symmetric matrix with the interface of HessianOperator."""

    def __init__(self, A: torch.Tensor):
        self.A, self.dim, self.n_products = A, A.shape[0], 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        return self.A @ v


@pytest.fixture(scope="module")
def clustered():
    """300 x 300, three separated top eigenvalues above tight clusters:
    Ritz values converge fast, which is when plain Lanczos (a three-term
    recurrence without reorthogonalization) loses orthogonality and
    produces spurious copies of converged eigenvalues."""
    gen = torch.Generator().manual_seed(7)
    top = torch.tensor([10.0, 9.0, 8.0], dtype=torch.float64)
    clusters = [
        c + 1e-3 * torch.randn(99, generator=gen, dtype=torch.float64)
        for c in (1.0, 0.5, 0.1)
    ]
    ev = torch.cat([top, *clusters])
    Q, _ = torch.linalg.qr(
        torch.randn(300, 300, generator=gen, dtype=torch.float64)
    )
    return Q @ torch.diag(ev) @ Q.T, torch.sort(ev, descending=True).values


def test_lanczos_basis_stays_orthogonal_on_a_clustered_spectrum(clustered):
    A, _ = clustered
    v0 = torch.randn(
        300, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    steps = lanczos._lanczos_steps(lambda v: A @ v, v0)
    alpha, beta, Q = next(islice(steps, 119, None))  # after 120 products
    assert Q.shape == (300, 120)
    err = (Q.T @ Q - torch.eye(120, dtype=Q.dtype)).abs().max()
    assert err < 1e-10
    # the tridiagonal matrix is the projection of A on the basis
    T = lanczos._tridiagonal(alpha, beta)
    assert torch.allclose(T, Q.T @ A @ Q, atol=1e-9)


def test_lanczos_top_finds_distinct_eigenvalues_without_ghosts(clustered):
    A, ev = clustered
    op = MatrixOperator(A)
    top = lanczos.lanczos_top(op, k=3, tol=1e-12, max_steps=150, seed=2)
    np.testing.assert_allclose(top.values, ev[:3].numpy(), rtol=1e-10)
    # Ritz vectors are orthonormal eigenvectors, not copies of one
    V = torch.from_numpy(top.vectors)
    assert torch.allclose(V.T @ V, torch.eye(3, dtype=V.dtype), atol=1e-8)
    assert torch.allclose(A @ V, V * torch.from_numpy(top.values), atol=1e-6)
    # many steps: the largest Ritz value never exceeds the top eigenvalue
    est = lanczos.lanczos_estimates(
        lambda v: A @ v,
        torch.randn(
            300,
            generator=torch.Generator().manual_seed(3),
            dtype=torch.float64,
        ),
        steps=150,
    )
    assert np.all(est <= float(ev[0]) + 1e-10)
    assert abs(est[-1] - float(ev[0])) < 1e-10


def test_lanczos_stop_replays_lanczos_top_and_its_estimate_holds():
    # a diagonal spectrum with a clear gap: the error estimate is honest
    d = torch.cat([torch.tensor([1.0, 0.7]), torch.linspace(0.5, 0.0, 198)])
    v0 = torch.randn(
        200, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    steps, value = lanczos.lanczos_stop(lambda v: d * v, v0, 1e-6, 100)
    assert 2 <= steps < 100
    assert abs(value - 1.0) <= 1e-6
    # a looser tolerance stops earlier, with the same arithmetic
    loose, _ = lanczos.lanczos_stop(lambda v: d * v, v0, 1e-2, 100)
    assert loose < steps
    # the budget caps the products when the rule does not fire
    assert lanczos.lanczos_stop(lambda v: d * v, v0, 0.0, 3)[0] == 3


def test_lanczos_stop_matches_lanczos_top(tiny):
    net, x, y = tiny
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    top = lanczos.lanczos_top(op, k=1, tol=1e-4, seed=2)
    v0 = torch.randn(
        op.dim, generator=runtime.generator(2), dtype=torch.float64
    )
    steps, value = lanczos.lanczos_stop(op.matvec, v0, 1e-4, 300)
    assert steps == top.n_products
    assert value == pytest.approx(float(top.values[0]), rel=1e-10)
