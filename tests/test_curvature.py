import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batchlab import curvature as C
from batchlab import models


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
    op = C.HessianOperator(net, F.cross_entropy, x, y)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        assert torch.allclose(op.matvec(v), H @ v, atol=1e-10)
    assert op.n_products == 3
    assert torch.allclose(
        C.exact_hessian(net, F.cross_entropy, x, y), H, atol=1e-10
    )


def test_top_eigenvalues_match_eigvalsh(tiny):
    net, x, y = tiny
    ev = torch.linalg.eigvalsh(reference_hessian(net, x, y)).numpy()[::-1]
    op = C.HessianOperator(net, F.cross_entropy, x, y)
    top = C.top_eigenvalues(op, k=3, tol=1e-10)
    np.testing.assert_allclose(top.values, ev[:3], rtol=1e-7)
    assert top.n_products > 0
    np.testing.assert_allclose(
        C.hessian_spectrum(net, F.cross_entropy, x, y), ev, atol=1e-10
    )


def test_top_eigenvalues_rejects_bad_operators():
    with pytest.raises(ValueError, match="square"):
        C.top_eigenvalues(np.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        C.top_eigenvalues(np.array([[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]]))
    with pytest.raises(ValueError, match="k must be"):
        C.top_eigenvalues(np.eye(3), k=3)


def test_condition_number_refuses_indefinite_matrices():
    assert C.condition_number(np.array([2.0, 0.5])) == 4.0
    with pytest.raises(ValueError, match="not positive definite"):
        C.condition_number(np.array([2.0, -0.1]))


def test_slq_density_integrates_to_one_and_matches_spectrum(tiny):
    net, x, y = tiny
    ev = C.hessian_spectrum(net, F.cross_entropy, x, y)
    op = C.HessianOperator(net, F.cross_entropy, x, y)
    grid = np.linspace(ev.min() - 0.5, ev.max() + 0.5, 2000)
    dens, nodes, weights = C.spectral_density(
        op, grid, n_probes=8, steps=op.dim, seed=0
    )
    assert np.isclose(weights.sum(), 1.0)
    assert np.isclose(np.trapezoid(dens, grid), 1.0, atol=1e-2)
    # With full-length Lanczos the nodes are the exact eigenvalues.
    assert np.isclose(nodes.max(), ev.max(), rtol=1e-6)
    # Quadrature of the identity function gives the mean eigenvalue.
    assert np.isclose(nodes @ weights, ev.mean(), atol=0.3 * np.abs(ev).max())


def test_lanczos_tridiagonal_has_the_eigenvalues_of_a_matrix():
    A = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    a, b = C.lanczos(lambda v: A @ v, torch.ones(6, dtype=torch.float64), 6)
    T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
    assert torch.allclose(
        torch.linalg.eigvalsh(T),
        torch.arange(1.0, 7.0, dtype=torch.float64),
        atol=1e-8,
    )


def test_loss_along_direction_is_a_parabola_for_least_squares():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=gen)
    y = torch.randn(50, 1, generator=gen)
    net = models.linear_model(3, 1, seed=0)
    d = torch.randn(4, generator=gen)
    alphas = np.linspace(-1, 1, 7)
    losses = C.loss_along(net, F.mse_loss, x, y, d, alphas)
    coeffs = np.polyfit(alphas, losses, 2)
    assert np.allclose(np.polyval(coeffs, alphas), losses, atol=1e-5)
    H = C.exact_hessian(net, F.mse_loss, x, y)
    assert np.isclose(2 * coeffs[0], float(d @ H @ d), rtol=1e-4)
    with pytest.raises(ValueError, match="direction"):
        C.loss_along(net, F.mse_loss, x, y, torch.ones(3), alphas)


def test_perturbations_and_sharpness_grow_with_curvature():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=gen)
    y = x @ torch.ones(4, 1)
    flat = models.linear_model(4, 1, seed=0)
    sharp = models.linear_model(4, 1, seed=0)
    with torch.no_grad():
        for net in (flat, sharp):
            net.weight.copy_(torch.ones(1, 4))
            net.bias.zero_()

    # Same minimum; scaling the inputs by 3 makes the loss 9x as curved.
    def sharp_loss(out, target):
        return F.mse_loss(out, target)

    r_flat = C.perturbed_losses(
        flat, F.mse_loss, x, y, [0.01, 0.1], relative=False
    )
    r_sharp = C.perturbed_losses(
        sharp, sharp_loss, 3 * x, 3 * y, [0.01, 0.1], relative=False
    )
    assert np.all(r_sharp > 5 * r_flat) and r_flat[1] > r_flat[0]
    k_flat = C.keskar_sharpness(flat, F.mse_loss, x, y, eps=1e-2)
    k_sharp = C.keskar_sharpness(sharp, F.mse_loss, 3 * x, 3 * y, eps=1e-2)
    assert k_sharp > 5 * k_flat > 0


