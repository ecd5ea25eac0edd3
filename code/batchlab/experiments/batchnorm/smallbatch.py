"""Small batches in an MLP: BatchNorm, Batch Renormalization and
LayerNorm trained at B = 2 and at a larger B, each on a grid of learning
rates and judged at its own rate, all seeds, rates and normalizations of
one batch size stacked into one training loop."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ...batchnorm import renorm_limits
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...stacked import StackedNormMLP, stacked_metrics, train_stacked
from ...stats import paired

NORMS = StackedNormMLP.KINDS  # batchnorm, renorm, layernorm
#: The normalizations' names in figures.
LABELS = {
    "batchnorm": "BatchNorm",
    "renorm": "Batch Renorm",
    "layernorm": "LayerNorm",
}


@dataclass(frozen=True)
class Config:
    """The small-batch study: batch sizes, lengths, rates and Renorm's
    schedule."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    small: int = 2  # the small batch size
    big: int = 32  # the larger one
    small_steps: int = 2400  # SGD steps at the small batch
    big_steps: int = 1200  # and at the larger one
    small_lrs: tuple[float, ...] = (0.01, 0.03, 0.1)  # rates tried at B = 2
    big_lrs: tuple[float, ...] = (0.1, 0.3, 1.0)  # and at the larger B
    momentum: float = 0.1  # running-average momentum of BatchNorm, Renorm
    seeds: int = 4  # initializations and batch orders per arm and rate
    evaluations: int = 4  # per run, evenly spaced
    loss_examples: int = 1000  # training examples the loss is taken on
    # Renorm's schedule as fractions of the run, in Ioffe's proportions
    # (plain BatchNorm for 5k steps, d_max reached at 25k, r_max at 40k),
    # with r_max reached at half of the run:
    renorm_warmup: float = 1 / 16  # plain BatchNorm until here
    renorm_d_end: float = 5 / 16  # d_max reached here
    renorm_r_end: float = 1 / 2  # r_max reached here
    r_max: float = 3.0  # Renorm's final limit on r
    d_max: float = 5.0  # and on d
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("small_lrs", "big_lrs")
    VARIANTS: ClassVar = {
        "longer": Longer("small_steps", "big_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(small_lrs=(0.003, 0.01, 0.03), big_lrs=(0.03, 0.1, 0.3)),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            small_steps=200,
            big_steps=100,
            seeds=2,
            evaluations=2,
            small_lrs=(0.03,),
            big_lrs=(0.3,),
        )
        return pick(
            scale, quick=quick, book=book, full=more_of(book, seeds=12)
        )

    def limits(self, total: int):
        """Renorm's ``(r_max, d_max)`` at each step of a run of ``total``
        steps (:func:`batchlab.batchnorm.renorm_limits`)."""

        def at(step: int) -> tuple[float, float]:
            return renorm_limits(
                step,
                round(self.renorm_warmup * total),
                round(self.renorm_r_end * total),
                round(self.renorm_d_end * total),
                self.r_max,
                self.d_max,
            )

        return at


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train every normalization, rate and seed at each batch size, all
    of one batch size at once.

    Returns:
        Rows with ``B``, ``norm``, ``lr``, ``seed``, ``step``,
        ``test_acc`` (evaluation mode) and ``train_loss`` (evaluation
        mode, on the first ``loss_examples`` training examples), at
        ``evaluations`` evenly spaced steps; ``epochs`` seen by then.
    """
    x_loss = data.x_train[: cfg.loss_examples]
    y_loss = data.y_train[: cfg.loss_examples]
    rows = []
    for b, total, lrs in (
        (cfg.small, cfg.small_steps, cfg.small_lrs),
        (cfg.big, cfg.big_steps, cfg.big_lrs),
    ):
        members = [
            (norm, lr, seed)
            for norm in NORMS
            for lr in lrs
            for seed in range(cfg.seeds)
        ]
        norms, rates, seeds = (list(c) for c in zip(*members))
        model = StackedNormMLP(cfg.sizes, norms, seeds, cfg.momentum)

        def record(step: int, b=b, model=model, members=members) -> None:
            _, acc = stacked_metrics(model, data.x_test, data.y_test)
            loss, _ = stacked_metrics(model, x_loss, y_loss)
            for (norm, lr, seed), a, l_ in zip(
                members, acc.tolist(), loss.tolist()
            ):
                rows.append(
                    dict(
                        B=b,
                        norm=norm,
                        lr=lr,
                        seed=seed,
                        step=step,
                        test_acc=a,
                        train_loss=l_,
                    )
                )

        train_stacked(
            model,
            data.x_train,
            data.y_train,
            b,
            rates,
            total,
            seeds,
            limits=cfg.limits(total),
            on_step=record,
            every=max(total // cfg.evaluations, 1),
        )
    return pd.DataFrame(rows).assign(
        epochs=lambda f: f["B"] * f["step"] / data.n_train
    )


def at_own_rate(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each normalization, at each batch size, at its own
    rate: the one with the lowest mean final training loss."""
    end = frame[frame["step"] == frame.groupby("B")["step"].transform("max")]
    loss = end.groupby(["B", "norm", "lr"])["train_loss"].mean()
    best = loss.groupby(["B", "norm"]).idxmin().tolist()
    keys = frame.set_index(["B", "norm", "lr"]).index
    return frame[keys.isin(best)]


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """At each arm's own rate: end-of-run test accuracy and training loss
    per normalization at both B (means over seeds); LayerNorm's lead over
    BatchNorm at B = 2 with its paired interval, and Renorm's paired
    differences with BatchNorm (``small_brn_gain``) and LayerNorm
    (``small_brn_short``); how much each mean accuracy rose over the
    second half of its run (``gain``, a distance from convergence) and
    BatchNorm's range there; the chosen rates and the runs' epochs."""
    b2, big = cfg.small, cfg.big
    own = at_own_rate(frame)
    end = own[own["step"] == own.groupby("B")["step"].transform("max")]
    acc = end.groupby(["B", "norm"])["test_acc"].mean()
    loss = end.groupby(["B", "norm"])["train_loss"].mean()
    rate = end.groupby(["B", "norm"])["lr"].first()
    small = end[end["B"] == b2]
    lead = paired(small, "test_acc", "norm", "batchnorm", "layernorm")
    above_bn = paired(small, "test_acc", "norm", "batchnorm", "renorm")
    below_ln = paired(small, "test_acc", "norm", "renorm", "layernorm")
    out = dict(
        small_b=b2,
        big_b=big,
        small_momentum=cfg.momentum,
        small_seeds=cfg.seeds,
        **lead.facts("small_lead"),
        **above_bn.facts("small_brn_gain"),
        **below_ln.facts("small_brn_short"),
    )
    curves = own.groupby(["B", "norm", "step"])["test_acc"].mean()
    for b, tag, total in (
        (b2, "small", cfg.small_steps),
        (big, "big", cfg.big_steps),
    ):
        out[f"{tag}_steps"] = total
        out[f"{tag}_epochs"] = float(end[end["B"] == b]["epochs"].iloc[0])
        for norm in NORMS:
            out[f"{tag}_{norm}"] = acc.loc[(b, norm)]
            out[f"{tag}_loss_{norm}"] = loss.loc[(b, norm)]
            out[f"{tag}_lr_{norm}"] = float(rate.loc[(b, norm)])
            curve = curves.loc[(b, norm)]
            half = curve[curve.index >= total / 2]
            out[f"{tag}_gain_{norm}"] = half.iloc[-1] - half.iloc[0]
            if norm == "batchnorm":
                out[f"{tag}_range_{norm}"] = half.max() - half.min()
    out["big_lead"] = acc.loc[(big, "layernorm")] - acc.loc[(big, "batchnorm")]
    out["big_spread"] = acc.loc[big].max() - acc.loc[big].min()
    return out


CLAIMS = [
    Claim(
        "bn-small-ln-beats-bn",
        "finding",
        "at B = 2, each at its own rate, LayerNorm beats BatchNorm by more "
        "than 5 points of test accuracy (the lower end of the paired 95% "
        "interval)",
        lambda f: f["small_lead_lo"] > 0.05,
        where=("longer", "wider", "rate", "digits"),
        measure=("small_lead", "small_lead_lo"),
    ),
    Claim(
        "bn-small-renorm-between",
        "finding",
        "at B = 2, each at its own rate, Batch Renormalization's mean test "
        "accuracy ends between BatchNorm's and LayerNorm's, and the paired "
        "95% interval of LayerNorm's lead over it lies above zero",
        lambda f: (
            f["small_batchnorm"] < f["small_renorm"] < f["small_layernorm"]
            and f["small_brn_short_lo"] > 0
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=(
            "small_batchnorm",
            "small_renorm",
            "small_layernorm",
            "small_brn_gain_lo",
            "small_brn_short_lo",
        ),
    ),
    Claim(
        "bn-small-bn-stalls",
        "finding",
        "at B = 2, BatchNorm's mean test accuracy moves by less than 5 "
        "points over the second half of training",
        lambda f: f["small_range_batchnorm"] < 0.05,
        where=("longer", "wider", "rate", "digits"),
        measure=("small_range_batchnorm", "small_gain_layernorm"),
    ),
    Claim(
        "bn-small-large-close",
        "finding",
        "at the larger batch, each at its own rate, the three "
        "normalizations end within 6 points of each other, and "
        "LayerNorm's lead over BatchNorm is less than half of what it is "
        "at B = 2",
        lambda f: (
            f["big_spread"] < 0.06 and f["big_lead"] < f["small_lead"] / 2
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("big_spread", "big_lead"),
    ),
]
