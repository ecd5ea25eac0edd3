"""Why not the whole data set? The examples one SGD update sends through
the network when every BatchNorm layer normalizes with statistics of the
whole training set, against per-batch statistics, as the set grows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
from torch import nn

from ...batchnorm import WholeDataBatchNorm, bn_mlp
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Wider, pick
from ...train import SGDConfig, train_sgd

#: The three ways an update can normalize (see WholeDataBatchNorm).
MODES = ("per batch", "whole data, constant", "whole data, differentiated")


@dataclass(frozen=True)
class Config:
    """Data-set sizes at which one update's work is counted."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    n_values: tuple[int, ...] = (500, 1000, 2000, 4000)  # training sets N
    batch: int = 32  # examples in the update's batch B
    lr: float = 0.1  # learning rate of the one update
    dataset: str = "mnist1d"  # batchlab.data.load name

    DATA_FIELDS: ClassVar = ("n_values",)
    VARIANTS: ClassVar = {
        "wider": Wider("sizes", factor=2),
        "digits": Digits(sizes=(64, 100, 100, 10), n_values=(250, 500, 1438)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``; the
        count is exact, so every scale makes the same experiment."""
        book = cls()
        return pick(scale, quick=replace(book), book=book, full=book)


@contextmanager
def counting(layer: nn.Module) -> Iterator[list[int]]:
    """Count the examples ``layer`` sees in training mode while the
    context is open; evaluations (``model.eval()``) are not counted.

    Yields:
        A one-element list holding the count so far.
    """
    seen = [0]

    def hook(module, args, out):
        if module.training:
            seen[0] += args[0].shape[0]

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def normalized_model(net: nn.Sequential, x_all, mode: str) -> nn.Module:
    """``net`` itself (per-batch statistics) or ``net`` normalized with
    the statistics of ``x_all``, held constant or differentiated."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "per batch":
        return net
    return WholeDataBatchNorm(net, x_all, mode == MODES[2])


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """One SGD update per mode and training-set size, counting the
    examples that pass the first layer.

    Returns:
        Rows with ``n`` (training-set size), ``mode`` and ``examples``
        (sent through the first layer by the update).
    """
    rows = []
    for n in cfg.n_values:
        if not cfg.batch <= n <= data.n_train:
            raise ValueError(
                f"n_values must lie in [{cfg.batch}, {data.n_train}], got {n}"
            )
        part = data.subset(n)
        for mode in MODES:
            net = bn_mlp(cfg.sizes, seed=0)
            model = normalized_model(net, part.x_train, mode)
            with counting(net[0]) as seen:
                train_sgd(model, part, SGDConfig(cfg.batch, cfg.lr, 1))
            rows.append(dict(n=n, mode=mode, examples=seen[0]))
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """``work_exact``: every per-batch update sent B examples and every
    whole-data update N + B; ``work_*``: the largest N, an update's cost
    there and how many per-batch updates that buys."""
    per_batch = frame["mode"] == MODES[0]
    want = frame["n"].where(~per_batch, 0) + cfg.batch
    n_large = int(frame["n"].max())
    return dict(
        work_exact=bool((frame["examples"] == want).all()),
        work_batch=cfg.batch,
        work_n_large=n_large,
        work_cost=n_large + cfg.batch,
        work_updates=(n_large + cfg.batch) // cfg.batch,
    )


CLAIMS = [
    Claim(
        "bn-work-cost",
        "identity",
        "an update with whole-data statistics sends N + B examples through "
        "the network, a per-batch update B, whatever N",
        lambda f: f["work_exact"],
        measure=("work_cost",),
        quick=True,
    ),
]
