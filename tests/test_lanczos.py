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
    got = lanczos.power_estimates(
        lanczos.MatrixOperator(d, diagonal=True), c, steps=25
    )
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
    lan = lanczos.lanczos_estimates(lanczos.MatrixOperator(A), v0, steps=30)
    pow_ = lanczos.power_estimates(lanczos.MatrixOperator(A), v0, steps=30)
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
            fn(lanczos.MatrixOperator(torch.eye(3)), torch.ones(3), steps=0)
        with pytest.raises(ValueError, match="non-zero"):
            fn(lanczos.MatrixOperator(torch.eye(3)), torch.zeros(3), steps=2)


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
    steps = lanczos.lanczos_steps(lanczos.MatrixOperator(A), v0)
    alpha, beta, Q = next(islice(steps, 119, None))  # after 120 products
    assert Q.shape == (300, 120)
    err = (Q.T @ Q - torch.eye(120, dtype=Q.dtype)).abs().max()
    assert err < 1e-10
    # the tridiagonal matrix is the projection of A on the basis
    T = lanczos.tridiagonal(alpha, beta)
    assert torch.allclose(T, Q.T @ A @ Q, atol=1e-9)


def test_lanczos_top_finds_distinct_eigenvalues_without_ghosts(clustered):
    A, ev = clustered
    op = lanczos.MatrixOperator(A)
    top = lanczos.lanczos_top(op, k=3, tol=1e-12, max_steps=150, seed=2)
    np.testing.assert_allclose(top.values, ev[:3].numpy(), rtol=1e-10)
    # Ritz vectors are orthonormal eigenvectors, not copies of one
    V = torch.from_numpy(top.vectors)
    assert torch.allclose(V.T @ V, torch.eye(3, dtype=V.dtype), atol=1e-8)
    assert torch.allclose(A @ V, V * torch.from_numpy(top.values), atol=1e-6)
    # many steps: the largest Ritz value never exceeds the top eigenvalue
    est = lanczos.lanczos_estimates(
        lanczos.MatrixOperator(A),
        torch.randn(
            300,
            generator=torch.Generator().manual_seed(3),
            dtype=torch.float64,
        ),
        steps=150,
    )
    assert np.all(est <= float(ev[0]) + 1e-10)
    assert abs(est[-1] - float(ev[0])) < 1e-10


def test_the_stopping_rule_fires_on_its_estimate_and_only_then():
    # a diagonal spectrum with a clear gap: the estimate is honest
    d = torch.cat([torch.tensor([1.0, 0.7]), torch.linspace(0.5, 0.0, 198)])
    op = lanczos.MatrixOperator(d, diagonal=True)
    v0 = torch.randn(200, generator=torch.Generator().manual_seed(3))
    top = lanczos.lanczos_top(op, tol=1e-6, max_steps=100, v0=v0)
    assert 2 <= top.n_products < 100
    assert abs(top.values[0] - 1.0) <= 1e-6
    assert top.ritz.shape == (top.n_products,) and top.ritz[0] == top.values[0]
    # replay: the rule was false one product earlier and true at the stop
    for j, (alpha, beta, _) in enumerate(
        lanczos.lanczos_steps(op, v0), start=1
    ):
        theta, _, error = lanczos.ritz_estimate(alpha, beta, 1)
        fired = bool(error[0] <= 1e-6 * abs(theta[0]))
        assert fired == (j == top.n_products)
        if fired:
            break
    # a looser tolerance stops earlier; the budget caps the products
    loose = lanczos.lanczos_top(op, tol=1e-2, max_steps=100, v0=v0)
    assert loose.n_products < top.n_products
    assert lanczos.lanczos_top(op, tol=0.0, max_steps=3, v0=v0).n_products == 3


def test_ritz_estimate_residual_is_the_true_residual(clustered):
    A, _ = clustered
    v0 = torch.randn(300, generator=torch.Generator().manual_seed(5))
    steps = lanczos.lanczos_steps(lanczos.MatrixOperator(A), v0)
    alpha, beta, Q = next(islice(steps, 9, None))
    theta, S, error = lanczos.ritz_estimate(alpha, beta, 2)
    for i in range(2):
        u = Q @ S[:, i]
        resid = (A @ u - theta[i] * u).norm()
        assert error[i] == pytest.approx(
            float(resid**2 / (theta[i] - theta[i + 1])), rel=1e-6
        )
    early = lanczos.ritz_estimate(alpha[:2], beta[:2], 2)[2]
    assert torch.isinf(early).all()  # too few products for two values


def test_lanczos_top_on_a_hessian_seeded_like_its_start(tiny):
    net, x, y = tiny
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    top = lanczos.lanczos_top(op, k=1, tol=1e-4, seed=2)
    v0 = torch.randn(
        op.dim, generator=runtime.generator(2), dtype=torch.float64
    )
    again = lanczos.lanczos_top(
        hessian.HessianOperator(net, F.cross_entropy, x, y), tol=1e-4, v0=v0
    )
    assert again.n_products == top.n_products
    assert again.values[0] == pytest.approx(float(top.values[0]), rel=1e-12)


def test_top_eigenvalues_on_matrices_and_its_errors():
    gen = torch.Generator().manual_seed(8)
    A = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    A = A + A.T
    ev = torch.linalg.eigvalsh(A).numpy()
    for method in ("lanczos", "arpack"):
        top = lanczos.top_eigenvalues(A, k=3, tol=1e-12, method=method)
        np.testing.assert_allclose(top.values, ev[::-1][:3], rtol=1e-8)
    low = lanczos.top_eigenvalues(A.numpy(), k=2, which="SA", tol=1e-12)
    np.testing.assert_allclose(np.sort(low.values), ev[:2], rtol=1e-8)
    with pytest.raises(ValueError, match="square"):
        lanczos.top_eigenvalues(np.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        lanczos.top_eigenvalues(
            np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])
        )
    with pytest.raises(ValueError, match="k must be"):
        lanczos.top_eigenvalues(np.eye(3), k=3)
    with pytest.raises(ValueError, match="method"):
        lanczos.top_eigenvalues(np.eye(3), method="power")
    with pytest.raises(ValueError, match="LA"):
        lanczos.top_eigenvalues(np.eye(3), which="SA", method="lanczos")
    with pytest.raises(TypeError, match="symmetric operator"):
        lanczos.top_eigenvalues([[1.0]])


def test_operators_follow_the_protocol_and_count_products():
    d = torch.tensor([3.0, 1.0, 2.0])
    diag = lanczos.MatrixOperator(d, diagonal=True)
    full = lanczos.MatrixOperator(torch.diag(d))
    for op in (diag, full):
        assert isinstance(op, lanczos.SymmetricOperator)
        assert lanczos.as_operator(op) is op
        v = torch.tensor([1.0, -1.0, 2.0])
        assert torch.equal(op.matvec(v), d * v)
        assert op.matvec(v).dtype == v.dtype
        assert op.n_products == 2
        with pytest.raises(ValueError, match="vector of 3"):
            op.matvec(torch.ones(2))
    with pytest.raises(ValueError, match="diagonal"):
        lanczos.MatrixOperator(torch.ones(2, 2), diagonal=True)
