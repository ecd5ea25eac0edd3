"""The fair test at a fixed rate: batch sizes 1, 4 and 16 trained to one
training loss at each of two small rates, the noise changed by the batch
size alone; LeCun's chain measured link by link, paired by seed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from . import _chain, _fair

#: Column names of the page's tables.
NAMES = _fair.NAMES
CHAIN_NAMES = {**_chain.NAMES, "lr": "rate"}


@dataclass(frozen=True)
class Config(_fair.Protocol):
    """The fixed arm: every batch size at each of the fixed rates."""

    rates: tuple[float, ...] = (0.015, 0.03)  # the fixed rates
    batch_sizes: tuple[int, ...] = (1, 4, 16)  # B trained at every rate
    budget_epochs: float = 300  # budget of a run in epochs ...
    budget_steps: int = 0  # ... or in steps, whichever is more

    RATE_FIELDS: ClassVar = ("rates",)
    VARIANTS: ClassVar = {
        "longer": Longer("target_divisor", "budget_epochs"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(rates=(0.0125, 0.025)),
        "digits": Digits(sizes=(64, 100, 100, 10), n_val=438),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            n_train=200,
            n_val=200,
            seeds=3,
            target_loss=0.5,
            batch_sizes=(1, 4),
            budget_epochs=100,
        )
        full = more_of(book, seeds=16)
        return pick(scale, quick=quick, book=book, full=full)

    @property
    def cells(self) -> tuple:
        """``(B, rates)`` pairs: every batch size at every fixed rate."""
        return tuple((b, self.rates) for b in self.batch_sizes)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train and measure every (B, rate, seed) of the fixed arm.

    Returns:
        One row per run (:func:`_fair.train` and :func:`_fair.measure`).
    """
    return _fair.run_cells(cfg, data, cfg.cells)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per rate and B (:func:`_fair.summary`)."""
    return _fair.summary(frame, ["lr", "B"])


def chain(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The chain's table at each fixed rate (:func:`_chain.table`)."""
    parts = [
        _chain.table(frame[frame["lr"] == lr]).assign(lr=lr)
        for lr in cfg.rates
    ]
    table = pd.concat(parts, ignore_index=True)
    return table[["lr", *table.columns[:-1]]]


def _at_rate(part: pd.DataFrame, cfg: Config, tag: str) -> dict:
    small, big = cfg.batch_sizes[0], cfg.batch_sizes[-1]
    done = part[part["reached"]]
    means = done.groupby("B")[["test_acc", "lambda_max", "keskar"]].mean()
    lam = _chain.log_ratio(done, "lambda_max", "B", small, big)
    kes = _chain.log_ratio(done, "keskar", "B", small, big)
    out = {
        f"{tag}_lam_ratio": lam[0],
        f"{tag}_lam_ratio_lo": lam[1],
        f"{tag}_kes_ratio_lo": kes[1],
        f"{tag}_kes_ratio": kes[0],
        f"{tag}_acc_b1": means.loc[small, "test_acc"],
        f"{tag}_acc_best": means["test_acc"].max(),
        f"{tag}_best_b": int(means["test_acc"].idxmax()),
        f"{tag}_lam_b1": means.loc[small, "lambda_max"],
        f"{tag}_lam_big": means.loc[big, "lambda_max"],
    }
    for b, name in ((cfg.batch_sizes[1], "next"), (big, "big")):
        got = _chain.points(done, "test_acc", "B", small, b)
        out.update({f"{tag}_{name}_{k}": v for k, v in got.items()})
    table = _chain.table(part).set_index("link")["verdict"]
    for name, short in (
        ("B → λmax", "b_lam"),
        ("λmax → test acc", "lam_acc"),
        ("B → test acc", "b_acc"),
    ):
        out[f"{tag}_v_{short}"] = table[name]
    out[f"{tag}_n_supports"] = int((table == "supports").sum())
    out[f"{tag}_n_opposes"] = int((table == "opposes").sum())
    return out


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Per fixed rate (``fx1_``, ``fx2_``, ... in the order of
    ``cfg.rates``): the growth of lambda_max and Keskar sharpness from
    the smallest to the largest B (per-seed ratios, interval lower end),
    mean test accuracies, the per-seed test-accuracy gain over the
    smallest B of the next (``_next_``) and the largest (``_big_``) in
    points with its interval, verdict and number of seeds it wins, and
    the chain's verdicts; ``fx_b1_*`` compare the two
    rates at the smallest B; ``fx_short`` is the largest shortfall of a
    cell's mean stopping loss below the target, relative to it."""
    done = frame[frame["reached"]]
    cell = done.groupby(["lr", "B"])[["train_acc", "test_acc", "epochs"]]
    means = cell.mean()
    out = dict(
        fx_target=cfg.target,
        fx_near=cfg.near,
        fx_near_examples=cfg.near_examples,
        fx_n_val=cfg.n_val,
        fx_train_acc=means["train_acc"].min(),
        fx_test_lo=means["test_acc"].min(),
        fx_test_hi=means["test_acc"].max(),
        fx_epochs_big=means["epochs"].max(),
        fx_b_next=cfg.batch_sizes[1],
        fx_b_big=cfg.batch_sizes[-1],
        fx_seeds=cfg.seeds,
        fx_reached=float(frame["reached"].mean()),
        fx_budget=cfg.budget_epochs,
        fx_n_links=len(_chain.LINKS),
    )
    for i, lr in enumerate(cfg.rates, 1):
        out[f"fx{i}_lr"] = lr
        out.update(_at_rate(frame[frame["lr"] == lr], cfg, f"fx{i}"))
    small = frame[frame["B"] == cfg.batch_sizes[0]]
    lo, hi = cfg.rates[0], cfg.rates[-1]
    lam = _chain.log_ratio(small, "lambda_max", "lr", lo, hi)
    gain = _chain.points(small, "test_acc", "lr", lo, hi)
    out.update(fx_b1_lam_ratio=lam[0], fx_b1_lam_ratio_hi=lam[2])
    out.update({f"fx_b1_gain_{k}": v for k, v in gain.items()})
    # the loss of accuracy as a magnitude, for prose that says "less"
    out.update(fx_b1_drop=-gain["diff"], fx_b1_drop_lo=-gain["hi"])
    out["fx_b1_drop_hi"] = -gain["lo"]
    stop = frame[frame["reached"]].groupby(["B", "lr"])["train_loss"].mean()
    out["fx_short"] = float((1 - stop / cfg.target).max())
    return out