def test_gd_on_quadratic_follows_condition_number():
    H = torch.diag(torch.tensor([1.0, 0.01], dtype=torch.float64))
    steps = C.gd_steps_on_quadratic(H, lr=1.0, tol=1e-3)
    bound = np.ceil(np.log(1e3) / -np.log(1 - 0.01))
    assert 0.5 * bound <= steps <= bound
    assert C.gd_steps_on_quadratic(H, lr=2.1, tol=1e-3, max_steps=500) == 500
    assert C.gd_steps_on_quadratic(torch.eye(3), lr=1.0) == 1


def test_flat_params_round_trip(tiny):
    net, _, _ = tiny
    theta = C.flat_params(net)
    C.set_flat_params(net, theta * 2)
    assert torch.allclose(C.flat_params(net), theta * 2)
    C.set_flat_params(net, theta)
    with pytest.raises(ValueError, match="vector of"):
        C.set_flat_params(net, theta[:-1])


def test_spectrum_summary():
    s = C.spectrum_summary(np.array([10.0, 1.0, 0.5, -0.5]), n_outliers=1)
    assert s["outlier_ratio"] == 10.0
    assert np.isclose(s["negative_mass"], 0.5 / 12)


def test_flatness_metrics_agree_with_the_parts(tiny):
    net, x, y = tiny
    m = C.flatness_metrics(net, F.cross_entropy, x, y, [0.1, 0.2], seed=0)
    ev = C.hessian_spectrum(net, F.cross_entropy, x, y)
    assert np.isclose(m["lambda_max"], ev[0], rtol=1e-3)
    np.testing.assert_allclose(
        m["weight_noise"],
        C.perturbed_losses(
            net, F.cross_entropy, x, y, [0.1, 0.2], n_directions=4, seed=0
        ),
    )
    assert m["keskar"] >= 0


def test_lanczos_top_stops_early_and_is_accurate(tiny):
    net, x, y = tiny
    ev = C.hessian_spectrum(net, F.cross_entropy, x, y)
    op = C.HessianOperator(net, F.cross_entropy, x, y)
    top = C.lanczos_top(op, k=2, tol=1e-10, seed=1)
    np.testing.assert_allclose(top.values, ev[:2], rtol=1e-7)
    assert top.n_products < op.dim  # stopped before exhausting the space
    H = C.exact_hessian(net, F.cross_entropy, x, y).numpy()
    v = top.vectors[:, 0]
    assert np.allclose(H @ v, ev[0] * v, atol=1e-5)
    loose = C.lanczos_top(
        C.HessianOperator(net, F.cross_entropy, x, y), k=1, tol=1e-3, seed=1
    )
    assert loose.n_products < top.n_products


def test_top_eigenvalues_methods_agree(tiny):
    net, x, y = tiny
    ops = [C.HessianOperator(net, F.cross_entropy, x, y) for _ in range(2)]
    a = C.top_eigenvalues(ops[0], k=2, tol=1e-10, method="lanczos")
    b = C.top_eigenvalues(ops[1], k=2, tol=1e-10, method="arpack")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-7)
    with pytest.raises(ValueError, match="method"):
        C.top_eigenvalues(ops[0], method="power")
    with pytest.raises(ValueError, match="HessianOperator"):
        C.top_eigenvalues(np.eye(3), method="lanczos")


def test_power_estimates_are_the_closed_form_rayleigh_quotients():
    # For a diagonal matrix the j-th power iterate is D^j c / |D^j c|, so
    # its Rayleigh quotient is sum c^2 d^(2j+1) / sum c^2 d^(2j).
    gen = torch.Generator().manual_seed(3)
    bulk = torch.linspace(-0.3, 0.3, 38, dtype=torch.float64)
    d = torch.cat([bulk, torch.tensor([0.6, 1.0], dtype=torch.float64)])
    c = torch.randn(40, generator=gen, dtype=torch.float64)
    got = C.power_estimates(lambda v: d * v, c, steps=25)
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
    lan = C.lanczos_estimates(lambda v: A @ v, v0, steps=30)
    pow_ = C.power_estimates(lambda v: A @ v, v0, steps=30)
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
    for fn in (C.power_estimates, C.lanczos_estimates):
        with pytest.raises(ValueError, match="steps"):
            fn(lambda v: v, torch.ones(3), steps=0)
        with pytest.raises(ValueError, match="non-zero"):
            fn(lambda v: v, torch.zeros(3), steps=2)


