"""The fair test's machinery, shared by its sections: every run trained to
one training loss (:func:`batchlab.ensemble.train_to_loss`), then
measured (flatness, sensitivity to input noise).

Sections of the fair test train overlapping cells (a batch size and a
rate, over the same seeds). A run's result does not depend on the other
runs of its stack, so :func:`train` remembers what it trained in this
process and a later section reuses those runs instead of training them
again (the page trains each cell once); the memory is keyed by every
setting that changes a run, the data and the seed set included.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from ...data import Dataset
from ...ensemble import EnsembleMLP, train_to_loss
from ...landscape import flatness_metrics, input_noise_flips
from ...models import mlp
from ...runtime import seed_set

#: Seed of the noisy test inputs, the same for every run (paired).
NOISE = 7
#: Runs and measures remembered per process (a run's weights are small).
MEMORY = 2000
#: Most hidden activations (models x B x widest hidden layer) one stack of
#: models holds in a step: beyond a few hundred thousand floats they leave
#: the CPU's cache and a step costs up to twice as much per model, so
#: large batches train in smaller stacks (a run's result does not depend
#: on its stack mates).
STACK_FLOATS = 300_000
_runs: OrderedDict = OrderedDict()
_measures: OrderedDict = OrderedDict()


@dataclass(frozen=True)
class Protocol:
    """The settings every section of the fair test shares."""

    sizes: tuple[int, ...] = (40, 100, 100, 10)  # MLP widths, input first
    n_train: int = 1000  # training examples (the full batch)
    n_val: int = 1000  # held-out examples that choose a tuned rate
    seeds: int = 8  # runs per cell; seed k is shared by every cell
    target_loss: float = 0.1  # every run stops once below this / divisor
    target_divisor: int = 1  # longer variant: a target 3 times lower
    check_epochs: float = 0.5  # epochs between checks of the loss ...
    near: float = 2.0  # ... until below near * target, then closer ones
    near_examples: int = 50  # fewest examples between two close checks
    eps: float = 1e-3  # Keskar box half-width, relative to |theta_i| + 1
    weight_radius: float = 0.05  # weight noise, relative to |theta|
    input_sd: float = 0.5  # sd of the Gaussian noise added to test inputs
    input_draws: int = 4  # noisy copies of the test set per run
    dataset: str = "mnist1d"  # batchlab.data.load name

    DATA_FIELDS: ClassVar = ("n_train", "n_val")

    @property
    def target(self) -> float:
        """The training loss every run trains to."""
        return self.target_loss / self.target_divisor


def split(data: Dataset, n_train: int, n_val: int) -> tuple[Dataset, ...]:
    """``(train, val)``: the first ``n_train`` training examples with the
    test set, and the next ``n_val`` training examples as a held-out set
    (in the ``test`` slots), for choosing a rate without the test set.

    Raises:
        ValueError: the data have fewer than ``n_train + n_val`` training
            examples.
    """
    if n_train < 1 or n_val < 0 or n_train + n_val > data.n_train:
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} exceeds the "
            f"{data.n_train} training examples"
        )
    x, y = data.x_train, data.y_train
    rest = slice(n_train, n_train + n_val)
    train_set = Dataset(x[:n_train], y[:n_train], data.x_test, data.y_test)
    val = Dataset(x[:n_train], y[:n_train], x[rest], y[rest])
    return train_set, val


def budget(cfg, batch_size: int) -> int:
    """Examples a run at ``batch_size`` may use, the same for every rate:
    ``budget_epochs`` epochs or ``budget_steps`` steps, whichever is
    more."""
    return max(
        round(cfg.budget_epochs * cfg.n_train), cfg.budget_steps * batch_size
    )


def _fingerprint(data: Dataset) -> str:
    h = hashlib.blake2b(digest_size=8)
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _context(cfg: Protocol, data: Dataset) -> tuple:
    return (
        _fingerprint(data),
        str(data.x_train.device),
        seed_set(),
        cfg.sizes,
        cfg.n_train,
        cfg.n_val,
        cfg.target,
        cfg.check_epochs,
        cfg.near,
        cfg.near_examples,
    )


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _remember(memory: OrderedDict, key, value) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MEMORY:
        memory.popitem(last=False)


def _known(context, b: int, lr: float, seed: int, cap: int):
    """A remembered run valid for budget ``cap``: trained with that
    budget, or one that reached the target within it."""
    got = _runs.get((context, b, lr, seed))
    if got is None:
        return None
    row, _ = got
    if row["budget"] == cap or (row["reached"] and row["examples"] <= cap):
        return got
    return None


def stack_size(batch_size: int, sizes: tuple[int, ...]) -> int:
    """Models per stack at ``batch_size`` for an MLP of layer widths
    ``sizes``: as many as :data:`STACK_FLOATS` allows, at least one."""
    return max(1, STACK_FLOATS // (batch_size * max(sizes[1:-1])))


def _train_stack(cfg, sets, b: int, keys, cap: int, context) -> None:
    train_set, val = sets
    ens = EnsembleMLP.from_models([mlp(cfg.sizes, seed=s) for _, s in keys])
    done = train_to_loss(
        ens,
        train_set,
        b,
        [lr for lr, _ in keys],
        cfg.target,
        cap,
        [s for _, s in keys],
        max(1, round(cfg.check_epochs * cfg.n_train)),
        cfg.near,
        -(-cfg.near_examples // b),
        estimate_far=True,
    )
    for i, (lr, seed) in enumerate(keys):
        net = ens.member(i)
        row = dict(
            B=b,
            lr=lr,
            seed=seed,
            reached=bool(done.reached[i]),
            diverged=bool(done.diverged[i]),
            examples=int(done.examples[i]),
            budget=cap,
            epochs=done.examples[i] / cfg.n_train,
            train_loss=float(done.train_loss[i]),
            train_acc=_accuracy(net, train_set.x_train, train_set.y_train),
            val_acc=_accuracy(net, val.x_test, val.y_test),
            test_acc=_accuracy(net, train_set.x_test, train_set.y_test),
        )
        _remember(_runs, (context, b, lr, seed), (row, net))


def train(cfg, data: Dataset, cells) -> tuple[pd.DataFrame, dict]:
    """Train every run of ``cells`` (pairs ``(B, rates)``) over
    ``cfg.seeds`` seeds until its training loss is below ``cfg.target``
    or its budget (:func:`budget`) is spent; one stack per batch size.

    Returns:
        ``(runs, models)``: one row per run (``B``, ``lr``, ``seed``,
        ``reached``, ``diverged``, ``examples``, ``budget``, ``epochs``,
        ``train_loss``, ``train_acc``, ``val_acc``, ``test_acc``,
        ``lr_over_B``) and the trained models keyed by ``(B, lr, seed)``.
    """
    sets = split(data, cfg.n_train, cfg.n_val)
    context = _context(cfg, data)
    rows, models = [], {}
    for b, rates in cells:
        cap = budget(cfg, b)
        keys = [(lr, s) for lr in rates for s in range(cfg.seeds)]
        todo = [k for k in keys if _known(context, b, *k, cap) is None]
        size = stack_size(b, cfg.sizes)
        for i in range(0, len(todo), size):
            _train_stack(cfg, sets, b, todo[i : i + size], cap, context)
        for lr, seed in keys:
            row, net = _known(context, b, lr, seed, cap)
            rows.append({**row, "budget": cap})
            models[(b, lr, seed)] = net
    frame = pd.DataFrame(rows)
    return frame.assign(lr_over_B=frame["lr"] / frame["B"]), models


def _measure_one(cfg, sets, net, seed: int) -> dict:
    train_set, _ = sets
    m = flatness_metrics(
        net,
        F.cross_entropy,
        train_set.x_train,
        train_set.y_train,
        [cfg.weight_radius],
        seed=seed,
        eps=cfg.eps,
    )
    return dict(
        lambda_max=m["lambda_max"],
        keskar=m["keskar"],
        weight_noise=float(m["weight_noise"][0]),
        flips=input_noise_flips(
            net, train_set.x_test, cfg.input_sd, cfg.input_draws, seed=NOISE
        ),
    )


def measure(cfg, data: Dataset, runs: pd.DataFrame, models) -> pd.DataFrame:
    """``runs`` with the measures of every run that reached the target
    (missing elsewhere): top Hessian eigenvalue and Keskar sharpness of
    the training loss, its rise under relative weight noise, and the
    share of test predictions that flip under Gaussian input noise (the
    same noisy copies for every run, drawn with seed :data:`NOISE`).
    """
    sets = split(data, cfg.n_train, cfg.n_val)
    context = _context(cfg, data) + (
        cfg.eps,
        cfg.weight_radius,
        cfg.input_sd,
        cfg.input_draws,
    )
    rows = []
    for r in runs[runs["reached"]].itertuples():
        key = (context, r.B, r.lr, r.seed, r.examples)
        if key not in _measures:
            net = models[(r.B, r.lr, r.seed)]
            got = _measure_one(cfg, sets, net, r.seed)
            _remember(_measures, key, got)
        rows.append(dict(B=r.B, lr=r.lr, seed=r.seed, **_measures[key]))
    cols = ["B", "lr", "seed", "lambda_max", "keskar", "weight_noise", "flips"]
    found = pd.DataFrame(rows, columns=cols)
    return runs.merge(found, on=["B", "lr", "seed"], how="left")


def run_cells(cfg, data: Dataset, cells) -> pd.DataFrame:
    """:func:`train` then :func:`measure`: the tidy frame of a section."""
    runs, models = train(cfg, data, cells)
    return measure(cfg, data, runs, models)


#: The measures a summary table shows, in order.
MEASURES = [
    "reached",
    "epochs",
    "train_loss",
    "test_acc",
    "lambda_max",
    "keskar",
    "weight_noise",
    "flips",
]
#: Their names in a table.
NAMES = {
    "train_loss": "stop loss",
    "test_acc": "test acc",
    "lambda_max": "λmax",
    "keskar": "Keskar %",
    "weight_noise": "weight-noise rise",
    "flips": "input flips",
}


def summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Means over seeds of :data:`MEASURES` per setting ``by`` (the share
    of runs that reached the target; the others over those runs)."""
    done = frame[frame["reached"]]
    cols = [c for c in MEASURES[1:] if c in frame.columns]
    means = done.groupby(by)[cols].mean()
    return means.join(frame.groupby(by)["reached"].mean()).loc[
        :, ["reached", *cols]
    ]
