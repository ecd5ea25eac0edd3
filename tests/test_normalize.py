import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from batchlab import data, models
from batchlab import normalize as N
from batchlab.hessian import exact_hessian


@pytest.fixture(scope="module")
def correlated():
    cov = data.correlated_covariance(6, 0.8, torch.linspace(0.5, 2, 6))
    return data.synthetic_regression(3000, cov, mean=2.0, seed=0)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitening_gives_identity_covariance(correlated, kind):
    T = N.fit_transform(correlated.x_train, kind)
    z = T(correlated.x_train.double())
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=z.dtype), atol=1e-10)
    assert torch.allclose(
        N.covariance(z), torch.eye(6, dtype=z.dtype), atol=1e-8
    )


def test_standardize_fixes_diagonal_not_correlation(correlated):
    z = N.fit_transform(correlated.x_train, "standardize")(
        correlated.x_train.double()
    )
    cov = N.covariance(z)
    assert torch.allclose(
        torch.diagonal(cov), torch.ones(6, dtype=cov.dtype), atol=1e-8
    )
    assert cov[0, 1] > 0.7


def test_covariance_divides_by_n(correlated):
    x = correlated.x_train[:50].double()
    want = np.cov(x.numpy(), rowvar=False, bias=True)
    np.testing.assert_allclose(N.covariance(x).numpy(), want, atol=1e-12)


def inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    """Independent: the symmetric inverse square root by scipy."""
    return np.real(scipy.linalg.fractional_matrix_power(cov, -0.5))


def test_zca_matches_an_independent_inverse_square_root(correlated):
    x = correlated.x_train.double()
    xc = (x - x.mean(0)).numpy()
    want = xc @ inverse_sqrt(xc.T @ xc / len(xc))
    got = N.fit_transform(x, "zca")(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_pca_outputs_are_scaled_principal_component_scores(correlated):
    x = correlated.x_train.double()
    xc = (x - x.mean(0)).numpy()
    evals, evecs = np.linalg.eigh(xc.T @ xc / len(xc))
    z = N.fit_transform(x, "pca")(x).numpy()
    scores = xc @ evecs / np.sqrt(evals)  # column k: k-th component
    # eigenvectors are defined up to sign: compare column by column
    signs = np.sign((z * scores).sum(0))
    np.testing.assert_allclose(z, scores * signs, atol=1e-9)


def test_zca_is_the_whitening_closest_to_the_inputs(correlated):
    x = correlated.x_train.double()
    zca = N.fit_transform(x, "zca")
    xc = x - x.mean(0)
    base = float(((zca(x) - xc) ** 2).mean())
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):  # any rotation of a whitening also whitens
        Q, _ = torch.linalg.qr(
            torch.randn(6, 6, generator=gen, dtype=torch.float64)
        )
        z = zca(x) @ Q
        assert torch.allclose(
            N.covariance(z), torch.eye(6, dtype=z.dtype), atol=1e-8
        )
        assert float(((z - xc) ** 2).mean()) > base
    pca = N.fit_transform(x, "pca")
    assert float(((pca(x) - xc) ** 2).mean()) > base


def test_eps_regularizes_as_computed_by_hand():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, generator=gen, dtype=torch.float64)
    x = torch.cat([x, x[:, :1]], 1)  # a duplicated feature
    eps = 0.1
    xc = (x - x.mean(0)).numpy()
    cov = xc.T @ xc / len(xc)
    # ZCA with eps is (cov + eps I)^(-1/2): the eigenvalues move by eps
    want = xc @ inverse_sqrt(cov + eps * np.eye(4))
    got = N.fit_transform(x, "zca", eps=eps)(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)
    # its covariance has eigenvalues lambda / (lambda + eps)
    lam = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(
        np.linalg.eigvalsh(np.cov(got, rowvar=False, bias=True)),
        np.sort(lam / (lam + eps)),
        atol=1e-9,
    )
    # standardize divides each feature by sqrt(variance + eps)
    z = N.fit_transform(x, "standardize", eps=eps)(x).numpy()
    np.testing.assert_allclose(z, xc / np.sqrt(xc.var(0) + eps), atol=1e-12)


