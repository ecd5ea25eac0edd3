"""How does the noise depend on the batch size? The variance of real
minibatch gradients against the exact finite-population law, at
initialization and after an SGD run, and McCandlish et al.'s simple noise
scale ``B_simple = tr(Sigma) / |G|^2`` along that run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch.nn.functional as F

from ...claims import Claim
from ...data import Dataset
from ...models import mlp
from ...noise import minibatch_deviations, noise_along_training, noise_stats
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import SGDConfig


@dataclass(frozen=True)
class Config:
    """The variance law's check and the SGD run along which the noise
    scale is tracked."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)  # B measured
    draws: int = 40  # minibatch gradients drawn per B and point
    train_batch: int = 32  # B of the SGD run
    train_lr: float = 0.05  # its learning rate
    train_steps: int = 3000  # its length in steps
    checkpoints: int = 6  # points after the start where B_simple is taken
    z_max: float = 4.0  # the law holds within this many standard errors
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("train_lr",)
    VARIANTS: ClassVar = {
        "longer": Longer("train_steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(train_lr=0.1),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(
            book,
            sizes=(40, 32, 10),
            batch_sizes=(1, 16, 256),
            draws=10,
            train_steps=300,
            checkpoints=3,
        )
        return pick(
            scale, quick=quick, book=book, full=more_of(book, draws=200)
        )


def _variance_rows(net, data: Dataset, cfg: Config, seed: int, point: str):
    x, y = data.x_train, data.y_train
    stats = noise_stats(net, x, y)
    bs = np.array([b for b in cfg.batch_sizes if b < data.n_train])
    devs = minibatch_deviations(
        net, F.cross_entropy, x, y, list(bs), cfg.draws, seed=seed
    )
    return pd.DataFrame(
        dict(
            kind="variance",
            point=point,
            B=bs,
            measured=devs.mean(1),
            se=devs.std(1, ddof=1) / np.sqrt(cfg.draws),
            law=stats.minibatch_variance(bs),
        )
    )


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """Measure the variance law at initialization, train one network
    with SGD while recording the noise scale, and measure the law again.

    Returns:
        Tidy rows of two kinds: ``kind == "variance"`` (``point``,
        ``B``, ``measured`` mean squared deviation over the draws, its
        standard error ``se``, the exact ``law``) and ``kind == "path"``
        (``step``, ``loss``, ``trace`` = tr Sigma, ``grad_sq`` = |G|^2,
        ``b_simple``); every row carries ``n_train``, the examples.
    """
    net = mlp(cfg.sizes, seed=0, device=data.x_train.device)
    law = [_variance_rows(net, data, cfg, seed=0, point="initialization")]
    sgd = SGDConfig(cfg.train_batch, cfg.train_lr, cfg.train_steps)
    marks = np.linspace(0, cfg.train_steps, cfg.checkpoints + 1).astype(int)
    path = pd.DataFrame(noise_along_training(net, data, sgd, marks))
    law.append(_variance_rows(net, data, cfg, seed=1, point="trained"))
    frame = pd.concat([*law, path.assign(kind="path")], ignore_index=True)
    return frame.assign(n_train=data.n_train)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """The numbers the section's prose glues and its claims read.

    ``law_z_init`` and ``law_z_trained`` are the largest distances of a
    measured variance from the law, in standard errors of the measured
    mean, at initialization and after training; ``low_b1`` is the
    measured over the law at B = 1 after training. ``bs_*`` are the
    noise scale at the start and its smallest and largest value at the
    later checkpoints; its growth from the start to a checkpoint splits
    exactly, on a log scale, into the growth of ``tr Sigma`` and the fall
    of ``|G|^2``: ``bs_jump = tr_jump * g2_drop`` at the first checkpoint
    (``tr_share_first`` is the trace's share of the log), and
    ``tr_share`` is the trace's share from start to end.
    """
    var = frame[frame["kind"] == "variance"]
    path = frame[frame["kind"] == "path"].sort_values("step")
    z = (var["measured"] - var["law"]).abs() / var["se"]
    trained = var["point"] == "trained"
    b1 = var[trained & (var["B"] == var["B"].min())]
    later = path["b_simple"].iloc[1:]
    first, second, last = path.iloc[0], path.iloc[1], path.iloc[-1]
    tr_growth = last["trace"] / first["trace"]
    bs_growth = last["b_simple"] / first["b_simple"]
    ratio = var["measured"] / var["law"]
    return dict(
        n_full=int(frame["n_train"].iloc[0]),
        n_draws=cfg.draws,
        z_max=cfg.z_max,
        ratio_lo=ratio[~trained].min(),
        ratio_hi=ratio[~trained].max(),
        law_z_init=z[~trained].max(),
        law_z_trained=z[trained].max(),
        low_b1=float((b1["measured"] / b1["law"]).iloc[0]),
        bs_init=first["b_simple"],
        bs_min=later.min(),
        bs_max=later.max(),
        bs_rise=later.min() / first["b_simple"],
        bs_growth=bs_growth,
        tr_growth=tr_growth,
        tr_rise=path["trace"].iloc[1:].min() / first["trace"],
        g2_fall=first["grad_sq"] / last["grad_sq"],
        tr_share=np.log(tr_growth) / np.log(bs_growth),
        bs_jump=second["b_simple"] / first["b_simple"],
        tr_jump=second["trace"] / first["trace"],
        g2_drop=first["grad_sq"] / second["grad_sq"],
        tr_share_first=np.log(second["trace"] / first["trace"])
        / np.log(second["b_simple"] / first["b_simple"]),
        first_step=int(second["step"]),
        steps=cfg.train_steps,
    )


CLAIMS = [
    Claim(
        "mb-noise-law",
        "identity",
        "at initialization, the measured variance of minibatch gradients "
        "agrees with the exact finite-population law within four standard "
        "errors at every batch size",
        lambda f: f["law_z_init"] < f["z_max"],
        measure=("law_z_init",),
        quick=True,
    ),
    Claim(
        "mb-noise-law-trained",
        "finding",
        "after the SGD run, the measured variance of minibatch gradients "
        "again agrees with the exact finite-population law within four "
        "standard errors at every batch size, B = 1 included",
        lambda f: f["law_z_trained"] < f["z_max"],
        where=("wider", "rate"),
        measure=("law_z_trained", "low_b1"),
    ),
    Claim(
        "mb-noise-scale-rises",
        "finding",
        "along the SGD run, the simple noise scale is larger than at the "
        "start at every later checkpoint",
        lambda f: f["bs_rise"] > 1,
        where=("longer", "wider", "digits"),
        measure=("bs_rise", "bs_growth"),
    ),
    Claim(
        "mb-noise-spread-grows",
        "finding",
        "the spread of the per-example gradients, tr Sigma, is larger "
        "than at the start at every later checkpoint",
        lambda f: f["tr_rise"] > 1,
        where=("longer", "wider", "rate"),
        measure=("tr_rise", "tr_growth", "tr_share"),
    ),
    Claim(
        "mb-noise-signal-falls",
        "finding",
        "at the first checkpoint the squared norm of the full gradient, "
        "|G|^2, is below its value at the start, so that its fall is part "
        "of the jump of the noise scale",
        lambda f: f["g2_drop"] > 1,
        where=("wider", "digits"),
        measure=("g2_drop", "tr_jump", "bs_jump", "tr_share_first"),
    ),
]
