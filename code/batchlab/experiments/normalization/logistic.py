"""Cross-entropy: binary logistic regression (digits 0-4 against 5-9)
trained by gradient descent from zero weights on raw, standardized and
whitened inputs, its Hessian's condition number and the step against its
largest eigenvalue along the run, on MNIST-1D and the handwritten
digits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ... import data as datasets
from ...claims import Claim
from ...normalize import fit_transform, train_logistic
from ...runtime import Longer, Rate, pick

KINDS = ("raw", "standardize", "zca")
PREFIX = {"mnist1d": "mn", "digits": "dg"}


@dataclass(frozen=True)
class Config:
    """The data sets and the descent."""

    datasets: tuple[str, ...] = ("mnist1d", "digits")  # both in the book
    split: int = 5  # class 1 is the digits >= split
    lr: float = 1.0  # the learning rate, the same for every input
    steps: int = 300  # gradient-descent steps from w = 0
    settle: int = 10  # steps after which the run counts as settled
    rise: float = 1e-9  # a loss rise smaller than this (relative) is rounding

    RATE_FIELDS: ClassVar = ("lr",)
    # Both data sets are in the book's run; no hidden layer to widen.
    VARIANTS: ClassVar = {"longer": Longer("steps"), "rate": Rate(lr=0.5)}

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        return pick(scale, quick=replace(book, steps=60), book=book, full=book)


def run(cfg: Config, data=None) -> pd.DataFrame:
    """Gradient descent on the mean binary logistic loss from ``w = 0``
    (bias included) on each data set's training inputs, raw,
    standardized and ZCA-whitened (constant features dropped).

    Returns:
        One row per ``data``, ``inputs`` and ``step`` with ``loss``,
        ``lambda_max``, ``lambda_min``, ``condition`` and ``eta_lambda``
        (the learning rate times the largest eigenvalue).
    """
    parts = []
    for name in cfg.datasets:
        d = datasets.load(name)
        x, y = d.x_train.double(), (d.y_train >= cfg.split).long()
        for kind in KINDS:
            z = fit_transform(x, kind, drop_constant=True)(x)
            rows = train_logistic(z, y, cfg.lr, cfg.steps, eval_every=1)
            parts.append(pd.DataFrame(rows).assign(data=name, inputs=kind))
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(eta_lambda=cfg.lr * frame["lambda_max"])


def _summary(part: pd.DataFrame, cfg: Config) -> dict:
    part = part.sort_values("step")
    late = part[part["step"] >= cfg.settle]
    change = part["loss"].diff() / part["loss"].shift()
    return dict(
        start=part["condition"].iloc[0],
        end=part["condition"].iloc[-1],
        eta0=part["eta_lambda"].iloc[0],
        eta_lo=late["eta_lambda"].min(),
        eta_hi=late["eta_lambda"].max(),
        rises=int((change > cfg.rise).sum()),
        loss=part["loss"].iloc[-1],
        lmax0=part["lambda_max"].iloc[0],
        lmin0=part["lambda_min"].iloc[0],
    )


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Per data set (prefix ``mn_`` or ``dg_``) and input: the condition
    number at the start and the end, the step against the largest
    eigenvalue at the start (``eta0``) and its range once settled, the
    number of steps at which the loss rose, and the final loss; and
    ``quarter_dev``, how far the whitened Hessian at ``w = 0`` is from
    ``I / 4``, and ``white_gain``, the smallest ratio of the raw to the
    whitened condition number over every step."""
    out: dict = dict(logit_lr=cfg.lr, logit_steps=cfg.steps)
    quarter, gain = 0.0, float("inf")
    for name, part in frame.groupby("data"):
        p = PREFIX[name]
        by = {k: _summary(g, cfg) for k, g in part.groupby("inputs")}
        for kind, s in by.items():
            for key, value in s.items():
                out[f"{p}_logit_{kind}_{key}"] = value
        zca = by["zca"]
        quarter = max(
            quarter, abs(zca["lmax0"] - 0.25), abs(zca["lmin0"] - 0.25)
        )
        cond = part.pivot(index="step", columns="inputs", values="condition")
        gain = min(gain, float((cond["raw"] / cond["zca"]).min()))
        out[f"{p}_logit_end_gap"] = abs(
            by["zca"]["loss"] / by["standardize"]["loss"] - 1
        )
    out["quarter_dev"] = quarter
    out["white_gain"] = gain
    return out


CLAIMS = [
    Claim(
        "nz-logit-quarter",
        "identity",
        "with whitened inputs the logistic Hessian at zero weights and "
        "bias is I/4 (to 1e-9), on both data sets",
        lambda f: f["quarter_dev"] < 1e-9,
        measure=("quarter_dev",),
        quick=True,
    ),
    Claim(
        "nz-logit-drift",
        "finding",
        "after training, the whitened logistic Hessian's condition number "
        "is above 1.05 on both data sets",
        lambda f: min(f["mn_logit_zca_end"], f["dg_logit_zca_end"]) > 1.05,
        where=("longer", "rate"),
        measure=("mn_logit_zca_end", "dg_logit_zca_end"),
    ),
    Claim(
        "nz-logit-white-better",
        "finding",
        "at every step, whitening keeps the logistic Hessian at least ten "
        "times better conditioned than raw inputs, on both data sets",
        lambda f: f["white_gain"] > 10,
        where=("longer", "rate"),
        measure=("white_gain",),
    ),
    Claim(
        "nz-logit-edge-start",
        "finding",
        "on MNIST-1D at w = 0, the shared rate times the largest "
        "eigenvalue is above 2 for raw and standardized inputs and below "
        "0.5 for whitened ones",
        lambda f: (
            min(f["mn_logit_raw_eta0"], f["mn_logit_standardize_eta0"]) > 2
            and f["mn_logit_zca_eta0"] < 0.5
        ),
        where=("longer",),
        measure=("mn_logit_raw_eta0", "mn_logit_standardize_eta0"),
    ),
    Claim(
        "nz-logit-hover",
        "finding",
        "on MNIST-1D with standardized inputs, once settled the rate times "
        "the largest eigenvalue stays between 1.9 and 2.1",
        lambda f: (
            1.9 < f["mn_logit_standardize_eta_lo"]
            and f["mn_logit_standardize_eta_hi"] < 2.1
        ),
        where=("longer",),
        measure=(
            "mn_logit_standardize_eta_lo",
            "mn_logit_standardize_eta_hi",
            "mn_logit_standardize_rises",
        ),
    ),
    Claim(
        "nz-logit-same-end",
        "finding",
        "the whitened run, whose steps are far below the stability limit, "
        "ends within 5 % of the standardized run's loss on both data sets",
        lambda f: max(f["mn_logit_end_gap"], f["dg_logit_end_gap"]) < 0.05,
        where=("longer", "rate"),
        measure=("mn_logit_end_gap", "dg_logit_end_gap"),
    ),
]
