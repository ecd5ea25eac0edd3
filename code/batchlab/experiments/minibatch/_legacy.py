"""Chapter 1, minibatch or single-example SGD: its configuration and the
experiments too long for a cell."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ...data import Dataset
from ...ensemble import EnsembleMLP, train_ensemble, train_to_loss
from ...landscape import flatness_metrics
from ...models import mlp
from ...noise import minibatch_deviations, noise_stats
from ...runtime import generator, more_of, pick


@dataclass(frozen=True)
class NoiseConfig:
    """Sizes of the gradient-noise measurements."""

    sizes: tuple[int, ...]  # MLP widths, input first
    batch_sizes: tuple[int, ...]  # B values whose variance is measured
    draws: int  # minibatch gradients drawn per B
    train_batch: int  # B of the run along which the noise is tracked
    train_lr: float  # its learning rate
    train_steps: int  # its length in steps
    checkpoints: int  # points along that run where B_simple is computed

    @classmethod
    def for_scale(cls, scale) -> NoiseConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls(
            sizes=(40, 100, 100, 10),
            batch_sizes=(1, 4, 16, 64, 256, 1024, 4000),
            draws=40,
            train_batch=32,
            train_lr=0.05,
            train_steps=3000,
            checkpoints=6,
        )
        return pick(
            scale,
            quick=replace(
                book,
                sizes=(40, 32, 10),
                batch_sizes=(1, 16, 256, 4000),
                draws=10,
                train_steps=300,
                checkpoints=3,
            ),
            book=book,
            full=more_of(book, draws=200),
        )


# --------------------------------------------------------------------------
# The fair test (the book's protocol, in the spirit of Keskar et al.): every
# batch size trained to the same training loss


@dataclass(frozen=True)
class EqualLossConfig:
    """Batch sizes trained to one training loss, at a fixed rate and on a
    per-B grid of rates (the tuned arm picks from it on held-out data)."""

    sizes: tuple[int, ...]  # MLP widths, input first
    n_train: int  # training examples (the full batch)
    n_val: int  # held-out examples that choose the tuned rate
    seeds: int  # independent runs per (B, rate)
    target_loss: float  # every run stops once below this training loss
    fixed_lr: float  # the fixed arm's rate, the same for every B
    grid: tuple[tuple[int, tuple[float, ...]], ...]  # B -> rates tried
    fixed_epochs: float  # budget of a fixed-arm run, in epochs
    grid_epochs: float  # budget of a grid run, in epochs ...
    grid_steps: int  # ... or in steps, whichever allows more examples
    check_epochs: float  # epochs between two checks of the loss ...
    near: float  # ... until a run is below near * target_loss, then
    near_steps: int  # the loss is checked every near_steps steps
    eps: float  # Keskar box half-width, relative to |theta_i| + 1
    weight_radius: float  # weight noise, relative to |theta|
    input_sd: float  # sd of the Gaussian noise added to test inputs
    noise_max_batch: int  # largest B whose rates stay far from 2/lambda

    @classmethod
    def for_scale(cls, scale) -> EqualLossConfig:
        """The protocol for ``quick``, ``book`` or ``full``."""
        book = cls(
            sizes=(40, 100, 100, 10),
            n_train=1000,
            n_val=1000,
            seeds=3,
            target_loss=0.1,
            fixed_lr=0.03,
            grid=(
                (1, (0.015, 0.03, 0.06)),
                (4, (0.03, 0.06, 0.12)),
                (16, (0.06, 0.12, 0.24)),
                (64, (0.24, 0.48, 0.96)),
                (256, (0.48, 0.96, 1.92)),
                (1000, (0.96, 1.92, 3.84)),
            ),
            fixed_epochs=150,
            grid_epochs=40,
            grid_steps=300,
            check_epochs=0.5,
            near=2.0,
            near_steps=10,
            eps=1e-3,
            weight_radius=0.05,
            input_sd=0.5,
            noise_max_batch=64,
        )
        return pick(
            scale,
            quick=replace(
                book,
                sizes=(40, 32, 10),
                n_train=200,
                n_val=200,
                seeds=2,
                target_loss=0.5,
                grid=(
                    (1, (0.015, 0.03)),
                    (16, (0.12, 0.24)),
                    (200, (0.96, 1.92)),
                ),
                fixed_epochs=60,
                grid_epochs=40,
                grid_steps=100,
                check_epochs=0.5,
                noise_max_batch=16,
            ),
            book=book,
            full=more_of(book, seeds=8),
        )

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes, smallest first (the last is the full batch)."""
        return tuple(b for b, _ in self.grid)

    def rates(self, batch_size: int) -> tuple[float, ...]:
        """Rates trained at ``batch_size``: its grid and the fixed rate."""
        grid = dict(self.grid)
        if batch_size not in grid:
            raise ValueError(f"batch size {batch_size} is not in the grid")
        return tuple(sorted(set(grid[batch_size]) | {self.fixed_lr}))

    def budget(self, batch_size: int, lr: float) -> int:
        """Examples a run may use before it is stopped short."""
        examples = 0
        if lr == self.fixed_lr:
            examples = round(self.fixed_epochs * self.n_train)
        if lr in dict(self.grid)[batch_size]:
            examples = max(
                examples,
                round(self.grid_epochs * self.n_train),
                self.grid_steps * batch_size,
            )
        return examples


