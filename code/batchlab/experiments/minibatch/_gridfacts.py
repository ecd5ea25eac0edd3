"""The statistics of the grid's slices (:mod:`.grid`): each batch size
at its tuned rate, the rate shared by the larger batch sizes, eta/B held
fixed, and the full batch's edge of stability; every comparison paired
by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ... import stats
from . import _chain


def tuned(frame: pd.DataFrame) -> pd.DataFrame:
    """Per B, the runs at the rate whose runs all reached the target with
    the best mean held-out accuracy (B without such a rate are left
    out)."""
    ok = frame.groupby(["B", "lr"]).filter(lambda g: g["reached"].all())
    best = ok.groupby(["B", "lr"])["val_acc"].mean().groupby("B").idxmax()
    keys = set(best.tolist())
    return frame[[k in keys for k in zip(frame["B"], frame["lr"])]]


def shared(frame: pd.DataFrame, cfg) -> pd.DataFrame:
    """The runs at ``cfg.shared_lr`` (every B whose grid holds it)."""
    return frame[np.isclose(frame["lr"], cfg.shared_lr)]


def at_ratios(frame: pd.DataFrame, cfg) -> pd.DataFrame:
    """The runs of ``cfg.ratio_batches`` whose eta/B is one of
    ``cfg.ratios``, with a ``ratio`` column (the ratio as listed)."""
    part = frame[frame["B"].isin(cfg.ratio_batches)]
    ratio = pd.Series(np.nan, index=part.index)
    for r in cfg.ratios:
        ratio[np.isclose(part["lr_over_B"], r)] = r
    return part.assign(ratio=ratio).dropna(subset=["ratio"])


def tuned_facts(frame: pd.DataFrame, cfg) -> dict:
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


def shared_facts(frame: pd.DataFrame, cfg) -> dict:
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


def ratio_facts(frame: pd.DataFrame, cfg) -> dict:
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
    # the loss as a magnitude, and the seeds in which the middle is ahead
    out.update(sc_top_drop=-got["diff"], sc_top_drop_lo=-got["hi"])
    out["sc_top_drop_hi"] = -got["lo"]
    out["sc_mid_wins"] = _chain.points(acc, "test_acc", "ratio", hi, mid)[
        "wins"
    ]
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


def edge_facts(frame: pd.DataFrame, cfg) -> dict:
    full = frame[(frame["B"] == cfg.n_train) & frame["reached"]]
    full = full.assign(edge=full["lambda_max"] * full["lr"] / 2)
    rates = sorted(dict(cfg.grid)[cfg.n_train])
    per = full.groupby("lr")[["edge", "test_acc", "train_acc"]].mean()
    per = per.reindex(rates)  # NaN where no run reached the target
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
        eos_acc_drop=-acc["diff"],  # a magnitude, for "lower by"
    )