CLAIMS = [
    Claim(
        "mb-fixed-reach",
        "finding",
        "at both fixed rates every run of every batch size reaches the "
        "target, every cell's mean stopping loss is within 25% below it, "
        "and every cell's mean training accuracy is above 0.95",
        lambda f: (
            f["fx_reached"] == 1
            and f["fx_short"] < 0.25
            and f["fx_train_acc"] > 0.95
        ),
        where=("rate", "digits"),
        measure=("fx_reached", "fx_short", "fx_train_acc", "fx_test_hi"),
    ),
    Claim(
        "mb-fixed-flatter",
        "finding",
        "at each fixed rate the top eigenvalue grows from B = 1 to B = 16 "
        "(per-seed ratio, interval above 1)",
        lambda f: f["fx1_lam_ratio_lo"] > 1 and f["fx2_lam_ratio_lo"] > 1,
        where=("longer", "wider", "rate", "digits"),
        measure=("fx1_lam_ratio", "fx2_lam_ratio"),
    ),
    Claim(
        "mb-fixed-no-payoff",
        "finding",
        "at the larger fixed rate neither the link from the top "
        "eigenvalue nor that from the batch size to test accuracy supports "
        "the chain (at the smaller rate both do in some seed sets)",
        lambda f: all(
            f[f"fx2_v_{k}"] != "supports" for k in ("lam_acc", "b_acc")
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("fx2_big_diff", "fx2_n_supports", "fx1_n_supports"),
    ),
    Claim(
        "mb-fast-b1-worse",
        "finding",
        "at the larger fixed rate, B = 4 has a higher mean test accuracy "
        "than B = 1 (the mean of the per-seed differences is positive)",
        lambda f: f["fx2_next_diff"] > 0,
        where=("longer", "wider", "rate"),
        measure=("fx2_next_diff", "fx2_next_lo", "fx2_next_wins"),
    ),
    Claim(
        "mb-slow-b1-not-worse",
        "finding",
        "at the smaller fixed rate, neither B = 4 nor B = 16 has higher "
        "test accuracy than B = 1 (their per-seed intervals reach below "
        "zero)",
        lambda f: f["fx1_next_lo"] < 0 and f["fx1_big_lo"] < 0,
        where=("longer", "rate"),
        measure=("fx1_next_diff", "fx1_big_diff"),
    ),
    Claim(
        "mb-b1-rate",
        "finding",
        "at B = 1 the larger rate ends flatter than the smaller one "
        "(per-seed ratio of top eigenvalues, interval below 1) and with "
        "lower mean test accuracy (the mean of the per-seed differences "
        "is below zero; its interval reaches zero in some seed sets: "
        "undecided there)",
        lambda f: f["fx_b1_lam_ratio_hi"] < 1 and f["fx_b1_gain_diff"] < 0,
        where=("longer", "wider", "rate"),
        measure=(
            "fx_b1_lam_ratio",
            "fx_b1_lam_ratio_hi",
            "fx_b1_gain_diff",
            "fx_b1_gain_hi",
        ),
    ),
]
