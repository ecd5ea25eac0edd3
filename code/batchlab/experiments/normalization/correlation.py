"""Where zero mean and unit variance are enough: badly scaled, shifted
synthetic features with pairwise correlation rho, raw, standardized and
whitened, against the population condition number after standardizing,
(1 + (d - 1) rho) / (1 - rho)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ... import data as datasets
from ... import runtime
from ...claims import Claim
from ...normalize import InputTransform, linear_conditioning
from ...runtime import Wider, pick


@dataclass(frozen=True)
class Config:
    """The synthetic sets of the sweep."""

    dim: int = 20  # features
    n_synthetic: int = 10000  # examples of each set
    rhos: tuple[float, ...] = (0.0, 0.02, 0.1, 0.3, 0.6, 0.9)  # the sweep
    weak_rho: float = 0.02  # a weak correlation (in rhos)
    strong_rho: float = 0.9  # a strong one (in rhos)
    scale_spread: float = 10.0  # standard deviations from 1/spread to spread
    mean_shift: float = 3.0  # added to every feature
    pixels: int = 784  # an MNIST image's features, for the text's example

    # "wider": twice the features (the only width a linear model has); no
    # training, no rate, no real data set.
    VARIANTS: ClassVar = {"wider": Wider("dim", factor=2)}

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, dim=10, n_synthetic=3000, rhos=(0.02, 0.3, 0.9))
        return pick(scale, quick=quick, book=book, full=book)


def badly_scaled(d: int, spread: float, shift: float, seed: int = 0):
    """A transform that gives ``d`` features standard deviations from
    ``1 / spread`` to ``spread`` (log-spaced, in a seeded random order)
    times their own, and adds ``shift`` to every one: ``x -> x * s +
    shift``, as an :class:`InputTransform` (its ``mean`` is ``-shift /
    s``)."""
    if spread < 1:
        raise ValueError(f"spread must be at least 1, got {spread}")
    order = torch.randperm(d, generator=runtime.generator(seed))
    s = torch.logspace(-1, 1, d, base=spread, dtype=torch.float64)[order]
    return InputTransform("badly scaled", -shift / s, torch.diag(s))


def standardized_condition(dim: int, rho: float) -> float:
    """Condition number of the linear-regression Hessian (bias included)
    for standardized equicorrelated features, in the population: the
    correlation matrix has eigenvalues ``1 + (d - 1) rho`` and ``1 - rho``
    and the bias adds an eigenvalue 1."""
    ev = np.array([1 + (dim - 1) * rho, 1 - rho, 1.0])
    return float(ev.max() / ev.min())


def sampling_band(dim: int, n: int) -> float:
    """Factor by which sampling can move a condition number computed from
    ``n`` examples in ``dim`` dimensions: each extreme eigenvalue of a
    sample covariance moves by up to ``(1 +- sqrt(d / n))^2`` (the
    Marchenko-Pastur edges), so their ratio by the quotient of the two."""
    g = (dim / n) ** 0.5
    return ((1 + g) / (1 - g)) ** 2


def run(cfg: Config, data=None) -> pd.DataFrame:
    """For each ``rho``, badly scaled and shifted Gaussian features with
    that pairwise correlation: the linear-regression Hessian's condition
    number raw, standardized and ZCA-whitened.

    Returns:
        One row per ``rho`` and ``inputs`` with ``condition`` and
        ``theory`` (:func:`standardized_condition`).
    """
    scales = badly_scaled(cfg.dim, cfg.scale_spread, 0.0).matrix.diagonal()
    rows = []
    for rho in cfg.rhos:
        cov = datasets.correlated_covariance(cfg.dim, rho, scales)
        x = datasets.synthetic_regression(
            cfg.n_synthetic, cov, mean=cfg.mean_shift, seed=1
        ).x_train.double()
        _, conds = linear_conditioning(x, ["raw", "standardize", "zca"])
        theory = standardized_condition(cfg.dim, rho)
        rows += [dict(r, rho=rho, theory=theory) for r in conds]
    return pd.DataFrame(rows)[["rho", "inputs", "condition", "theory"]]


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The standardized condition number over the theory (``ratio_lo``,
    ``ratio_hi``, minus one) against the sampling ``band``; raw and
    standardized condition numbers at the weak and strong correlation;
    ``zca_dev``, the largest distance of a whitened one from one."""
    by = frame.pivot(index="rho", columns="inputs", values="condition")
    theory = frame.groupby("rho")["theory"].first()
    ratio = by["standardize"] / theory
    weak, strong = by.loc[cfg.weak_rho], by.loc[cfg.strong_rho]
    return dict(
        sweep_dim=cfg.dim,
        n_synthetic=cfg.n_synthetic,
        weak_rho=cfg.weak_rho,
        strong_rho=cfg.strong_rho,
        scale_lo=1 / cfg.scale_spread,
        scale_hi=cfg.scale_spread,
        band=sampling_band(cfg.dim, cfg.n_synthetic),
        ratio_lo=ratio.min() - 1,
        ratio_hi=ratio.max() - 1,
        weak_raw=weak["raw"],
        weak_std=weak["standardize"],
        strong_std=strong["standardize"],
        zca_dev=float((by["zca"] - 1).abs().max()),
        pixels=cfg.pixels,
        kappa_pixels=standardized_condition(cfg.pixels, cfg.weak_rho),
    )


CLAIMS = [
    Claim(
        "nz-whiten-every-rho",
        "identity",
        "whitening gives condition number one (to 1e-6) at every correlation",
        lambda f: f["zca_dev"] < 1e-6,
        measure=("zca_dev",),
        quick=True,
    ),
    Claim(
        "nz-kappa-band",
        "finding",
        "at every correlation the standardized condition number is at "
        "least (1 + (d-1) rho) / (1 - rho) and less than 25 % above it",
        lambda f: f["ratio_lo"] >= 0 and f["ratio_hi"] < 0.25,
        measure=("ratio_lo", "ratio_hi"),
    ),
    Claim(
        "nz-weak-rho",
        "finding",
        "with weakly correlated features, standardizing brings the "
        "condition number from above 2000 to below 2",
        lambda f: f["weak_raw"] > 2000 and f["weak_std"] < 2,
        measure=("weak_raw", "weak_std"),
    ),
    Claim(
        "nz-strong-rho",
        "finding",
        "with strongly correlated features, the standardized condition "
        "number stays above 50",
        lambda f: f["strong_std"] > 50,
        where=("wider",),
        measure=("strong_std",),
    ),
]
