"""The role of the gap alone: the race of :mod:`.race` on diagonal
matrices whose two largest eigenvalues are 1 and a chosen ratio, above a
bulk with a few negative eigenvalues like a network's."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...claims import Claim
from ...lanczos import Eigen, MatrixOperator
from ...runtime import Wider, more_of, pick
from ._race import Budget, race_starts

#: The methods, by their name in the frame, with the race's columns.
METHODS = {
    "power iteration": "power_to_target",
    "Lanczos": "lanczos_to_target",
}
NAMES = {"power": "power iteration", "lanczos": "Lanczos"}


@dataclass(frozen=True)
class Config:
    """The test matrices and the budgets."""

    dim: int = 2000  # size of the (diagonal) test matrices
    gaps: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)  # l2 / l1
    starts: int = 5  # random starts shared by both methods
    power_steps: int = 2000  # products of power iteration per start
    lanczos_steps: int = 100  # products of Lanczos per start
    target: float = 1e-4  # relative error at which a method has converged

    # No training, data set or rate: "wider" doubles the matrices' size.
    VARIANTS: ClassVar = {"wider": Wider("dim", factor=2)}

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, dim=500, gaps=(0.5, 0.9, 0.99), starts=2)
        return pick(
            scale, quick=quick, book=book, full=more_of(book, starts=10)
        )


def gapped_spectrum(dim: int, gap: float) -> torch.Tensor:
    """Eigenvalues ``(dim,)`` of a test matrix: ``1``, then ``gap`` (the
    ratio ``lambda_2 / lambda_1``), then ``dim - 2`` values spread evenly
    over ``gap * [-0.1, 0.9]``, a bulk with a few negative eigenvalues like
    a network's."""
    if dim < 3:
        raise ValueError(f"dim must be at least 3, got {dim}")
    if not 0 < gap < 1:
        raise ValueError(f"gap (lambda_2 / lambda_1) must be in (0, 1): {gap}")
    bulk = gap * torch.linspace(-0.1, 0.9, dim - 2, dtype=torch.float64)
    return torch.cat([torch.tensor([1.0, gap], dtype=torch.float64), bulk])


def run(cfg: Config, data=None) -> pd.DataFrame:
    """Both methods from ``cfg.starts`` starts on the diagonal matrix of
    each gap (power iteration ends once within ``cfg.target``).

    Returns:
        One row per ``gap``, ``start`` and ``method`` (of
        :data:`METHODS`): ``products`` to ``cfg.target`` (NaN if not
        within the budget), ``closeness`` (``1 - gap``) and
        ``never_worse``, whether Lanczos's error was at most power
        iteration's after every product from that start.
    """
    race = Budget(
        cfg.starts,
        cfg.power_steps,
        cfg.lanczos_steps,
        cfg.lanczos_steps,
        cfg.target,
    )
    rows = []
    for gap in cfg.gaps:
        spectrum = gapped_spectrum(cfg.dim, gap)
        e1 = np.eye(cfg.dim, 2)  # the top two eigenvectors
        known = Eigen(spectrum[:2].numpy(), e1, 0)
        op = MatrixOperator(spectrum, diagonal=True)
        traces, stops = race_starts(op, known, race, floor=cfg.target)
        both = traces.dropna(subset=["power", "lanczos"])
        ok = (
            (both["lanczos"] <= both["power"] + 1e-12)
            .groupby(both["start"])
            .all()
        )
        for method, column in METHODS.items():
            rows.append(
                pd.DataFrame(
                    dict(
                        gap=gap,
                        closeness=1 - gap,
                        start=stops["start"],
                        method=method,
                        products=stops[column],
                        never_worse=ok.to_numpy(),
                    )
                )
            )
    return pd.concat(rows, ignore_index=True)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Mean products to the target per gap and method, their ratio at
    the smallest and the largest gap, whether it grows at every gap, and
    the slopes of log products against log(1 - gap) (theory: -1 for
    power iteration, -1/2 for Lanczos)."""
    mean = frame.pivot_table(
        index="gap", columns="method", values="products", aggfunc="mean"
    ).rename(columns={v: k for k, v in NAMES.items()})
    ratio = mean["power"] / mean["lanczos"]
    x = np.log(1 - mean.index.to_numpy())
    return dict(
        gap_dim=cfg.dim,
        gap_lo=float(mean.index[0]),
        gap_hi=float(mean.index[-1]),
        gap_ratio_lo=float(ratio.iloc[0]),
        gap_ratio_hi=float(ratio.iloc[-1]),
        gap_rising=bool((ratio.diff().dropna() > 0).all()),
        gap_reached=bool(frame["products"].notna().all()),
        slope_power=float(np.polyfit(x, np.log(mean["power"]), 1)[0]),
        slope_lanczos=float(np.polyfit(x, np.log(mean["lanczos"]), 1)[0]),
        gap_never_worse=bool(frame["never_worse"].all()),
    )


CLAIMS = [
    Claim(
        "ev-diagonal-never-worse",
        "identity",
        "on the diagonal matrices too, Lanczos's estimate is never behind "
        "power iteration's after the same products",
        lambda f: f["gap_never_worse"],
        quick=True,
    ),
    Claim(
        "ev-gap-grows",
        "finding",
        "on the diagonal matrices Lanczos's advantage grows at every step "
        "as lambda_2 / lambda_1 approaches one, more than twofold",
        lambda f: (
            f["gap_reached"]
            and f["gap_rising"]
            and f["gap_ratio_hi"] > 2 * f["gap_ratio_lo"]
        ),
        where=("wider",),
        measure=("gap_ratio_lo", "gap_ratio_hi"),
    ),
    Claim(
        "ev-gap-slopes",
        "finding",
        "on log-log axes, power iteration's products climb at least twice "
        "as steeply as Lanczos's as the gap closes",
        lambda f: f["slope_power"] / f["slope_lanczos"] >= 2,
        where=("wider",),
        measure=("slope_power", "slope_lanczos"),
    ),
]
