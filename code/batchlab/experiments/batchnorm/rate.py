"""Does the noise lower the learning rate? The effective rate
``eta / |w|^2`` of the first layer's scale-invariant weights in a 2x2
design, statistics batch x gradient batch (BatchNorm at B = 4 and at
B = 128, ghost BatchNorm with statistics over groups of 4 and the
gradient over 128, and its reverse), beside noise-free full-batch descent
and a network without BatchNorm."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as sps

from ...batchnorm import bn_mlp
from ...claims import Claim
from ...data import Dataset
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
    seeds: int = 4  # initializations and batch orders, paired
    extra_seeds: int = 2  # of those, for full-batch descent and no BatchNorm
    steps_tol: float = 0.01  # |w|^2 grows by the summed steps within this
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


class StepLengths:
    """``on_step`` of :func:`~batchlab.train.train_sgd` that follows the
    incoming weights ``w_j`` (rows of ``weight``) of every unit.

    In float64, whatever the network's precision: after each step it
    adds ``eta^2 |g_j|^2`` (the squared step) and ``2 eta w_j . g_j`` (the
    radial term) to running sums, with ``g_j`` the gradient the step
    used and ``w_j`` the weights before it, so that ``|w_T|^2 - |w_0|^2
    = sum eta^2 |g|^2 - sum 2 eta w . g`` up to the rounding of the
    update itself.
    """

    def __init__(self, weight: torch.Tensor, lr: float):
        self.weight, self.lr = weight, lr
        self.before = weight.detach().double().clone()
        self.start = (self.before**2).sum(1)
        self.squared_steps = torch.zeros_like(self.start)
        self.radial = torch.zeros_like(self.start)
        self.cos = torch.zeros_like(self.start)  # largest |cos| per unit

    def __call__(self, step: int, model) -> None:
        g = self.weight.grad.detach().double()
        w = self.before
        wg = (w * g).sum(1)
        self.squared_steps += self.lr**2 * (g * g).sum(1)
        self.radial += 2 * self.lr * wg
        cos = wg.abs() / (w.norm(dim=1) * g.norm(dim=1)).clamp_min(1e-300)
        self.cos = torch.maximum(self.cos, cos)
        self.before = self.weight.detach().double().clone()

    def summary(self) -> dict:
        """Means over units: ``rate_ratio`` (``eta / |w|^2`` now over at
        the start), ``squared_steps``, ``growth`` of ``|w|^2``,
        ``radial`` and the largest ``cos`` over units and steps."""
        end = (self.before**2).sum(1)
        return dict(
            rate_ratio=float((1 / end).mean() / (1 / self.start).mean()),
            squared_steps=float(self.squared_steps.mean()),
            growth=float((end - self.start).mean()),
            radial=float(self.radial.mean()),
            cos=float(self.cos.max()),
        )


def first_examples_loss(out, y, k: int):
    """Cross-entropy of the first ``k`` examples of the batch: the others
    only shape the BatchNorm statistics."""
    return F.cross_entropy(out[:k], y[:k])


def effective_rate_run(
    data: Dataset,
    sizes,
    stats: int | None,
    grad: int,
    lr: float,
    steps: int,
    seed: int,
) -> dict:
    """One SGD run following the first layer's weights.

    ``stats`` is the statistics batch (``None``: no BatchNorm), ``grad``
    the gradient batch. Each step draws ``max(stats, grad)`` examples;
    BatchNorm normalizes consecutive groups of ``stats`` of them (ghost
    batches when ``stats < grad``), and the loss is that of the first
    ``grad`` (a larger statistics batch when ``stats > grad``).

    Returns:
        :meth:`StepLengths.summary`.
    """
    batch = max(stats or grad, grad)
    if stats is None:
        net = bn_mlp(sizes, "none", seed=seed)
    else:
        group = stats if stats < batch else None
        net = bn_mlp(sizes, seed=seed, group=group)
    follow = StepLengths(net[0].weight, lr)
    loss = functools.partial(first_examples_loss, k=grad)
    sgd = SGDConfig(batch, lr, steps, seed=seed)
    train_sgd(net, data, sgd, loss_fn=loss, on_step=follow)
    return follow.summary()


def run(cfg: Config, data: Dataset) -> pd.DataFrame:
    """The four cells at every rate; at the first rate, for the first
    ``extra_seeds`` seeds, also full-batch descent (statistics and
    gradient over the whole training set) and the network without
    BatchNorm at the small batch.

    Returns:
        Rows with ``seed``, ``lr``, ``stats`` (statistics batch; 0 for no
        BatchNorm), ``grad`` (gradient batch), ``run`` (a name), the
        columns of :meth:`StepLengths.summary` and ``fall``
        (``1 - rate_ratio``).
    """
    size = dict(small=cfg.small, large=cfg.large)
    runs = [(lr, size[s], size[g]) for lr in cfg.lrs for s, g in CELLS]
    n, lr0 = data.n_train, cfg.lrs[0]
    extra = [(lr0, n, n), (lr0, None, cfg.small)]
    rows = []
    for seed in range(cfg.seeds):
        for lr, stats, grad in runs + (
            extra if seed < cfg.extra_seeds else []
        ):
            got = effective_rate_run(
                data, cfg.sizes, stats, grad, lr, cfg.steps, seed
            )
            rows.append(
                dict(
                    seed=seed,
                    lr=lr,
                    stats=stats or 0,
                    grad=grad,
                    run=run_name(stats, grad, n),
                    **got,
                )
            )
    frame = pd.DataFrame(rows)
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


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """For each rate ``i`` (``r{i}``: the fall ``1 - eta_eff / eta_eff(0)``;
    ``k{i}``: the summed squared steps) the four cells' means over seeds
    (``rate_r0_ss`` ...), the statistics' share of the extra fall of
    BatchNorm at the small batch over BatchNorm at the large one along
    each path (``_gs``: with the small gradient batch, from ``ls`` to
    ``ss``; ``_gl``: with the large one, from ``ll`` to ``sl``), and
    per-seed orderings; at the first rate, the full-batch run's fall
    over the large and the small batch's on the same seeds, and the runs
    without BatchNorm."""
    tags = _cell_names(cfg)
    out = dict(
        rate_small=cfg.small,
        rate_large=cfg.large,
        rate_steps=cfg.steps,
        rate_seeds=cfg.seeds,
        rate_units=cfg.sizes[1],
        rate_n=int(frame["stats"].max()),
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
    bn_runs = frame[frame["stats"] > 0]
    out["rate_rank"] = min(
        sps.spearmanr(part["fall"], part["squared_steps"]).statistic
        for _, part in bn_runs.groupby("lr")
    )
    for i, lr in enumerate(cfg.lrs):
        out[f"rate_lr{i}"] = lr
    lr0 = frame[frame["lr"] == cfg.lrs[0]]
    full = lr0[(lr0["stats"] == lr0["stats"].max())]
    lr0 = lr0[lr0["seed"].isin(full["seed"])]  # the same seeds
    large = lr0[(lr0["stats"] == cfg.large) & (lr0["grad"] == cfg.large)]
    out["rate_full_r"] = full["fall"].mean()
    out["rate_full_k"] = full["squared_steps"].mean()
    out["rate_signal"] = full["fall"].mean() / large["fall"].mean()
    small = lr0[(lr0["stats"] == cfg.small) & (lr0["grad"] == cfg.small)]
    out["rate_signal_small"] = full["fall"].mean() / small["fall"].mean()
    bn = frame[frame["stats"] > 0]
    plain = frame[frame["stats"] == 0]
    gap = (bn["growth"] - bn["squared_steps"]).abs() / bn["squared_steps"]
    plain_gap = (plain["growth"] - plain["squared_steps"]).abs() / plain[
        "squared_steps"
    ]
    out.update(
        rate_steps_err=gap.max(),
        rate_steps_tol=cfg.steps_tol,
        rate_cos_bn=bn["cos"].max(),
        rate_cos_plain=plain["cos"].min(),
        rate_plain_off=plain_gap.min(),
        rate_plain_ratio=plain["rate_ratio"].mean(),
    )
    return out


def summary(frame: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Means over seeds per rate and run, for the table: the effective
    rate at the end over its start and the summed squared steps."""
    means = frame.groupby(["lr", "stats", "grad", "run"])[
        ["rate_ratio", "squared_steps"]
    ].mean()
    means = means.reset_index().sort_values(
        ["lr", "stats", "grad"], ascending=[False, True, True]
    )
    return means.drop(columns=["stats", "grad"])


CLAIMS = [
    Claim(
        "bn-rate-steps",
        "finding",
        "with BatchNorm, the squared norm of every unit's weights grows by "
        "the summed squared steps, eta^2 sum |g|^2, to within 1% (the "
        "gradient has almost no component along w), in every run",
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
        "0.95), whatever the cell",
        lambda f: f["rate_rank"] > 0.95,
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
        "statistics of 4 change the fall less with the gradient of 128 "
        "(ghost BatchNorm against BatchNorm at 128) than with the gradient "
        "of 4, at both rates and on both measures",
        lambda f: f["rate_ghost_smaller"],
        where=("wider", "rate", "digits"),
        measure=("rate_share_r0_gs", "rate_share_r0_gl"),
    ),
    Claim(
        "bn-rate-signal",
        "finding",
        "at the first rate, noise-free full-batch descent loses more than "
        "half as much effective rate as BatchNorm at 128",
        lambda f: f["rate_signal"] > 0.5,
        where=("longer", "wider"),
        measure=("rate_signal", "rate_full_r"),
    ),
]
