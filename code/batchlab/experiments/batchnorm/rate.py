"""Does the noise lower the learning rate? The effective rate
``eta / |w|^2`` of the first layer's scale-invariant weights in a 2x2
design, statistics batch x gradient batch (BatchNorm at B = 4 and at
B = 128, ghost BatchNorm with statistics over groups of 4 and the
gradient over 128, and its reverse), beside a network without BatchNorm.
:func:`effective_rate_run` serves the next section (:mod:`.edge`) too."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch.nn.functional as F
from scipy import stats as sps

from ...batchnorm import StepLengths, bn_mlp
from ...claims import Claim
from ...data import Dataset
from ...hessian import HessianOperator, top_eigenvalues
from ...runtime import Digits, Longer, Rate, Wider, more_of, pick
from ...train import SGDConfig, train_sgd

#: The cells: (statistics batch, gradient batch) with ``small`` and
#: ``large`` standing for the configuration's two batch sizes.
CELLS = (
    ("small", "small"),
    ("large", "small"),
    ("small", "large"),
    ("large", "large"),
)


@dataclass(frozen=True)
class Config:
    """The 2x2 design, its rates and the extra runs at the first rate."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    small: int = 4  # the small batch (statistics or gradient)
    large: int = 128  # the large batch
    lrs: tuple[float, ...] = (0.1, 0.05)  # rates of the 2x2 design
    steps: int = 300  # SGD steps of every run
    seeds: int = 3  # initializations and batch orders, paired
    plain_seeds: int = 2  # of those, also run without BatchNorm
    dataset: str = "mnist1d"  # batchlab.data.load name

    RATE_FIELDS: ClassVar = ("lrs",)
    VARIANTS: ClassVar = {
        "longer": Longer("steps"),
        "wider": Wider("sizes", factor=2),
        "rate": Rate(lrs=(0.05, 0.2)),
        "digits": Digits(sizes=(64, 100, 100, 10)),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, steps=40, seeds=2, large=32)
        return pick(scale, quick=quick, book=book, full=more_of(book, seeds=8))


#: "grows by the summed squared steps": within this share of them.
STEPS_TOL = 0.01


def first_examples_loss(out, y, k: int):
    """Cross-entropy of the first ``k`` examples of the batch: the others
    only shape the BatchNorm statistics."""
    return F.cross_entropy(out[:k], y[:k])


class LossTrace:
    """A training loss (``first_examples_loss`` of the first ``k``) that
    remembers the value of every call made with autograd on, that is of
    every SGD step and not of the evaluations."""

    def __init__(self, k: int):
        self.k, self.values = k, []

    def __call__(self, out, y):
        loss = first_examples_loss(out, y, self.k)
        if loss.requires_grad:
            self.values.append(float(loss.detach()))
        return loss

    def rises(self) -> int:
        """How many steps' losses exceed the step before's."""
        v = self.values
        return sum(b > a for a, b in zip(v, v[1:]))


def effective_rate_run(
    data: Dataset,
    sizes,
    stats: int | None,
    grad: int,
    lr: float,
    steps: int,
    seed: int,
    momentum: float = 0.0,
    sharpness: bool = False,
) -> dict:
    """One SGD run following the first layer's weights.

    ``stats`` is the statistics batch (``None``: no BatchNorm), ``grad``
    the gradient batch. Each step draws ``max(stats, grad)`` examples;
    BatchNorm normalizes consecutive groups of ``stats`` of them (ghost
    batches when ``stats < grad``), and the loss is that of the first
    ``grad`` (a larger statistics batch when ``stats > grad``).
    ``momentum`` is SGD's heavy-ball momentum.

    Returns:
        :meth:`~batchlab.batchnorm.StepLengths.summary`, ``rises`` (steps
        whose training loss exceeded the step before's) and with
        ``sharpness`` the largest eigenvalue of the Hessian of the
        training loss over the whole training set at the end (all
        parameters; BatchNorm in training mode, so with the statistics
        of all examples), else NaN.
    """
    batch = max(stats or grad, grad)
    if stats is None:
        net = bn_mlp(sizes, "none", seed=seed)
    else:
        group = stats if stats < batch else None
        net = bn_mlp(sizes, seed=seed, group=group)
    follow = StepLengths(net[0].weight)
    trace = LossTrace(grad)
    sgd = SGDConfig(batch, lr, steps, seed=seed, momentum=momentum)
    train_sgd(net, data, sgd, loss_fn=trace, on_step=follow)
    top = math.nan
    if sharpness:
        net.train()
        op = HessianOperator(net, F.cross_entropy, data.x_train, data.y_train)
        top = float(top_eigenvalues(op, k=1, tol=1e-2, seed=seed).values[0])
    return dict(follow.summary(), rises=trace.rises(), sharpness=top)


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """The four cells at every rate, and for the first ``plain_seeds``
    seeds the network without BatchNorm at the small batch and the first
    rate.

    Returns:
        Rows with ``seed``, ``lr``, ``stats`` (statistics batch; 0 for no
        BatchNorm), ``grad`` (gradient batch), ``run`` (a name), the
        columns of :meth:`~batchlab.batchnorm.StepLengths.summary` and
        ``fall`` (``1 - rate_ratio``).
    """
    size = dict(small=cfg.small, large=cfg.large)
    runs = [(lr, size[s], size[g]) for lr in cfg.lrs for s, g in CELLS]
    plain = [(cfg.lrs[0], None, cfg.small)]
    rows = []
    for seed in range(cfg.seeds):
        extra = plain if seed < cfg.plain_seeds else []
        for lr, stats, grad in runs + extra:
            got = effective_rate_run(
                data, cfg.sizes, stats, grad, lr, cfg.steps, seed
            )
            rows.append(
                dict(
                    seed=seed,
                    lr=lr,
                    stats=stats or 0,
                    grad=grad,
                    run=run_name(stats, grad, data.n_train),
                    **got,
                )
            )
    frame = pd.DataFrame(rows).drop(columns=["rises", "sharpness"])
    return frame.assign(fall=1 - frame["rate_ratio"])


