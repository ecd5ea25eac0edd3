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


def test_top_eigenvalues_rejects_bad_operators():
    with pytest.raises(ValueError, match="square"):
        hessian.top_eigenvalues(np.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        hessian.top_eigenvalues(
            np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]])
        )
    with pytest.raises(ValueError, match="k must be"):
        hessian.top_eigenvalues(np.eye(3), k=3)


def test_condition_number_refuses_indefinite_matrices():
    assert hessian.condition_number(np.array([2.0, 0.5])) == 4.0
    with pytest.raises(ValueError, match="not positive definite"):
        hessian.condition_number(np.array([2.0, -0.1]))


def test_flat_params_round_trip(tiny):
    net, _, _ = tiny
    theta = hessian.flat_params(net)
    hessian.set_flat_params(net, theta * 2)
    assert torch.allclose(hessian.flat_params(net), theta * 2)
    hessian.set_flat_params(net, theta)
    with pytest.raises(ValueError, match="vector of"):
        hessian.set_flat_params(net, theta[:-1])


def test_spectrum_summary():
    s = hessian.spectrum_summary(
        np.array([10.0, 1.0, 0.5, -0.5]), n_outliers=1
    )
    assert s["outlier_ratio"] == 10.0
    assert np.isclose(s["negative_mass"], 0.5 / 12)


def test_top_eigenvalues_methods_agree(tiny):
    net, x, y = tiny
    ops = [
        hessian.HessianOperator(net, F.cross_entropy, x, y) for _ in range(2)
    ]
    a = hessian.top_eigenvalues(ops[0], k=2, tol=1e-10, method="lanczos")
    b = hessian.top_eigenvalues(ops[1], k=2, tol=1e-10, method="arpack")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-7)
    with pytest.raises(ValueError, match="method"):
        hessian.top_eigenvalues(ops[0], method="power")
    with pytest.raises(ValueError, match="HessianOperator"):
        hessian.top_eigenvalues(np.eye(3), method="lanczos")


def test_reference_top_eigenvalues_are_the_exact_ones_in_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=gen)  # float32 inputs and model
    y = torch.randint(0, 3, (40,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1)
    ref = hessian.reference_top_eigenvalues(net, F.cross_entropy, x, y, k=3)
    assert next(net.parameters()).dtype == torch.float32  # left as it was
    exact = torch.linalg.eigvalsh(
        reference_hessian(net.double(), x.double(), y)
    ).flip(0)[:3]
    np.testing.assert_allclose(ref, exact.numpy(), rtol=1e-9)
