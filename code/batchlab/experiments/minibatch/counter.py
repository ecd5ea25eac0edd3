"""The counterpoint: does gradient noise ever stop this network from
learning? Single examples and batches of 4 at one rate, large for single
examples, trained to the fair test's target within one budget."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from . import _fair


@dataclass(frozen=True)
class Config(_fair.Protocol):
    """Two batch sizes at one rate."""

    lr: float = 0.06  # the rate: twice the largest tuned for B = 1
    batch_sizes: tuple[int, ...] = (1, 4)  # single examples and a peer
    budget_epochs: float = 30  # budget of every run in epochs ...
    budget_steps: int = 0  # ... or in steps, whichever is more

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("target_divisor", "budget_epochs"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.08),
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
            budget_epochs=15,
        )
        full = more_of(book, seeds=16)
        return pick(scale, quick=quick, book=book, full=full)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train every (B, seed) at ``cfg.lr`` (no measures of flatness).

    Returns:
        One row per run (:func:`_fair.train`).
    """
    cells = tuple((b, (cfg.lr,)) for b in cfg.batch_sizes)
    return _fair.train(cfg, data, cells)[0]


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per B: share of runs that reached the target, mean epochs, final
    training loss and accuracy."""
    cols = ["reached", "epochs", "train_loss", "train_acc"]
    return frame.groupby("B")[cols].mean()


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Share of runs that reached the target, mean epochs, final training
    loss and accuracy, for the single examples (``ct_b1_``) and their
    peer (``ct_peer_``); ``ln_classes`` is the loss of a uniform guess."""
    small, peer = cfg.batch_sizes[0], cfg.batch_sizes[-1]
    means = summary(frame)
    out = dict(
        ct_lr=cfg.lr,
        ct_budget=cfg.budget_epochs,
        ct_peer=peer,
        ln_classes=float(np.log(10)),
    )
    for b, tag in ((small, "ct_b1"), (peer, "ct_peer")):
        out.update(
            {f"{tag}_{k}": float(means.loc[b, k]) for k in means.columns}
        )
    return out


CLAIMS = [
    Claim(
        "mb-counter-b1-fails",
        "finding",
        "at the rate 0.06, no single-example run reaches the target within "
        "the budget, and their mean training loss stays above 1, while "
        "every run with B = 4 reaches it",
        lambda f: (
            f["ct_b1_reached"] == 0
            and f["ct_b1_train_loss"] > 1
            and f["ct_peer_reached"] == 1
        ),
        where=("longer", "wider", "rate"),
        measure=(
            "ct_b1_reached",
            "ct_peer_reached",
            "ct_b1_train_loss",
            "ct_b1_train_acc",
        ),
    ),
]
