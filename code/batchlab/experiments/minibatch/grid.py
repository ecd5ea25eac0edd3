"""Every batch size on a grid of rates, trained to one training loss with
one budget for every rate. The same runs answer four questions: each
batch size at its best rate (chosen on held-out data), one fixed rate at
which every batch size from 16 to the full batch reaches the target,
the noise scale eta/B held fixed, and full-batch descent's edge of
stability."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from ... import stats
from ...claims import Claim
from ...data import Dataset
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from . import _chain, _fair

GRID = (
    (1, (0.0075, 0.015, 0.03)),
    (4, (0.03, 0.06, 0.12)),
    (16, (0.12, 0.24, 0.48)),
    (64, (0.24, 0.48, 0.96)),
    (1000, (0.48, 0.96, 1.92, 3.84)),
)


def _times(grid, factor: float) -> tuple:
    return tuple((b, tuple(lr * factor for lr in r)) for b, r in grid)


@dataclass(frozen=True)
class Config(_fair.Protocol):
    """The grid and the slices of it that each question reads."""

    grid: tuple = GRID  # (B, rates): each B at each of its rates
    shared_lr: float = 0.48  # a rate of the grid of every B >= 16
    ratios: tuple[float, ...] = (0.0075, 0.015, 0.03)  # eta/B held fixed
    ratio_batches: tuple[int, ...] = (1, 4, 16)  # B at each of those
    budget_epochs: float = 100  # budget of every run in epochs ...
    budget_steps: int = 1000  # ... or in steps, whichever is more

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


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train and measure every (B, rate, seed) of the grid.

    Returns:
        One row per run (:func:`_fair.train` and :func:`_fair.measure`).
    """
    return _fair.run_cells(cfg, data, cfg.grid)


def tuned(frame: pd.DataFrame) -> pd.DataFrame:
    """Per B, the runs at the rate whose runs all reached the target with
    the best mean held-out accuracy (B without such a rate are left
    out)."""
    ok = frame.groupby(["B", "lr"]).filter(lambda g: g["reached"].all())
    best = ok.groupby(["B", "lr"])["val_acc"].mean().groupby("B").idxmax()
    keys = set(best.tolist())
    return frame[[k in keys for k in zip(frame["B"], frame["lr"])]]