def test_closed_form_hessians_match_autograd(correlated):
    x = correlated.x_train[:200].double()
    y = correlated.y_train[:200].double()[:, None]
    lin = models.linear_model(6, 1, seed=0).double()
    H = exact_hessian(lin, lambda o, t: 0.5 * F.mse_loss(o, t), x, y)
    # autograd orders parameters (weight, bias): same as with_bias.
    assert torch.allclose(H, N.linear_regression_hessian(x), atol=1e-10)
    labels = (y[:, 0] > y.median()).double()
    with torch.no_grad():
        lin.weight.normal_(generator=torch.Generator().manual_seed(1))
    w = torch.cat([lin.weight[0], lin.bias]).detach()

    def bce(o, t):
        return F.binary_cross_entropy_with_logits(o[:, 0], t)

    H = exact_hessian(lin, bce, x, labels)
    assert torch.allclose(H, N.logistic_hessian(x, w), atol=1e-10)
    with pytest.raises(ValueError, match="w must have shape"):
        N.logistic_hessian(x, w[:-1])


def test_linear_conditioning_rows(correlated):
    spectra, rows = N.linear_conditioning(correlated.x_train)
    by = {r["inputs"]: r for r in rows}
    assert abs(by["zca"]["condition"] - 1) < 1e-6
    assert by["raw"]["condition"] > by["standardize"]["condition"] > 2
    assert torch.all(spectra["raw"][:-1] >= spectra["raw"][1:])


def test_logistic_training_starts_at_identity_for_whitened_inputs():
    d = data.mnist1d(num_samples=1000)
    z = N.fit_transform(d.x_train, "zca")(d.x_train)
    rows = N.train_logistic(z, (d.y_train >= 5).long(), 1.0, 20, 10)
    assert abs(rows[0]["condition"] - 1) < 1e-6
    assert rows[-1]["loss"] < rows[0]["loss"]
    with pytest.raises(ValueError, match="0 or 1"):
        N.train_logistic(z, d.y_train, 1.0, 5, 1)


@pytest.mark.parametrize("rescale", [False, True])
def test_renormalize_with_compensation_keeps_the_function(rescale):
    d = data.mnist1d(num_samples=500)
    net = N.CenteredMLP([40, 12, 8, 10], seed=0)
    before = net(d.x_train)
    net.renormalize(d.x_train, compensate=True, rescale=rescale)
    assert torch.allclose(net(d.x_train), before, atol=1e-5)
    for h, i in zip(net.hidden(d.x_train), range(2)):
        normed = (h - getattr(net, f"shift{i}")) / getattr(net, f"scale{i}")
        assert normed.mean(0).abs().max() < 1e-5
        if rescale:
            assert torch.allclose(
                normed.std(0), torch.ones(h.shape[1]), atol=1e-3
            )
    net.renormalize(d.x_train[:50] * 2, compensate=False, rescale=rescale)
    assert not torch.allclose(net(d.x_train), before, atol=1e-3)


def test_train_logistic_follows_autograd_gradient_descent(correlated):
    x = correlated.x_train[:300].double()
    y = (correlated.y_train[:300] > correlated.y_train[:300].median()).long()
    rows = N.train_logistic(x, y, lr=0.5, steps=12, eval_every=4)
    # independent: the same descent with autograd on an nn.Linear
    lin = torch.nn.Linear(6, 1).double()
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    losses = []
    for step in range(13):
        loss = F.binary_cross_entropy_with_logits(lin(x)[:, 0], y.double())
        losses.append(loss.item())
        if step % 4 == 0:
            w = torch.cat([lin.weight[0], lin.bias]).detach()
            ev = torch.linalg.eigvalsh(N.logistic_hessian(x, w))
            row = rows[step // 4]
            assert row["step"] == step
            assert row["condition"] == pytest.approx(float(ev[-1] / ev[0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(
        [r["loss"] for r in rows], losses[::4], rtol=1e-10
    )
