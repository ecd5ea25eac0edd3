"""Cross-entropy: binary logistic regression (digits 0-4 against 5-9)
trained by gradient descent from zero weights on raw, standardized and
whitened inputs, its Hessian's condition number and the step against its
largest eigenvalue along the run, on MNIST-1D and the handwritten
digits; and a race in which each input runs at its own best rate from a
grid to within a tolerance of the lowest loss any run reached."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch

from ... import data as datasets
from ...claims import Claim
from ...normalize import fit_transform, train_logistic, with_bias
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
    # The race: each input's own rate is the grid's fastest to the floor.
    rates: tuple[float, ...] = (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
    tol: float = 1e-3  # reached: loss within this of the lowest loss seen

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
        (the learning rate times the largest eigenvalue), ``race`` false;
        and the race's rows (``race`` true): per ``data``, ``inputs``,
        ``lr`` of ``cfg.rates`` and ``step``, the ``loss`` only.
    """
    parts = []
    for name in cfg.datasets:
        d = datasets.load(name)
        x, y = d.x_train.double(), (d.y_train >= cfg.split).long()
        for kind in KINDS:
            z = fit_transform(x, kind, drop_constant=True)(x)
            rows = train_logistic(z, y, cfg.lr, cfg.steps, eval_every=1)
            parts.append(
                pd.DataFrame(rows).assign(
                    data=name, inputs=kind, race=False, lr=cfg.lr
                )
            )
            race = _race(z, y, cfg.rates, cfg.steps)
            parts.append(race.assign(data=name, inputs=kind, race=True))
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(eta_lambda=frame["lr"] * frame["lambda_max"])


def _race(z: torch.Tensor, y: torch.Tensor, rates, steps: int) -> pd.DataFrame:
    """The loss at every step of gradient descent from ``w = 0`` at each
    rate of ``rates`` at once (one weight column per rate); a diverged
    run's loss is infinite from the step its weights stop being finite."""
    X, t = with_bias(z), y.double()[:, None]
    w = torch.zeros(X.shape[1], len(rates), dtype=torch.float64)
    lr = torch.tensor(rates, dtype=torch.float64)
    rows = []
    for step in range(steps + 1):
        s = X @ w
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            s, t.expand_as(s), reduction="none"
        ).mean(0)
        loss[~torch.isfinite(w).all(0)] = float("inf")
        rows += [
            dict(step=step, lr=r, loss=float(v)) for r, v in zip(rates, loss)
        ]
        w = w - lr * (X.T @ (torch.sigmoid(s) - t)) / X.shape[0]
    return pd.DataFrame(rows)


def _tuned(race: pd.DataFrame, floor: float, cfg: Config) -> dict:
    """Each rate's first step within ``cfg.tol`` of ``floor``; the
    fastest rate (the smaller on a tie), its steps and its final loss."""
    at = race[race["loss"] <= floor + cfg.tol].groupby("lr")["step"].min()
    if at.empty:
        return dict(steps=float("nan"), lr=float("nan"), loss=float("nan"))
    lr = float(at[at == at.min()].index.min())
    last = race[(race["lr"] == lr) & (race["step"] == race["step"].max())]
    return dict(steps=float(at.min()), lr=lr, loss=float(last["loss"].iloc[0]))


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
    whitened condition number over every step. From the race, per data
    set and input at its own best rate: ``tuned_<input>_steps`` to within
    ``cfg.tol`` of the lowest loss any run reached, ``_lr`` and ``_loss``
    (final); and ``white_lmax``, the largest eigenvalue of the whitened
    Hessian over every step of both data sets."""
    out: dict = dict(logit_lr=cfg.lr, logit_steps=cfg.steps, logit_tol=cfg.tol)
    out.update(logit_rate_lo=min(cfg.rates), logit_rate_hi=max(cfg.rates))
    quarter, gain, white_lmax = 0.0, float("inf"), 0.0
    for name, both in frame.groupby("data"):
        p = PREFIX[name]
        part, race = both[~both["race"]], both[both["race"]]
        floor = float(both["loss"].min())
        for kind, g in race.groupby("inputs"):
            for key, value in _tuned(g, floor, cfg).items():
                out[f"{p}_tuned_{kind}_{key}"] = value
        out[f"{p}_tuned_floor"] = floor
        by = {k: _summary(g, cfg) for k, g in part.groupby("inputs")}
        for kind, s in by.items():
            for key, value in s.items():
                out[f"{p}_logit_{kind}_{key}"] = value
        zca = by["zca"]
        white_lmax = max(
            white_lmax,
            float(part[part["inputs"] == "zca"]["lambda_max"].max()),
        )
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
    out["white_lmax"] = white_lmax
    tuned = {k: v for k, v in out.items() if "_tuned_" in k}
    lrs = [v for k, v in tuned.items() if k.endswith("_lr") and v == v]
    out["tuned_edge"] = sum(v in (min(cfg.rates), max(cfg.rates)) for v in lrs)
    for p in PREFIX.values():
        others = [
            tuned[f"{p}_tuned_{k}_steps"] for k in ("raw", "standardize")
        ]
        fastest = min((v for v in others if v == v), default=float("inf"))
        out[f"{p}_tuned_ratio"] = tuned[f"{p}_tuned_zca_steps"] / fastest
    return out


CLAIMS = [
    Claim(
        "nz-logit-below-quarter",
        "identity",
        "with whitened inputs the logistic Hessian's largest eigenvalue is "
        "at most 1/4 (to 1e-9) at every step, on both data sets",
        lambda f: f["white_lmax"] <= 0.25 + 1e-9,
        measure=("white_lmax",),
        quick=True,
    ),
    Claim(
        "nz-logit-tuned",
        "finding",
        "each input at its own fastest rate of the grid, whitened inputs "
        "come within the tolerance of the lowest loss in less than a "
        "quarter of the steps of raw and standardized inputs, on both "
        "data sets",
        lambda f: max(f["mn_tuned_ratio"], f["dg_tuned_ratio"]) < 0.25,
        where=("longer", "rate"),
        measure=("mn_tuned_ratio", "dg_tuned_ratio", "dg_tuned_raw_steps"),
    ),
    Claim(
        "nz-logit-raw-never",
        "finding",
        "on the digits, raw inputs come within the tolerance of the lowest "
        "loss at no rate of the grid",
        lambda f: f["dg_tuned_raw_steps"] != f["dg_tuned_raw_steps"],
        where=("longer", "rate"),
        measure=("dg_tuned_raw_steps",),
    ),
    Claim(
        "nz-logit-tuned-grid",
        "finding",
        "every input's fastest rate that reaches the tolerance lies "
        "strictly inside the grid",
        lambda f: f["tuned_edge"] == 0,
        where=("longer", "rate"),
        measure=("tuned_edge",),
    ),
    Claim(
        "nz-logit-digits-raw",
        "finding",
        "on the digits at the shared rate, the raw run ends at a higher "
        "loss than the standardized run",
        lambda f: f["dg_logit_raw_loss"] > f["dg_logit_standardize_loss"],
        where=("longer", "rate"),
        measure=("dg_logit_raw_loss", "dg_logit_standardize_loss"),
    ),
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