def split(data: Dataset, n_train: int, n_val: int) -> tuple[Dataset, ...]:
    """``(train, val)``: the first ``n_train`` training examples with the
    test set, and the next ``n_val`` training examples as a held-out set
    (in the ``test`` slots), for choosing a rate without the test set."""
    if n_train < 1 or n_val < 0 or n_train + n_val > data.n_train:
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} exceeds the "
            f"{data.n_train} training examples"
        )
    x, y = data.x_train, data.y_train
    rest = slice(n_train, n_train + n_val)
    train = Dataset(x[:n_train], y[:n_train], data.x_test, data.y_test)
    val = Dataset(x[:n_train], y[:n_train], x[rest], y[rest])
    return train, val


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def equal_loss_runs(
    cfg: EqualLossConfig, data: Dataset
) -> tuple[pd.DataFrame, dict]:
    """Train every (B, rate, seed) until the training loss is below
    ``cfg.target_loss`` or the budget is spent; one ensemble per B.

    Returns:
        ``(runs, models)``: one row per run (``B``, ``lr``, ``seed``,
        ``reached``, ``diverged``, ``epochs``, ``train_loss``, ``train_acc``,
        ``val_acc``, ``test_acc``, ``lr_over_B``) and the trained models
        keyed by ``(B, lr, seed)``.
    """
    train, val = split(data, cfg.n_train, cfg.n_val)
    rows, trained = [], {}
    for b in cfg.batch_sizes:
        keys = [(lr, s) for lr in cfg.rates(b) for s in range(cfg.seeds)]
        ens = EnsembleMLP.from_models(
            [mlp(cfg.sizes, seed=s) for _, s in keys]
        )
        run = train_to_loss(
            ens,
            train,
            b,
            [lr for lr, _ in keys],
            cfg.target_loss,
            [cfg.budget(b, lr) for lr, _ in keys],
            [s for _, s in keys],
            max(1, round(cfg.check_epochs * cfg.n_train)),
            cfg.near,
            cfg.near_steps,
        )
        for i, (lr, seed) in enumerate(keys):
            net = ens.member(i)
            trained[(b, lr, seed)] = net
            rows.append(
                dict(
                    B=b,
                    lr=lr,
                    seed=seed,
                    reached=bool(run.reached[i]),
                    diverged=bool(run.diverged[i]),
                    epochs=run.examples[i] / cfg.n_train,
                    train_loss=run.train_loss[i],
                    train_acc=_accuracy(net, train.x_train, train.y_train),
                    val_acc=_accuracy(net, val.x_test, val.y_test),
                    test_acc=_accuracy(net, train.x_test, train.y_test),
                    lr_over_B=lr / b,
                )
            )
    return pd.DataFrame(rows), trained


def arms(runs: pd.DataFrame, cfg: EqualLossConfig) -> pd.DataFrame:
    """The two arms of the protocol as rows of ``runs`` with an ``arm``
    column: ``fixed`` (rate ``cfg.fixed_lr`` at every B) and ``tuned``
    (per B, the grid rate whose runs all reached the target with the best
    mean held-out accuracy). Runs that missed the target are kept in the
    fixed arm (``reached`` says so); B without a rate whose runs all
    reached the target has no tuned row."""
    fixed = runs[runs["lr"] == cfg.fixed_lr].assign(arm="fixed")
    grid = dict(cfg.grid)
    on_grid = runs[[lr in grid[b] for b, lr in zip(runs["B"], runs["lr"])]]
    ok = on_grid.groupby(["B", "lr"]).filter(lambda g: g["reached"].all())
    best = ok.groupby(["B", "lr"])["val_acc"].mean().groupby("B").idxmax()
    chosen = set(best.tolist())
    tuned = runs[[k in chosen for k in zip(runs["B"], runs["lr"])]]
    return pd.concat([fixed, tuned.assign(arm="tuned")], ignore_index=True)


