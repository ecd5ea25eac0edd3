import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import hessian, models


@pytest.fixture(scope="module")
def tiny():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1).double()
    return net, x, y


def reference_hessian(net, x, y):
    """Independent: autograd.functional.hessian on a hand-flattened loss."""
    shapes = [p.shape for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(flat):
        parts, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(flat[i : i + n].view(s))
            i += n
        W1, b1, W2, b2 = parts
        return F.cross_entropy(torch.tanh(x @ W1.T + b1) @ W2.T + b2, y)

    return torch.autograd.functional.hessian(loss, theta)


def test_hvp_matches_autograd_hessian(tiny):
    net, x, y = tiny
    H = reference_hessian(net, x, y)
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        assert torch.allclose(op.matvec(v), H @ v, atol=1e-10)
    assert op.n_products == 3
    assert torch.allclose(
        hessian.exact_hessian(net, F.cross_entropy, x, y), H, atol=1e-10
    )


def test_top_eigenvalues_match_eigvalsh(tiny):
    net, x, y = tiny
    ev = torch.linalg.eigvalsh(reference_hessian(net, x, y)).numpy()[::-1]
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    top = hessian.top_eigenvalues(op, k=3, tol=1e-10)
    np.testing.assert_allclose(top.values, ev[:3], rtol=1e-7)
    assert top.n_products > 0
    np.testing.assert_allclose(
        hessian.hessian_spectrum(net, F.cross_entropy, x, y), ev, atol=1e-10
    )


def test_condition_number_refuses_indefinite_matrices():
    assert hessian.condition_number(np.array([2.0, 0.5])) == 4.0
    with pytest.raises(ValueError, match="not positive definite"):
        hessian.condition_number(np.array([2.0, -0.1]))


def test_flat_params_and_unflatten_are_inverse(tiny):
    net, _, _ = tiny
    theta = hessian.flat_params(net)
    views = hessian.unflatten(net, theta * 2)
    for name, p in net.named_parameters():
        assert torch.equal(views[name], p.detach() * 2)
    assert theta.shape == (sum(p.numel() for p in net.parameters()),)


def test_spectrum_summary():
    s = hessian.spectrum_summary(
        np.array([10.0, 1.0, 0.5, -0.5]), n_outliers=1
    )
    assert s["outlier_ratio"] == 10.0
    assert np.isclose(s["negative_mass"], 0.5 / 12)


def test_top_eigenvalues_methods_agree_on_a_hessian(tiny):
    net, x, y = tiny
    ops = [
        hessian.HessianOperator(net, F.cross_entropy, x, y) for _ in range(2)
    ]
    a = hessian.top_eigenvalues(ops[0], k=2, tol=1e-10, method="lanczos")
    b = hessian.top_eigenvalues(ops[1], k=2, tol=1e-10, method="arpack")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-7)
    assert a.n_products == ops[0].n_products > 0


