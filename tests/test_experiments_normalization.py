"""The normalization chapter's sections: helpers against closed forms,
every section at quick scale, and every ``facts`` on small synthetic
frames, so that every claim's predicate runs in the fast suite."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from batchlab import claims, data, normalize
from batchlab.experiments import normalization
from batchlab.experiments.normalization import (
    correlation,
    descent,
    factors,
    layers,
    linear,
    logistic,
    network,
)
from batchlab.runtime import Scale, variants_of

SECTIONS = [linear, correlation, descent, logistic, network, layers, factors]


@pytest.fixture(scope="module")
def mnist():
    return data.mnist1d(num_samples=600)


def test_sections_are_listed_in_page_order_with_chapter_prefixed_claims():
    found = claims.sections(normalization)
    assert found == SECTIONS
    ids = [c.id for s in found for c in claims.claims_of(s)]
    assert len(ids) == len(set(ids)) and all(i.startswith("nz-") for i in ids)
    for section in found:
        cfg = section.Config.for_scale(Scale.BOOK)
        for variant in variants_of(cfg).values():
            assert variant != cfg  # every declared variant changes it


def test_gd_on_quadratic_follows_the_closed_form():
    # diagonal H: the error along each axis is |1 - lr h|^t times its start
    h = torch.tensor([1.0, 0.1], dtype=torch.float64)
    steps, blew = descent.gd_steps_on_quadratic(torch.diag(h), 1.0, 1e-3)
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(2, generator=gen, dtype=torch.float64)
    w0 = w0 / w0.norm()
    t = np.arange(1, 200)
    err = np.sqrt((w0[1].item() * 0.9**t) ** 2)  # the first axis is done
    assert steps == t[np.flatnonzero(err < 1e-3)[0]] and not blew
    _, blew = descent.gd_steps_on_quadratic(torch.diag(h), 2.1, 1e-3, 5000)
    assert blew
    with pytest.raises(ValueError, match="square"):
        descent.gd_steps_on_quadratic(torch.ones(2, 3), 1.0)


def test_gd_bound_is_the_contraction_bound():
    assert descent.gd_bound(1.0, 1e-3) == 1.0
    assert descent.gd_bound(10.0, 1e-3) == np.ceil(np.log(1e3) / -np.log(0.9))
    # a half step: the contraction is max(1/2, 1 - 1/(2 kappa))
    assert descent.gd_bound(1.0, 1e-3, 0.5) == np.ceil(np.log(1e3) / np.log(2))
    with pytest.raises(ValueError, match="step"):
        descent.gd_bound(2.0, 1e-3, 2.0)


def test_badly_scaled_gives_the_asked_scales_and_shift():
    T = correlation.badly_scaled(5, 10.0, 3.0)
    x = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.allclose(T(x), torch.full((2, 5), 3.0, dtype=torch.float64))
    s = T.matrix.diagonal()
    assert s.min() == pytest.approx(0.1) and s.max() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="spread"):
        correlation.badly_scaled(5, 0.5, 0.0)


def test_standardized_condition_is_the_population_value():
    for d, rho in [(5, 0.3), (20, 0.9), (3, 0.0)]:
        # standardized, centred inputs with correlation R: H = diag(R, 1)
        R = data.correlated_covariance(d, rho)
        H = torch.block_diag(R, torch.ones(1, 1, dtype=R.dtype))
        ev = torch.linalg.eigvalsh(H)
        assert correlation.standardized_condition(d, rho) == pytest.approx(
            float(ev[-1] / ev[0])
        )
    assert correlation.sampling_band(20, 10000) == pytest.approx(
        ((1 + 0.002**0.5) / (1 - 0.002**0.5)) ** 2
    )


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.__name__)
def test_every_section_runs_at_quick_scale(section, mnist, monkeypatch):
    cfg = section.Config.for_scale(Scale.QUICK)
    if hasattr(cfg, "dataset"):
        loaded = mnist
        if section in (layers, factors):
            cfg = replace(cfg, monitor=200, steps=60, every=20)
        if section is network:
            cfg = replace(cfg, steps=100, hessian_examples=100)
    else:
        loaded = None
        if section in (linear, logistic):  # these load both data sets
            monkeypatch.setattr(
                data,
                "load",
                lambda name: (
                    data.mnist1d(num_samples=600)
                    if name == "mnist1d"
                    else data.digits()
                ),
            )
    frame = section.run(cfg, loaded)
    assert isinstance(frame, pd.DataFrame) and len(frame)
    facts = section.facts(frame, cfg)
    results = claims.evaluate(section, facts, Scale.BOOK)
    assert set(results) == {c.id for c in section.CLAIMS}
    quick = claims.evaluate(section, facts, Scale.QUICK)
    assert all(quick.values()), quick  # identities hold at any scale


def test_linear_facts_on_a_synthetic_frame():
    rows = []
    for name in ("mnist1d", "digits", "synthetic"):
        for kind, cond in [
            ("raw", 100.0),
            ("center", 90.0),
            ("standardize", 60.0),
            ("pca", 1.0),
            ("zca", 1.0 + 1e-9),
            ("shifted mean", 400.0),
        ]:
            rows.append(
                dict(
                    kind="summary",
                    data=name,
                    inputs=kind,
                    condition=cond,
                    lambda_max=cond,
                    lambda_min=1.0,
                    bound=390.0 if kind == "shifted mean" else np.nan,
                    moved={"pca": 2.0, "zca": 0.5}.get(kind, np.nan),
                    features=40,
                    mean_max=0.05,
                    sd_lo=0.8,
                    sd_hi=1.2,
                )
            )
    cfg = linear.Config()
    f = linear.facts(pd.DataFrame(rows), cfg)
    assert f["white_dev"] == pytest.approx(1e-9)
    assert f["shift_excess"] == pytest.approx(400 / 390 - 1)
    assert f["mn_std_gain"] == pytest.approx(100 / 60)
    assert f["dg_zca_share"] == 0.25
    result = claims.evaluate(linear, f, Scale.BOOK)
    assert result["nz-whiten-one"] and result["nz-shift-bound"]
    assert result["nz-shift-near"] and result["nz-std-not-enough"]
    assert not result["nz-mnist-standardized"]  # 100/60 is not within 1/3
    assert not result["nz-digits-standardize"]


def test_logistic_facts_count_rises_and_the_edge():
    steps = np.arange(6)
    rows = []
    for name in ("mnist1d", "digits"):
        for kind, eta, loss in [
            (
                "raw",
                [2.4, 1.9, 1.9, 1.9, 1.9, 1.9],
                [1, 0.9, 0.8, 0.7, 0.6, 0.5],
            ),
            (
                "standardize",
                [2.5, 2.0, 1.95, 2.05, 2.0, 2.0],
                [1, 0.8, 0.85, 0.7, 0.75, 0.5],
            ),
            (
                "zca",
                [0.3, 0.2, 0.2, 0.2, 0.2, 0.2],
                [1, 0.9, 0.8, 0.7, 0.6, 0.502],
            ),
        ]:
            rows.append(
                pd.DataFrame(
                    dict(
                        data=name,
                        inputs=kind,
                        step=steps,
                        eta_lambda=eta,
                        loss=loss,
                        lambda_max=np.array(eta),
                        lambda_min=0.25,
                        condition=[1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
                        if kind == "zca"
                        else 50.0,
                        race=False,
                    )
                )
            )
    cfg = replace(logistic.Config(), settle=1, rates=(0.5, 1, 2, 4))
    f = logistic.facts(pd.concat(rows + _race_rows()), cfg)
    assert f["mn_logit_standardize_rises"] == 2
    assert f["mn_logit_standardize_eta_lo"] == 1.95
    assert f["white_gain"] == pytest.approx(50 / 1.5)
    assert f["mn_logit_end_gap"] == pytest.approx(0.004)
    result = claims.evaluate(logistic, f, Scale.BOOK)
    assert result["nz-logit-hover"] and result["nz-logit-same-end"]
    assert result["nz-logit-edge-start"] and result["nz-logit-drift"]
    assert not result["nz-logit-quarter"]  # lambda_max at w = 0 is not 1/4
    # The race: the floor is 0.4 on both data sets (whitened, rate 2).
    assert f["mn_tuned_floor"] == f["dg_tuned_floor"] == 0.4
    assert (f["mn_tuned_zca_steps"], f["mn_tuned_zca_lr"]) == (2, 2)
    # a tie between rates 1 and 2 goes to the smaller rate
    assert (f["mn_tuned_standardize_steps"], f["mn_tuned_standardize_lr"]) == (
        4,
        1,
    )
    assert f["mn_tuned_raw_steps"] == 5 and np.isnan(f["dg_tuned_raw_steps"])
    assert f["mn_tuned_ratio"] == f["dg_tuned_ratio"] == 0.5  # 2 / 4
    assert f["tuned_edge"] == 0 and f["white_lmax"] == 0.3
    assert result["nz-logit-raw-never"] and not result["nz-logit-tuned"]
    assert not result["nz-logit-below-quarter"]  # 0.3 > 1/4


def _race_rows() -> list[pd.DataFrame]:
    """Race curves over six steps with known first steps within 1e-3 of
    0.4: whitened 3 (rate 1) and 2 (rate 2); standardized 4 at rates 1
    and 2; raw 5 at rate 1 on MNIST-1D only; rate 4 diverges."""
    inf, rows = float("inf"), []
    never = [1, 0.9, 0.8, 0.7, 0.6, 0.5]
    curves = {
        "zca": {
            1: [1, 0.8, 0.6, 0.4, 0.4, 0.4],
            2: [1, 0.6, 0.4, 0.4, 0.4, 0.4],
        },
        "standardize": {1: [1, 0.9, 0.7, 0.5, 0.4, 0.4]},
    }
    curves["standardize"][2] = curves["standardize"][1]
    for name in ("mnist1d", "digits"):
        raw = [1, 0.9, 0.8, 0.6, 0.5, 0.4005] if name == "mnist1d" else never
        for kind in ("raw", "standardize", "zca"):
            got = {0.5: never, 1: never, 2: never, 4: [1] + [inf] * 5}
            got.update(curves.get(kind, {1: raw}))
            for lr, loss in got.items():
                rows.append(
                    pd.DataFrame(
                        dict(
                            data=name,
                            inputs=kind,
                            race=True,
                            lr=lr,
                            step=np.arange(6),
                            loss=loss,
                        )
                    )
                )
    return rows


def test_logistic_race_matches_a_plain_descent_loop():
    gen = np.random.default_rng(0)
    x = torch.tensor(gen.normal(size=(50, 3)))
    y = torch.tensor(gen.integers(0, 2, 50))
    race = logistic._race(x, y, (0.5, 3.0), steps=4)
    xb = np.hstack([x.numpy(), np.ones((50, 1))])
    for lr in (0.5, 3.0):
        w, want = np.zeros(4), []
        for _ in range(5):
            p = 1 / (1 + np.exp(-xb @ w))
            want.append(
                -np.mean(
                    y.numpy() * np.log(p) + (1 - y.numpy()) * np.log(1 - p)
                )
            )
            w = w - lr * xb.T @ (p - y.numpy()) / 50
        got = race[race["lr"] == lr].sort_values("step")["loss"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_layers_best_rates_and_paired_facts():
    rows = []
    for seed in range(4):
        for arm, lr, reached in [
            ("none", 0.05, 3000),
            ("none", 0.1, 1500),
            ("none", 0.4, 900),
            ("none", 0.8, 1200),
            ("standardize", 0.025, 2500),
            ("standardize", 0.05, 1300),
            ("standardize", 0.1, 1000 + seed),
            ("standardize", 0.2, np.nan if seed == 0 else 500),
            ("centre", 0.05, np.nan),
        ]:
            rows.append(
                dict(
                    arm=arm,
                    lr=lr,
                    seed=seed,
                    reached=reached,
                    acc=0.5 + 0.01 * seed * (arm == "standardize"),
                    final_acc=0.5,
                    final_loss=1.0 + 0.01 * (arm == "centre"),
                    target=1.0,
                    diverged=False,
                )
            )
    frame = pd.DataFrame(rows)
    best = layers.best_rates(frame)
    # 0.2 is faster but one seed never got there: it does not count
    assert best["standardize"] == 0.1 and best["none"] == 0.4
    cfg = replace(
        layers.Config(),
        plain_rates=(0.05, 0.1, 0.4, 0.8),
        standardized_rates=(0.025, 0.05, 0.1, 0.2),
        steps=3000,  # the budget of the frame above
    )
    f = layers.facts(frame, cfg)
    assert f["best_steps"] == pytest.approx(101.5)
    assert f["best_steps_verdict"] == "opposes"
    assert f["shared_frac"] == pytest.approx(1300 / 3000)
    assert f["centre_loss_max"] == pytest.approx(0.01)
    assert f["best_inside"]
    result = claims.evaluate(layers, f, Scale.BOOK)
    assert result == {
        "nz-hidden-shared": True,
        "nz-hidden-grids": True,
        "nz-hidden-best": True,
        "nz-hidden-acc": True,
        "nz-hidden-centre": True,
    }


def test_factors_facts_pair_seeds_and_tolerate_a_diverged_network():
    rows = []
    for seed in range(3):
        for name, cond, spread, lam in [
            ("plain", 200.0, 10.0, 10.0),
            ("same function", 150.0, 10.0, 11.0),
            ("matched", 150.0 * (1 + 0.01 * seed), 20.0, 15.0),
            ("end", 20.0, 5.0, 12.0),
        ]:
            for layer in (1, 2, 3):
                rows.append(
                    dict(
                        network=name,
                        seed=seed,
                        layer=layer,
                        step=3000,
                        loss=1.0,
                        lambda_max=lam,
                        eta_lambda=0.05 * lam,
                        cond_A=cond,
                        spread_G=spread,
                        change_A=0.9,
                        change_G=0.0 if name == "same function" else 0.5,
                        kfac=0.4 + 0.1 * layer,
                    )
                )
    frame = pd.DataFrame(rows)
    cfg = replace(factors.Config(), seeds=3)
    f = factors.facts(frame, cfg)
    assert f["lam_plain"] == pytest.approx(1.5) and f["g_ratio"] == 2.0
    assert f["a_gain_same"] == pytest.approx(4 / 3)
    assert f["kfac_plain_2"] == pytest.approx(0.6)
    assert f["diverged_seeds"] == 0 and f["matched_seeds"] == 3
    assert all(claims.evaluate(factors, f, Scale.BOOK).values())
    # the standardized network diverged in every seed: nothing matched
    gone = frame[~frame["network"].isin(["matched", "end"])]
    f = factors.facts(gone, cfg)
    assert np.isnan(f["g_ratio"]) and f["g_ratio_verdict"] == "n/a"
    assert f["diverged_seeds"] == 3
    result = claims.evaluate(factors, f, Scale.BOOK)
    assert not result["nz-matched-g"] and not result["nz-std-stable"]


def test_network_input_transforms_agree_where_they_should(mnist):
    cfg = network.Config()
    T = network.input_transforms(cfg, mnist.x_train)
    x = mnist.x_train
    # standardizing undoes any per-feature scale and shift
    bad = T["badly scaled"](x)
    again = normalize.fit_transform(bad, "standardize")(bad)
    assert torch.allclose(again, T["standardized"](x), atol=1e-4)
    white = T["whitened"](x).double()
    assert torch.allclose(
        normalize.covariance(white),
        torch.eye(40, dtype=white.dtype),
        atol=1e-4,
    )
