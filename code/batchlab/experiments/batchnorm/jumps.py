"""Renormalizing lower layers moves the upper ones: every hidden layer
of a :class:`~batchlab.normalize.CenteredMLP` standardized over the whole
training set every few steps, with and without compensating the next
layer (Raiko, Valpola and LeCun's compensation, extended to the scale)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from ...claims import Claim
from ...data import Dataset
from ...normalize import CenteredMLP
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import DivergedError, SGDConfig, train_sgd

#: Claim thresholds: a compensated jump is below EXACT_TOL; an
#: uncompensated run jumps by more than JUMP_MIN; "learning goes on" ends
#: within LEARN_TOL (a share) of the compensated run.
EXACT_TOL, JUMP_MIN, LEARN_TOL = 1e-4, 0.01, 0.15


@dataclass(frozen=True)
class Config:
    """SGD on a centred MLP, renormalized every ``every`` steps."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    batch: int = 32  # examples per step
    lr: float = 0.05  # learning rate
    steps: int = 600  # SGD steps
    every: int = 100  # steps between renormalizations
    seeds: int = 3  # initializations and batch orders
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps", "every"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=100, every=25, seeds=2)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train with and without compensation, renormalizing every
    ``every`` steps.

    Returns:
        Rows with ``seed``, ``compensated``, ``step``, the training loss
        (whole training set) ``before`` and ``after`` that step's
        renormalization, and ``diverged``: whether the run stopped with
        a non-finite or exploding loss (its rows end there).
    """
    x, y = data.x_train, data.y_train
    rows, diverged = [], []
    for seed in range(cfg.seeds):
        for compensate in (False, True):
            net = CenteredMLP(cfg.sizes, seed=seed).to(x.device)

            @torch.no_grad()
            def renormalize(step, model, compensate=compensate, seed=seed):
                if step % cfg.every:
                    return
                before = F.cross_entropy(model(x), y).item()
                model.renormalize(x, compensate=compensate, rescale=True)
                after = F.cross_entropy(model(x), y).item()
                rows.append(
                    dict(
                        seed=seed,
                        compensated=compensate,
                        step=step,
                        before=before,
                        after=after,
                    )
                )

            sgd = SGDConfig(cfg.batch, cfg.lr, cfg.steps, seed=seed)
            try:
                train_sgd(net, data, sgd, on_step=renormalize)
            except DivergedError:  # recorded: the claims read it
                diverged.append((seed, compensate))
    frame = pd.DataFrame(rows)
    runs = list(zip(frame["seed"], frame["compensated"]))
    return frame.assign(diverged=[r in diverged for r in runs])


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """``jump_raw``: the smallest over seeds of an uncompensated run's
    largest jump; ``jump_comp``: the largest compensated jump;
    ``jump_first_raw`` / ``jump_last_*``: losses before the first and
    after the last renormalization (means over seeds); ``jump_ratio``:
    the uncompensated over the compensated of those, over the runs that
    did not diverge; ``jump_learns``: every uncompensated run ended below
    its first loss and within ``LEARN_TOL`` of its compensated twin, and
    no run diverged (``jump_diverged_raw`` and ``jump_diverged_comp``
    count those that did, per arm)."""
    jump = (frame["after"] - frame["before"]).abs()
    frame = frame.assign(jump=jump)
    raw = frame[~frame["compensated"]]
    comp = frame[frame["compensated"]]
    first = raw.sort_values("step").groupby("seed")["before"].first()
    last = (
        frame.sort_values("step")
        .groupby(["compensated", "seed"])["after"]
        .last()
    )
    last_raw, last_comp = last.loc[False], last.loc[True]
    learns = (last_raw < first) & (
        (last_raw - last_comp).abs() < LEARN_TOL * last_comp
    )
    runs = frame.groupby(["compensated", "seed"])["diverged"].first()
    fine = last[~runs]
    arm = fine.index.get_level_values("compensated")
    return dict(
        jump_every=cfg.every,
        jump_raw=raw.groupby("seed")["jump"].max().min(),
        jump_comp=comp["jump"].max(),
        jump_first_raw=first.mean(),
        jump_last_raw=last_raw.mean(),
        jump_last_comp=last_comp.mean(),
        jump_ratio=fine[~arm].mean() / fine[arm].mean(),
        jump_learns=bool(learns.all()) and not runs.any(),
        jump_diverged_raw=int(runs.loc[False].sum()),
        jump_diverged_comp=int(runs.loc[True].sum()),
        jump_exact_tol=EXACT_TOL,
        jump_min=JUMP_MIN,
    )


CLAIMS = [
    Claim(
        "bn-jump-exact",
        "identity",
        "renormalizing with compensation leaves the loss unchanged (the "
        "network computes the same function)",
        lambda f: f["jump_comp"] < f["jump_exact_tol"],
        measure=("jump_comp",),
        quick=True,
    ),
    Claim(
        "bn-jump-raw",
        "finding",
        "without compensation, the loss of every run jumps by more than "
        "0.01 at some renormalization",
        lambda f: f["jump_raw"] > f["jump_min"],
        where=("longer", "wider", "rate", "digits"),
        measure=("jump_raw",),
    ),
    Claim(
        "bn-jump-learns",
        "finding",
        "without compensation learning goes on: no run diverges, and "
        "after the last renormalization every run's loss is below its "
        "value before the first, and within 15% of the compensated run's",
        lambda f: f["jump_learns"],
        where=("longer", "wider", "rate"),
        measure=(
            "jump_ratio",
            "jump_diverged_raw",
            "jump_diverged_comp",
        ),
    ),
]