def run_name(stats: int | None, grad: int, n: int) -> str:
    """A run's name in figures: its statistics and gradient batches."""
    if stats is None:
        return f"no BatchNorm, B = {grad}"
    if stats == grad == n:
        return "full batch"
    return f"statistics {stats}, gradient {grad}"


def fall_table(frame: pd.DataFrame, cfg: Config, value: str) -> pd.DataFrame:
    """Per seed and rate, the four cells' ``value`` in columns named
    ``"<stats>/<grad>"`` (``"4/4"``, ``"128/4"``, ...)."""
    cells = frame[frame["stats"].isin([cfg.small, cfg.large])]
    cells = cells[cells["grad"].isin([cfg.small, cfg.large])]
    name = cells["stats"].astype(str) + "/" + cells["grad"].astype(str)
    return cells.assign(cell=name).pivot_table(
        index=["lr", "seed"], columns="cell", values=value
    )


def _cell_names(cfg: Config) -> dict[str, str]:
    """Glue tags of the cells: ``ss`` = statistics small, gradient small;
    ``ls`` = statistics large, gradient small; and so on."""
    size = dict(small=cfg.small, large=cfg.large)
    return {f"{s[0]}{g[0]}": f"{size[s]}/{size[g]}" for s, g in CELLS}


def steps_miss(frame: pd.DataFrame) -> pd.Series:
    """Per run, how far the growth of ``|w|^2`` misses the summed squared
    steps, as a share of them."""
    sq = frame["squared_steps"]
    return (frame["growth"] - sq).abs() / sq


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """For each rate ``i`` (``r{i}``: the fall ``1 - eta_eff / eta_eff(0)``;
    ``k{i}``: the summed squared steps) the four cells' means over seeds
    (``rate_r0_ss`` ...), the statistics' share of the extra fall of
    BatchNorm at the small batch over BatchNorm at the large one along
    each path (``_gs``: with the small gradient batch, from ``ls`` to
    ``ss``; ``_gl``: with the large one, from ``ll`` to ``sl``), and
    per-seed orderings; the mechanism's checks, and the runs without
    BatchNorm."""
    tags = _cell_names(cfg)
    out = dict(
        rate_small=cfg.small,
        rate_large=cfg.large,
        rate_steps=cfg.steps,
        rate_seeds=cfg.seeds,
        rate_units=cfg.sizes[1],
    )
    ordered, smaller = True, True
    for metric, value in (("r", "fall"), ("k", "squared_steps")):
        table = fall_table(frame, cfg, value)
        for i, lr in enumerate(cfg.lrs):
            per_seed = table.loc[lr]
            cell = {t: per_seed[c] for t, c in tags.items()}
            for t, v in cell.items():
                out[f"rate_{metric}{i}_{t}"] = v.mean()
            total = (cell["ss"] - cell["ll"]).mean()
            out[f"rate_share_{metric}{i}_gs"] = (
                cell["ss"] - cell["ls"]
            ).mean() / total
            out[f"rate_share_{metric}{i}_gl"] = (
                cell["sl"] - cell["ll"]
            ).mean() / total
            others = pd.concat([cell["ls"], cell["sl"], cell["ll"]], axis=1)
            ordered &= bool((cell["ss"] > others.max(axis=1)).all())
            stats_effect = (cell["ss"] - cell["ls"]).mean()
            ghost_effect = (cell["sl"] - cell["ll"]).abs().mean()
            smaller &= bool(ghost_effect < stats_effect)
    out["rate_small_most"] = ordered
    out["rate_ghost_smaller"] = smaller
    out["rate_ghost_flips"] = bool(
        (out["rate_r0_sl"] < out["rate_r0_ll"])
        != (out["rate_r1_sl"] < out["rate_r1_ll"])
    )
    bn = frame[frame["stats"] > 0]
    out["rate_rank"] = min(
        sps.spearmanr(part["fall"], part["squared_steps"]).statistic
        for _, part in bn.groupby("lr")
    )
    for i, lr in enumerate(cfg.lrs):
        out[f"rate_lr{i}"] = lr
    plain = frame[frame["stats"] == 0]
    cos_plain = plain["cos"].min()
    out.update(
        rate_start=bn["start"].mean(),
        rate_steps_err=steps_miss(bn).max(),
        rate_steps_tol=STEPS_TOL,
        rate_cos_bn=bn["cos"].max(),
        rate_cos_plain=cos_plain,
        rate_cos_plain_floor=math.floor(100 * cos_plain) / 100,
        rate_plain_off=steps_miss(plain).min(),
    )
    return out


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per rate and run, for the table: the fall of the
    effective rate (none for the network without BatchNorm, whose
    ``eta / |w|^2`` is no effective rate) and the summed squared steps."""
    means = frame.groupby(["lr", "stats", "grad", "run"])[
        ["fall", "squared_steps"]
    ].mean()
    means = means.reset_index().sort_values(
        ["lr", "stats", "grad"], ascending=[False, True, True]
    )
    means.loc[means["stats"] == 0, "fall"] = math.nan
    return means.drop(columns=["stats", "grad"]).reset_index(drop=True)


CLAIMS = [
    Claim(
        "bn-rate-steps",
        "finding",
        "with BatchNorm and plain SGD, the squared norm of every unit's "
        "weights grows by the summed squared steps, eta^2 sum |g|^2, to "
        "within 1% (the gradient has almost no component along w), in "
        "every run",
        lambda f: f["rate_steps_err"] < f["rate_steps_tol"],
        where=("longer", "wider", "rate"),
        measure=("rate_steps_err", "rate_cos_bn"),
        quick=True,
    ),
    Claim(
        "bn-rate-plain",
        "finding",
        "without BatchNorm each run's gradient has a cosine above 0.1 with "
        "some unit's weights, and the squared norm's growth is off the "
        "summed squared steps by more than 10%",
        lambda f: f["rate_cos_plain"] > 0.1 and f["rate_plain_off"] > 0.1,
        where=("longer", "wider", "digits"),
        measure=("rate_cos_plain", "rate_plain_off"),
    ),
    Claim(
        "bn-rate-one-curve",
        "finding",
        "at each rate, the BatchNorm runs order by their fall in effective "
        "rate as by their summed squared steps (rank correlation above "
        "0.9), whatever the cell",
        lambda f: f["rate_rank"] > 0.9,
        where=("wider", "rate", "digits"),
        measure=("rate_rank",),
    ),
    Claim(
        "bn-rate-small-most",
        "finding",
        "at both rates and for every seed, BatchNorm at the small batch "
        "(statistics and gradient of 4 examples) falls more than each of "
        "the other three cells, in effective rate and in summed squared "
        "steps",
        lambda f: f["rate_small_most"],
        where=("longer", "wider", "rate", "digits"),
        measure=("rate_r0_ss", "rate_r0_ls", "rate_r0_sl", "rate_r0_ll"),
    ),
    Claim(
        "bn-rate-ghost",
        "finding",
        "over 300 steps, statistics of 4 change the fall less with the "
        "gradient of 128 (ghost BatchNorm against BatchNorm at 128) than "
        "with the gradient of 4, at both rates and on both measures",
        lambda f: f["rate_ghost_smaller"],
        where=("wider", "rate", "digits"),
        measure=("rate_share_r0_gs", "rate_share_r0_gl"),
    ),
    Claim(
        "bn-rate-ghost-flips",
        "finding",
        "ghost BatchNorm (statistics of 4, gradient of 128) falls less than "
        "BatchNorm at 128 at one of the two rates and more at the other "
        "(means over seeds)",
        lambda f: f["rate_ghost_flips"],
        where=("wider", "rate"),
        measure=("rate_r0_sl", "rate_r0_ll", "rate_r1_sl", "rate_r1_ll"),
    ),
]
