"""Statistics that fit the book's designs: runs paired by seed.

Every setting of an experiment is trained with the same seeds (the same
initializations and batch orders), so two settings are compared through
their per-seed differences, never as two independent samples.

* :func:`interval` -- a confidence interval for a mean (Student's t or
  a bootstrap, on :mod:`scipy.stats`).
* :func:`paired` -- the mean per-seed difference between two settings of
  a tidy frame, with its interval and a two-sided p-value.
* :func:`sign_flip` -- the blocked permutation test of paired
  differences: within each pair the two labels are swapped at random
  (exact over all ``2^n`` swaps for up to 16 pairs).
* :func:`blocked_trend` -- a rank correlation computed within each seed
  and averaged, tested by permuting within seeds.
* :func:`holm` -- Holm's step-down adjustment across a family of tests.
* :func:`verdict` -- "supports", "opposes" or "undecided" from an
  interval and the sign a hypothesis expects.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import runtime

#: Pairs up to which :func:`sign_flip` enumerates every swap.
EXACT_PAIRS = 16
METHODS = ("t", "bootstrap")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval.

    Attributes:
        estimate: the mean (of the values or of the paired differences).
        lo, hi: the interval's ends.
        level: its confidence level (0.95 for a 95 % interval).
        n: how many values (or pairs) it rests on.
        p: two-sided p-value of "the mean is zero" (NaN if not computed).
    """

    estimate: float
    lo: float
    hi: float
    level: float
    n: int
    p: float = float("nan")

    @property
    def excludes_zero(self) -> bool:
        """Whether zero lies outside the interval."""
        return self.lo > 0 or self.hi < 0

    def facts(self, name: str) -> dict[str, float]:
        """``{name: estimate, name_lo: lo, name_hi: hi}`` for glue."""
        return {
            name: self.estimate,
            f"{name}_lo": self.lo,
            f"{name}_hi": self.hi,
        }


def _values(x) -> np.ndarray:
    v = np.asarray(x, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(
            f"an interval needs at least two values, got {v.size}"
        )
    if not np.isfinite(v).all():
        raise ValueError(
            "values hold NaN or inf; drop the runs that diverged (and say "
            "so) before computing an interval"
        )
    return v


def _check_level(level: float) -> None:
    if not 0.5 <= level < 1:
        raise ValueError(f"level must lie in [0.5, 1), got {level}")


def interval(
    x, level: float = 0.95, method: str = "t", seed: int = 0
) -> Interval:
    """A confidence interval for the mean of ``x``.

    Args:
        x: values, shape ``(n,)`` with ``n >= 2`` (per-seed differences,
            say), all finite.
        level: confidence level.
        method: ``"t"`` (Student's t, with the t-test's p-value) or
            ``"bootstrap"`` (BCa bootstrap from ``scipy.stats.bootstrap``,
            9999 resamples seeded by ``seed``; its p-value is the exact
            sign-flip test of :func:`sign_flip`).
        seed: the bootstrap's seed (offset by the seed set).

    Raises:
        ValueError: fewer than two values, non-finite values, a level
            outside ``[0.5, 1)`` or an unknown method.
    """
    v = _values(x)
    _check_level(level)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    mean = float(v.mean())
    if np.all(v == v[0]):  # no spread: the interval is the value itself
        return Interval(mean, mean, mean, level, v.size, 0.0 if mean else 1.0)
    if method == "t":
        se = v.std(ddof=1) / np.sqrt(v.size)
        lo, hi = sps.t.interval(level, v.size - 1, loc=mean, scale=se)
        p = sps.ttest_1samp(v, 0.0).pvalue
        return Interval(mean, float(lo), float(hi), level, v.size, float(p))
    boot = sps.bootstrap(
        (v,),
        np.mean,
        confidence_level=level,
        n_resamples=9999,
        method="BCa",
        rng=runtime.rng(seed),
    )
    ci = boot.confidence_interval
    return Interval(
        mean, float(ci.low), float(ci.high), level, v.size, sign_flip(v)
    )


def pairs(
    frame: pd.DataFrame, value: str, by: str, a, b, pair: str = "seed"
) -> pd.Series:
    """Per-pair differences ``value[by == b] - value[by == a]``, indexed by
    ``pair``.

    Raises:
        ValueError: a column is missing, a setting is absent, a pair
            appears twice in one setting, or the two settings do not hold
            the same pairs (an unpaired comparison would follow).
    """
    missing = [c for c in (value, by, pair) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame)}")
    sides = []
    for level in (a, b):
        part = frame[frame[by] == level]
        if part.empty:
            raise ValueError(f"no rows with {by} == {level!r}")
        if part[pair].duplicated().any():
            raise ValueError(
                f"{pair} repeats within {by} == {level!r}: each {pair} "
                "must appear once per setting (filter the frame first)"
            )
        sides.append(part.set_index(pair)[value])
    if set(sides[0].index) != set(sides[1].index):
        raise ValueError(
            f"{by} == {a!r} and {by} == {b!r} hold different {pair}s "
            f"({sorted(sides[0].index)} and {sorted(sides[1].index)}): "
            "the comparison would not be paired"
        )
    return (sides[1] - sides[0].reindex(sides[1].index)).sort_index()


