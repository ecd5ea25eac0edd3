"""Every batch size on a grid of rates, trained to one training loss with
one budget for every rate. The same runs answer four questions: each
batch size at its best rate (chosen on held-out data), one fixed rate at
which every batch size from 16 to the full batch reaches the target,
the noise scale eta/B held fixed, and full-batch descent's edge of
stability."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from . import _chain, _fair
from ._gridfacts import (  # at_ratios: the page plots those runs
    at_ratios,  # noqa: F401
    edge_facts,
    ratio_facts,
    shared,
    shared_facts,
    tuned,
    tuned_facts,
)

GRID = (
    (1, (0.0075, 0.015, 0.03)),
    (4, (0.03, 0.06, 0.12)),
    (16, (0.12, 0.24, 0.48)),
    (64, (0.24, 0.48, 0.96)),
    (1000, (0.48, 0.96, 1.92, 3.84)),
)


#: Column names of the page's tables.
NAMES = {**_fair.NAMES, "lr": "rate"}
CHAIN_NAMES = _chain.NAMES
EDGE_NAMES = {
    "lambda_max": "λmax",
    "edge": "λmax · rate / 2",
    "weight_noise": "weight-noise rise",
    "train_acc": "train acc",
    "test_acc": "test acc",
}


def _times(grid, factor: float) -> tuple:
    return tuple((b, tuple(lr * factor for lr in r)) for b, r in grid)


@dataclass(frozen=True)
class Config(_fair.Protocol):
    """The grid and the slices of it that each question reads."""

    grid: tuple = GRID  # (B, rates): each B at each of its rates
    seeds: int = 6  # fewer than 8: the full-batch runs are costly
    shared_lr: float = 0.48  # a rate of the grid of every B >= 16
    ratios: tuple[float, ...] = (0.0075, 0.015, 0.03)  # eta/B held fixed
    ratio_batches: tuple[int, ...] = (1, 4, 16)  # B at each of those
    budget_epochs: float = 80  # budget of every run in epochs ...
    budget_steps: int = 600  # ... or in steps, whichever is more

    RATE_FIELDS: ClassVar = ("grid", "shared_lr", "ratios")
    VARIANTS: ClassVar = {
        "longer": Longer("target_divisor", "budget_epochs", "budget_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(
            grid=_times(GRID, 1.4),
            shared_lr=0.48 * 1.4,
            ratios=(0.0105, 0.021, 0.042),
        ),
        "digits": Digits(sizes=(64, 100, 100, 10), n_val=438),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            n_train=200,
            n_val=200,
            seeds=3,
            target_loss=0.5,
            grid=(
                (1, (0.015, 0.03)),
                (4, (0.06, 0.12)),
                (200, (0.12, 0.48, 0.96)),
            ),
            shared_lr=0.12,
            ratios=(0.015, 0.03),
            ratio_batches=(1, 4),
            budget_epochs=60,
            budget_steps=600,
        )
        full = more_of(book, seeds=16)
        return pick(scale, quick=quick, book=book, full=full)

    def __post_init__(self) -> None:
        if not any(b == self.n_train for b, _ in self.grid):
            raise ValueError(
                f"the grid needs the full batch, B = n_train = {self.n_train}"
            )


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train and measure every (B, rate, seed) of the grid.

    Returns:
        One row per run (:func:`_fair.train` and :func:`_fair.measure`).
    """
    return _fair.run_cells(cfg, data, cfg.grid)


def rates(cfg: Config) -> pd.DataFrame:
    """The grid as a table: each B with its rates and their eta/B."""
    return pd.DataFrame(
        [
            dict(
                B=b,
                rates=", ".join(f"{lr:g}" for lr in r),
                eta_over_B=", ".join(f"{lr / b:.3g}" for lr in r),
            )
            for b, r in cfg.grid
        ]
    )


