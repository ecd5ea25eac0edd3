"""Normalizing every layer's inputs: tanh MLPs whose hidden units are
centred, or centred and scaled to unit variance, over the data every few
steps (the next layer compensated), against the plain network, each at
its own best learning rate and at a shared one; steps to the plain
network's loss and test accuracy there."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from ...claims import Claim
from ...data import Dataset
from ...normalize import CenteredEnsemble, train_centered
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...stats import paired, verdict

ARMS = ("none", "centre", "standardize")


@dataclass(frozen=True)
class Config:
    """The networks, the rate grids and the runs."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    shared_lr: float = 0.05  # the rate every network trains at first
    plain_rates: tuple[float, ...] = (0.05, 0.2, 0.4, 0.8)  # grid
    standardized_rates: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2)  # grid
    steps: int = 2000  # SGD steps: the plain network at the shared rate
    # sets the target, its loss after these steps; the budget of the rest
    batch_size: int = 32  # SGD batch size
    every: int = 50  # steps between renormalizations and loss checks
    monitor: int = 1000  # training examples for statistics and checks
    seeds: int = 6  # initializations and batch orders, shared by arms
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("shared_lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(shared_lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            steps=300,
            seeds=2,
            monitor=500,
            plain_rates=(0.05, 0.2),
            standardized_rates=(0.05, 0.2),
        )
        return pick(
            scale, quick=quick, book=book, full=more_of(book, seeds=16)
        )


def _grid(cfg: Config) -> list[tuple[str, float]]:
    """Every (arm, rate) trained after the plain shared-rate run."""
    cells = [("none", r) for r in cfg.plain_rates if r != cfg.shared_lr]
    return cells + [("standardize", r) for r in cfg.standardized_rates]


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """First the plain network at the shared rate for ``cfg.steps``
    steps: each seed's loss on the monitor examples at the end is that
    seed's target. Then every arm at every rate of its grid (centring
    alone at the shared rate only), each stopped at its first check at or
    below its seed's target, or at the same budget.

    Returns:
        One row per ``arm``, ``lr`` and ``seed``: ``target``, ``reached``
        (the step of the first check at or below it, NaN if never; the
        plain network at the shared rate reaches its own target at the
        end, by definition), ``acc`` (test accuracy there), ``final_acc``
        and ``final_loss`` (where it stopped) and ``diverged``. Centring
        alone runs at the shared rate only, for the whole budget.
    """
    seeds = list(range(cfg.seeds))
    kw = dict(batch_size=cfg.batch_size, every=cfg.every, monitor=cfg.monitor)
    both = ["none"] * cfg.seeds + ["centre"] * cfg.seeds
    first = train_centered(
        CenteredEnsemble(cfg.sizes, seeds * 2, both),
        data,
        [cfg.shared_lr] * len(both),
        seeds * 2,
        cfg.steps,
        **kw,
    )
    targets = first.loss[: cfg.seeds, -1]
    cells = [(a, r, s) for a, r in _grid(cfg) for s in seeds]
    rest = train_centered(
        CenteredEnsemble(
            cfg.sizes, [c[2] for c in cells], [c[0] for c in cells]
        ),
        data,
        [c[1] for c in cells],
        [c[2] for c in cells],
        cfg.steps,
        targets=targets[[c[2] for c in cells]],
        stop_at_target=True,
        **kw,
    )
    hit = first.loss[cfg.seeds :] <= targets[:, None]
    centre_at = np.where(hit.any(1), first.checks[hit.argmax(1)], np.nan)
    base = pd.DataFrame(
        dict(
            arm=both,
            lr=cfg.shared_lr,
            seed=seeds * 2,
            reached=np.r_[np.full(cfg.seeds, float(cfg.steps)), centre_at],
            acc=first.test_acc,
            final_acc=first.test_acc,
            final_loss=first.loss[:, -1],
            diverged=first.diverged,
        )
    )
    last = np.array([row[~np.isnan(row)][-1] for row in rest.loss])
    grid = pd.DataFrame(cells, columns=["arm", "lr", "seed"]).assign(
        reached=rest.reached,
        acc=rest.reached_acc,
        final_acc=rest.test_acc,
        final_loss=last,
        diverged=rest.diverged,
    )
    frame = pd.concat([base, grid], ignore_index=True)
    return frame.assign(target=targets[frame["seed"]])


def best_rates(frame: pd.DataFrame) -> pd.Series:
    """Each arm's best rate: the one with the fewest mean steps to the
    target among the rates at which every seed reached it."""
    ok = frame.groupby(["arm", "lr"]).filter(
        lambda g: g["reached"].notna().all()
    )
    steps = ok.groupby(["arm", "lr"])["reached"].mean()
    return steps.groupby("arm").idxmin().map(lambda key: key[1])


def _arm(frame, arm: str, lr: float) -> pd.DataFrame:
    part = frame[(frame["arm"] == arm) & (frame["lr"] == lr)]
    return part.assign(cell=f"{arm}@{lr:g}")