def paired(
    frame: pd.DataFrame,
    value: str,
    by: str,
    a,
    b,
    pair: str = "seed",
    level: float = 0.95,
    method: str = "t",
) -> Interval:
    """The mean per-seed difference ``b - a`` of ``value`` between two
    settings of ``by``, with its confidence interval (:func:`interval`).

    Args:
        frame: tidy, one row per run, with columns ``value``, ``by`` and
            ``pair`` (the seed shared by the runs of a pair).
        value: the measured column.
        by: the column that tells the settings apart.
        a, b: the two settings; the difference is ``b`` minus ``a``.
        pair: the column that pairs runs across settings.
        level, method: as in :func:`interval`.
    """
    diff = pairs(frame, value, by, a, b, pair)
    return interval(diff.to_numpy(), level=level, method=method)


def sign_flip(d, n_resamples: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of the blocked permutation test of paired
    differences ``d``: under the null each pair's two labels are
    exchangeable, so each difference's sign is a fair coin.

    Exact (all ``2^n`` sign patterns) for ``n <= 16`` pairs, else Monte
    Carlo with ``n_resamples`` draws (the observed pattern counted once).
    """
    v = _values(d)
    observed = abs(v.mean())
    if v.size <= EXACT_PAIRS:
        signs = np.array(list(itertools.product((1, -1), repeat=v.size)))
        means = np.abs(signs @ v) / v.size
        return float(np.mean(means >= observed - 1e-12 * max(observed, 1)))
    gen = runtime.rng(seed)
    signs = gen.choice((1, -1), size=(n_resamples, v.size))
    means = np.abs(signs @ v) / v.size
    hits = np.sum(means >= observed - 1e-12 * max(observed, 1))
    return float((hits + 1) / (n_resamples + 1))


@dataclass(frozen=True)
class Trend:
    """A rank correlation averaged within blocks, with its p-value.

    Attributes:
        rho: the mean over blocks of Spearman's rank correlation.
        p: two-sided p-value of the within-block permutation test.
        blocks: how many blocks (seeds) it rests on.
    """

    rho: float
    p: float
    blocks: int


def _centred_ranks(v: np.ndarray) -> np.ndarray:
    r = sps.rankdata(v)
    r = r - r.mean()
    return r / np.linalg.norm(r)


def blocked_trend(
    frame: pd.DataFrame,
    x: str,
    y: str,
    block: str = "seed",
    n_resamples: int = 5000,
    seed: int = 0,
) -> Trend:
    """Does ``y`` rise with ``x`` within blocks? Spearman's correlation
    computed within each block (seed) and averaged; its p-value permutes
    ``y`` within every block at once, so settings are compared only
    within a seed, as the design pairs them.

    Raises:
        ValueError: a column is missing, or no block has two distinct
            values of both ``x`` and ``y``.
    """
    missing = [c for c in (x, y, block) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame)}")
    xs = frame[x].to_numpy(float)
    ys = frame[y].to_numpy(float)
    groups = [
        np.flatnonzero(frame[block].to_numpy() == k)
        for k in pd.unique(frame[block])
    ]
    groups = [
        g
        for g in groups
        if len(np.unique(xs[g])) > 1 and len(np.unique(ys[g])) > 1
    ]
    if not groups:
        raise ValueError(
            f"no {block} has two distinct values of both {x} and {y}"
        )
    gen = runtime.rng(seed)
    observed = 0.0
    null = np.zeros(n_resamples)
    for g in groups:
        # Spearman's rho is Pearson's correlation of the ranks.
        rx, ry = _centred_ranks(xs[g]), _centred_ranks(ys[g])
        observed += rx @ ry
        perm = np.argsort(gen.random((n_resamples, len(g))), axis=1)
        null += ry[perm] @ rx
    observed /= len(groups)
    null /= len(groups)
    hits = np.sum(np.abs(null) >= abs(observed) - 1e-12)
    p = (hits + 1) / (n_resamples + 1)
    return Trend(float(observed), float(p), len(groups))


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment of the p-values ``p`` (one family of
    the ``m`` that are not NaN): the k-th smallest is multiplied by
    ``m - k + 1``, made monotone and capped at 1; NaN stays NaN.

    Raises:
        ValueError: ``p`` is not one-dimensional, or holds values outside
            ``[0, 1]``.
    """
    p = np.asarray(p, float)
    if p.ndim != 1:
        raise ValueError("need a one-dimensional array of p-values")
    known = np.flatnonzero(~np.isnan(p))
    if ((p[known] < 0) | (p[known] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = known[np.argsort(p[known], kind="stable")]
    scaled = p[order] * (len(order) - np.arange(len(order)))
    adjusted = np.full_like(p, np.nan)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


VERDICTS = ("supports", "opposes", "undecided")


def verdict(result: Interval | tuple[float, float], expected: int) -> str:
    """What an interval says of a hypothesis that expects the sign
    ``expected`` (+1: the difference is positive; -1: negative):
    ``"supports"`` when the whole interval has that sign, ``"opposes"``
    when it has the other, else ``"undecided"``.

    ``result`` is an :class:`Interval` or a ``(lo, hi)`` pair.

    Raises:
        ValueError: ``expected`` is not +1 or -1, or ``lo > hi``.
    """
    if expected not in (1, -1):
        raise ValueError(f"expected must be +1 or -1, got {expected!r}")
    lo, hi = (result.lo, result.hi) if isinstance(result, Interval) else result
    if lo > hi:
        raise ValueError(f"an interval needs lo <= hi, got ({lo}, {hi})")
    if lo > 0 or hi < 0:
        return "supports" if (lo > 0) == (expected > 0) else "opposes"
    return "undecided"
