"""Whole-data statistics, constant or inside the gradient: the network
trained three ways (per-batch BatchNorm; whole-data statistics held
constant; whole-data statistics differentiated through), judged per
update by its loss under population statistics, and the drift of the
biases that feed BatchNorm."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...batchnorm import bn_layers, bn_mlp, population_loss
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...stats import paired, verdict
from ...train import SGDConfig, train_sgd
from .work import MODES, counting, normalized_model

#: "stays put": a drift below this.
PINNED_TOL = 1e-5

#: What the interval of per batch minus differentiated says.
VERDICTS = {
    "supports": "lower with differentiated whole-data statistics",
    "opposes": "lower per batch",
    "undecided": "undecided",
}


@dataclass(frozen=True)
class Config:
    """Three ways to normalize, trained alike."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    n_train: int = 250  # training examples (the first of the data set)
    batch: int = 32  # examples per update
    lr: float = 0.1  # learning rate
    steps: int = 480  # updates
    every: int = 80  # updates between records
    seeds: int = 4  # initializations and batch orders, paired
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps", "every"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.05),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=60, every=20, seeds=2)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


def pre_norm_biases(net: nn.Sequential) -> torch.Tensor:
    """The biases of the linear layers that feed a BatchNorm layer."""
    norms = bn_layers(net)
    return torch.cat(
        [a.bias.detach() for a, b in zip(net, net[1:]) if b in norms]
    )


class Recorder:
    """``on_step`` of :func:`~batchlab.train.train_sgd`: every ``every``
    steps and at the end, the examples counted so far (``seen``), the
    loss under population statistics and the drift of the pre-BatchNorm
    biases since the recorder was made."""

    def __init__(self, net: nn.Sequential, x, y, cfg: Config, seen: list):
        self.net, self.x, self.y, self.cfg, self.seen = net, x, y, cfg, seen
        self.start = pre_norm_biases(net)
        self.rows: list[dict] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        if step % self.cfg.every and step != self.cfg.steps:
            return
        drift = (pre_norm_biases(self.net) - self.start).norm()
        self.rows.append(
            dict(
                step=step,
                examples=self.seen[0],
                loss=population_loss(self.net, self.x, self.y),
                drift=float(drift),
            )
        )


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train one network per mode and seed on the first ``n_train``
    examples, recording every ``every`` updates.

    Returns:
        Rows from step 0 with ``seed``, ``mode``, ``step``, ``examples``
        (sent through the first layer by the updates so far), ``loss``
        (training loss under population statistics) and ``drift`` (norm
        of the change of the pre-BatchNorm biases since the start).
    """
    part = data.subset(cfg.n_train)
    x, y = part.x_train, part.y_train
    rows = []
    for seed in range(cfg.seeds):
        for mode in MODES:
            net = bn_mlp(cfg.sizes, seed=seed)
            model = normalized_model(net, x, mode)
            sgd = SGDConfig(cfg.batch, cfg.lr, cfg.steps, seed=seed)
            with counting(net[0]) as seen:
                record = Recorder(net, x, y, cfg, seen)
                record(0, model)
                train_sgd(model, part, sgd, on_step=record)
            rows += [dict(seed=seed, mode=mode, **r) for r in record.rows]
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """End-of-run losses per mode (means over seeds) and two paired
    differences with their 95% intervals: constant minus differentiated
    whole-data statistics (``whole_cost``, the cost of the drift: one
    change, the gradient through the statistics) and per batch minus
    differentiated (``whole_gain``); the drift with constant statistics
    and whether it grew at every record of every seed, the largest drift
    with the statistics inside the gradient (``whole_pinned``), and the
    work: the per-batch run's examples and the whole-data updates they
    would buy."""
    end = frame[frame["step"] == cfg.steps]
    loss = end.groupby("mode")["loss"].mean()
    const = frame[frame["mode"] == MODES[1]].sort_values("step")
    grows = const.groupby("seed")["drift"].apply(
        lambda d: bool((np.diff(d.to_numpy()) > 0).all())
    )
    inside = frame[frame["mode"] != MODES[1]]
    examples = int(end[end["mode"] == MODES[0]]["examples"].iloc[0])
    cost = paired(end, "loss", "mode", MODES[2], MODES[1])
    gain = paired(end, "loss", "mode", MODES[2], MODES[0])
    return dict(
        whole_n=cfg.n_train,
        whole_steps=cfg.steps,
        whole_loss_pb=loss[MODES[0]],
        whole_loss_const=loss[MODES[1]],
        whole_loss_diff=loss[MODES[2]],
        **cost.facts("whole_cost"),
        **gain.facts("whole_gain"),
        whole_gain_verdict=VERDICTS[verdict(gain, +1)],
        whole_drift=end[end["mode"] == MODES[1]]["drift"].mean(),
        whole_drift_grows=bool(grows.all()),
        whole_pinned=inside["drift"].max(),
        whole_pinned_tol=PINNED_TOL,
        whole_examples=examples,
        whole_updates=examples // (cfg.n_train + cfg.batch),
        whole_seeds=cfg.seeds,
    )


CLAIMS = [
    Claim(
        "bn-whole-pinned",
        "identity",
        "with the statistics inside the gradient (whole-data or per "
        "batch) the biases before BatchNorm get no gradient and stay put",
        lambda f: f["whole_pinned"] < f["whole_pinned_tol"],
        measure=("whole_pinned",),
        quick=True,
    ),
    Claim(
        "bn-whole-drift",
        "finding",
        "with whole-data statistics held constant the biases before "
        "BatchNorm drift further at every record of every seed",
        lambda f: f["whole_drift_grows"],
        where=("longer", "wider", "rate", "digits"),
        measure=("whole_drift",),
    ),
    Claim(
        "bn-whole-cost",
        "finding",
        "per update, whole-data statistics held constant end with a higher "
        "training loss than whole-data statistics differentiated through "
        "(paired 95% interval above zero)",
        lambda f: f["whole_cost_lo"] > 0,
        where=("longer", "wider", "rate", "digits"),
        measure=("whole_cost", "whole_cost_lo", "whole_cost_hi"),
    ),
]
