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


def test_constant_features_are_dropped_for_every_kind():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    x = torch.cat(
        [x[:, :2], torch.zeros(50, 1), x[:, 2:], 3 + 0 * x[:, :1]], 1
    )
    assert N.varying(x).tolist() == [True, True, False, True, True, False]
    inner = x[:, N.varying(x)]
    for kind in N.KINDS:
        T = N.fit_transform(x, kind, drop_constant=True)
        assert T.out_features == 4
        want = N.fit_transform(inner, kind)(inner)
        assert torch.allclose(T(x), want, atol=1e-12)
    with pytest.raises(ValueError, match="drop_constant"):
        N.fit_transform(x, "standardize")
    # the digits: three pixels are zero in every image
    from batchlab import data

    digits = data.digits()
    assert int((~N.varying(digits.x_train)).sum()) >= 3
    spectra, rows = N.linear_conditioning(
        digits.x_train, ["raw", "zca"], drop_constant=True
    )
    assert abs(rows[1]["condition"] - 1) < 1e-6
    assert rows[0]["lambda_min"] > 0


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(num_samples=300)


def test_centered_ensemble_trains_as_centered_mlps_with_autograd(small):
    """Independent: each model trained alone by train_sgd (autograd), its
    hidden layers renormalized by CenteredMLP every few steps."""
    from batchlab.train import SGDConfig, train_sgd

    sizes, every, steps = [40, 12, 8, 10], 4, 13
    modes, lrs, seeds = list(N.HIDDEN_MODES), [0.2, 0.3, 0.1], [3, 4, 5]
    ens = N.CenteredEnsemble(sizes, seeds, modes)
    run = N.train_centered(
        ens, small, lrs, seeds, steps, batch_size=8, every=every, monitor=100
    )
    assert list(run.checks) == [0, 4, 8, 12, 13]
    for i, (mode, lr, seed) in enumerate(zip(modes, lrs, seeds)):
        net = N.CenteredMLP(sizes, seed=seed)
        xm = small.x_train[:100]

        def hook(step, model, mode=mode, xm=xm):
            if mode != "none" and (step % every == 0 or step == steps):
                model.renormalize(xm, rescale=mode == "standardize")

        hook(0, net)
        train_sgd(net, small, SGDConfig(8, lr, steps, seed=seed), on_step=hook)
        got = ens.member(i)
        for a, b in zip(got.parameters(), net.parameters()):
            assert torch.allclose(a, b, atol=1e-5)
        for k in range(2):
            assert torch.allclose(
                getattr(got, f"scale{k}"), getattr(net, f"scale{k}"), atol=1e-5
            )
            assert torch.allclose(
                getattr(got, f"shift{k}"), getattr(net, f"shift{k}"), atol=1e-5
            )
        with torch.no_grad():
            loss = F.cross_entropy(net(xm), small.y_train[:100])
        assert run.loss[i, -1] == pytest.approx(float(loss), rel=1e-5)
    plain = ens.member(0)
    assert all(
        float(getattr(plain, f"scale{k}").sub(1).abs().max()) == 0
        for k in range(2)
    )


def test_train_centered_stops_at_targets_and_keeps_copies(small):
    sizes, seeds, kw = [40, 12, 10], [0, 1], dict(every=5, monitor=200)
    modes = ["none", "standardize"]
    free = N.train_centered(
        N.CenteredEnsemble(sizes, seeds, modes),
        small,
        [0.1, 0.1],
        seeds,
        40,
        **kw,
    )
    target = free.loss[:, 4] + 1e-6  # the losses after 20 steps
    first = [
        5 * int(np.flatnonzero(r <= t)[0]) for r, t in zip(free.loss, target)
    ]
    assert max(first) <= 20
    ens = N.CenteredEnsemble(sizes, seeds, modes)
    run = N.train_centered(
        ens,
        small,
        [0.1, 0.1],
        seeds,
        40,
        targets=target,
        stop_at_target=True,
        keep=[1],
        **kw,
    )
    # the same path until each model stops, nothing after
    for i, stop in enumerate(first):
        upto = stop // 5 + 1
        np.testing.assert_allclose(
            run.loss[i, :upto], free.loss[i, :upto], rtol=1e-5
        )
        assert np.isnan(run.loss[i, upto:]).all()
    assert run.reached.tolist() == first == run.steps.tolist()
    with torch.no_grad():
        kept = run.matched[1](small.x_train[:200])
        again = ens.member(1)(small.x_train[:200])
        loss = F.cross_entropy(kept, small.y_train[:200])
    assert torch.allclose(kept, again, atol=1e-5)  # stopped where kept
    assert float(loss) == pytest.approx(free.loss[1, first[1] // 5], rel=1e-5)
    assert set(run.matched) == {1}
    with pytest.raises(ValueError, match="one rate and one seed"):
        N.train_centered(ens, small, [0.1], seeds, 5)
    with pytest.raises(ValueError, match="monitor"):
        N.train_centered(ens, small, [0.1, 0.1], seeds, 5, monitor=10**6)
    with pytest.raises(ValueError, match="modes"):
        N.CenteredEnsemble(sizes, seeds, ["none", "whiten"])
