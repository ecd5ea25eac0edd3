from dataclasses import replace

import numpy as np
import pytest
import torch

from batchlab import data, hessian
from batchlab.experiments import normalization as nexp
from batchlab.runtime import Scale


@pytest.fixture(scope="module")
def tiny_cfg():
    cfg = nexp.NormalizationConfig.for_scale(Scale.QUICK)
    return replace(
        cfg,
        n_synthetic=2000,
        mlp_width=4,
        hessian_examples=60,
        mlp_steps=20,
        center_sizes=(40, 8, 6, 10),
        center_steps=20,
        center_every=10,
        factor_examples=50,
    )


@pytest.fixture(scope="module")
def mnist():
    return data.mnist1d(num_samples=600)


def test_gd_on_quadratic_follows_condition_number():
    H = torch.diag(torch.tensor([1.0, 0.01], dtype=torch.float64))
    steps, diverged = nexp.gd_steps_on_quadratic(H, lr=1.0, tol=1e-3)
    assert not diverged
    bound = np.ceil(np.log(1e3) / -np.log(1 - 0.01))
    assert 0.5 * bound <= steps <= bound == nexp.gd_bound(100.0, 1e-3)
    assert nexp.gd_steps_on_quadratic(H, lr=2.1, tol=1e-3, max_steps=500) == (
        500,
        True,
    )
    # too small a step is slow, not divergent: the flag tells them apart
    assert nexp.gd_steps_on_quadratic(H, lr=0.01, tol=1e-3, max_steps=50) == (
        50,
        False,
    )
    assert nexp.gd_steps_on_quadratic(torch.eye(3), lr=1.0) == (1, False)
    assert nexp.gd_bound(1.0, 1e-3) == 1


