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
from ...stats import paired, verdict
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
    steps: int = 600  # SGD steps of the BatchNorm network
    max_steps: int = 4800  # at most this many for the one without (8x)
    check_every: int = 25  # steps between its loss checks
    examples: int = 500  # training examples in each Hessian's loss
    k: int = 20  # top eigenvalues computed
    lanczos_tol: float = 1e-2  # their relative accuracy
    seeds: int = 4  # initializations and batch orders, paired
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps", "max_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book, steps=100, max_steps=800, examples=200, k=12, seeds=2
        )
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


class StopAtLoss:
    """``on_step`` of :func:`~batchlab.train.train_sgd` that stops
    training once the loss on ``(x, y)`` (the model in training mode,
    no gradient) is at most ``target``, checked every ``every`` steps."""

    def __init__(self, x, y, target: float, every: int):
        self.x, self.y, self.target, self.every = x, y, target, every

    @torch.no_grad()
    def __call__(self, step: int, model) -> bool:
        if step % self.every:
            return False
        return float(F.cross_entropy(model(self.x), self.y)) <= self.target


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train the BatchNorm network for ``steps`` steps, then the one
    without BatchNorm until its loss on the Hessian's examples is at most
    the BatchNorm network's there (training mode; at most ``max_steps``),
    and compute each top ``k`` Hessian eigenvalues on the first
    ``examples`` training examples.

    Returns:
        Rows with ``seed``, ``network`` (a name of :data:`NETWORKS`),
        ``steps`` (of its training), ``lambda_1``, ``lambda_k``, ``loss``
        (the loss whose Hessian it is), ``eigenvalues`` (all ``k``,
        largest first) and the measures of :func:`spectrum_shape`.
    """
    x, y = data.x_train[: cfg.examples], data.y_train[: cfg.examples]
    rows = []
    for seed in range(cfg.seeds):
        target = None
        for norm in ("batchnorm", "none"):
            net = bn_mlp(cfg.sizes, norm, seed=seed, activation=cfg.activation)
            if target is None:
                sgd = SGDConfig(cfg.batch, cfg.lr, cfg.steps, seed=seed)
                stop = None
            else:
                sgd = SGDConfig(cfg.batch, cfg.lr, cfg.max_steps, seed=seed)
                stop = StopAtLoss(x, y, target, cfg.check_every)
            steps = int(train_sgd(net, data, sgd, on_step=stop).step[-1])
            names = NETWORKS[:1] if norm == "none" else NETWORKS[1:]
            for name in names:
                probe = copy.deepcopy(net).train()
                if name == NETWORKS[2]:
                    set_precise_stats(probe, data.x_train)
                    probe.eval()
                with torch.no_grad():
                    loss = float(F.cross_entropy(probe(x), y))
                if name == NETWORKS[1]:
                    target = loss
                op = HessianOperator(probe, F.cross_entropy, x, y)
                ev = top_eigenvalues(
                    op, k=cfg.k, tol=cfg.lanczos_tol, seed=seed
                ).values
                ev = [float(e) for e in ev]
                rows.append(
                    dict(
                        seed=seed,
                        network=name,
                        steps=steps,
                        lambda_1=ev[0],
                        lambda_k=ev[-1],
                        loss=loss,
                        eigenvalues=tuple(ev),
                        **spectrum_shape(ev),
                    )
                )
    order = {name: i for i, name in enumerate(NETWORKS)}
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(
        ["seed", "network"],
        key=lambda c: c.map(order) if c.name == "network" else c,
    )
    return frame.reset_index(drop=True)


#: What a paired interval (without minus with BatchNorm) says, by its
#: verdict.
VERDICTS = {
    "supports": "larger without BatchNorm",
    "opposes": "larger with BatchNorm",
    "undecided": "undecided",
}


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Means over seeds of each measure per network (``hess_ratio_plain``,
    ``hess_gap_batch``, ...), paired differences of the ratio, the gap
    and the decay between the network without BatchNorm and the
    BatchNorm network in training mode with their intervals and what
    they say (``hess_ratio_verdict``, ``hess_gap_verdict``), and how the
    losses were matched: the steps without BatchNorm (least and most)
    and the largest loss difference."""
    plain, batch, pop = NETWORKS
    out = dict(
        hess_steps=cfg.steps,
        hess_n=cfg.examples,
        hess_k=cfg.k,
        hess_seeds=cfg.seeds,
        hess_max_steps=cfg.max_steps,
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
        out[f"hess_{col}_verdict"] = VERDICTS[verdict(diff, +1)]
    steps = frame[frame["network"] == plain]["steps"]
    out["hess_gap_plain_max"] = frame[frame["network"] == plain]["gap"].max()
    out["hess_gap_batch_max"] = frame[frame["network"] == batch]["gap"].max()
    wide = frame.pivot(index="seed", columns="network", values="loss")
    out.update(
        hess_plain_steps_min=int(steps.min()),
        hess_plain_steps_max=int(steps.max()),
        hess_matched=bool((steps < cfg.max_steps).all()),
        hess_loss_gap=float((wide[batch] - wide[plain]).abs().max()),
    )
    return out


CLAIMS = [
    Claim(
        "bn-hess-matched",
        "finding",
        "for every seed, the network without BatchNorm reaches the "
        "BatchNorm network's training loss within the step limit (8 times "
        "the BatchNorm network's steps)",
        lambda f: f["hess_matched"],
        where=("longer", "wider", "rate"),
        measure=("hess_plain_steps_max", "hess_loss_gap"),
    ),
    Claim(
        "bn-hess-decay",
        "finding",
        "at matched training loss, the top eigenvalues of the network "
        "without BatchNorm decay faster with their rank than those of the "
        "BatchNorm network in training mode, on average over the seeds "
        "(the mean fitted power is larger; its paired interval reaches "
        "zero in some seed sets)",
        lambda f: f["hess_decay_plain"] > f["hess_decay_batch"],
        where=("longer", "wider", "rate", "digits"),
        measure=("hess_decay_plain", "hess_decay_batch"),
    ),
    Claim(
        "bn-hess-no-outlier",
        "finding",
        "at matched training loss, no top eigenvalue of the network "
        "without BatchNorm stands more than 1.5 times above the next, in "
        "any seed",
        lambda f: f["hess_gap_plain_max"] < 1.5,
        where=("wider", "rate"),
        measure=("hess_gap_plain_max", "hess_gap_batch_max"),
    ),
    Claim(
        "bn-hess-batch-outlier",
        "finding",
        "at matched training loss, with batch statistics in the "
        "derivative, some seed's BatchNorm network has a top eigenvalue "
        "more than 1.5 times above the next, and the largest ratio of "
        "neighbouring eigenvalues is larger than without BatchNorm on "
        "average over the seeds",
        lambda f: f["hess_gap_batch_max"] > 1.5 and f["hess_gap_diff"] < 0,
        where=("longer", "wider", "rate"),
        measure=("hess_gap_batch_max", "hess_gap_diff", "hess_gap_diff_hi"),
    ),
]


def relative_spectra(frame: pd.DataFrame) -> pd.DataFrame:
    """Each eigenvalue over its spectrum's largest, ``lambda_i /
    lambda_1`` (scale-free), in rows with ``network``, ``seed``, ``rank``
    (from 1) and ``relative``."""
    rows = [
        dict(network=r.network, seed=r.seed, rank=i + 1, relative=e / ev[0])
        for r in frame.itertuples()
        for ev in [np.asarray(r.eigenvalues)]
        for i, e in enumerate(ev)
    ]
    return pd.DataFrame(rows)
