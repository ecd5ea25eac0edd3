import pytest
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


def test_zca_is_symmetric_and_closest(correlated):
    x = correlated.x_train.double()
    zca = N.fit_transform(x, "zca")
    pca = N.fit_transform(x, "pca")
    assert torch.allclose(zca.matrix, zca.matrix.T, atol=1e-10)
    xc = x - x.mean(0)
    assert ((zca(x) - xc) ** 2).mean() < ((pca(x) - xc) ** 2).mean()


def test_singular_covariance_is_explained_and_regularized():
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    x = torch.cat([x, x[:, :1]], 1)  # a duplicated feature
    with pytest.raises(ValueError, match="singular.*eps"):
        N.fit_transform(x, "zca")
    z = N.fit_transform(x, "zca", eps=1e-3)(x)
    assert torch.isfinite(z).all()
    with pytest.raises(ValueError, match="zero variance"):
        N.fit_transform(torch.ones(10, 2), "standardize")
    with pytest.raises(ValueError, match="kind"):
        N.fit_transform(x, "batch")
    with pytest.raises(ValueError, match="features"):
        N.fit_transform(x, "center")(torch.ones(2, 3))


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
