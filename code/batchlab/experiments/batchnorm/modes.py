"""The same inputs in training and in evaluation mode: a partly trained
BatchNorm MLP predicts the test set in training mode, in batches drawn
at random or holding one class each, against evaluation mode."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch
from torch import nn

from ... import runtime
from ...batchnorm import bn_mlp
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, pick
from ...train import SGDConfig, train_sgd

BATCHES = ("random", "one class")

#: At the largest B, one-class batches lose more accuracy than this.
ONE_CLASS_LOSS = 0.1


@dataclass(frozen=True)
class Config:
    """The network and the batch sizes of its training-mode predictions."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    train_batch: int = 32  # B of the training run
    train_lr: float = 0.05  # its learning rate
    train_steps: int = 500  # its length (the network is partly trained)
    batches: tuple[int, ...] = (2, 8, 32, 64)  # B of the predictions
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("train_lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("train_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(train_lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, train_steps=100, batches=(2, 32))
        return pick(scale, quick=quick, book=book, full=book)


def batches_of(order: torch.Tensor, y: torch.Tensor, b: int, by_class: bool):
    """Cut ``order`` into batches of ``b``; with ``by_class`` no batch
    mixes classes (a class's last, short batch takes from its start)."""
    if not by_class:
        for i in range(0, len(order), b):
            chunk = order[i : i + b]
            yield chunk if len(chunk) >= 2 else order[-b:]
        return
    for c in torch.unique(y):
        members = order[y[order] == c]
        for i in range(0, len(members), b):
            chunk = members[i : i + b]
            yield chunk if len(chunk) == b else members[-b:]


@torch.no_grad()
def train_eval_agreement(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batches, seed: int = 0
) -> pd.DataFrame:
    """Predict ``x`` in training mode (on a copy of ``net``, whose
    running averages stay untouched) in batches of each size, random or
    one class each, and compare with evaluation mode.

    Returns:
        Rows with ``B``, ``batches``, ``accuracy`` (training mode),
        ``eval_accuracy`` and ``agreement`` (share of predictions equal to
        evaluation mode's).
    """
    probe = copy.deepcopy(net).eval()
    eval_pred = probe(x).argmax(1)
    probe.train()
    orders = {
        "random": torch.randperm(len(x), generator=runtime.generator(seed)),
        "one class": torch.argsort(y.cpu(), stable=True),
    }
    rows = []
    for b in batches:
        if not 2 <= b <= len(x):
            raise ValueError(f"batch sizes must lie in [2, {len(x)}]: {b}")
        for kind, order in orders.items():
            order = order.to(x.device)
            pred = torch.empty_like(y)
            for chunk in batches_of(order, y, b, kind == "one class"):
                pred[chunk] = probe(x[chunk]).argmax(1)
            rows.append(
                dict(
                    B=b,
                    batches=kind,
                    accuracy=float((pred == y).float().mean()),
                    eval_accuracy=float((eval_pred == y).float().mean()),
                    agreement=float((pred == eval_pred).float().mean()),
                )
            )
    return pd.DataFrame(rows)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train the network, then predict the test set both ways."""
    net = bn_mlp(cfg.sizes, seed=0)
    sgd = SGDConfig(cfg.train_batch, cfg.train_lr, cfg.train_steps)
    train_sgd(net, data, sgd)
    return train_eval_agreement(net, data.x_test, data.y_test, cfg.batches)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Agreement at the smallest and largest B (random batches), the
    accuracy with one-class batches of the largest B, and whether
    agreement rises with B while one-class batches lose accuracy at every
    B, more than ``ONE_CLASS_LOSS`` at the largest."""
    rand = frame[frame["batches"] == "random"].set_index("B").sort_index()
    one = frame[frame["batches"] == "one class"].set_index("B")
    b_lo, b_hi = rand.index.min(), rand.index.max()
    return dict(
        modes_eval_acc=frame["eval_accuracy"].iloc[0],
        modes_b_lo=int(b_lo),
        modes_b_hi=int(b_hi),
        modes_agree_lo=rand.loc[b_lo, "agreement"],
        modes_agree_hi=rand.loc[b_hi, "agreement"],
        modes_one_class=one.loc[b_hi, "accuracy"],
        modes_random_hi=rand.loc[b_hi, "accuracy"],
        modes_rises=bool(rand["agreement"].is_monotonic_increasing),
        modes_one_class_loses=bool(
            (one["accuracy"] < rand["accuracy"]).all()
            and one.loc[b_hi, "accuracy"]
            < rand.loc[b_hi, "accuracy"] - ONE_CLASS_LOSS
        ),
    )


CLAIMS = [
    Claim(
        "bn-modes-agreement",
        "finding",
        "in training mode, the smaller the random batch the more "
        "predictions differ from evaluation mode's",
        lambda f: f["modes_rises"],
        where=("longer", "wider", "rate"),
        measure=("modes_agree_lo", "modes_agree_hi"),
    ),
    Claim(
        "bn-modes-one-class",
        "finding",
        "in training mode, batches of one class are less accurate than "
        "random batches at every batch size, by more than 10 points at the "
        "largest",
        lambda f: f["modes_one_class_loses"],
        where=("longer", "wider", "rate", "digits"),
        measure=("modes_one_class",),
    ),
]
