"""How noisy are batch statistics? The spread of the batch means of a
trained network's first BatchNorm layer inputs against the
finite-population law ``sigma sqrt((N - B) / (B (N - 1)))``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch

from ... import runtime
from ...batchnorm import bn_mlp, layer_inputs
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import SGDConfig, train_sgd

#: "matches the law": within this share of it.
LAW_TOL = 0.2


@dataclass(frozen=True)
class Config:
    """A trained BatchNorm MLP and the batches drawn through it."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    train_batch: int = 32  # B of the training run
    train_lr: float = 0.05  # its learning rate
    train_steps: int = 500  # its length
    batches: tuple[int, ...] = (2, 4, 8, 32, 128)  # B whose means are drawn
    draws: int = 300  # batches drawn per B
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
        quick = replace(book, batches=(4, 64), draws=50, train_steps=100)
        return pick(
            scale, quick=quick, book=book, full=more_of(book, draws=1000)
        )


def batch_mean_spread(
    inputs: torch.Tensor, batches, draws: int, seed: int = 0
) -> pd.DataFrame:
    """Spread of the means of ``draws`` batches of each size, drawn
    without replacement from the rows of ``inputs`` ``(N, c)``.

    Returns:
        Rows with ``B``, ``measured`` and ``law`` (standard deviations of
        the batch mean in units of each unit's population standard
        deviation sigma, averaged over units) and ``ratio`` (measured
        over law, per unit, averaged).
    """
    n = inputs.shape[0]
    if draws < 2:
        raise ValueError("need at least two draws to measure a spread")
    sigma = inputs.std(0, unbiased=False)
    gen = runtime.generator(seed)
    rows = []
    for b in batches:
        if not 1 <= b < n:
            raise ValueError(f"batch sizes must lie in [1, {n - 1}], got {b}")
        picks = [torch.randperm(n, generator=gen)[:b] for _ in range(draws)]
        means = torch.stack(
            [inputs[p.to(inputs.device)].mean(0) for p in picks]
        )
        spread = means.std(0)
        law = sigma * ((n - b) / (b * (n - 1))) ** 0.5
        rows.append(
            dict(
                B=b,
                measured=float((spread / sigma).mean()),
                law=float((law / sigma).mean()),
                ratio=float((spread / law).mean()),
            )
        )
    return pd.DataFrame(rows)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train a BatchNorm MLP, then draw batches of its first BatchNorm
    layer's inputs (the first linear layer's outputs).

    Returns:
        The rows of :func:`batch_mean_spread`.
    """
    net = bn_mlp(cfg.sizes, seed=0)
    sgd = SGDConfig(cfg.train_batch, cfg.train_lr, cfg.train_steps)
    train_sgd(net, data, sgd)
    inputs = layer_inputs(net, data.x_train, 0)
    return batch_mean_spread(inputs, cfg.batches, cfg.draws)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The smallest and largest measured-over-law ratio, and the
    measured spread at the smallest B in units of sigma."""
    first = frame.sort_values("B").iloc[0]
    return dict(
        spread_draws=cfg.draws,
        spread_lo=frame["ratio"].min(),
        spread_hi=frame["ratio"].max(),
        spread_tol=LAW_TOL,
        spread_b_min=int(first["B"]),
        spread_at_min=float(first["measured"]),
    )


CLAIMS = [
    Claim(
        "bn-spread-law",
        "identity",
        "the spread of batch means matches the finite-population law "
        "within 20% at every batch size",
        lambda f: (
            max(1 - f["spread_lo"], f["spread_hi"] - 1) < f["spread_tol"]
        ),
        measure=("spread_lo", "spread_hi"),
        quick=True,
    ),
]
