"""Linear regression: the Hessian is the inputs' second moment. Its
condition number after each input normalization, on MNIST-1D, on the
handwritten digits (whose pixels are far from standardized) and on a
synthetic set of strongly correlated features, and what a shifted mean
does to its largest eigenvalue."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch

from ... import data as datasets
from ...claims import Claim
from ...normalize import KINDS, fit_transform, linear_conditioning, varying
from ...runtime import pick

#: How the data sets are named in the frame and the facts' prefixes.
NAMES = {"mnist1d": "mn", "digits": "dg", "synthetic": "syn"}


@dataclass(frozen=True)
class Config:
    """The data sets and the synthetic set's shape."""

    datasets: tuple[str, ...] = ("mnist1d", "digits")  # real data sets
    dim: int = 20  # features of the synthetic set
    n_synthetic: int = 10000  # its examples
    rho: float = 0.9  # correlation between any two synthetic features
    scale_lo: float = 0.5  # smallest synthetic standard deviation
    scale_hi: float = 3.0  # largest (spaced linearly in between)
    mean_shift: float = 3.0  # added to every input to show a mean's effect
    near: float = 0.03  # "within 3 %" of the bound 1 + |m|^2

    # No training, no hidden width and no rate; both real data sets are
    # in the book's run already, so the ledger has only seed sets here.
    VARIANTS: ClassVar = {}

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full`` (the
        computations are closed-form: every scale is the book's, the
        quick one with a smaller synthetic set)."""
        book = cls()
        quick = replace(book, n_synthetic=2000)
        return pick(scale, quick=quick, book=book, full=book)


def synthetic_inputs(cfg) -> torch.Tensor:
    """Training inputs ``(cfg.n_synthetic, cfg.dim)`` with pairwise
    correlation ``cfg.rho`` and standard deviations from ``cfg.scale_lo``
    to ``cfg.scale_hi``, float64 (``cfg``: any config with those
    fields)."""
    scales = torch.linspace(cfg.scale_lo, cfg.scale_hi, cfg.dim)
    cov = datasets.correlated_covariance(cfg.dim, cfg.rho, scales)
    x = datasets.synthetic_regression(cfg.n_synthetic, cov, seed=0).x_train
    return x.double()


def _rows(name: str, x: torch.Tensor, shift: float) -> pd.DataFrame:
    x = x[:, varying(x)].double()  # constant features dropped, stated
    spectra, rows = linear_conditioning(x, KINDS)
    shifted = x + shift
    more, (row,) = linear_conditioning(shifted, ["raw"])
    spectra["shifted mean"] = more["raw"]
    m = shifted.mean(0)
    rows.append(dict(row, inputs="shifted mean", bound=1 + float(m @ m)))
    values = pd.concat(
        [
            pd.DataFrame(
                dict(
                    kind="eigenvalue",
                    data=name,
                    inputs=k,
                    index=range(1, len(ev) + 1),
                    value=ev.numpy(),
                )
            )
            for k, ev in spectra.items()
        ]
    )
    frame = pd.DataFrame(rows).assign(kind="summary")
    moved = {
        k: float(((fit_transform(x, k)(x) - x) ** 2).mean())
        for k in ("pca", "zca")
    }
    frame = frame.assign(
        data=name,
        moved=frame["inputs"].map(moved),
        features=x.shape[1],
        mean_max=float(x.mean(0).abs().max()),
        sd_lo=float(x.std(0).min()),
        sd_hi=float(x.std(0).max()),
    )
    return pd.concat([frame, values], ignore_index=True)


def run(cfg: Config, data=None) -> pd.DataFrame:
    """The linear-regression Hessian (bias included) after each
    normalization of :data:`batchlab.normalize.KINDS`, and of the inputs
    shifted by ``cfg.mean_shift`` left raw, on each data set.

    Features that are constant on the training set (three pixels of the
    digits) are dropped first: they add a zero row and column to the
    Hessian whatever is done to them, and cannot be rescaled.

    Returns:
        Rows of ``kind == "eigenvalue"`` (``data``, ``inputs``, ``index``
        from 1 for the largest, ``value``) and of ``kind == "summary"``,
        one per ``data`` and ``inputs``: ``lambda_max``,
        ``lambda_min``, ``condition``, ``bound`` (``1 + |m|^2`` for the
        shifted inputs), ``moved`` (mean squared distance of whitened
        inputs from the inputs, PCA and ZCA) and per data set the
        ``features`` kept, the largest ``|mean|`` and the range of the
        standard deviations (``sd_lo``, ``sd_hi``).
    """
    parts = [
        _rows(name, datasets.load(name).x_train, cfg.mean_shift)
        for name in cfg.datasets
    ]
    parts.append(_rows("synthetic", synthetic_inputs(cfg), cfg.mean_shift))
    return pd.concat(parts, ignore_index=True)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Per data set (prefixes :data:`NAMES`): ``<p>_<kind>_cond`` for
    raw, centred and standardized inputs, ``<p>_shift_lmax`` and its
    bound, ``<p>_std_gain`` (raw over standardized condition number)
    and ``<p>_zca_share`` (ZCA's distance over PCA's); the features'
    summaries; ``white_dev``, the largest distance of a whitened
    condition number from one, and ``shift_excess``, the smallest
    shifted largest eigenvalue over its bound, minus one."""
    frame = frame[frame["kind"] == "summary"]
    out: dict = dict(
        mean_shift=cfg.mean_shift,
        near=cfg.near,
        syn_dim=cfg.dim,
        syn_rho=cfg.rho,
        syn_scale_lo=cfg.scale_lo,
        syn_scale_hi=cfg.scale_hi,
    )
    white = frame[frame["inputs"].isin(["pca", "zca"])]
    out["white_dev"] = float((white["condition"] - 1).abs().max())
    shifted = frame[frame["inputs"] == "shifted mean"]
    ratio = shifted["lambda_max"] / shifted["bound"] - 1
    out["shift_excess"] = float(ratio.min())
    for name, part in frame.groupby("data"):
        p = NAMES[name]
        by = part.set_index("inputs")
        for kind in ("raw", "center", "standardize"):
            out[f"{p}_{kind}_cond"] = by.loc[kind, "condition"]
        out[f"{p}_std_gain"] = (
            by.loc["raw", "condition"] / by.loc["standardize", "condition"]
        )
        out[f"{p}_shift_lmax"] = by.loc["shifted mean", "lambda_max"]
        out[f"{p}_center_lmax"] = by.loc["center", "lambda_max"]
        out[f"{p}_shift_bound"] = by.loc["shifted mean", "bound"]
        out[f"{p}_shift_near"] = (
            by.loc["shifted mean", "lambda_max"]
            / (by.loc["shifted mean", "bound"])
            - 1
        )
        out[f"{p}_zca_share"] = by.loc["zca", "moved"] / by.loc["pca", "moved"]
        for col in ("features", "mean_max", "sd_lo", "sd_hi"):
            out[f"{p}_{col}"] = part[col].iloc[0]
    return out


