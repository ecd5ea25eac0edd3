"""The race on a network: power iteration against Lanczos to the largest
eigenvalue of an MLP's Hessian after a short and a long SGD run, from
the same random starts; then where each method's stopping rule stops,
why Lanczos's rule sometimes stops on the second eigenvalue, and what a
tighter tolerance or a second start does about it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...claims import Claim
from ...data import Dataset
from ...ensemble import EnsembleMLP, epoch_batches
from ...hessian import HessianOperator, reference_eigen
from ...models import mlp
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ._race import Budget, never_worse, race_starts


@dataclass(frozen=True)
class Config:
    """The networks, the starts and the budgets."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    lr: float = 0.05  # SGD learning rate
    batch_size: int = 32  # SGD batch size
    short_steps: int = 300  # SGD steps of the briefly trained network
    long_steps: int = 3000  # and of the longer trained one
    hessian_examples: int = 500  # training examples in the loss
    starts: int = 5  # random starts shared by both methods
    power_steps: int = 200  # products of power iteration per start
    lanczos_steps: int = 25  # products of Lanczos per start (the race)
    stop_steps: int = 100  # products Lanczos's rule may use at most
    target: float = 1e-4  # relative error at which a method has converged
    tol: float = 1e-3  # tolerance of both stopping rules
    tight_tol: float = 1e-6  # a tighter tolerance for Lanczos's rule
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("short_steps", "long_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            short_steps=100,
            long_steps=400,
            hessian_examples=300,
            starts=2,
            power_steps=150,
        )
        return pick(
            scale, quick=quick, book=book, full=more_of(book, starts=10)
        )

    def budget(self) -> Budget:
        """The race's starts, products and tolerances."""
        return Budget(
            self.starts,
            self.power_steps,
            self.lanczos_steps,
            self.stop_steps,
            self.target,
            self.tol,
            self.tight_tol,
        )


