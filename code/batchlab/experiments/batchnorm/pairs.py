"""Why does BatchNorm fail at B = 2 in an MLP? With two examples every
normalized value is +1 or -1. A BatchNorm MLP trained at B = 2, then
looked at in the mode it was trained in; and a control with the same
statistics of pairs but the gradient of a large batch (ghost BatchNorm
with groups of 2), which removes most of the gradient's noise."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch

from ... import runtime
from ...batchnorm import bn_layers, bn_mlp
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, pick
from ...train import SGDConfig, train_sgd
from .modes import train_eval_agreement


@dataclass(frozen=True)
class Config:
    """BatchNorm MLPs trained on statistics of pairs."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    lr: float = 0.1  # learning rate of both runs
    steps: int = 2400  # SGD steps of both runs
    ghost_batch: int = 32  # the control's gradient batch (groups of 2)
    pairs: int = 500  # random pairs whose normalized values are counted
    unit_tol: float = 0.01  # "is +-1": within this of +1 or -1
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.03),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=200, pairs=100, ghost_batch=8)
        return pick(scale, quick=quick, book=book, full=book)


@torch.no_grad()
def unit_share(net, x: torch.Tensor, pairs: int, tol: float, seed: int = 0):
    """Share of the first BatchNorm layer's normalized values (before its
    gain and shift) within ``tol`` of +1 or -1, over ``pairs`` random
    pairs of rows of ``x``, each pair normalized in training mode as a
    batch of two. The layer's running averages are restored."""
    layer = bn_layers(net)[0]
    saved = layer.running_mean.clone(), layer.running_var.clone()
    idx = torch.randperm(len(x), generator=runtime.generator(seed))[
        : 2 * pairs
    ]
    h = net[0](x[idx.to(x.device)]).reshape(pairs, 2, -1)
    was_training = layer.training
    layer.train()
    try:
        z = torch.stack([layer(p) for p in h])
    finally:
        layer.train(was_training)
        layer.running_mean.copy_(saved[0])
        layer.running_var.copy_(saved[1])
    z = (z - layer.bias) / layer.weight
    return float(((z.abs() - 1).abs() < tol).float().mean())


#: The two runs: statistics and gradient of pairs; statistics of pairs,
#: gradient of the large batch.
RUNS = ("B = 2", "ghost: statistics of 2, gradient of the large batch")


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train at B = 2 and the ghost control, then measure each.

    Returns:
        One row per run: ``run`` (a name of :data:`RUNS`),
        ``share_unit`` (:func:`unit_share`), ``train_mode_acc`` (training
        set, training mode, random pairs), ``eval_mode_acc`` (training
        set, running averages) and ``test_acc`` (evaluation mode).
    """
    rows = []
    for name, batch in zip(RUNS, (2, cfg.ghost_batch)):
        net = bn_mlp(cfg.sizes, seed=0, group=2 if batch > 2 else None)
        history = train_sgd(net, data, SGDConfig(batch, cfg.lr, cfg.steps))
        modes = train_eval_agreement(net, data.x_train, data.y_train, [2])
        random = modes[modes["batches"] == "random"].iloc[0]
        share = unit_share(net, data.x_train, cfg.pairs, cfg.unit_tol)
        rows.append(
            dict(
                run=name,
                share_unit=share,
                train_mode_acc=random["accuracy"],
                eval_mode_acc=random["eval_accuracy"],
                test_acc=float(history.final_test_acc[0]),
            )
        )
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Both runs' numbers, renamed for the prose (``pair_*`` for B = 2,
    ``pair_ghost_*`` for the control)."""
    row, ghost = (frame.set_index("run").loc[r] for r in RUNS)
    return dict(
        pair_unit=row["share_unit"],
        pair_train_acc=row["train_mode_acc"],
        pair_eval_acc=row["eval_mode_acc"],
        pair_ghost_unit=ghost["share_unit"],
        pair_ghost_train_acc=ghost["train_mode_acc"],
        pair_ghost_eval_acc=ghost["eval_mode_acc"],
        pair_ghost_batch=cfg.ghost_batch,
        pair_tol=cfg.unit_tol,
        pair_steps=cfg.steps,
        pair_lr=cfg.lr,
    )


CLAIMS = [
    Claim(
        "bn-pairs-signs",
        "finding",
        "at B = 2 more than 95% of the values BatchNorm's first layer "
        "normalizes come out within 0.01 of +1 or -1",
        lambda f: f["pair_unit"] > 0.95,
        where=("longer", "wider", "rate", "digits"),
        measure=("pair_unit",),
        quick=True,
    ),
    Claim(
        "bn-pairs-own-mode",
        "finding",
        "trained at B = 2, BatchNorm is right on less than 30% of its own "
        "training set in training mode, less often than in evaluation mode",
        lambda f: (
            f["pair_train_acc"] < 0.3
            and f["pair_train_acc"] < f["pair_eval_acc"]
        ),
        where=("longer", "wider", "rate"),
        measure=("pair_train_acc", "pair_eval_acc"),
    ),
    Claim(
        "bn-pairs-ghost",
        "finding",
        "with the statistics of pairs but the gradient of 32 examples "
        "(ghost BatchNorm), the network is still right on less than 30% of "
        "its training pairs in training mode",
        lambda f: f["pair_ghost_train_acc"] < 0.3,
        where=("longer", "wider", "rate"),
        measure=("pair_ghost_train_acc", "pair_ghost_eval_acc"),
    ),
]