def _real(f, key: str) -> list:
    return [f[f"{p}_{key}"] for p in ("mn", "dg")]


CLAIMS = [
    Claim(
        "nz-whiten-one",
        "identity",
        "after PCA or ZCA whitening every eigenvalue of the "
        "linear-regression Hessian is one (to 1e-6), on all three data sets",
        lambda f: f["white_dev"] < 1e-6,
        measure=("white_dev",),
        quick=True,
    ),
    Claim(
        "nz-shift-bound",
        "identity",
        "with the inputs' mean m, the largest eigenvalue is at least "
        "1 + |m|^2, on all three data sets",
        lambda f: f["shift_excess"] > -1e-9,
        measure=("shift_excess",),
        quick=True,
    ),
    Claim(
        "nz-shift-near",
        "finding",
        "on MNIST-1D and the digits shifted by 3, the largest eigenvalue "
        "is within 3 % of 1 + |m|^2",
        lambda f: max(_real(f, "shift_near")) < f["near"],
        measure=("mn_shift_near", "dg_shift_near"),
    ),
    Claim(
        "nz-std-not-enough",
        "finding",
        "standardizing leaves a condition number above 50 on all three "
        "data sets, whose features are correlated",
        lambda f: min(f[f"{p}_standardize_cond"] for p in NAMES.values()) > 50,
        measure=("mn_standardize_cond", "dg_standardize_cond"),
    ),
    Claim(
        "nz-mnist-standardized",
        "finding",
        "MNIST-1D's features have means within 0.1 of zero and standard "
        "deviations between 0.6 and 1.5, and standardizing them changes "
        "the condition number by less than a third",
        lambda f: (
            f["mn_mean_max"] < 0.1
            and 0.6 < f["mn_sd_lo"]
            and f["mn_sd_hi"] < 1.5
            and abs(f["mn_std_gain"] - 1) < 1 / 3
        ),
        measure=("mn_mean_max", "mn_std_gain"),
    ),
    Claim(
        "nz-digits-standardize",
        "finding",
        "on the digits, standardizing divides the condition number by "
        "more than 1000",
        lambda f: f["dg_std_gain"] > 1000,
        measure=("dg_std_gain",),
    ),
    Claim(
        "nz-zca-closer",
        "finding",
        "ZCA whitening moves MNIST-1D's inputs less than half as far as "
        "PCA whitening, and the digits' less far",
        lambda f: f["mn_zca_share"] < 0.5 and f["dg_zca_share"] < 1,
        measure=("mn_zca_share", "dg_zca_share"),
    ),
]