def test_gd_counts_the_steps_of_the_closed_form():
    # in the eigenbasis the error after t steps is |(1 - lr d)^t w0|
    d = torch.tensor([1.0, 0.3, 0.05], dtype=torch.float64)
    steps, _ = nexp.gd_steps_on_quadratic(torch.diag(d), lr=1.0, tol=1e-4)
    w0 = torch.randn(
        3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    w0 = w0 / w0.norm()
    errs = [float(((1 - d) ** t * w0).norm()) for t in range(1, 400)]
    assert steps == next(t for t, e in enumerate(errs, 1) if e < 1e-4)


def test_badly_scaled_gives_the_asked_scales_and_shift():
    T = nexp.badly_scaled(5, 10.0, 3.0)
    s = torch.diagonal(T.matrix)
    np.testing.assert_allclose(
        np.sort(s.numpy()), np.logspace(-1, 1, 5), rtol=1e-12
    )
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(T(x), x * s + 3.0)
    with pytest.raises(ValueError, match="spread"):
        nexp.badly_scaled(5, 0.5, 0.0)


def test_standardized_condition_is_the_population_value():
    for dim, rho in [(20, 0.0), (20, 0.3), (5, 0.9)]:
        corr = np.full((dim, dim), rho) + (1 - rho) * np.eye(dim)
        H = np.block(
            [[corr, np.zeros((dim, 1))], [np.zeros((1, dim)), np.ones((1, 1))]]
        )
        ev = np.linalg.eigvalsh(H)
        assert nexp.standardized_condition(dim, rho) == pytest.approx(
            ev[-1] / ev[0]
        )
    g = 0.1
    assert nexp.sampling_band(1, 100) == pytest.approx(
        ((1 + g) / (1 - g)) ** 2
    )


def test_correlation_sweep_rows(tiny_cfg):
    sweep = nexp.correlation_sweep(tiny_cfg)
    assert list(sweep.columns) == ["rho", "inputs", "condition", "theory"]
    assert len(sweep) == 3 * len(tiny_cfg.rhos)
    assert set(sweep["inputs"]) == {"raw", "standardize", "zca"}
    zca = sweep[sweep["inputs"] == "zca"]["condition"]
    assert np.allclose(zca, 1, atol=1e-9)


def test_linear_table_has_every_normalization(mnist):
    frame, spectra = nexp.linear_table(mnist.x_train, 3.0)
    assert set(frame["inputs"]) == {
        "raw",
        "center",
        "standardize",
        "pca",
        "zca",
        "shifted mean",
    }
    assert set(spectra) == set(frame["inputs"])
    assert all(len(v) == mnist.n_features + 1 for v in spectra.values())


def test_mlp_spectra_rows(tiny_cfg, mnist):
    frame, spectra = nexp.mlp_spectra(tiny_cfg, mnist)
    assert len(frame) == 8 and len(spectra) == 8
    assert set(frame["point"]) == {"init", "trained"}
    assert {"loss", "max_over_median", "lambda_min"} <= set(frame.columns)
    p = 40 * 4 + 4 + 4 * 10 + 10
    assert all(len(ev) == p for ev in spectra.values())


def test_same_function_changes_only_the_input_factor(tiny_cfg, mnist):
    run = nexp.train_centered(tiny_cfg, mnist, "none", seed=0)
    net, history = run.net, run.history
    assert run.matched is None and run.matched_step == -1
    assert list(history.columns) == [
        "step",
        "loss",
        "variant",
        "seed",
        "test_acc",
    ]
    x = mnist.x_train[: tiny_cfg.factor_examples]
    copy = nexp.standardized_copy(net, mnist.x_train)
    assert torch.allclose(copy(x), net(x), atol=1e-5)
    change = nexp.factor_change(net, copy, x)
    assert list(change["layer"]) == [1, 2, 3]
    assert (change["change_G"] < 1e-5).all()
    assert change["change_A"].iloc[0] == 0
    assert (change["change_A"].iloc[1:] > 1e-2).all()
    # the standardized hidden inputs have unit variance (over n - 1)
    A = hessian.kronecker_factors(copy, mnist.x_train)[1].inputs
    n = mnist.n_train
    assert torch.allclose(
        torch.diagonal(A)[:-1],
        torch.full((8,), (n - 1) / n, dtype=A.dtype),
        atol=1e-4,
    )
    # against a hand computation on two different networks
    other = nexp.train_centered(tiny_cfg, mnist, "none", seed=1).net
    moved = nexp.factor_change(net, other, x)
    for f0, f1, (_, row) in zip(
        hessian.kronecker_factors(net, x),
        hessian.kronecker_factors(other, x),
        moved.iterrows(),
    ):
        for key, a, b in [
            ("change_A", f0.inputs, f1.inputs),
            ("change_G", f0.outputs, f1.outputs),
        ]:
            want = float((b - a).norm() / a.norm())
            assert row[key] == pytest.approx(want)
    assert (moved["change_G"] > 1e-2).all()
    table = nexp.factor_table({"plain": net, "copy": copy}, x)
    assert len(table) == 6
    assert (table["cond_A"] >= 1).all()
    with pytest.raises(ValueError, match="variant"):
        nexp.train_centered(tiny_cfg, mnist, "whiten", seed=0)


def test_matched_copy_is_taken_at_the_first_loss_below_the_target(
    tiny_cfg, mnist
):
    plain = nexp.train_centered(tiny_cfg, mnist, "none", seed=0)
    start = plain.history["loss"].iloc[0]
    run = nexp.train_centered(
        tiny_cfg, mnist, "centre and scale", seed=0, match_loss=start - 0.01
    )
    assert run.matched is not run.net
    assert run.matched_step % tiny_cfg.center_every == 0
    row = nexp.curvature_scale(run.matched, mnist, tiny_cfg)
    assert row["loss"] <= start - 0.01
    assert row["lr_x_lambda"] == pytest.approx(
        tiny_cfg.center_lr * row["lambda_max"]
    )
    # the top eigenvalue agrees with the exact Hessian's
    x = mnist.x_train[: tiny_cfg.factor_examples]
    y = mnist.y_train[: tiny_cfg.factor_examples]
    ev = hessian.hessian_spectrum(
        run.matched, torch.nn.functional.cross_entropy, x, y
    )
    assert row["lambda_max"] == pytest.approx(ev[0], rel=1e-3)
    assert row["lambda_ref"] == pytest.approx(ev[0], rel=1e-6)
    never = nexp.train_centered(tiny_cfg, mnist, "none", 0, match_loss=0.0)
    assert never.matched is None
