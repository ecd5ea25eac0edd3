"""The minibatch chapter's sections on small synthetic frames: the grid's
slices and statistics, the equal-steps saturation point, the
counterpoint and the noise scale's split; every claim's expression runs
here, whatever the scale."""

import numpy as np
import pandas as pd
import pytest

from batchlab import claims, stats
from batchlab.experiments.minibatch import counter, grid, noise, steps


def grid_frame(cfg, seeds=6, seed=0):
    """Every cell of ``cfg.grid`` with known structure: lambda_max =
    (eta/B)^-0.9 B^0.02 noise; accuracy best at the middle eta/B; the
    full batch past the edge at its largest rate."""
    gen = np.random.default_rng(seed)
    rows = []
    for b, rates in cfg.grid:
        for lr in rates:
            r = lr / b
            for s in range(seeds):
                lam = 0.02 * r**-0.9 * b**0.02 * np.exp(gen.normal(0, 0.05))
                if b == cfg.n_train:
                    lam = 1.8 / lr * np.exp(gen.normal(0, 0.02))
                acc = 0.46 - 40 * abs(r - 0.015) + gen.normal(0, 0.003)
                top = b == cfg.n_train and lr == max(rates)
                rows.append(
                    dict(
                        B=b,
                        lr=lr,
                        seed=s,
                        reached=True,
                        train_loss=0.095,
                        val_acc=acc + gen.normal(0, 0.001),
                        test_acc=acc - 0.15 * top,
                        train_acc=0.9 if top else 1.0,
                        lambda_max=lam * (1.3 if top else 1.0),
                        keskar=lam,
                        weight_noise=0.005 * (4 if top else 1),
                        flips=0.4,
                        lr_over_B=r,
                        epochs=20.0,
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def book():
    return grid.Config.for_scale("book")


def test_tuned_picks_the_best_heldout_rate_whose_runs_all_reached(book):
    frame = grid_frame(book)
    frame["val_acc"] = frame["lr"] * 1.0  # the largest rate is best
    got = grid.tuned(frame).groupby("B")["lr"].first()
    assert got.to_dict() == {b: max(r) for b, r in book.grid}
    frame.loc[
        (frame["B"] == 4) & (frame["lr"] == 0.12) & (frame["seed"] == 3),
        "reached",
    ] = False
    assert grid.tuned(frame).query("B == 4")["lr"].unique().tolist() == [0.06]


def test_slices_of_the_grid(book):
    frame = grid_frame(book)
    shared = grid.shared(frame, book)
    assert sorted(shared["B"].unique()) == [16, 64, 1000]
    ratios = grid.at_ratios(frame, book)
    assert len(ratios) == 3 * 3 * 6
    np.testing.assert_allclose(ratios["ratio"], ratios["lr"] / ratios["B"])
    assert set(grid.arms(frame, book)["arm"]) == {"tuned", "fixed 0.48"}
    table = grid.edge(frame, book)
    np.testing.assert_allclose(
        table["edge"], table["lambda_max"] * table.index / 2
    )


def test_grid_facts_recover_the_planted_structure(book):
    frame = grid_frame(book)
    f = grid.facts(frame, book)
    assert f["sc_a"] == pytest.approx(-0.9, abs=0.05)  # the planted law
    assert f["sc_b"] == pytest.approx(0.02, abs=0.03)
    assert f["sc_top_hi"] < 0  # 0.03 is planted worse than 0.015
    # the drop as a magnitude: 40 per unit of eta/B over 0.015, in points
    assert f["sc_top_drop"] == pytest.approx(40 * 0.015 * 100, abs=0.5)
    assert f["sc_top_drop_lo"] == pytest.approx(-f["sc_top_hi"])
    assert f["sc_top_drop_hi"] == pytest.approx(-f["sc_top_lo"])
    assert (f["sc_mid_wins"], f["sc_top_wins"]) == (6, 0)  # every seed
    assert f["eos_lo"] == pytest.approx(0.9, abs=0.02)
    assert f["eos_top_edge"] == pytest.approx(0.9 * 1.3, abs=0.03)
    assert f["eos_noise_ratio"] == pytest.approx(4)
    # planted: -15 points at the top rate, +40 per unit of eta/B
    assert f["eos_acc_diff"] == pytest.approx(-15 + 40 * 0.192, abs=1)
    assert f["eos_acc_drop"] == pytest.approx(15 - 40 * 0.192, abs=1)
    acc = frame.groupby(["B", "lr"])["test_acc"].mean()
    tu = grid.tuned(frame).groupby("B")["test_acc"].mean()
    assert f["tu_hi"] == pytest.approx(tu.max()) and tu.max() <= acc.max()
    results = claims.evaluate(grid, f, "book")
    assert set(results) == {c.id for c in grid.CLAIMS}
    for claim_id in (
        "mb-ratio-law",
        "mb-ratio-top-worse",
        "mb-edge-near",
        "mb-edge-top",
        "mb-grid-reach",
    ):
        assert results[claim_id], claim_id


def test_the_ratio_fit_is_least_squares_per_seed(book):
    frame = grid_frame(book)
    part = grid.at_ratios(frame, book)
    fits = []
    for _, g in part.groupby("seed"):
        x = np.column_stack(
            [np.ones(len(g)), np.log(g["ratio"]), np.log(g["B"])]
        )
        fits.append(np.linalg.lstsq(x, np.log(g["lambda_max"]), rcond=None)[0])
    ref = stats.interval([f[1] for f in fits])
    f = grid.facts(frame, book)
    assert (f["sc_a"], f["sc_a_lo"], f["sc_a_hi"]) == pytest.approx(
        (ref.estimate, ref.lo, ref.hi)
    )


def test_saturation_finds_the_first_batch_near_full_batch():
    frame = pd.DataFrame(
        dict(
            lr=[0.1] * 3 + [0.4] * 3,
            B=[1, 10, 100] * 2,
            seed=0,
            init_loss=[2.0] * 6,
            train_loss=[1.5, 1.02, 1.0, 1.9, 1.3, 0.5],
        )
    )
    assert steps.saturation(frame, 0.1).to_dict() == {0.1: 10, 0.4: 100}
    diverged = frame.iloc[[1]].assign(train_loss=np.nan, seed=1)
    both = pd.concat([frame, diverged], ignore_index=True)
    assert steps.saturation(both, 0.1)[0.1] == 100  # a missing loss
    cfg = steps.Config.for_scale("quick")
    cfg = steps.replace(cfg, batch_sizes=(1, 10, 100), lrs=(0.1, 0.4))
    f = steps.facts(frame, cfg)
    assert (f["st_sat1"], f["st_sat2"]) == (10, 100) and f["st_grows"]
    assert f["st_blow"] == pytest.approx(1.9 / 2.0)  # B = 1 at 0.4
    flat = frame.assign(train_loss=[1.5, 1.02, 1.0, 1.9, 1.0, 0.99])
    f = steps.facts(flat, cfg)
    assert not f["st_grows"]
    assert claims.evaluate(steps, f, "book") == {
        "mb-steps-saturation": False,
        "mb-steps-blowup": False,
    }


def test_counter_facts():
    cfg = counter.Config.for_scale("book")
    frame = pd.DataFrame(
        dict(
            B=[1, 1, 4, 4],
            seed=[0, 1, 0, 1],
            reached=[False, False, True, True],
            epochs=[30.0, 30.0, 20.0, 24.0],
            train_loss=[2.0, 2.2, 0.09, 0.095],
            train_acc=[0.5, 0.6, 0.99, 1.0],
        )
    )
    f = counter.facts(frame, cfg)
    assert f["ct_b1_reached"] == 0 and f["ct_peer_epochs"] == 22
    assert f["ct_b1_train_acc"] == pytest.approx(0.55)
    assert claims.evaluate(counter, f, "book")["mb-counter-b1-fails"]
    frame.loc[0, "reached"] = True
    f = counter.facts(frame, cfg)
    assert not claims.evaluate(counter, f, "book")["mb-counter-b1-fails"]


def test_the_noise_scale_splits_into_spread_and_signal():
    cfg = noise.Config.for_scale("quick")
    var = pd.DataFrame(
        dict(
            kind="variance",
            point=["initialization", "trained"] * 2,
            B=[1, 1, 16, 16],
            measured=[1.0, 0.5, 0.1, 0.06],
            se=[0.1] * 4,
            law=[1.0, 1.0, 0.1, 0.06],
        )
    )
    path = pd.DataFrame(
        dict(
            kind="path",
            step=[0, 100, 200, 300],
            loss=[2.3, 1.0, 0.8, 0.7],
            trace=[1.0, 2.0, 3.0, 4.0],
            grad_sq=[1.0, 0.25, 0.5, 0.4],
        )
    ).assign(b_simple=lambda p: p["trace"] / p["grad_sq"])
    frame = pd.concat([var, path], ignore_index=True).assign(n_train=4000)
    f = noise.facts(frame, cfg)
    assert f["bs_jump"] == pytest.approx(f["tr_jump"] * f["g2_drop"])
    assert (f["tr_jump"], f["g2_drop"]) == (2.0, 4.0)
    assert f["tr_share_first"] == pytest.approx(np.log(2) / np.log(8))
    assert f["first_step"] == 100 and f["low_b1"] == 0.5
    results = claims.evaluate(noise, f, "book")
    assert results["mb-noise-signal-falls"] and results["mb-noise-law"]