def test_stop_on_change_replays_the_rule_by_hand():
    # changes: 1 -> 2 (50 %), 2 -> 2.001 (0.05 %): fires at the third
    # product and returns the second estimate, as PyHessian does.
    assert C.stop_on_change(np.array([1.0, 2.0, 2.001, 5.0]), 1e-3) == (3, 2.0)
    with pytest.raises(ValueError, match="never changed"):
        C.stop_on_change(np.array([1.0, 2.0, 4.0]), 1e-3)


def test_race_counts_products_from_the_closed_form():
    d = torch.cat(
        [
            torch.linspace(-0.2, 0.4, 48, dtype=torch.float64),
            torch.tensor([0.5, 1.0], dtype=torch.float64),
        ]
    )
    race = C.race_top_eigenvalue(
        lambda v: d * v, 50, 1.0, starts=3, power_steps=60, lanczos_steps=50
    )
    gen = torch.Generator().manual_seed(0)  # the race's own starts
    for i in range(3):
        c = torch.randn(50, generator=gen, dtype=torch.float64)
        j = torch.arange(60, dtype=torch.float64)[:, None]
        w = c**2 * d.abs() ** (2 * j)
        err = (1.0 - (w * d).sum(1) / w.sum(1)).numpy()
        assert race.power_to_target[i] == np.flatnonzero(err <= 1e-4)[0] + 1
        n, value = C.stop_on_change(1.0 - err, 1e-3)
        assert race.change_products[i] == n
        assert race.change_error[i] == pytest.approx(1.0 - value)
    # Lanczos never needs more products than power iteration
    assert np.all(race.lanczos_to_target <= race.power_to_target)
    assert np.all(race.lanczos <= race.power[:, :50] + 1e-12)
    with pytest.raises(ValueError, match="reference"):
        C.race_top_eigenvalue(lambda v: v, 5, 0.0, 1, 5, 5)
    with pytest.raises(ValueError, match="starts"):
        C.race_top_eigenvalue(lambda v: v, 5, 1.0, 0, 5, 5)


def test_gapped_spectrum_has_the_asked_ratio_and_rejects_bad_gaps():
    spec = C.gapped_spectrum(100, 0.9)
    top = torch.sort(spec, descending=True).values
    assert top[0] == 1.0 and top[1] == pytest.approx(0.9)
    assert top[2] < top[1] and spec.min() == pytest.approx(-0.09)
    assert spec.shape == (100,)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="gap"):
            C.gapped_spectrum(10, bad)
    with pytest.raises(ValueError, match="dim"):
        C.gapped_spectrum(2, 0.5)


def test_race_floor_ends_power_iteration_early():
    spec = C.gapped_spectrum(60, 0.5)
    full = C.race_top_eigenvalue(lambda v: spec * v, 60, 1.0, 2, 80, 20)
    early = C.race_top_eigenvalue(
        lambda v: spec * v, 60, 1.0, 2, 80, 20, floor=1e-6
    )
    for row_full, row in zip(full.power, early.power):
        done = ~np.isnan(row)
        n = int(done.sum())
        assert 1 < n < 80 and done[:n].all()  # a prefix, then NaN
        assert row[n - 1] <= 1e-6 < row[n - 2]  # stopped at the first hit
        np.testing.assert_array_equal(row[:n], row_full[:n])
    np.testing.assert_array_equal(early.power_to_target, full.power_to_target)


def test_reference_top_eigenvalues_are_the_exact_ones_in_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=gen)  # float32 inputs and model
    y = torch.randint(0, 3, (40,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1)
    ref = C.reference_top_eigenvalues(net, F.cross_entropy, x, y, k=3)
    assert next(net.parameters()).dtype == torch.float32  # left as it was
    exact = torch.linalg.eigvalsh(
        reference_hessian(net.double(), x.double(), y)
    ).flip(0)[:3]
    np.testing.assert_allclose(ref, exact.numpy(), rtol=1e-9)
