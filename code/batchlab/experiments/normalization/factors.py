"""Per layer: K-FAC's two factors of each linear layer's curvature, how
far their Kronecker product is from the exact Gauss-Newton block, and
the largest Hessian eigenvalue against the learning rate, for the plain
network, the same function with its hidden units standardized, and the
network trained with standardized hidden layers at the plain network's
final loss (matched loss) and at the end of its training; all at the
shared rate of the previous section."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...claims import Claim
from ...data import Dataset
from ...hessian import (
    HessianOperator,
    condition_number,
    kfac_error,
    kronecker_factors,
)
from ...lanczos import top_eigenvalues
from ...normalize import CenteredEnsemble, train_centered
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...stats import interval, verdict

NETWORKS = ("plain", "same function", "matched", "end")


@dataclass(frozen=True)
class Config:
    """The two trainings and what is measured on them."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    lr: float = 0.05  # the shared rate of the previous section
    steps: int = 2000  # SGD steps of both networks
    batch_size: int = 32  # SGD batch size
    every: int = 50  # steps between renormalizations and loss checks
    monitor: int = 1000  # training examples for statistics and checks
    seeds: int = 6  # initializations and batch orders, shared
    factor_examples: int = 500  # examples the factors average over
    kfac_examples: int = 200  # examples of the K-FAC error (n^2 work)
    tol: float = 1e-4  # Lanczos's relative tolerance
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
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
            sizes=(40, 32, 32, 10),
            steps=300,
            seeds=2,
            monitor=500,
            factor_examples=300,
            kfac_examples=100,
        )
        return pick(
            scale, quick=quick, book=book, full=more_of(book, seeds=12)
        )


def trained_networks(cfg: Config, data: Dataset) -> dict:
    """Per seed, the four networks of :data:`NETWORKS` as
    :class:`~batchlab.normalize.CenteredMLP`: the plain one after
    ``cfg.steps`` steps, the same function with its hidden units
    standardized over the monitor examples, and the network trained with
    standardized hidden layers at its first check at or below the plain
    one's final loss (``matched``) and after the same steps (``end``).

    Returns:
        ``{(network, seed): (net, step, loss)}``.
    """
    seeds = list(range(cfg.seeds))
    kw = dict(batch_size=cfg.batch_size, every=cfg.every, monitor=cfg.monitor)
    rates = [cfg.lr] * cfg.seeds
    plain = CenteredEnsemble(cfg.sizes, seeds, ["none"] * cfg.seeds)
    first = train_centered(plain, data, rates, seeds, cfg.steps, **kw)
    targets = first.loss[:, -1]
    std = CenteredEnsemble(cfg.sizes, seeds, ["standardize"] * cfg.seeds)
    second = train_centered(
        std, data, rates, seeds, cfg.steps, targets=targets, keep=seeds, **kw
    )
    xm = data.x_train[: cfg.monitor]
    out = {}
    for s in seeds:
        net = plain.member(s)
        same = copy.deepcopy(net)
        same.renormalize(xm, compensate=True, rescale=True)
        out[("plain", s)] = (net, cfg.steps, targets[s])
        out[("same function", s)] = (same, cfg.steps, targets[s])
        if s in second.matched:
            at = int(second.reached[s])
            loss = second.loss[s, list(second.checks).index(at)]
            out[("matched", s)] = (second.matched[s], at, loss)
        out[("end", s)] = (std.member(s), cfg.steps, second.loss[s, -1])
    return out


