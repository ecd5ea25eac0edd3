"""Without noise, and with momentum: full-batch gradient descent at a low
and a high rate, with its loss trace and its sharpness (the largest
Hessian eigenvalue) against ``2 / eta``, the stability threshold of
gradient descent on a quadratic; BatchNorm at the large batch on the
same seeds; and the small-batch run with SGD's heavy-ball momentum."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from .rate import effective_rate_run, steps_miss


@dataclass(frozen=True)
class Config:
    """Full-batch descent at two rates, and one run with momentum."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    small: int = 4  # the small batch of the momentum run
    large: int = 128  # BatchNorm's large batch, for comparison
    low_lr: float = 0.05  # the lower rate
    high_lr: float = 0.1  # the higher rate
    steps: int = 300  # steps of every run
    seeds: int = 2  # initializations (and batch orders)
    momentum: float = 0.9  # SGD's momentum, at rate high_lr * (1 - it)
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("low_lr", "high_lr")
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(low_lr=0.02, high_lr=0.2),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=30, seeds=1, large=32)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=4))


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Per seed, at both rates: full-batch descent (statistics and
    gradient over the whole training set, with its sharpness at the end)
    and BatchNorm at the large batch; and the small batch with momentum.

    Returns:
        Rows with ``seed``, ``run`` (``"full batch"``, ``"large batch"``
        or ``"momentum"``), ``lr``, ``momentum``, ``fall`` (``1 -
        eta_eff / eta_eff(0)``), ``squared_steps``, ``growth``, ``rises``
        and ``sharpness`` (:func:`~.rate.effective_rate_run`; both NaN
        where the batch is not the whole training set).
    """
    n = data.n_train
    runs = [("full batch", n, lr, 0.0) for lr in (cfg.low_lr, cfg.high_lr)] + [
        ("large batch", cfg.large, lr, 0.0) for lr in (cfg.low_lr, cfg.high_lr)
    ]
    slow = cfg.high_lr * (1 - cfg.momentum)
    runs.append(("momentum", cfg.small, slow, cfg.momentum))
    rows = []
    for seed in range(cfg.seeds):
        for name, batch, lr, beta in runs:
            got = effective_rate_run(
                data,
                cfg.sizes,
                batch,
                batch,
                lr,
                cfg.steps,
                seed,
                momentum=beta,
                sharpness=name == "full batch",
            )
            got["fall"] = 1 - got["rate_ratio"]
            if name != "full batch":  # a minibatch loss rises by chance
                got["rises"] = math.nan
            rows.append(dict(seed=seed, run=name, lr=lr, momentum=beta, **got))
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """At each rate (``lo``, ``hi``): the full-batch run's fall (mean
    over seeds), its fall over the large batch's on the same seeds, the
    fewest and most steps on which its loss rose, and its sharpness
    (mean, least and largest over seeds) against ``2 / eta``; for the
    momentum run, the fall and how many times the summed squared steps
    the weights' squared norm grew (the least over seeds)."""
    out = dict(edge_steps=cfg.steps, edge_seeds=cfg.seeds)
    for tag, lr in (("lo", cfg.low_lr), ("hi", cfg.high_lr)):
        at = frame[frame["lr"] == lr]
        full = at[at["run"] == "full batch"]
        large = at[at["run"] == "large batch"]
        out.update(
            {
                f"edge_lr_{tag}": lr,
                f"edge_limit_{tag}": 2 / lr,
                f"edge_fall_{tag}": full["fall"].mean(),
                f"edge_large_{tag}": large["fall"].mean(),
                f"edge_share_{tag}": full["fall"].mean()
                / large["fall"].mean(),
                f"edge_rises_min_{tag}": int(full["rises"].min()),
                f"edge_rises_max_{tag}": int(full["rises"].max()),
                f"edge_sharp_{tag}": full["sharpness"].mean(),
                f"edge_sharp_min_{tag}": full["sharpness"].min(),
                f"edge_sharp_max_{tag}": full["sharpness"].max(),
            }
        )
    mom = frame[frame["run"] == "momentum"]
    out.update(
        edge_momentum=cfg.momentum,
        edge_mom_lr=float(mom["lr"].iloc[0]),
        edge_mom_fall=mom["fall"].mean(),
        edge_mom_times=(mom["growth"] / mom["squared_steps"]).min(),
        edge_mom_miss=steps_miss(mom).min(),
        edge_small=cfg.small,
        edge_large=cfg.large,
    )
    return out


CLAIMS = [
    Claim(
        "bn-edge-stable",
        "finding",
        "at the lower rate, full-batch descent's effective rate falls by "
        "less than a quarter of what BatchNorm at 128 loses",
        lambda f: f["edge_share_lo"] < 0.25,
        where=("rate",),
        measure=("edge_share_lo", "edge_rises_max_lo", "edge_sharp_max_lo"),
    ),
    Claim(
        "bn-edge-unstable",
        "finding",
        "at the higher rate, full-batch descent is past the stability "
        "threshold in every seed: its loss rises on some steps and its "
        "sharpness at the end exceeds 2 / eta",
        lambda f: (
            f["edge_rises_min_hi"] > 0
            and f["edge_sharp_min_hi"] > f["edge_limit_hi"]
        ),
        where=("longer", "rate"),
        measure=("edge_rises_min_hi", "edge_sharp_min_hi"),
    ),
    Claim(
        "bn-edge-signal",
        "finding",
        "at the higher rate, full-batch descent loses more than half as "
        "much effective rate as BatchNorm at 128",
        lambda f: f["edge_share_hi"] > 0.5,
        where=("longer", "wider", "rate"),
        measure=("edge_share_hi", "edge_fall_hi"),
    ),
    Claim(
        "bn-edge-momentum",
        "finding",
        "with SGD's momentum 0.9 the squared norm of the weights grows by "
        "more than twice the summed squared steps in every seed: the "
        "steps are no longer orthogonal to the weights",
        lambda f: f["edge_mom_times"] > 2,
        where=("longer", "wider", "rate", "digits"),
        measure=("edge_mom_times", "edge_mom_fall"),
    ),
]