def shared(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The runs at ``cfg.shared_lr`` (every B whose grid holds it)."""
    return frame[np.isclose(frame["lr"], cfg.shared_lr)]


def at_ratios(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The runs of ``cfg.ratio_batches`` whose eta/B is one of
    ``cfg.ratios``, with a ``ratio`` column (the ratio as listed)."""
    part = frame[frame["B"].isin(cfg.ratio_batches)]
    ratio = pd.Series(np.nan, index=part.index)
    for r in cfg.ratios:
        ratio[np.isclose(part["lr_over_B"], r)] = r
    return part.assign(ratio=ratio).dropna(subset=["ratio"])


def _tuned_facts(frame: pd.DataFrame, cfg: Config) -> dict:
    tu = tuned(frame)
    means = tu.groupby("B")[["lr", "test_acc"]].mean()
    grid = dict(cfg.grid)
    edge = sum(
        means.loc[b, "lr"] in (min(grid[b]), max(grid[b])) for b in means.index
    )
    out = dict(
        tu_n_b=len(means),
        tu_rates=", ".join(f"{lr:g}" for lr in means["lr"]),
        tu_lo=means["test_acc"].min(),
        tu_hi=means["test_acc"].max(),
        tu_best_b=int(means["test_acc"].idxmax()),
        tu_worst_b=int(means["test_acc"].idxmin()),
        tu_n_edge=int(edge),
    )
    got = _chain.points(
        tu, "test_acc", "B", out["tu_worst_b"], out["tu_best_b"]
    )
    out.update({f"tu_gap_{k}": v for k, v in got.items()})
    for x, y, sign, short in (
        ("B", "test_acc", -1, "b_acc"),
        ("B", "lambda_max", 1, "b_lam"),
        ("B", "keskar", 1, "b_kes"),
    ):
        got = _chain.link_interval(tu, x, y, 1 - _chain.ALPHA / 3)
        out[f"tu_{short}_rho"] = got.estimate
        out[f"tu_{short}_lo"] = got.lo
        out[f"tu_{short}_hi"] = got.hi
        out[f"tu_{short}_v"] = stats.verdict(got, sign)
    return out


def _shared_facts(frame: pd.DataFrame, cfg: Config) -> dict:
    part = shared(frame, cfg)
    small, big = part["B"].min(), part["B"].max()
    lam = _chain.log_ratio(part, "lambda_max", "B", small, big)
    acc = _chain.points(part, "test_acc", "B", small, big)
    table = _chain.table(part).set_index("link")["verdict"]
    return dict(
        sh_lr=cfg.shared_lr,
        sh_b_lo=int(small),
        sh_reached=float(part["reached"].mean()),
        sh_lam_ratio=lam[0],
        sh_lam_ratio_lo=lam[1],
        sh_lam_ratio_hi=lam[2],
        **{f"sh_acc_{k}": v for k, v in acc.items()},
        sh_v_b_lam=table["B → λmax"],
        sh_v_lam_acc=table["λmax → test acc"],
        sh_v_b_acc=table["B → test acc"],
        sh_n_supports=int((table == "supports").sum()),
    )


def _ratio_facts(frame: pd.DataFrame, cfg: Config) -> dict:
    part = at_ratios(frame[frame["reached"]], cfg)
    blocks = part.assign(block=list(zip(part["ratio"], part["seed"])))
    out = dict(sc_n=len(part), sc_cells=part.groupby(["B", "lr"]).ngroups)
    level = 1 - _chain.ALPHA / 3
    for x, y, sign, short in (
        ("lambda_max", "test_acc", -1, "lam_acc"),
        ("B", "test_acc", -1, "b_acc"),
        ("B", "lambda_max", 1, "b_lam"),
    ):
        rho = _chain.within(blocks, x, y, "block")
        per_seed = rho.groupby([k[1] for k in rho.index]).mean()
        got = stats.interval(per_seed.to_numpy(), level=level)
        out[f"sc_{short}_rho"] = got.estimate
        out[f"sc_{short}_lo"] = got.lo
        out[f"sc_{short}_hi"] = got.hi
        out[f"sc_{short}_v"] = stats.verdict(got, sign)
    cells = part.assign(
        cell=part["B"].astype(str) + "@" + part["lr"].astype(str)
    )
    trend = stats.blocked_trend(cells, "lambda_max", "test_acc", "cell")
    out.update(sc_cell_rho=trend.rho, sc_cell_p=trend.p)
    acc = part.groupby(["ratio", "seed"])["test_acc"].mean().reset_index()
    hi, mid = cfg.ratios[-1], cfg.ratios[-2]
    got = _chain.points(acc, "test_acc", "ratio", mid, hi)
    out.update({f"sc_top_{k}": v for k, v in got.items()})
    fits = [_fit(g) for _, g in part.groupby("seed")]
    for i, name in enumerate(("sc_a", "sc_b")):
        got = stats.interval([f[i] for f in fits])
        out.update({name: got.estimate, f"{name}_lo": got.lo})
        out[f"{name}_hi"] = got.hi
    return out


def _fit(part: pd.DataFrame) -> tuple[float, float]:
    """``(a, b)`` of ``log lambda = c + a log(eta/B) + b log B``."""
    design = np.column_stack(
        [np.ones(len(part)), np.log(part["ratio"]), np.log(part["B"])]
    )
    coef = np.linalg.lstsq(design, np.log(part["lambda_max"]), rcond=None)
    return float(coef[0][1]), float(coef[0][2])


def _edge_facts(frame: pd.DataFrame, cfg: Config) -> dict:
    full = frame[(frame["B"] == cfg.n_train) & frame["reached"]]
    full = full.assign(edge=full["lambda_max"] * full["lr"] / 2)
    rates = sorted(full["lr"].unique())
    per = full.groupby("lr")[["edge", "test_acc", "train_acc"]].mean()
    top, below = rates[-1], rates[-2]
    lam = _chain.log_ratio(full, "lambda_max", "lr", below, top)
    noise = _chain.log_ratio(full, "weight_noise", "lr", below, top)
    acc = _chain.points(full, "test_acc", "lr", below, top)
    return dict(
        eos_reached=float(frame[frame["B"] == cfg.n_train]["reached"].mean()),
        eos_lo=per.loc[rates[:-1], "edge"].min(),
        eos_hi=per.loc[rates[:-1], "edge"].max(),
        eos_top=top,
        eos_below=below,
        eos_top_edge=per.loc[top, "edge"],
        eos_top_train=per.loc[top, "train_acc"],
        eos_lam_ratio=lam[0],
        eos_lam_ratio_hi=lam[2],
        eos_noise_ratio=noise[0],
        eos_noise_ratio_lo=noise[1],
        **{f"eos_acc_{k}": v for k, v in acc.items()},
    )


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The tuned arm (``tu_``), the shared rate (``sh_``), eta/B held
    fixed (``sc_``) and the full batch's edge of stability (``eos_``)."""
    stop = frame[frame["reached"]].groupby(["B", "lr"])["train_loss"].mean()
    out = dict(
        g_seeds=cfg.seeds,
        g_reached=float(frame["reached"].mean()),
        g_short=float((1 - stop / cfg.target).max()),
        g_budget_epochs=cfg.budget_epochs,
        g_budget_steps=cfg.budget_steps,
    )
    for part in (_tuned_facts, _shared_facts, _ratio_facts, _edge_facts):
        out.update(part(frame, cfg))
    return out


CLAIMS = [
    Claim(
        "mb-grid-reach",
        "finding",
        "every run of the grid reaches the target within the budget, and "
        "every cell's mean stopping loss is within 25% below it",
        lambda f: f["g_reached"] == 1 and f["g_short"] < 0.25,
        where=("longer", "wider", "rate", "digits"),
        measure=("g_reached", "g_short"),
    ),
    Claim(
        "mb-tuned-close",
        "finding",
        "with the rate tuned per batch size, mean test accuracy differs by "
        "less than 2 points between batch sizes, and the per-seed "
        "difference between the best and the worst is undecided",
        lambda f: (
            f["tu_hi"] - f["tu_lo"] < 0.02
            and f["tu_gap_verdict"] == "undecided"
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("tu_lo", "tu_hi", "tu_gap_lo", "tu_gap_hi"),
    ),
    Claim(
        "mb-tuned-flatter-big",
        "finding",
        "with the rate tuned per batch size (so that the rate grows with "
        "B), the top eigenvalue and Keskar sharpness fall as B grows "
        "(within-seed rank correlations, intervals below zero)",
        lambda f: (
            f["tu_b_lam_v"] == "opposes" and f["tu_b_kes_v"] == "opposes"
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("tu_b_lam_hi", "tu_b_kes_hi"),
    ),
    Claim(
        "mb-shared-flatter",
        "finding",
        "at the shared rate every run from B = 16 to the full batch reaches "
        "the target, and the top eigenvalue of the full batch is larger "
        "than that of B = 16 (per-seed ratio, interval above 1)",
        lambda f: f["sh_reached"] == 1 and f["sh_lam_ratio_lo"] > 1,
        where=("longer", "wider", "rate", "digits"),
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
        where=("longer", "wider", "rate", "digits"),
        measure=("sh_acc_diff", "sh_acc_lo", "sh_acc_hi"),
    ),
    Claim(
        "mb-ratio-law",
        "finding",
        "for B up to 16, the top eigenvalue falls with eta/B about as "
        "(eta/B)^a with a between -1.2 and -0.6 (interval over seeds), and "
        "at fixed eta/B the batch size changes it by a factor B^b with "
        "|b| < 0.1",
        lambda f: (
            -1.2 < f["sc_a_lo"]
            and f["sc_a_hi"] < -0.6
            and max(abs(f["sc_b_lo"]), abs(f["sc_b_hi"])) < 0.1
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("sc_a", "sc_b_lo", "sc_b_hi"),
    ),
    Claim(
        "mb-ratio-top-worse",
        "finding",
        "for B up to 16, the runs at the largest eta/B have lower test "
        "accuracy than those at the middle one (per-seed mean over B, "
        "interval below zero)",
        lambda f: f["sc_top_hi"] < 0,
        where=("longer", "wider", "rate", "digits"),
        measure=("sc_top_diff", "sc_top_hi"),
    ),
    Claim(
        "mb-ratio-flat-acc",
        "finding",
        "at fixed eta/B, the within-seed rank correlation between the top "
        "eigenvalue and test accuracy is undecided",
        lambda f: f["sc_lam_acc_v"] == "undecided",
        where=("longer", "wider", "rate", "digits"),
        measure=("sc_lam_acc_rho", "sc_lam_acc_lo", "sc_lam_acc_hi"),
    ),
    Claim(
        "mb-edge-near",
        "finding",
        "below the largest full-batch rate, the full batch ends with its "
        "top eigenvalue between 0.75 and 1.05 times 2/eta (mean over seeds)",
        lambda f: f["eos_lo"] > 0.75 and f["eos_hi"] < 1.05,
        where=("longer", "wider", "rate", "digits"),
        measure=("eos_lo", "eos_hi"),
    ),
    Claim(
        "mb-edge-top",
        "finding",
        "at the largest full-batch rate the top eigenvalue ends above 2/eta "
        "and below that at the next rate, while the loss under weight "
        "noise is larger and test accuracy lower (per-seed intervals)",
        lambda f: (
            f["eos_top_edge"] > 1
            and f["eos_lam_ratio_hi"] < 1
            and f["eos_noise_ratio_lo"] > 1
            and f["eos_acc_hi"] < 0
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("eos_top_edge", "eos_lam_ratio", "eos_noise_ratio"),
    ),
]