def arms(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The tuned runs and those at the shared rate, with an ``arm``
    column (``tuned`` or ``fixed <rate>``)."""
    return pd.concat(
        [
            tuned(frame).assign(arm="tuned"),
            shared(frame, cfg).assign(arm=f"fixed {cfg.shared_lr:g}"),
        ],
        ignore_index=True,
    )


def summary(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Means over seeds per arm and B (:func:`_fair.summary`) with the
    rate of each tuned cell."""
    return _fair.summary(arms(frame, cfg), ["arm", "B", "lr"])


def chain(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The chain's table (:func:`_chain.table`) in each arm."""
    parts = [
        _chain.table(part).assign(arm=arm)
        for arm, part in arms(frame, cfg).groupby("arm", sort=False)
    ]
    table = pd.concat(parts, ignore_index=True)
    return table[["arm", *table.columns[:-1]]]


def edge(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Full-batch runs per rate: means of the top eigenvalue, of its
    ratio to the stability limit 2/eta, and of the other measures."""
    full = frame[frame["B"] == cfg.n_train]
    full = full.assign(edge=full["lambda_max"] * full["lr"] / 2)
    cols = ["lambda_max", "edge", "weight_noise", "train_acc", "test_acc"]
    return full[full["reached"]].groupby("lr")[cols].mean()


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The tuned arm (``tu_``), the shared rate (``sh_``), eta/B held
    fixed (``sc_``) and the full batch's edge of stability (``eos_``)."""
    stop = frame[frame["reached"]].groupby(["B", "lr"])["train_loss"].mean()
    out = dict(
        g_n_train=cfg.n_train,
        g_seeds=cfg.seeds,
        g_reached=float(frame["reached"].mean()),
        g_short=float((1 - stop / cfg.target).max()),
        g_budget_epochs=cfg.budget_epochs,
        g_budget_steps=cfg.budget_steps,
    )
    for part in (tuned_facts, shared_facts, ratio_facts, edge_facts):
        out.update(part(frame, cfg))
    return out


WHERE = ("longer", "wider", "rate", "digits")

CLAIMS = [
    Claim(
        "mb-grid-reach",
        "finding",
        "every run of the grid reaches the target within the budget, and "
        "every cell's mean stopping loss is within 25% below it",
        lambda f: f["g_reached"] == 1 and f["g_short"] < 0.25,
        where=(),
        measure=("g_reached", "g_short"),
    ),
    Claim(
        "mb-tuned-close",
        "finding",
        "with the rate tuned per batch size, mean test accuracy differs by "
        "less than 4 points between batch sizes",
        lambda f: f["tu_hi"] - f["tu_lo"] < 0.04,
        where=WHERE,
        measure=("tu_gap_diff", "tu_lo", "tu_hi", "tu_gap_lo", "tu_gap_hi"),
    ),
    Claim(
        "mb-tuned-flatter-big",
        "finding",
        "with the rate tuned per batch size (so that the rate grows with "
        "B), Keskar sharpness falls as B grows on average (the mean "
        "within-seed rank correlation is below zero; its interval reaches "
        "zero in some seed sets: undecided there); for the top eigenvalue "
        "the sign differs between seed sets: undecided",
        lambda f: f["tu_b_kes_rho"] < 0,
        where=("wider", "rate", "digits"),
        measure=(
            "tu_b_kes_rho",
            "tu_b_kes_hi",
            "tu_b_lam_rho",
            "tu_b_lam_lo",
            "tu_b_lam_hi",
        ),
    ),
    Claim(
        "mb-shared-flatter",
        "finding",
        "at the shared rate every run from B = 16 to the full batch reaches "
        "the target, and the top eigenvalue of the full batch is larger "
        "than that of B = 16 (per-seed ratio, interval above 1)",
        lambda f: f["sh_reached"] == 1 and f["sh_lam_ratio_lo"] > 1,
        where=("longer", "wider", "digits"),
        measure=("sh_reached", "sh_lam_ratio_lo", "sh_lam_ratio"),
    ),
    Claim(
        "mb-shared-no-payoff",
        "finding",
        "at the shared rate the sharper full batch is not less accurate "
        "than B = 16 (the interval of the difference reaches above zero), "
        "and neither link from flatness or B to test accuracy supports "
        "the chain",
        lambda f: (
            f["sh_acc_hi"] > 0
            and f["sh_v_lam_acc"] != "supports"
            and f["sh_v_b_acc"] != "supports"
        ),
        where=WHERE,
        measure=("sh_acc_diff", "sh_acc_lo", "sh_acc_hi"),
    ),
    Claim(
        "mb-ratio-law",
        "finding",
        "for B up to 16, the top eigenvalue falls with eta/B about as "
        "(eta/B)^a, with a between -1.2 and -0.6 (mean over seeds) and its "
        "interval over seeds below -0.6, and at fixed eta/B the batch size "
        "changes it by a factor B^b whose interval lies within -0.15 and "
        "0.15",
        lambda f: (
            -1.2 < f["sc_a"]
            and f["sc_a_hi"] < -0.6
            and max(abs(f["sc_b_lo"]), abs(f["sc_b_hi"])) < 0.15
        ),
        where=("longer", "wider"),
        measure=("sc_a", "sc_a_lo", "sc_a_hi", "sc_b_lo", "sc_b_hi"),
    ),
    Claim(
        "mb-ratio-top-worse",
        "finding",
        "for B up to 16, the runs at the largest eta/B have lower mean test "
        "accuracy than those at the middle one (the mean of the per-seed "
        "differences of the means over B is below zero; its interval "
        "reaches zero in some seed sets: undecided there)",
        lambda f: f["sc_top_diff"] < 0,
        where=("longer", "wider", "rate"),
        measure=("sc_top_diff", "sc_top_hi"),
    ),
    Claim(
        "mb-ratio-flat-acc",
        "finding",
        "at fixed eta/B, the within-seed rank correlation between the top "
        "eigenvalue and test accuracy is weak: its mean lies between -0.5 "
        "and 0.5",
        lambda f: abs(f["sc_lam_acc_rho"]) < 0.5,
        where=WHERE,
        measure=("sc_lam_acc_rho", "sc_lam_acc_lo", "sc_lam_acc_hi"),
    ),
    Claim(
        "mb-ratio-within-weak",
        "finding",
        "within one setting of the grid (B up to 16), the rank correlation "
        "across seeds between the top eigenvalue and test accuracy is "
        "weak: its mean over the settings lies between -0.5 and 0.5",
        lambda f: abs(f["sc_cell_rho"]) < 0.5,
        where=WHERE,
        measure=("sc_cell_rho", "sc_cell_p"),
    ),
    Claim(
        "mb-edge-near",
        "finding",
        "below the largest full-batch rate, the full batch ends with its "
        "top eigenvalue between 0.75 and 1.05 times 2/eta (mean over seeds)",
        lambda f: f["eos_lo"] > 0.75 and f["eos_hi"] < 1.05,
        where=(),
        measure=("eos_lo", "eos_hi"),
    ),
    Claim(
        "mb-edge-past",
        "finding",
        "at the largest full-batch rate the runs end past the edge of "
        "stability: top eigenvalue above 2/eta (mean over seeds)",
        lambda f: f["eos_top_edge"] > 1,
        where=("wider", "rate"),
        measure=("eos_top_edge",),
    ),
    Claim(
        "mb-edge-top",
        "finding",
        "at the largest full-batch rate the top eigenvalue ends below that "
        "at the next rate, while the loss under weight noise is larger and "
        "test accuracy lower (per-seed intervals)",
        lambda f: (
            f["eos_lam_ratio_hi"] < 1
            and f["eos_noise_ratio_lo"] > 1
            and f["eos_acc_hi"] < 0
        ),
        where=("longer",),
        measure=("eos_lam_ratio", "eos_noise_ratio", "eos_acc_diff"),
    ),
]