def _condition(A: torch.Tensor) -> float:
    """A's condition number; infinite when it is singular (the digits'
    constant pixels make the first layer's so)."""
    ev = torch.linalg.eigvalsh(A)
    return condition_number(ev) if float(ev[0]) > 0 else float("inf")


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Train (:func:`trained_networks`) and measure, per network, seed
    and linear ``layer`` (1 = first): the condition number of the input
    factor ``A`` (``cond_A``), the largest over the median eigenvalue of
    the output factor ``G`` (``spread_G``; its smallest may be zero), the
    relative Frobenius distance of each factor from the plain network's
    (``change_A``, ``change_G``) and K-FAC's error (``kfac``,
    :func:`batchlab.hessian.kfac_error`); per network and seed also the
    ``step``, the monitor ``loss``, the largest Hessian eigenvalue
    (``lambda_max``, Lanczos, cross-entropy on the factor examples) and
    the rate times it (``eta_lambda``)."""
    nets = trained_networks(cfg, data)
    x = data.x_train[: cfg.factor_examples]
    y = data.y_train[: cfg.factor_examples]
    xk = data.x_train[: cfg.kfac_examples]
    rows, base = [], {}
    for (name, seed), (net, step, loss) in nets.items():
        if not np.isfinite(loss):  # diverged: nothing to measure
            continue
        factors = kronecker_factors(net, x)
        base.setdefault(seed, factors)  # the plain network comes first
        errors = kfac_error(net, xk)
        op = HessianOperator(net, F.cross_entropy, x, y)
        top = float(top_eigenvalues(op, k=1, tol=cfg.tol, seed=seed).values[0])
        for layer, (f, f0, err) in enumerate(
            zip(factors, base[seed], errors), 1
        ):
            eg = torch.linalg.eigvalsh(f.outputs)
            rows.append(
                dict(
                    network=name,
                    seed=seed,
                    layer=layer,
                    step=step,
                    loss=float(loss),
                    lambda_max=top,
                    eta_lambda=cfg.lr * top,
                    cond_A=_condition(f.inputs),
                    spread_G=float(eg[-1] / eg.median()),
                    change_A=float(
                        (f.inputs - f0.inputs).norm() / f0.inputs.norm()
                    ),
                    change_G=float(
                        (f.outputs - f0.outputs).norm() / f0.outputs.norm()
                    ),
                    kfac=err,
                )
            )
    return pd.DataFrame(rows)


def _ratio(by: pd.DataFrame, a: str, b: str, key: str) -> dict:
    """The per-seed ratio ``b / a`` as a geometric mean with its 95 %
    interval (a t interval on the logs), and the verdict on "above 1";
    NaN and ``"n/a"`` with fewer than two seeds that have both (the
    standardized network may diverge before the matched loss)."""
    logs = np.log(by.get(b, np.nan) / by.get(a, np.nan)).dropna()
    logs = logs[np.isfinite(logs)]
    if len(logs) < 2:
        nan = float("nan")
        return {
            key: nan,
            f"{key}_lo": nan,
            f"{key}_hi": nan,
            f"{key}_verdict": "n/a",
        }
    iv = interval(logs.to_numpy())
    out = {k: float(np.exp(v)) for k, v in iv.facts(key).items()}
    out[f"{key}_verdict"] = verdict(iv, 1)
    return out


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """How far standardizing the same function moves ``G`` and ``A``;
    geometric-mean ratios over seeds, with intervals, of the hidden A
    factors' condition numbers (``a_gain_*``: the plain network's over
    another's; ``a_vs_same``: the matched network's over the control's),
    of layer 2's G spread (``g_ratio``: matched over plain) and of the
    largest eigenvalue (``lam_plain``, ``lam_same``: matched over plain
    and over the control); K-FAC's error per network and layer (mean over
    seeds); the rate times the largest eigenvalue and the matched step."""
    frame = frame[np.isfinite(frame["loss"])]  # diverged runs are dropped
    hidden = frame[frame["layer"] > 1]
    same = frame[frame["network"] == "same function"]
    out: dict = dict(
        fac_n=cfg.factor_examples,
        kfac_n=cfg.kfac_examples,
        fac_seeds=cfg.seeds,
        fac_lr=cfg.lr,
        fac_steps=cfg.steps,
        same_g_change=float(same["change_G"].max()),
        same_a_change=float(same[same["layer"] > 1]["change_A"].min()),
        same_cond_min=float(same[same["layer"] > 1]["cond_A"].min()),
    )
    cond = (
        hidden.assign(log=np.log(hidden["cond_A"]))
        .pivot_table(index="seed", columns="network", values="log")
        .pipe(np.exp)
    )  # geometric mean over the hidden layers, per seed
    for name in ("same function", "matched", "end"):
        key = "a_gain_" + {"same function": "same"}.get(name, name)
        out.update(_ratio(cond, name, "plain", key))
    out.update(_ratio(cond, "same function", "matched", "a_vs_same"))
    spread = frame[frame["layer"] == 2].pivot_table(
        index="seed", columns="network", values="spread_G"
    )
    out.update(_ratio(spread, "plain", "matched", "g_ratio"))
    per_net = frame[frame["layer"] == 1].pivot_table(
        index="seed", columns="network", values="lambda_max"
    )
    out.update(_ratio(per_net, "plain", "matched", "lam_plain"))
    out.update(_ratio(per_net, "same function", "matched", "lam_same"))
    eta = frame.groupby("network")["eta_lambda"].mean()
    for name in NETWORKS:
        short = {"same function": "same"}.get(name, name)
        out[f"eta_{short}"] = float(eta.get(name, np.nan))
    out["eta_max"] = float(frame["eta_lambda"].max())
    kfac = frame.groupby(["network", "layer"])["kfac"].mean()
    for (name, layer), value in kfac.items():
        short = {"same function": "same"}.get(name, name)
        out[f"kfac_{short}_{layer}"] = float(value)
    out["kfac_min"] = float(frame["kfac"].min())
    for name in NETWORKS[2:]:
        short = {"same function": "same"}.get(name, name)
        for layer in sorted(frame["layer"].unique()):
            out.setdefault(f"kfac_{short}_{layer}", float("nan"))
    matched = frame[frame["network"] == "matched"]
    out["matched_seeds"] = int(matched["seed"].nunique())
    out["diverged_seeds"] = int(
        cfg.seeds - frame[frame["network"] == "end"]["seed"].nunique()
    )
    out["match_step"] = float(matched["step"].mean())
    out["match_loss"] = float(matched["loss"].mean())
    out["plain_loss"] = float(
        frame[frame["network"] == "plain"]["loss"].mean()
    )
    out["end_loss"] = float(frame[frame["network"] == "end"]["loss"].mean())
    return out


CLAIMS = [
    Claim(
        "nz-same-g",
        "identity",
        "for the same function, standardizing the hidden layers leaves "
        "every G unchanged (relative change below 1e-5)",
        lambda f: f["same_g_change"] < 1e-5,
        measure=("same_g_change",),
        quick=True,
    ),
    Claim(
        "nz-std-stable",
        "finding",
        "at the shared rate the network with standardized hidden layers "
        "trains without diverging, every seed",
        lambda f: f["diverged_seeds"] == 0,
        where=("longer", "wider", "rate"),
        measure=("diverged_seeds",),
    ),
    Claim(
        "nz-same-a",
        "finding",
        "for the same function, standardizing changes the input factor A "
        "of every layer above the first by more than half",
        lambda f: f["same_a_change"] > 0.5,
        where=("longer", "wider", "rate", "digits"),
        measure=("same_a_change",),
    ),
    Claim(
        "nz-same-correlated",
        "finding",
        "standardized hidden inputs leave A's condition number above 100: "
        "the hidden units are correlated",
        lambda f: f["same_cond_min"] > 100,
        where=("longer", "wider", "rate", "digits"),
        measure=("same_cond_min",),
    ),
    Claim(
        "nz-matched-a",
        "finding",
        "at matched loss, the trained standardized network's hidden A "
        "factors are conditioned within a factor 1.5 of the plain "
        "network's own standardized ones (geometric mean over seeds)",
        lambda f: 1 / 1.5 < f["a_vs_same"] < 1.5,
        where=("longer", "wider"),
        measure=("a_vs_same", "a_vs_same_lo", "a_vs_same_hi"),
    ),
    Claim(
        "nz-matched-g",
        "finding",
        "at matched loss, the trained standardized network's layer-2 G "
        "is more spread (largest over median) than the plain network's, "
        "by a geometric mean over seeds above one",
        lambda f: f["g_ratio"] > 1,
        where=("wider", "rate"),
        measure=("g_ratio", "g_ratio_lo", "g_ratio_hi"),
    ),
    Claim(
        "nz-matched-lmax",
        "finding",
        "at matched loss the standardized network's largest Hessian "
        "eigenvalue is larger than the plain network's and than the "
        "control's: both intervals of the ratios lie above one",
        lambda f: (
            f["lam_plain_verdict"] == "supports"
            and f["lam_same_verdict"] == "supports"
        ),
        measure=("lam_plain", "lam_plain_lo", "lam_same", "lam_same_lo"),
    ),
    Claim(
        "nz-eta-below-2",
        "finding",
        "every network trains below the stability limit: the rate times "
        "the largest eigenvalue is under 2",
        lambda f: f["eta_max"] < 2,
        where=("longer", "wider", "rate", "digits"),
        measure=("eta_max",),
    ),
    Claim(
        "nz-kfac-error",
        "finding",
        "K-FAC's product of means is more than 25 % (relative Frobenius) "
        "from the exact Gauss-Newton block in every layer of every network",
        lambda f: f["kfac_min"] > 0.25,
        where=("longer", "wider", "rate"),
        measure=("kfac_min", "kfac_plain_2", "kfac_plain_3"),
    ),
]
