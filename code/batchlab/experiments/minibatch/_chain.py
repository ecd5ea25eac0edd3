"""LeCun's chain, one arrow at a time, with statistics that fit the
design: every cell of the fair test is trained with the same seeds, so
a link is measured within each seed (a rank correlation across the
cells of that seed) and the seeds give its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ... import stats

#: The links: (cause, effect, the sign the link has if the chain holds,
#: a short name). Steps 1-4 of the chain, then the jumps from sharpness
#: or batch size straight to test accuracy.
LINKS = (
    ("B", "lambda_max", 1, "B → λmax"),
    ("B", "keskar", 1, "B → Keskar"),
    ("lambda_max", "weight_noise", 1, "λmax → weight-noise loss"),
    ("weight_noise", "flips", 1, "weight-noise loss → input flips"),
    ("flips", "test_acc", -1, "input flips → test acc"),
    ("lambda_max", "test_acc", -1, "λmax → test acc"),
    ("keskar", "test_acc", -1, "Keskar → test acc"),
    ("B", "test_acc", -1, "B → test acc"),
)
#: Column names of a chain table on the page.
NAMES = {"expected": "expected sign", "rho": "ρ", "lo": "from", "hi": "to"}
#: Family-wise level of the intervals of one table (Bonferroni).
ALPHA = 0.05


def within(frame: pd.DataFrame, x: str, y: str, block: str) -> pd.Series:
    """Spearman's correlation of ``x`` and ``y`` within each ``block``
    (blocks where either is constant are left out), indexed by block."""
    out = {}
    for key, part in frame.groupby(block, sort=True):
        if part[x].nunique() > 1 and part[y].nunique() > 1:
            out[key] = spearmanr(part[x], part[y]).statistic
    return pd.Series(out, dtype=float)


def link_interval(
    frame: pd.DataFrame, x: str, y: str, level: float, block: str = "seed"
) -> stats.Interval:
    """The mean within-block rank correlation of ``x`` and ``y`` with its
    t interval over blocks (:func:`batchlab.stats.interval`); all NaN
    (an undecided verdict) when fewer than two blocks vary in both."""
    rho = within(frame, x, y, block).to_numpy()
    if len(rho) < 2:
        nan = float("nan")
        return stats.Interval(nan, nan, nan, level, len(rho))
    return stats.interval(rho, level=level)


def table(frame: pd.DataFrame, links=LINKS, block: str = "seed"):
    """Every link of ``links`` measured in ``frame`` (runs that reached
    the target): mean within-seed Spearman ``rho``, its interval
    ``lo``-``hi`` at the simultaneous level ``1 - ALPHA`` over the links
    of the table (Bonferroni), the expected sign and the verdict
    (:func:`batchlab.stats.verdict`: ``undecided`` where the interval
    holds zero)."""
    done = frame[frame["reached"]]
    level = 1 - ALPHA / len(links)
    rows = []
    for x, y, sign, name in links:
        got = link_interval(done, x, y, level, block)
        rows.append(
            dict(
                link=name,
                expected=sign,
                rho=got.estimate,
                lo=got.lo,
                hi=got.hi,
                verdict=stats.verdict(got, sign),
            )
        )
    return pd.DataFrame(rows)


def both(frame: pd.DataFrame, value: str, by: str, a, b) -> pd.DataFrame:
    """The rows of settings ``a`` and ``b`` of the seeds that have a value
    in both (a run that missed the target has none): the pairs."""
    part = frame[frame[by].isin([a, b]) & frame[value].notna()]
    count = part.groupby("seed")[by].nunique()
    return part[part["seed"].isin(count.index[count == 2])]


def _paired(frame: pd.DataFrame, value: str, by: str, a, b):
    pairs = both(frame, value, by, a, b)
    if pairs["seed"].nunique() < 2:
        nan = float("nan")
        return stats.Interval(nan, nan, nan, 0.95, 0), pd.Series(dtype=float)
    got = stats.paired(pairs, value, by, a, b)
    return got, stats.pairs(pairs, value, by, a, b)


def log_ratio(frame: pd.DataFrame, value: str, by: str, a, b):
    """Per-seed ratio ``value[b] / value[a]`` as an interval of its log
    (t over the seeds with both runs), returned as ``(ratio, lo, hi)`` on
    the ratio scale (NaN with fewer than two pairs)."""
    got, _ = _paired(frame.assign(_log=np.log(frame[value])), "_log", by, a, b)
    return np.exp(got.estimate), np.exp(got.lo), np.exp(got.hi)


def points(frame: pd.DataFrame, value: str, by: str, a, b) -> dict:
    """The per-seed difference ``value[b] - value[a]`` in points (x 100)
    over the seeds with both runs, with its t interval, its verdict on
    "b is larger" and the number of seeds in which b is larger:
    ``dict(diff, lo, hi, verdict, wins)``."""
    got, diff = _paired(frame.assign(_p=100 * frame[value]), "_p", by, a, b)
    return dict(
        diff=got.estimate,
        lo=got.lo,
        hi=got.hi,
        verdict=stats.verdict(got, 1),
        wins=int((diff > 0).sum()),
    )
