"""Back to the Hessian: the top eigenvalues of the training loss of a
ReLU MLP trained without and with BatchNorm, the latter's Hessian taken
with the batch statistics inside the derivative (training mode) and with
population statistics held constant (evaluation mode). Three measures
of how the top of the spectrum is shaped: lambda_1 / lambda_k, the
largest neighbouring gap, and the decay."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...batchnorm import bn_mlp, set_precise_stats
from ...claims import Claim
from ...data import Dataset
from ...hessian import HessianOperator, top_eigenvalues
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...stats import paired
from ...train import SGDConfig, train_sgd

NETWORKS = (
    "no BatchNorm",
    "BatchNorm, batch statistics",
    "BatchNorm, population statistics",
)


@dataclass(frozen=True)
class Config:
    """The trained networks and their spectra."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    activation: str = "relu"  # the hidden nonlinearity
    batch: int = 32  # SGD batch size
    lr: float = 0.05  # SGD learning rate
    steps: int = 600  # SGD steps before the Hessians
    examples: int = 500  # training examples in each Hessian's loss
    k: int = 20  # top eigenvalues computed
    tol: float = 1e-2  # their relative accuracy
    seeds: int = 4  # initializations and batch orders, paired
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=100, examples=200, k=12, seeds=2)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


def spectrum_shape(ev) -> dict:
    """Measures of the top ``k`` eigenvalues (any order; the smallest
    must be positive): ``ratio`` = lambda_1 / lambda_k; ``gap`` = the
    largest lambda_i / lambda_{i+1}, at ``gap_at`` = i (from 1);
    ``decay`` = the slope of log lambda_i against log i, negated (a
    power law lambda_i ~ i^-decay fitted by least squares)."""
    ev = np.sort(np.asarray(ev, dtype=float))[::-1]
    if len(ev) < 3 or ev[-1] <= 0:
        raise ValueError("need at least three eigenvalues, the last positive")
    gaps = ev[:-1] / ev[1:]
    ranks = np.arange(1, len(ev) + 1)
    slope = np.polyfit(np.log(ranks), np.log(ev), 1)[0]
    return dict(
        ratio=ev[0] / ev[-1],
        gap=float(gaps.max()),
        gap_at=int(gaps.argmax()) + 1,
        decay=float(-slope),
    )


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train each network and compute its top ``k`` Hessian eigenvalues
    on the first ``examples`` training examples.

    Returns:
        Rows with ``seed``, ``network`` (a name of :data:`NETWORKS`),
        ``lambda_1``, ``lambda_k``, ``loss`` (the loss whose Hessian it
        is), ``eigenvalues`` (all ``k``, largest first) and the measures
        of :func:`spectrum_shape`.
    """
    x, y = data.x_train[: cfg.examples], data.y_train[: cfg.examples]
    rows = []
    for seed in range(cfg.seeds):
        for norm in ("none", "batchnorm"):
            net = bn_mlp(cfg.sizes, norm, seed=seed, activation=cfg.activation)
            sgd = SGDConfig(cfg.batch, cfg.lr, cfg.steps, seed=seed)
            train_sgd(net, data, sgd)
            names = NETWORKS[:1] if norm == "none" else NETWORKS[1:]
            for name in names:
                probe = copy.deepcopy(net).train()
                if name == NETWORKS[2]:
                    set_precise_stats(probe, data.x_train)
                    probe.eval()
                with torch.no_grad():
                    loss = float(F.cross_entropy(probe(x), y))
                op = HessianOperator(probe, F.cross_entropy, x, y)
                ev = top_eigenvalues(
                    op, k=cfg.k, tol=cfg.tol, seed=seed
                ).values
                ev = [float(e) for e in ev]
                rows.append(
                    dict(
                        seed=seed,
                        network=name,
                        lambda_1=ev[0],
                        lambda_k=ev[-1],
                        loss=loss,
                        eigenvalues=tuple(ev),
                        **spectrum_shape(ev),
                    )
                )
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Means over seeds of each measure per network (``hess_ratio_plain``,
    ``hess_gap_batch``, ...), paired differences of the ratio, the gap
    and the decay between the network without BatchNorm and the
    BatchNorm network in training mode, and the per-seed checks."""
    plain, batch, pop = NETWORKS
    out = dict(
        hess_steps=cfg.steps,
        hess_n=cfg.examples,
        hess_k=cfg.k,
        hess_seeds=cfg.seeds,
    )
    tags = {plain: "plain", batch: "batch", pop: "pop"}
    means = frame.groupby("network")[
        ["ratio", "gap", "decay", "lambda_1", "lambda_k", "loss"]
    ].mean()
    for name, tag in tags.items():
        for col in means.columns:
            out[f"hess_{col}_{tag}"] = means.loc[name, col]
    for col in ("ratio", "gap", "decay"):
        diff = paired(frame, col, "network", batch, plain)
        out.update(diff.facts(f"hess_{col}_diff"))
    wide = frame.pivot(index="seed", columns="network")
    out["hess_ratio_twice"] = bool(
        (
            wide["ratio"][plain] > 2 * wide["ratio"][[batch, pop]].max(axis=1)
        ).all()
    )
    out["hess_loss_ahead"] = bool(
        (wide["loss"][plain] > wide["loss"][batch] + 0.1).all()
    )
    return out


CLAIMS = [
    Claim(
        "bn-hess-ratio",
        "finding",
        "for every seed, lambda_1 / lambda_k of the network without "
        "BatchNorm is more than twice that of the BatchNorm network in "
        "either mode",
        lambda f: f["hess_ratio_twice"],
        where=("wider",),
        measure=("hess_ratio_plain", "hess_ratio_batch", "hess_ratio_pop"),
    ),
    Claim(
        "bn-hess-decay",
        "finding",
        "the top eigenvalues of the network without BatchNorm decay "
        "faster with their rank than those of the BatchNorm network in "
        "training mode (paired interval of the fitted power above zero)",
        lambda f: f["hess_decay_diff_lo"] > 0,
        where=("longer", "wider", "rate", "digits"),
        measure=("hess_decay_plain", "hess_decay_batch"),
    ),
    Claim(
        "bn-hess-gap",
        "finding",
        "the largest gap between neighbouring top eigenvalues is less than "
        "1.3 times larger without BatchNorm than with it in training mode "
        "(means over seeds)",
        lambda f: f["hess_gap_plain"] < 1.3 * f["hess_gap_batch"],
        where=("longer", "wider", "rate"),
        measure=("hess_gap_plain", "hess_gap_batch", "hess_gap_pop"),
    ),
    Claim(
        "bn-hess-progress",
        "finding",
        "for every seed, after the same steps the network without "
        "BatchNorm has a training loss higher by more than 0.1",
        lambda f: f["hess_loss_ahead"],
        where=("longer", "wider", "rate", "digits"),
        measure=("hess_loss_plain", "hess_loss_batch"),
    ),
]


def mean_spectra(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per network, the mean over seeds of each rank's eigenvalue."""
    return {
        name: np.mean(
            np.stack([np.asarray(e) for e in part["eigenvalues"]]), 0
        )
        for name, part in frame.groupby("network", sort=False)
    }