def trained(cfg: Config, data: Dataset) -> dict[int, torch.nn.Module]:
    """The tanh MLP (seed 0) after ``cfg.short_steps`` and after
    ``cfg.long_steps`` SGD steps of one run (batch order of seed 0)."""
    ens = EnsembleMLP.from_models([mlp(cfg.sizes, seed=0)])
    lr = torch.tensor([cfg.lr], device=data.x_train.device)
    batches = epoch_batches(data.n_train, cfg.batch_size, [0])
    out = {}
    with torch.no_grad():
        for step in range(1, cfg.long_steps + 1):
            idx = next(batches).to(data.x_train.device)
            ens.sgd_step(data.x_train[idx], data.y_train[idx], lr)
            if step in (cfg.short_steps, cfg.long_steps):
                out[step] = ens.member(0)
    return out


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """The race (:func:`race_starts`) on the Hessian of the cross-entropy
    on the first ``cfg.hessian_examples`` training examples, for the MLP
    after the short and after the long run; power iteration ends once
    within ``cfg.target``.

    Returns:
        The traces (``kind == "trace"``) and the per-start rows
        (``kind == "start"``) of both networks, each with ``steps`` (the
        SGD steps), ``params``, ``lambda_1`` and ``gap``
        (``lambda_2 / lambda_1``, from the float64 reference).
    """
    x = data.x_train[: cfg.hessian_examples]
    y = data.y_train[: cfg.hessian_examples]
    parts = []
    for steps, net in trained(cfg, data).items():
        ref = reference_eigen(net, F.cross_entropy, x, y, k=2)
        op = HessianOperator(net, F.cross_entropy, x, y)
        traces, stops = race_starts(op, ref, cfg.budget(), floor=cfg.target)
        info = dict(
            steps=steps,
            params=op.dim,
            lambda_1=ref.values[0],
            gap=ref.values[1] / ref.values[0],
        )
        parts += [
            traces.assign(kind="trace", **info),
            stops.assign(kind="start", **info),
        ]
    return pd.concat(parts, ignore_index=True)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Per network (``short``, ``long``): ``gap``, the mean products to
    the target of each method and their ratio, the median and largest
    error where the change rule and Lanczos's rule stop; over both: how
    many Lanczos stops erred by more than ten times the tolerance
    (``bad_stops``) and, for those, the largest distance of the stop from
    ``lambda_2`` (``bad_from_l2``, relative), the largest start component
    (``bad_component``) and the smallest Ritz gap over the true gap
    (``bad_gap_ratio``); the largest error at the tight tolerance and of
    the better of two consecutive starts at the first tolerance."""
    traces = frame[frame["kind"] == "trace"]
    starts = frame[frame["kind"] == "start"]
    out: dict = dict(
        race_params=int(starts["params"].iloc[0]),
        race_entries=float(starts["params"].iloc[0]) ** 2 / 1e6,
        hessian_n=cfg.hessian_examples,
        race_starts=cfg.starts,
        race_short=cfg.short_steps,
        race_long=cfg.long_steps,
        race_tol=cfg.tol,
        race_tight=cfg.tight_tol,
        never_worse=never_worse(traces),
        both_reach=bool(
            starts[["power_to_target", "lanczos_to_target"]]
            .notna()
            .all()
            .all()
        ),
    )
    for name, steps in (("short", cfg.short_steps), ("long", cfg.long_steps)):
        s = starts[starts["steps"] == steps]
        out[f"race_gap_{name}"] = float(s["gap"].iloc[0])
        out[f"race_pow_{name}"] = float(s["power_to_target"].mean())
        out[f"race_lan_{name}"] = float(s["lanczos_to_target"].mean())
        out[f"race_ratio_{name}"] = (
            out[f"race_pow_{name}"] / out[f"race_lan_{name}"]
        )
        for rule in ("change", "stop"):
            out[f"{rule}_err_{name}"] = float(s[f"{rule}_error"].median())
            out[f"{rule}_err_max_{name}"] = float(s[f"{rule}_error"].max())
    bad = starts[starts["stop_error"] > 10 * cfg.tol]
    l2 = bad["gap"] * bad["lambda_1"]
    true_gap = bad["lambda_1"] - l2
    out["bad_stops"] = len(bad)
    out["bad_from_l2"] = float(
        (bad["stop_value"] / l2 - 1).abs().max() if len(bad) else 0.0
    )
    out["bad_component"] = float(bad["component"].max() if len(bad) else 0)
    out["bad_gap_ratio"] = float(
        (bad["ritz_gap"] / true_gap).min() if len(bad) else float("inf")
    )
    out["bad_error"] = float(bad["stop_error"].max() if len(bad) else 0)
    out["typical_component"] = float(starts["component"].median())
    out["tight_err_max"] = float(starts["tight_error"].max())
    pairs = []
    for _, s in starts.groupby("steps"):
        v = s.sort_values("start")["stop_value"].to_numpy()
        lam1 = float(s["lambda_1"].iloc[0])
        best = np.maximum(v, np.roll(v, -1))  # Ritz values are below l1
        pairs += list(np.abs(best / lam1 - 1))
    out["two_starts_err_max"] = float(max(pairs))
    return out


CLAIMS = [
    Claim(
        "ev-never-worse",
        "identity",
        "after every product and from every start, Lanczos's estimate is "
        "at least as close as power iteration's",
        lambda f: f["never_worse"],
        quick=True,
    ),
    Claim(
        "ev-both-reach",
        "finding",
        "both methods reach 1e-4 from every start within their budgets",
        lambda f: f["both_reach"],
        where=("longer", "rate", "digits"),
    ),
    Claim(
        "ev-lanczos-fewer",
        "finding",
        "Lanczos needs fewer products than power iteration on average, "
        "on both networks",
        lambda f: min(f["race_ratio_short"], f["race_ratio_long"]) > 1,
        where=("longer", "wider", "rate", "digits"),
        measure=("race_ratio_short", "race_ratio_long"),
    ),
    Claim(
        "ev-gap-advantage",
        "finding",
        "the briefly trained MLP has closer top eigenvalues and a larger "
        "advantage for Lanczos than the longer-trained one",
        lambda f: (
            f["race_gap_short"] > f["race_gap_long"]
            and f["race_ratio_short"] > f["race_ratio_long"]
        ),
        where=("wider", "rate"),
        measure=("race_gap_short", "race_gap_long"),
    ),
    Claim(
        "ev-change-early",
        "finding",
        "on the briefly trained MLP, stopping power iteration when the "
        "estimate changes by less than 1e-3 leaves a median error above "
        "1e-3",
        lambda f: f["change_err_short"] > f["race_tol"],
        where=("longer", "wider", "rate", "digits"),
        measure=("change_err_short", "change_err_max_short"),
    ),
    Claim(
        "ev-lanczos-rule",
        "finding",
        "from the same starts, Lanczos's own rule at the same tolerance "
        "stops with a median error below 1e-3 on the longer-trained "
        "network and below 1e-2 on the briefly trained one",
        lambda f: (
            f["stop_err_long"] < f["race_tol"]
            and f["stop_err_short"] < 10 * f["race_tol"]
        ),
        where=("longer", "wider", "rate", "digits"),
        measure=("stop_err_short", "stop_err_long"),
    ),
    Claim(
        "ev-rule-second",
        "finding",
        "every Lanczos stop that errs by more than ten times its "
        "tolerance has settled within 1 % of the second eigenvalue, from "
        "a start whose component along the top eigenvector is below a "
        "third of a typical one's (a random start's root mean square)",
        lambda f: f["bad_from_l2"] < 0.01 and f["bad_component"] < 1 / 3,
        where=("longer", "rate", "digits"),
        measure=("bad_stops", "bad_from_l2", "bad_component"),
    ),
    Claim(
        "ev-remedies",
        "finding",
        "at the tolerance 1e-6 Lanczos's rule stops within 1e-4 from "
        "every start",
        lambda f: f["tight_err_max"] < 1e-4,
        where=("longer", "rate", "digits"),
        measure=("tight_err_max", "two_starts_err_max"),
    ),
]