def sharpness(
    cfg: EqualLossConfig, data: Dataset, models: dict, keys
) -> pd.DataFrame:
    """Every measure of the chain for the models ``keys`` (``(B, lr,
    seed)``): top Hessian eigenvalue and Keskar sharpness of the
    training loss, the training-loss increase under relative weight
    noise, and the test accuracy under Gaussian input noise (a measure
    of robustness that does not contain the clean test accuracy)."""
    train, _ = split(data, cfg.n_train, cfg.n_val)
    x, y = train.x_train, train.y_train
    gen = generator(7)
    noisy = train.x_test + cfg.input_sd * torch.randn(
        train.x_test.shape, generator=gen
    ).to(train.x_test.device)
    rows = []
    for b, lr, seed in keys:
        net = models[(b, lr, seed)]
        m = flatness_metrics(
            net,
            F.cross_entropy,
            x,
            y,
            [cfg.weight_radius],
            seed=seed,
            eps=cfg.eps,
        )
        rows.append(
            dict(
                B=b,
                lr=lr,
                seed=seed,
                lambda_max=m["lambda_max"],
                keskar=m["keskar"],
                weight_noise=float(m["weight_noise"][0]),
                noisy_acc=_accuracy(net, noisy, train.y_test),
            )
        )
    return pd.DataFrame(rows)


# The links of LeCun's chain: (name, cause column, effect column).
CHAIN = (
    ("batch size -> top eigenvalue", "B", "lambda_max"),
    ("batch size -> Keskar sharpness", "B", "keskar"),
    (
        "top eigenvalue -> loss under weight noise",
        "lambda_max",
        "weight_noise",
    ),
    (
        "loss under weight noise -> accuracy under input noise",
        "weight_noise",
        "noisy_acc",
    ),
    (
        "accuracy under input noise -> test accuracy",
        "noisy_acc",
        "test_acc",
    ),
    ("top eigenvalue -> test accuracy", "lambda_max", "test_acc"),
    ("Keskar sharpness -> test accuracy", "keskar", "test_acc"),
    ("batch size -> test accuracy", "B", "test_acc"),
)


