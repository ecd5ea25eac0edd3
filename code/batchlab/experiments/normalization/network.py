"""A network: every eigenvalue of a small tanh MLP's Hessian when its
inputs are badly scaled, as given, standardized or whitened, at
initialization and at a training loss that every kind of input reaches
(the comparison after training is made at matched loss)."""

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
from ...hessian import hessian_spectrum, spectrum_summary
from ...models import mlp
from ...normalize import fit_transform
from ...runtime import Digits, Longer, Rate, Wider, pick
from .correlation import badly_scaled

INPUTS = ("badly scaled", "as given", "standardized", "whitened")


@dataclass(frozen=True)
class Config:
    """The MLP, its training and its Hessians."""

    width: int = 16  # hidden width of the tanh MLP (input, width, classes)
    lr: float = 0.1  # SGD learning rate, the same for every input
    batch_size: int = 32  # SGD batch size
    steps: int = 2000  # SGD steps at most
    check_every: int = 100  # steps between checks of the training loss
    hessian_examples: int = 500  # training examples in the exact Hessian
    outliers: int = 9  # the spectrum's top outliers (classes - 1)
    scale_spread: float = 10.0  # badly scaled: scales from 1/spread to spread
    mean_shift: float = 3.0  # and this shift of every feature
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("width", factor=2),
        "rate": Rate(lr=0.2),
        "digits": Digits(),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, width=8, steps=300, hessian_examples=300)
        return pick(scale, quick=quick, book=book, full=book)


def input_transforms(cfg: Config, x: torch.Tensor) -> dict:
    """The four kinds of inputs as transforms of the training inputs
    ``x`` (constant features dropped first): badly scaled and shifted, as
    given, standardized and ZCA-whitened. Standardizing undoes any
    per-feature scale and shift, so it is the same for the given and the
    badly scaled inputs."""
    given = fit_transform(x, "raw", drop_constant=True)
    bad = badly_scaled(given.out_features, cfg.scale_spread, cfg.mean_shift)
    return {
        "badly scaled": lambda v: bad(given(v)),
        "as given": given,
        "standardized": fit_transform(x, "standardize", drop_constant=True),
        "whitened": fit_transform(x, "zca", drop_constant=True),
    }


