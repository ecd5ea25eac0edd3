"""batchlab.stats against hand computations and scipy's own routines."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from batchlab import stats


def test_t_interval_matches_scipy_at_its_level():
    x = np.array([0.3, -0.1, 0.8, 0.4, 0.05, 0.6, 0.2, 0.9])
    ref = sps.ttest_1samp(x, 0.0)
    for level in (0.9, 0.95, 0.99):
        got = stats.interval(x, level=level)
        want = ref.confidence_interval(confidence_level=level)
        assert got.lo == pytest.approx(want.low)
        assert got.hi == pytest.approx(want.high)
        assert got.level == level and got.n == 8
    assert stats.interval(x).p == pytest.approx(ref.pvalue)
    wide, narrow = stats.interval(x, 0.99), stats.interval(x, 0.9)
    assert wide.lo < narrow.lo < narrow.hi < wide.hi


def test_bootstrap_interval_is_close_to_t_and_seeded():
    x = np.random.default_rng(1).normal(1.0, 1.0, 40)
    boot = stats.interval(x, method="bootstrap", seed=3)
    t = stats.interval(x)
    assert boot.lo == pytest.approx(t.lo, abs=0.1)
    assert boot.hi == pytest.approx(t.hi, abs=0.1)
    assert stats.interval(x, method="bootstrap", seed=3) == boot
    assert boot.p == stats.sign_flip(x)


@pytest.mark.parametrize(
    "bad, match",
    [([1.0], "two values"), ([1.0, np.nan], "NaN"), ([1.0, 2.0], "level")],
)
def test_interval_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        stats.interval(bad, level=0.95 if match != "level" else 1.5)
    with pytest.raises(ValueError, match="method"):
        stats.interval([1.0, 2.0], method="jackknife")


def seed_frame():
    # A large seed effect shared by both settings, a small consistent
    # difference: paired, it is clear; unpaired, it drowns.
    seeds = np.arange(8)
    base = np.array([0.1, 0.9, 0.4, 0.7, 0.2, 0.8, 0.3, 0.6])
    rows = [dict(seed=s, B=1, acc=b) for s, b in zip(seeds, base)]
    rows += [
        dict(seed=s, B=4, acc=b + 0.02 + 0.001 * s)
        for s, b in zip(seeds, base)
    ]
    return pd.DataFrame(rows).sample(frac=1, random_state=0)


def test_paired_difference_pairs_by_seed():
    frame = seed_frame()
    got = stats.paired(frame, "acc", "B", 1, 4)
    diffs = 0.02 + 0.001 * np.arange(8)
    want = stats.interval(diffs)
    for field in ("estimate", "lo", "hi", "p"):
        assert getattr(got, field) == pytest.approx(getattr(want, field))
    assert got.excludes_zero and got.estimate == pytest.approx(diffs.mean())
    unpaired = sps.ttest_ind(
        frame[frame.B == 4].acc, frame[frame.B == 1].acc
    ).confidence_interval()
    assert unpaired.low < 0 < unpaired.high  # what pairing buys


def test_pairs_refuse_an_unpaired_comparison():
    frame = seed_frame()
    with pytest.raises(ValueError, match="not be paired"):
        stats.paired(
            frame[frame.seed != 3].query("B == 1 or seed != 5"),
            "acc",
            "B",
            1,
            4,
        )
    with pytest.raises(ValueError, match="repeats"):
        stats.paired(pd.concat([frame, frame]), "acc", "B", 1, 4)
    with pytest.raises(ValueError, match="no rows"):
        stats.paired(frame, "acc", "B", 1, 16)
    with pytest.raises(ValueError, match="lacks"):
        stats.paired(frame, "loss", "B", 1, 4)


def test_sign_flip_is_exact_for_few_pairs():
    assert stats.sign_flip([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert stats.sign_flip([1.0, -1.0]) == pytest.approx(1.0)
    d = np.random.default_rng(4).normal(0.3, 1.0, 9)
    ref = sps.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf
    )
    assert stats.sign_flip(d) == pytest.approx(ref.pvalue)


def test_sign_flip_monte_carlo_for_many_pairs():
    d = np.random.default_rng(5).normal(0.0, 1.0, 30)
    ref = sps.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=20000,
        rng=0,
    )
    assert stats.sign_flip(d) == pytest.approx(ref.pvalue, abs=0.02)


def test_blocked_trend_compares_only_within_seeds():
    rows = []
    for seed in range(4):
        for level in range(5):
            # across seeds x and y rise together; within a seed y falls
            rows.append(
                dict(seed=seed, x=10 * seed + level, y=10 * seed - level)
            )
    frame = pd.DataFrame(rows)
    pooled = sps.spearmanr(frame.x, frame.y).statistic
    trend = stats.blocked_trend(frame, "x", "y")
    assert pooled > 0.8 and trend.rho == pytest.approx(-1.0)
    assert trend.blocks == 4 and trend.p < 0.001
    noise = frame.assign(
        y=np.random.default_rng(0).permutation(frame.y.to_numpy()) * 0
        + np.random.default_rng(1).normal(size=len(frame))
    )
    assert stats.blocked_trend(noise, "x", "y").p > 0.05


def test_blocked_trend_matches_the_mean_of_per_seed_spearman():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        dict(
            seed=np.repeat(range(3), 6),
            x=np.tile(range(6), 3),
            y=rng.normal(size=18),
        )
    )
    want = np.mean(
        [sps.spearmanr(g.x, g.y).statistic for _, g in frame.groupby("seed")]
    )
    assert stats.blocked_trend(frame, "x", "y").rho == pytest.approx(want)
    with pytest.raises(ValueError, match="two distinct"):
        stats.blocked_trend(frame.assign(x=1), "x", "y")


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.02, np.nan]), [0.02, np.nan])
    with pytest.raises(ValueError):
        stats.holm([[0.1]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([1.5])


def test_verdicts_follow_the_interval_and_the_expected_sign():
    assert stats.verdict((0.1, 0.3), +1) == "supports"
    assert stats.verdict((0.1, 0.3), -1) == "opposes"
    assert stats.verdict((-0.3, -0.1), -1) == "supports"
    assert stats.verdict((-0.1, 0.3), +1) == "undecided"
    assert stats.verdict(stats.interval([1.0, 1.1, 0.9]), 1) == "supports"
    with pytest.raises(ValueError):
        stats.verdict((0.1, 0.3), 0)
    with pytest.raises(ValueError):
        stats.verdict((0.3, 0.1), 1)