def chain_links(frame: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation (``rho``, two-sided ``p``) of every link
    of :data:`CHAIN` in each arm of ``frame`` (runs that reached the
    target only), one row per link and arm."""
    rows = []
    for arm, part in frame[frame["reached"]].groupby("arm"):
        for name, a, b in CHAIN:
            if part[a].nunique() < 2 or part[b].nunique() < 2:
                continue  # no rank correlation with a constant
            test = spearmanr(part[a], part[b])
            rows.append(
                dict(
                    link=name,
                    arm=arm,
                    rho=test.statistic,
                    p=test.pvalue,
                    n=len(part),
                )
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# Equal steps: where does a bigger batch stop helping, at each rate?


@dataclass(frozen=True)
class EqualStepsConfig:
    """Every (B, rate) trained for the same number of steps."""

    sizes: tuple[int, ...]  # MLP widths, input first
    n_train: int  # training examples (the full batch)
    batch_sizes: tuple[int, ...]  # B values, the last the full batch
    lrs: tuple[float, ...]  # rates, each run at every B
    steps: int  # updates per run
    seeds: int  # runs per (B, rate)
    tol: float  # "matches the full batch": within tol of its progress

    @classmethod
    def for_scale(cls, scale) -> EqualStepsConfig:
        """The sweep for ``quick``, ``book`` or ``full``."""
        book = cls(
            sizes=(40, 100, 100, 10),
            n_train=1000,
            batch_sizes=(1, 4, 16, 64, 256, 1000),
            lrs=(0.03, 0.12, 0.48),
            steps=200,
            seeds=2,
            tol=0.1,
        )
        return pick(
            scale,
            quick=replace(
                book,
                sizes=(40, 32, 10),
                n_train=200,
                batch_sizes=(1, 16, 200),
                steps=40,
            ),
            book=book,
            full=more_of(book, seeds=5),
        )


def equal_steps(cfg: EqualStepsConfig, data: Dataset) -> pd.DataFrame:
    """Train every (B, rate, seed) for ``cfg.steps`` steps on the first
    ``cfg.n_train`` examples (one ensemble per B; a diverged run is
    recorded with a missing loss).

    Returns:
        One row per run: ``B``, ``lr``, ``seed``, ``init_loss``,
        ``train_loss``, ``examples`` (steps times B).
    """
    train, _ = split(data, cfg.n_train, 0)
    rows = []
    for b in cfg.batch_sizes:
        keys = [(lr, s) for lr in cfg.lrs for s in range(cfg.seeds)]
        ens = EnsembleMLP.from_models(
            [mlp(cfg.sizes, seed=s) for _, s in keys]
        )
        hist = train_ensemble(
            ens,
            train,
            b,
            [lr for lr, _ in keys],
            cfg.steps,
            [s for _, s in keys],
            on_divergence="record",
        )
        for i, (lr, seed) in enumerate(keys):
            rows.append(
                dict(
                    B=b,
                    lr=lr,
                    seed=seed,
                    init_loss=hist.train_loss[i, 0],
                    train_loss=hist.train_loss[i, -1],
                    examples=cfg.steps * b,
                )
            )
    return pd.DataFrame(rows)


def saturation(frame: pd.DataFrame, tol: float) -> pd.Series:
    """Per rate, the smallest B whose mean final loss is within ``tol``
    of the full batch's progress: ``loss(B) - loss(full) <= tol *
    (initial loss - loss(full))``; a (B, rate) with a diverged run (a
    missing loss) never qualifies."""
    frame = frame.assign(train_loss=frame["train_loss"].fillna(np.inf))
    mean = frame.groupby(["lr", "B"])[["init_loss", "train_loss"]].mean()
    out = {}
    for lr, part in mean.groupby(level="lr"):
        part = part.droplevel("lr").sort_index()
        full = part["train_loss"].iloc[-1]
        gain = part["init_loss"].iloc[-1] - full
        ok = part.index[(part["train_loss"] - full) <= tol * gain]
        out[lr] = int(ok.min())
    return pd.Series(out, name="saturation B")


def variance_law(
    net, data: Dataset, cfg: NoiseConfig, seed: int, point: str
) -> pd.DataFrame:
    """The measured variance of minibatch gradients of ``net`` on the
    training set against the exact law, at every ``B < N`` of ``cfg``.

    Returns:
        One row per B: ``point``, ``B``, ``measured`` (mean over draws),
        ``se`` (its standard error), ``law``, ``trace``, ``b_simple``.
    """
    x, y = data.x_train, data.y_train
    stats = noise_stats(net, x, y)
    bs = [b for b in cfg.batch_sizes if b < data.n_train]
    devs = minibatch_deviations(
        net, F.cross_entropy, x, y, bs, cfg.draws, seed=seed
    )
    return pd.DataFrame(
        dict(
            point=point,
            B=bs,
            measured=devs.mean(1),
            se=devs.std(1, ddof=1) / np.sqrt(cfg.draws),
            law=stats.minibatch_variance(np.array(bs)),
            trace=stats.trace,
            b_simple=stats.b_simple,
        )
    )


# The direction each link takes if LeCun's chain holds: +1 when the
# second quantity should grow with the first.
CHAIN_SIGN = {
    "batch size -> top eigenvalue": 1,
    "batch size -> Keskar sharpness": 1,
    "top eigenvalue -> loss under weight noise": 1,
    "loss under weight noise -> accuracy under input noise": -1,
    "accuracy under input noise -> test accuracy": 1,
    "top eigenvalue -> test accuracy": -1,
    "Keskar sharpness -> test accuracy": -1,
    "batch size -> test accuracy": -1,
}


# Short names of the links for a table that reads on a phone.
CHAIN_SHORT = {
    "batch size -> top eigenvalue": "B → λmax",
    "batch size -> Keskar sharpness": "B → Keskar",
    "top eigenvalue -> loss under weight noise": "λmax → weight-noise loss",
    "loss under weight noise -> accuracy under input noise": (
        "weight-noise loss → noisy acc"
    ),
    "accuracy under input noise -> test accuracy": "noisy acc → test acc",
    "top eigenvalue -> test accuracy": "λmax → test acc",
    "Keskar sharpness -> test accuracy": "Keskar → test acc",
    "batch size -> test accuracy": "B → test acc",
}


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment of the p-values ``p`` (one family of
    the ``m`` that are not NaN): the k-th smallest is multiplied by
    ``m - k + 1``, made monotone and capped at 1; NaN stays NaN."""
    p = np.asarray(p, float)
    if p.ndim != 1:
        raise ValueError("need a one-dimensional array of p-values")
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known])]
    scaled = p[order] * (len(order) - np.arange(len(order)))
    adjusted = np.full_like(p, np.nan)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def verdicts(links: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Add to :func:`chain_links` rows the ``expected`` sign of each link
    (:data:`CHAIN_SIGN`), Holm-adjusted p-values over all rows
    (``p_holm``) and a ``verdict``: ``supports`` or ``opposes`` the chain
    when ``p_holm < alpha``, else ``undecided``."""
    expected = links["link"].map(CHAIN_SIGN)
    sign = expected * np.sign(links["rho"])
    links = links.assign(expected=expected, p_holm=holm(links["p"]))
    significant = links["p_holm"] < alpha
    verdict = np.where(
        significant, np.where(sign > 0, "supports", "opposes"), "undecided"
    )
    return links.assign(verdict=verdict)