def test_reference_top_eigenvalues_are_the_exact_ones_in_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=gen)  # float32 inputs and model
    y = torch.randint(0, 3, (40,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1)
    ref = hessian.reference_top_eigenvalues(net, F.cross_entropy, x, y, k=3)
    assert next(net.parameters()).dtype == torch.float32  # left as it was
    H = reference_hessian(net.double(), x.double(), y)
    exact = torch.linalg.eigvalsh(H).flip(0)[:3]
    np.testing.assert_allclose(ref, exact.numpy(), rtol=1e-9)
    eig = hessian.reference_eigen(net, F.cross_entropy, x, y, k=2)
    v = torch.from_numpy(eig.vectors)
    assert torch.allclose(H @ v, v * torch.from_numpy(eig.values), atol=1e-9)


# --------------------------------------------------------------------------
# Kronecker factors against the exact Gauss-Newton block


@pytest.fixture(scope="module")
def deep():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(12, 4, generator=gen, dtype=torch.float64) + 0.5
    net = models.mlp([4, 5, 3, 3], seed=2).double()
    return net, x


def gauss_newton_block(net, x, name):
    """Independent: mean over examples of J^T (diag p - p p^T) J, with J
    the autograd Jacobian of one example's logits with respect to the
    weight ``name`` (flattened row by row)."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    W = params[name]
    blocks = []
    for xi in x:

        def logits(w, xi=xi):
            return torch.func.functional_call(
                net, {**params, name: w}, (xi[None],)
            )[0]

        J = torch.autograd.functional.jacobian(logits, W).reshape(
            -1, W.numel()
        )
        p = torch.softmax(logits(W), 0)
        blocks.append(J.T @ (torch.diag(p) - torch.outer(p, p)) @ J)
    return torch.stack(blocks).mean(0)


def weight_names(net):
    return [n for n, p in net.named_parameters() if p.ndim == 2]


def test_kronecker_factors_are_exact_for_one_example(deep):
    net, x = deep
    for i in (0, 7):
        factors = hessian.kronecker_factors(net, x[i : i + 1])
        for name, f in zip(weight_names(net), factors):
            exact = gauss_newton_block(net, x[i : i + 1], name)
            kron = torch.kron(f.outputs, f.inputs[:-1, :-1])
            assert torch.allclose(kron, exact, atol=1e-12, rtol=1e-9)


def test_mean_of_per_example_products_is_the_gauss_newton_block(deep):
    net, x = deep
    per_example = [hessian.kronecker_factors(net, xi[None]) for xi in x]
    factors = hessian.kronecker_factors(net, x)
    for j, name in enumerate(weight_names(net)):
        exact = gauss_newton_block(net, x, name)
        mean = torch.stack(
            [
                torch.kron(f[j].outputs, f[j].inputs[:-1, :-1])
                for f in per_example
            ]
        ).mean(0)
        assert torch.allclose(mean, exact, atol=1e-12, rtol=1e-9)
        # K-FAC's product of means: the factors are the means ...
        G = torch.stack([f[j].outputs for f in per_example]).mean(0)
        A = torch.stack([f[j].inputs for f in per_example]).mean(0)
        assert torch.allclose(factors[j].outputs, G, atol=1e-12)
        assert torch.allclose(factors[j].inputs, A, atol=1e-12)
        # ... whose product only approximates the block for many examples
        approx = torch.kron(G, A[:-1, :-1])
        assert not torch.allclose(approx, exact, atol=1e-6)
    # the input factor carries the bias as a last constant input
    first = factors[0].inputs
    assert first[-1, -1] == 1.0
    assert torch.allclose(first[:-1, -1], x.mean(0))


def test_kronecker_factors_reject_bad_input(deep):
    net, x = deep
    with pytest.raises(ValueError, match="shape"):
        hessian.kronecker_factors(net, x[0])
    with pytest.raises(ValueError, match="nn.Linear"):
        hessian.kronecker_factors(torch.nn.Tanh(), x)


def test_softmax_hessian_at_zero_has_condition_number_c_after_fixing_a_class():
    # the exercise of the normalization chapter, checked with autograd
    c, d = 5, 3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, d, generator=gen, dtype=torch.float64)
    x = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(x.T @ x / len(x))
    x = x @ evecs @ torch.diag(evals**-0.5) @ evecs.T  # whitened exactly
    y = torch.randint(0, c, (200,), generator=gen)
    lin = models.linear_model(d, c, seed=0).double()
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    H = hessian.exact_hessian(lin, F.cross_entropy, x, y)
    ev = torch.linalg.eigvalsh(H)
    assert torch.allclose(
        ev[: d + 1], torch.zeros_like(ev[: d + 1]), atol=1e-12
    )
    assert torch.allclose(ev[d + 1 :], torch.full_like(ev[d + 1 :], 1 / c))
    # fix the last class's weights and bias at zero
    keep = [
        i
        for i in range(c * (d + 1))
        if not (d * (c - 1) <= i < d * c or i == c * d + c - 1)
    ]
    ev_fixed = torch.linalg.eigvalsh(H[keep][:, keep])
    assert ev_fixed.min() == pytest.approx(1 / c**2)
    assert ev_fixed.max() == pytest.approx(1 / c)
    assert ev_fixed.max() / ev_fixed.min() == pytest.approx(c)
    # on the subspace orthogonal to the all-ones direction of the classes
    P = torch.kron(
        torch.eye(c, dtype=H.dtype) - 1 / c, torch.eye(d, dtype=H.dtype)
    )
    P = torch.block_diag(P, torch.eye(c, dtype=H.dtype) - 1 / c)
    basis = torch.linalg.eigh(P).eigenvectors[:, d + 1 :]  # range of P
    ev_sub = torch.linalg.eigvalsh(basis.T @ H @ basis)
    assert torch.allclose(ev_sub, torch.full_like(ev_sub, 1 / c))


def test_exact_hessian_in_chunks_is_the_same_matrix(tiny):
    net, x, y = tiny
    whole = hessian.exact_hessian(net, F.cross_entropy, x, y)
    for chunk in (10, 64, 100):  # uneven, exact and oversized chunks
        parts = hessian.exact_hessian(net, F.cross_entropy, x, y, chunk=chunk)
        assert torch.allclose(parts, whole, atol=1e-12)
    with pytest.raises(ValueError, match="chunk"):
        hessian.exact_hessian(net, F.cross_entropy, x, y, chunk=0)


def test_kfac_error_against_explicit_kronecker_products(deep):
    net, x = deep
    errors = hessian.kfac_error(net, x)
    per_example = [hessian.kronecker_factors(net, xi[None]) for xi in x]
    factors = hessian.kronecker_factors(net, x)
    assert len(errors) == len(factors) == 3
    for j, err in enumerate(errors):
        exact = torch.stack(
            [torch.kron(f[j].outputs, f[j].inputs) for f in per_example]
        ).mean(0)
        kfac = torch.kron(factors[j].outputs, factors[j].inputs)
        want = float((exact - kfac).norm() / exact.norm())
        assert err == pytest.approx(want, rel=1e-8)
        assert 0 < err < 2
    # one example: the product of means is the mean of products
    assert max(hessian.kfac_error(net, x[:1])) < 1e-6
    # a layer whose every example has the same G_i and inputs: exact
    same = x[:1].expand(5, -1)
    assert max(hessian.kfac_error(net, same)) < 1e-6
