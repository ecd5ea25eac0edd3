"""Equal steps: where does a bigger batch stop helping? Every batch size,
from one example to the full batch, at three rates, each for the same
number of steps; the saturation batch size per rate and seed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...ensemble import EnsembleMLP, train_ensemble
from ...models import mlp
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ._fair import split, stack_size


@dataclass(frozen=True)
class Config:
    """Every (B, rate) trained for the same number of steps."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    n_train: int = 1000  # training examples (the full batch)
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1000)  # B values
    lrs: tuple[float, ...] = (0.03, 0.12, 0.48)  # rates, each at every B
    steps: int = 200  # updates per run
    seeds: int = 3  # runs per (B, rate), seeds shared by every cell
    tol: float = 0.1  # saturated: within tol of the full batch's progress
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lrs",)
    DATA_FIELDS: ClassVar = ("n_train",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lrs=(0.05, 0.2, 0.8)),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            n_train=200,
            batch_sizes=(1, 16, 200),
            steps=40,
            seeds=2,
        )
        full = more_of(book, seeds=8)
        return pick(scale, quick=quick, book=book, full=full)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train every (B, rate, seed) for ``cfg.steps`` steps on the first
    ``cfg.n_train`` examples, in stacks of models sharing B
    (:func:`._fair.stack_size`; a run that diverged is recorded with a
    missing loss).

    Returns:
        One row per run: ``B``, ``lr``, ``seed``, ``init_loss``,
        ``train_loss``.
    """
    train, _ = split(data, cfg.n_train, 0)
    keys = [(lr, s) for lr in cfg.lrs for s in range(cfg.seeds)]
    rows = []
    for b in cfg.batch_sizes:
        size = stack_size(b, cfg.sizes)
        for i in range(0, len(keys), size):
            rows += _train_stack(cfg, train, b, keys[i : i + size])
    return pd.DataFrame(rows)


def _train_stack(cfg: Config, train: Dataset, b: int, keys) -> list[dict]:
    ens = EnsembleMLP.from_models([mlp(cfg.sizes, seed=s) for _, s in keys])
    hist = train_ensemble(
        ens,
        train,
        b,
        [lr for lr, _ in keys],
        cfg.steps,
        [s for _, s in keys],
        on_divergence="record",
    )
    return [
        dict(
            B=b,
            lr=lr,
            seed=seed,
            init_loss=hist.train_loss[i, 0],
            train_loss=hist.train_loss[i, -1],
        )
        for i, (lr, seed) in enumerate(keys)
    ]


def saturation(frame: pd.DataFrame, tol: float) -> pd.Series:
    """Per rate, the smallest B whose mean final loss is within ``tol``
    of the full batch's progress, ``loss(B) - loss(full) <= tol *
    (initial loss - loss(full))`` (the largest B is the full batch); a
    (B, rate) with a diverged run (a missing loss) never qualifies."""
    frame = frame.assign(train_loss=frame["train_loss"].fillna(np.inf))
    mean = frame.groupby(["lr", "B"])[["init_loss", "train_loss"]].mean()
    out = {}
    for lr, part in mean.groupby(level="lr"):
        part = part.droplevel("lr").sort_index()
        full = part["train_loss"].iloc[-1]
        gain = part["init_loss"].iloc[-1] - full
        ok = part.index[(part["train_loss"] - full) <= tol * gain]
        out[lr] = int(ok.min())
    return pd.Series(out, name="saturation B")


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The saturation B at each rate (``st_sat1``, ... in the order of
    ``cfg.lrs``) from the means over seeds; ``st_grows`` whether it rises
    with the rate, from the first rate to the last, and ``st_seeds_grow``
    the share of seeds in which their own saturation points do; the
    smallest final loss of a run with B <= 4 at the largest rate over its
    initial loss (``st_blow``)."""
    sat = saturation(frame, cfg.tol)
    per_seed = [saturation(g, cfg.tol) for _, g in frame.groupby("seed")]
    rises = [
        s.is_monotonic_increasing and s.iloc[-1] > s.iloc[0] for s in per_seed
    ]
    top = frame[(frame["lr"] == max(cfg.lrs)) & (frame["B"] <= 4)]
    out = dict(
        st_n=cfg.n_train,
        st_steps=cfg.steps,
        st_seeds=cfg.seeds,
        st_tol=100 * cfg.tol,
        st_lr_lo=min(cfg.lrs),
        st_lr_hi=max(cfg.lrs),
        st_grows=bool(
            sat.is_monotonic_increasing and sat.iloc[-1] > sat.iloc[0]
        ),
        st_seeds_grow=float(np.mean(rises)),
        st_blow=float(
            (top["train_loss"].fillna(np.inf) / top["init_loss"]).min()
        ),
    )
    for i, lr in enumerate(sorted(cfg.lrs), 1):
        out[f"st_sat{i}"] = int(sat.loc[lr])
    return out


CLAIMS = [
    Claim(
        "mb-steps-saturation",
        "finding",
        "at equal steps, the batch size beyond which a bigger batch no "
        "longer helps grows with the learning rate, in the means over seeds "
        "and in every seed",
        lambda f: f["st_grows"] and f["st_seeds_grow"] == 1,
        where=("longer", "wider", "rate", "digits"),
        measure=("st_sat1", "st_sat3", "st_seeds_grow"),
    ),
    Claim(
        "mb-steps-blowup",
        "finding",
        "at the largest rate, every run with B <= 4 ends above its initial "
        "loss",
        lambda f: f["st_blow"] > 1,
        where=("longer", "wider", "rate", "digits"),
        measure=("st_blow",),
    ),
]
