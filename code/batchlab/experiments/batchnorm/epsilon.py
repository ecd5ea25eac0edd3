"""Why is the gradient not exactly orthogonal to the weights?
BatchNorm divides by ``sqrt(sigma^2 + eps)``, not by ``sigma``, which
breaks scale invariance slightly. The small-batch run of the rate
section again in single precision, in double precision, and in double
precision with a negligible ``eps``: one change at a time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch
from torch import nn

from ...batchnorm import StepLengths, bn_mlp
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import SGDConfig, train_sgd
from .rate import steps_miss

#: Claim thresholds: with the negligible epsilon every |cos| stays below
#: TINY_COS; with PyTorch's the largest exceeds EPS_COS.
TINY_COS, EPS_COS = 1e-6, 1e-4

#: The runs: (name, dtype, whether eps is the negligible one).
RUNS = (
    ("float32", torch.float32, False),
    ("float64", torch.float64, False),
    ("float64, negligible eps", torch.float64, True),
)


@dataclass(frozen=True)
class Config:
    """The small-batch BatchNorm run and its precisions."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    batch: int = 4  # examples per step
    lr: float = 0.1  # learning rate
    steps: int = 300  # SGD steps
    seeds: int = 2  # initializations and batch orders
    tiny_eps: float = 1e-12  # the negligible epsilon
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.05),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=40, seeds=1)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


def in_precision(data: Dataset, dtype: torch.dtype) -> Dataset:
    """The data with inputs in ``dtype``."""
    return Dataset(
        data.x_train.to(dtype),
        data.y_train,
        data.x_test.to(dtype),
        data.y_test,
    )


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Each seed's small-batch BatchNorm run in the three settings.

    Returns:
        Rows with ``seed``, ``run`` (a name of :data:`RUNS`), ``eps`` and
        the columns of :meth:`~batchlab.batchnorm.StepLengths.summary`.
    """
    rows = []
    for seed in range(cfg.seeds):
        for name, dtype, tiny in RUNS:
            net = bn_mlp(cfg.sizes, seed=seed).to(dtype)
            for layer in net:
                if isinstance(layer, nn.BatchNorm1d) and tiny:
                    layer.eps = cfg.tiny_eps
            eps = next(m.eps for m in net if isinstance(m, nn.BatchNorm1d))
            follow = StepLengths(net[0].weight)
            sgd = SGDConfig(cfg.batch, cfg.lr, cfg.steps, seed=seed)
            train_sgd(net, in_precision(data, dtype), sgd, on_step=follow)
            rows.append(dict(seed=seed, run=name, eps=eps, **follow.summary()))
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The largest ``|cos(w, g)|`` of each run over seeds, units and
    steps, the largest miss of the summed squared steps by the growth of
    ``|w|^2`` (a share, :func:`~.rate.steps_miss`), and BatchNorm's own
    ``eps``."""
    cos = frame.groupby("run")["cos"].max()
    miss = frame.assign(miss=steps_miss(frame)).groupby("run")["miss"].max()
    names = [name for name, _, _ in RUNS]
    return dict(
        eps_miss_f32=miss[names[0]],
        eps_miss_f64=miss[names[1]],
        eps_miss_tiny=miss[names[2]],
        eps_torch=float(frame[frame["run"] == names[0]]["eps"].iloc[0]),
        eps_tiny=cfg.tiny_eps,
        eps_cos_f32=cos[names[0]],
        eps_cos_f64=cos[names[1]],
        eps_cos_tiny=cos[names[2]],
        eps_tiny_cos=TINY_COS,
        eps_cos_min=EPS_COS,
        eps_batch=cfg.batch,
    )


CLAIMS = [
    Claim(
        "bn-eps-invariance",
        "identity",
        "in double precision with a negligible epsilon (1e-12) the "
        "gradient of every BatchNorm unit is orthogonal to its weights: "
        "|cos| stays below 1e-6, and the squared norm of the weights grows "
        "by the summed squared steps to within a millionth of them",
        lambda f: (
            f["eps_cos_tiny"] < f["eps_tiny_cos"]
            and f["eps_miss_tiny"] < f["eps_tiny_cos"]
        ),
        measure=("eps_cos_tiny", "eps_miss_tiny"),
        quick=True,
    ),
    Claim(
        "bn-eps-not-rounding",
        "finding",
        "with PyTorch's epsilon the largest cosine stays above 1e-4 in "
        "double precision as in single precision: epsilon, not rounding, "
        "tilts the gradient",
        lambda f: min(f["eps_cos_f32"], f["eps_cos_f64"]) > f["eps_cos_min"],
        where=("longer", "wider", "rate", "digits"),
        measure=("eps_cos_f32", "eps_cos_f64", "eps_miss_f32", "eps_miss_f64"),
    ),
]
