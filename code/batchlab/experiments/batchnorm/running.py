"""Running averages against population statistics: running means of
several momenta (and the cumulative average) ride along one SGD run and
are compared with the exact population mean of the second BatchNorm
layer's inputs, at a slow and a fast learning rate."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ...batchnorm import RunningTracker, bn_layers, bn_mlp, population_stats
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import SGDConfig, train_sgd


@dataclass(frozen=True)
class Config:
    """The runs along which the running averages are tracked."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    momenta: tuple[float, ...] = (0.01, 0.1, 0.5)  # PyTorch's momentum
    batch: int = 32  # examples per step
    slow_lr: float = 0.01  # learning rate with slowly moving weights
    fast_lr: float = 0.2  # and with fast-moving ones
    steps: int = 1500  # SGD steps per run
    every: int = 150  # steps between comparisons
    seeds: int = 3  # initializations and batch orders
    bn_layer: int = 2  # which BatchNorm layer, counting from 1
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("slow_lr", "fast_lr")
    VARIANTS: ClassVar = {
        "longer": Longer("steps", "every"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(slow_lr=0.005, fast_lr=0.3),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=300, every=50, seeds=2)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train a BatchNorm MLP per rate and seed; every ``every`` steps
    compare each running mean with the population mean.

    Returns:
        Rows with ``seed``, ``lr``, ``step``, ``momentum`` (NaN for the
        cumulative average) and ``error``: the mean over units of
        ``|running - population| / sigma`` (sigma: the unit's population
        standard deviation).
    """
    rows = []
    averages = [*cfg.momenta, None]  # None: the cumulative average
    for seed in range(cfg.seeds):
        for lr in (cfg.slow_lr, cfg.fast_lr):
            net = bn_mlp(cfg.sizes, seed=seed)
            layer = cfg.bn_layer - 1
            if not 0 <= layer < len(bn_layers(net)):
                raise ValueError(
                    f"bn_layer counts from 1 to {len(bn_layers(net))}, got "
                    f"{cfg.bn_layer}"
                )
            tracker = RunningTracker(bn_layers(net)[layer], averages)

            def compare(
                step, model, seed=seed, lr=lr, tracker=tracker, layer=layer
            ):
                if step % cfg.every:
                    return
                mean, var = population_stats(model, data.x_train)[layer]
                for m, running in tracker.means.items():
                    error = (running - mean).abs() / var.sqrt()
                    rows.append(
                        dict(
                            seed=seed,
                            lr=lr,
                            step=step,
                            momentum=math.nan if m is None else m,
                            error=float(error.mean()),
                        )
                    )

            sgd = SGDConfig(cfg.batch, lr, cfg.steps, seed=seed)
            try:
                train_sgd(net, data, sgd, on_step=compare)
            finally:
                tracker.remove()
    return pd.DataFrame(rows)


def late_errors(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Each run's error averaged over the comparisons of the last two
    thirds of training: rows ``(lr, seed)``, columns the momenta and
    ``"cumulative"``."""
    late = frame[frame["step"] >= cfg.steps / 3]
    named = late.assign(
        average=late["momentum"].map(
            lambda m: "cumulative" if math.isnan(m) else m
        )
    )
    return named.pivot_table(
        index=["lr", "seed"], columns="average", values="error"
    )


def late_table(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """:func:`late_errors` averaged over seeds, one row per learning
    rate, the columns named ``momentum 0.01``, ..., ``cumulative``."""
    table = late_errors(frame, cfg).groupby("lr").mean()
    table.columns = [
        c if c == "cumulative" else f"momentum {c:g}" for c in table.columns
    ]
    table.index.name = "learning rate"
    return table


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Late errors per rate and average (means over seeds), whether the
    momenta rank by their noise at the slow rate and the middle one wins
    at the fast rate for every seed, and whether the cumulative average
    ends further off than at the start of the late window."""
    late = late_errors(frame, cfg)
    lo, mid, hi = cfg.momenta
    slow, fast = late.loc[cfg.slow_lr], late.loc[cfg.fast_lr]
    out = dict(
        run_from=int(frame[frame["step"] >= cfg.steps / 3]["step"].min()),
        run_every=cfg.every,
        run_seeds=cfg.seeds,
        run_layer=cfg.bn_layer,
        run_m_lo=lo,
        run_m_mid=mid,
        run_m_hi=hi,
        run_ranked_slow=bool(
            ((slow[lo] < slow[mid]) & (slow[mid] < slow[hi])).all()
        ),
        run_mid_wins_fast=bool(
            (fast[[lo, hi, "cumulative"]].min(axis=1) > fast[mid]).all()
        ),
    )
    for tag, part in (("slow", slow), ("fast", fast)):
        for key, col in (("lo", lo), ("mid", mid), ("hi", hi)):
            out[f"run_{tag}_{key}"] = part[col].mean()
        out[f"run_{tag}_cum"] = part["cumulative"].mean()
    cum = frame[frame["momentum"].isna()]
    start = cum[cum["step"] == out["run_from"]].set_index(["lr", "seed"])
    end = cum[cum["step"] == cum["step"].max()].set_index(["lr", "seed"])
    growth = end["error"] / start["error"]
    out["run_cum_growth"] = growth.min()
    return out


CLAIMS = [
    Claim(
        "bn-running-noise",
        "finding",
        "when the weights move slowly, the error of the running mean grows "
        "with the momentum, for every seed (variance dominates)",
        lambda f: f["run_ranked_slow"],
        where=("longer", "wider", "rate", "digits"),
        measure=("run_slow_lo", "run_slow_mid", "run_slow_hi", "run_slow_cum"),
    ),
    Claim(
        "bn-running-lag",
        "finding",
        "when the weights move fast, momentum 0.1 does better than the "
        "slow averages (cumulative, 0.01), which lag, and than the noisy "
        "0.5, for every seed",
        lambda f: f["run_mid_wins_fast"],
        where=("longer", "wider", "rate"),
        measure=("run_fast_lo", "run_fast_mid", "run_fast_cum"),
    ),
    Claim(
        "bn-running-cumulative",
        "finding",
        "at both learning rates, for every seed, the cumulative average "
        "ends more than 10% further off than at the start of the last two "
        "thirds of training",
        lambda f: f["run_cum_growth"] > 1.1,
        where=("wider",),
        measure=("run_cum_growth",),
    ),
]