def _pair(frame, a, b, value: str, key: str, sign: int) -> dict:
    """Paired by seed: ``value`` of cell ``b`` minus cell ``a``, its
    interval and the verdict on the sign ``sign``; NaN and ``"n/a"``
    when a cell is missing or a run in it never got there."""
    both = pd.concat([_arm(frame, *a), _arm(frame, *b)])
    if both.empty or both[value].isna().any() or len(both) < 4:
        nan = float("nan")
        return {
            key: nan,
            f"{key}_lo": nan,
            f"{key}_hi": nan,
            f"{key}_verdict": "n/a",
        }
    iv = paired(both, value, "cell", f"{a[0]}@{a[1]:g}", f"{b[0]}@{b[1]:g}")
    return {**iv.facts(key), f"{key}_verdict": verdict(iv, sign)}


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The best rates (``best_plain``, ``best_std``) and whether each lies
    inside its grid; steps to the target and test accuracy there, best
    against best and at the shared rate, as paired differences
    (standardized minus plain) with 95 % intervals and verdicts on
    "standardizing is faster" (steps) and "... more accurate" (accuracy);
    ``shared_frac``, the largest share of the plain network's steps the
    standardized one needed at the shared rate; centring alone at the
    shared rate against the plain network by their losses after the
    same steps (``centre_loss``: relative difference)."""
    best = best_rates(frame).reindex(["none", "standardize"])
    plain, std = ("none", best["none"]), ("standardize", best["standardize"])
    shared = cfg.shared_lr
    out: dict = dict(
        hid_steps=cfg.steps,
        hid_every=cfg.every,
        hid_seeds=cfg.seeds,
        hid_monitor=cfg.monitor,
        shared_lr=shared,
        best_plain=best["none"],
        best_std=best["standardize"],
        best_inside=bool(
            min(cfg.plain_rates) < best["none"] < max(cfg.plain_rates)
            and min(cfg.standardized_rates)
            < best["standardize"]
            < max(cfg.standardized_rates)
        ),
        target_mean=float(frame["target"].mean()),
    )
    rows = [
        ("best", plain, std),
        ("shared", ("none", shared), ("standardize", shared)),
    ]
    for name, a, b in rows:
        for value, sign in (("reached", -1), ("acc", 1)):
            key = f"{name}_{'steps' if value == 'reached' else 'acc'}"
            out.update(_pair(frame, a, b, value, key, sign))
            out[f"{key}_plain"] = float(_arm(frame, *a)[value].mean())
            out[f"{key}_std"] = float(_arm(frame, *b)[value].mean())
    at_shared = _arm(frame, "standardize", shared)["reached"].to_numpy()
    out["shared_frac"] = float(np.max(at_shared) / cfg.steps)
    frame = frame.assign(rel_loss=frame["final_loss"] / frame["target"])
    out.update(
        _pair(
            frame,
            ("none", shared),
            ("centre", shared),
            "rel_loss",
            "centre_loss",
            -1,
        )
    )
    out["centre_loss_max"] = float(
        (_arm(frame, "centre", shared)["rel_loss"] - 1).abs().max()
    )
    return out


CLAIMS = [
    Claim(
        "nz-hidden-shared",
        "finding",
        "at the shared rate, standardized hidden layers reach the plain "
        "network's final loss in fewer than 60 % of its steps, every seed",
        lambda f: f["shared_frac"] < 0.6,
        where=("longer", "wider"),
        measure=("shared_frac",),
    ),
    Claim(
        "nz-hidden-grids",
        "finding",
        "each network's best rate lies strictly inside its grid",
        lambda f: f["best_inside"],
        where=("longer", "wider", "rate"),
        measure=("best_plain", "best_std"),
    ),
    Claim(
        "nz-hidden-best",
        "finding",
        "at each network's best rate, standardizing the hidden layers is "
        "not shown to reach the target in fewer steps: the paired "
        "interval of the difference does not lie below zero",
        lambda f: (
            f["best_steps_verdict"] == "opposes"
            or f["best_steps_verdict"] == "undecided"
        ),
        where=("longer", "wider", "rate"),
        measure=("best_steps", "best_steps_lo", "best_steps_hi"),
    ),
    Claim(
        "nz-hidden-acc",
        "finding",
        "best against best, the standardized network is not shown to be "
        "less accurate on test data at the target: the paired interval of "
        "the difference does not lie below zero",
        lambda f: f["best_acc_verdict"] in ("supports", "undecided"),
        where=("longer", "wider", "rate", "digits"),
        measure=("best_acc", "best_acc_lo", "best_acc_hi"),
    ),
    Claim(
        "nz-hidden-centre",
        "finding",
        "at the shared rate, centring alone ends within 5 % of the plain "
        "network's loss after the same steps, every seed",
        lambda f: f["centre_loss_max"] < 0.05,
        where=("wider", "rate", "digits"),
        measure=("centre_loss_max", "centre_loss"),
    ),
]