def _train(
    ens: EnsembleMLP, sets: list[Dataset], cfg: Config
) -> list[list[tuple[int, float, torch.nn.Module]]]:
    """Train model ``i`` of ``ens`` on ``sets[i]`` with SGD (batch order
    of seed 0 for all, as :func:`batchlab.train.train_sgd` draws it);
    every ``check_every`` steps keep, per model, ``(step, training loss,
    a copy of the network)``."""
    x = torch.stack([d.x_train for d in sets])  # (m, n, k)
    y = sets[0].y_train
    m, rows = len(sets), torch.arange(len(sets))[:, None]
    lr = torch.full((m,), cfg.lr, dtype=x.dtype, device=x.device)
    batches = epoch_batches(len(y), cfg.batch_size, [0] * m)
    kept: list[list] = [[] for _ in sets]
    with torch.no_grad():
        for step in range(cfg.steps + 1):
            if step % cfg.check_every == 0:
                logits = ens.logits(x)
                for i in range(m):
                    loss = float(F.cross_entropy(logits[i], y))
                    kept[i].append((step, loss, ens.member(i)))
            if step < cfg.steps:
                idx = next(batches).to(x.device)
                ens.sgd_step(x[rows, idx], y[idx], lr)
    return kept


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Every eigenvalue of a tanh MLP's Hessian (cross-entropy on the
    first ``cfg.hessian_examples`` training examples) for each kind of
    input (:func:`input_transforms`), at initialization and at matched
    loss: the highest training loss any kind has at the end of its
    ``cfg.steps`` steps, where each kind is taken at its first check at
    or below it.

    Returns:
        Rows of ``kind == "summary"`` (per ``inputs`` and ``point``:
        ``step``, ``loss``, :func:`batchlab.hessian.spectrum_summary` and
        ``max_over_median``, the largest eigenvalue over the median
        absolute one) and of ``kind == "eigenvalue"`` (``inputs``,
        ``point``, ``index`` from 1, ``value``).
    """
    sets = [
        Dataset(T(data.x_train), data.y_train, T(data.x_test), data.y_test)
        for T in input_transforms(cfg, data.x_train).values()
    ]
    sizes = [sets[0].n_features, cfg.width, data.n_classes]
    ens = EnsembleMLP.from_models([mlp(sizes, seed=0) for _ in sets])
    paths = _train(ens, sets, cfg)
    target = max(kept[-1][1] for kept in paths)
    rows, values = [], []
    for name, d, kept in zip(INPUTS, sets, paths):
        matched = next(k for k in kept if k[1] <= target)
        x = d.x_train[: cfg.hessian_examples]
        y = d.y_train[: cfg.hessian_examples]
        for point, (step, loss, net) in [
            ("init", kept[0]),
            ("matched", matched),
        ]:
            ev = hessian_spectrum(net, F.cross_entropy, x, y, chunk=250)
            row = spectrum_summary(ev, n_outliers=cfg.outliers)
            row.update(
                kind="summary",
                inputs=name,
                point=point,
                step=step,
                loss=loss,
                max_over_median=ev[0] / np.median(np.abs(ev)),
            )
            rows.append(row)
            values.append(
                pd.DataFrame(
                    dict(
                        kind="eigenvalue",
                        inputs=name,
                        point=point,
                        index=np.arange(1, len(ev) + 1),
                        value=ev,
                    )
                )
            )
    return pd.concat([pd.DataFrame(rows), *values], ignore_index=True)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """``mlp_<inputs>_<point>`` ratios of the largest to the median
    absolute eigenvalue (inputs ``bad``, ``given``, ``std``, ``white``),
    their smallest (``mlp_min_ratio``), the gains of standardizing and
    whitening, the given over the standardized largest eigenvalue, the
    steps each kind took to the matched loss and whether every spectrum
    has a negative eigenvalue."""
    short = dict(zip(INPUTS, ("bad", "given", "std", "white")))
    s = frame[frame["kind"] == "summary"].set_index(["inputs", "point"])
    r = s["max_over_median"]
    out: dict = dict(
        mlp_width=cfg.width,
        mlp_steps=cfg.steps,
        mlp_lr=cfg.lr,
        hessian_n=cfg.hessian_examples,
        mlp_check=cfg.check_every,
        mlp_target=float(s.xs("matched", level="point")["loss"].max()),
    )
    for (inputs, point), value in r.items():
        out[f"mlp_{short[inputs]}_{point}"] = value
    for inputs in INPUTS:
        out[f"mlp_{short[inputs]}_steps"] = int(
            s.loc[(inputs, "matched"), "step"]
        )
    out["mlp_min_ratio"] = float(r.min())
    out["mlp_std_gain"] = float(min(r["badly scaled"] / r["standardized"]))
    out["mlp_white_gain_init"] = (
        r[("standardized", "init")] / r[("whitened", "init")]
    )
    out["mlp_white_gain_matched"] = (
        r[("standardized", "matched")] / r[("whitened", "matched")]
    )
    lam = s["lambda_max"]
    out["mlp_given_std"] = float(
        max(abs(lam["as given"] / lam["standardized"] - 1))
    )
    out["mlp_negative"] = bool((s["lambda_min"] < 0).all())
    return out


CLAIMS = [
    Claim(
        "nz-mlp-not-identity",
        "finding",
        "for the MLP, no input normalization brings the largest "
        "eigenvalue within a factor 5 of the median absolute one, at "
        "initialization or at matched loss",
        lambda f: f["mlp_min_ratio"] > 5,
        where=("longer", "wider", "rate", "digits"),
        measure=("mlp_min_ratio",),
    ),
    Claim(
        "nz-mlp-standardize",
        "finding",
        "standardizing badly scaled inputs narrows the MLP's "
        "largest-over-median ratio more than fivefold, at initialization "
        "and at matched loss",
        lambda f: f["mlp_std_gain"] > 5,
        where=("longer", "wider", "rate", "digits"),
        measure=("mlp_std_gain",),
    ),
    Claim(
        "nz-mlp-whiten-init",
        "finding",
        "at initialization, whitening narrows that ratio at least twofold "
        "beyond standardizing",
        lambda f: f["mlp_white_gain_init"] > 2,
        where=("longer", "wider", "rate", "digits"),
        measure=("mlp_white_gain_init", "mlp_white_gain_matched"),
    ),
    Claim(
        "nz-mlp-given",
        "finding",
        "the MLP's largest eigenvalue with MNIST-1D as given is within a "
        "quarter of that with standardized inputs, at initialization and "
        "at matched loss",
        lambda f: f["mlp_given_std"] < 0.25,
        where=("longer", "wider", "rate"),
        measure=("mlp_given_std",),
    ),
    Claim(
        "nz-mlp-negative",
        "finding",
        "the MLP's Hessian has negative eigenvalues with every kind of "
        "input, at initialization and at matched loss",
        lambda f: f["mlp_negative"],
        where=("longer", "wider", "rate", "digits"),
    ),
    Claim(
        "nz-mlp-slowest",
        "finding",
        "with the same rate and steps, the MLP on badly scaled inputs "
        "takes more steps to the matched loss than on standardized ones",
        lambda f: f["mlp_bad_steps"] > f["mlp_std_steps"],
        where=("longer", "wider", "rate", "digits"),
        measure=("mlp_bad_steps", "mlp_std_steps"),
    ),
]
