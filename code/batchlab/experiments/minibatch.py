"""Chapter 1, minibatch or single-example SGD: its configuration and the
experiments too long for a cell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..data import Dataset
from ..ensemble import EnsembleMLP, train_ensemble
from ..models import mlp
from ..runtime import pick
from ..train import epochs_to_steps

# Batch sizes of the full-scale sweeps: powers of two, then all of
# MNIST-1D's 4000 training examples.
FULL_BATCH_SIZES = (*(2**k for k in range(12)), 4000)


@dataclass(frozen=True)
class SweepConfig:
    """A batch-size sweep on one data set with one MLP shape."""

    sizes: tuple[int, ...]  # MLP widths, input first
    batch_sizes: tuple[int, ...]  # B values (N means full batch)
    seeds: int  # independent runs per setting
    base_lr: float  # learning rate at batch size base_batch
    base_batch: int  # the B at which the linear rule equals base_lr
    epochs: float  # budget of the equal-epochs runs
    steps: int  # budget of the equal-steps runs

    @classmethod
    def for_scale(cls, scale) -> SweepConfig:
        """The sweep for ``quick``, ``book`` or ``full``."""

        book = cls(
            sizes=(40, 100, 100, 10),
            batch_sizes=(1, 4, 16, 64, 256, 1024, 4000),
            seeds=3,
            base_lr=0.05,
            base_batch=16,
            epochs=5,
            steps=200,
        )
        return pick(
            scale,
            quick=replace(
                book,
                sizes=(40, 32, 10),
                batch_sizes=(1, 16, 256, 4000),
                seeds=2,
                epochs=1,
                steps=40,
            ),
            book=book,
            full=replace(
                book,
                batch_sizes=FULL_BATCH_SIZES,
                seeds=5,
                epochs=20,
                steps=2000,
            ),
        )

    def lr(self, rule: str, batch_size: int) -> float:
        """Learning rate of ``rule`` (``fixed`` or ``linear``) at B."""
        if rule == "fixed":
            return self.base_lr
        if rule == "linear":
            return self.base_lr * batch_size / self.base_batch
        raise ValueError(f"rule must be 'fixed' or 'linear', got {rule!r}")


def batch_size_sweep(
    cfg: SweepConfig, data: Dataset, rules: Sequence[str] = ("fixed", "linear")
) -> tuple[list[dict], dict]:
    """Train every (budget, rule, B, seed) of the sweep.

    Models of one batch size and budget are trained together in one
    :class:`EnsembleMLP`; diverged runs are recorded, not raised.

    Returns:
        ``(rows, models)``: one row per run (``budget``, ``rule``, ``B``,
        ``seed``, ``lr``, ``steps``, ``train_loss``, ``test_loss``,
        ``test_acc``, ``gap``, ``grad_evals``, ``wall_time``,
        ``diverged``), and the trained models keyed by
        ``(budget, rule, B, seed)``.
    """
    rows, trained = [], {}
    for budget in ("epochs", "steps"):
        for b in cfg.batch_sizes:
            steps = (
                epochs_to_steps(cfg.epochs, data.n_train, b)
                if budget == "epochs"
                else cfg.steps
            )
            keys = [(r, s) for r in rules for s in range(cfg.seeds)]
            nets = [mlp(cfg.sizes, seed=s) for _, s in keys]
            ens = EnsembleMLP.from_models(nets)
            lrs = [cfg.lr(r, b) for r, _ in keys]
            hist = train_ensemble(
                ens,
                data,
                b,
                lrs,
                steps,
                [s for _, s in keys],
                on_divergence="record",
            )
            for i, (rule, seed) in enumerate(keys):
                rows.append(
                    dict(
                        budget=budget,
                        rule=rule,
                        B=b,
                        seed=seed,
                        lr=lrs[i],
                        steps=steps,
                        train_loss=hist.train_loss[i, -1],
                        test_loss=hist.test_loss[i, -1],
                        train_acc=hist.train_acc[i, -1],
                        test_acc=hist.test_acc[i, -1],
                        gap=hist.test_loss[i, -1] - hist.train_loss[i, -1],
                        grad_evals=hist.grad_evals,
                        wall_time=hist.wall_time / len(keys),
                        diverged=bool(hist.diverged[i]),
                    )
                )
                trained[(budget, rule, b, seed)] = ens.member(i)
    return rows, trained


@dataclass(frozen=True)
class NoiseConfig:
    """Sizes of the gradient-noise experiments of the minibatch chapter."""

    batch_sizes: tuple[int, ...]  # B values whose variance is measured
    draws: int  # minibatch gradients drawn per B
    train_steps: int  # SGD steps of the run whose noise scale is tracked
    checkpoints: int  # points along that run where B_simple is computed
    counter_lrs: tuple[float, ...]  # large learning rates of the counterpoint
    counter_batches: tuple[int, ...]  # batch sizes of the counterpoint
    counter_epochs: float  # epochs of each counterpoint run

    @classmethod
    def for_scale(cls, scale) -> NoiseConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""

        book = cls(
            batch_sizes=(1, 4, 16, 64, 256, 1024, 4000),
            draws=40,
            train_steps=3000,
            checkpoints=8,
            counter_lrs=(0.2, 0.5),
            counter_batches=(1, 8, 64),
            counter_epochs=2,
        )
        return pick(
            scale,
            quick=replace(
                book,
                batch_sizes=(1, 16, 256, 4000),
                draws=10,
                train_steps=300,
                checkpoints=4,
                counter_lrs=(0.2,),
                counter_batches=(1, 64),
                counter_epochs=0.5,
            ),
            book=book,
            full=replace(
                book,
                batch_sizes=FULL_BATCH_SIZES,
                draws=200,
                train_steps=20000,
                checkpoints=20,
                counter_lrs=(0.1, 0.2, 0.5),
                counter_batches=(1, 4, 16, 64, 256),
                counter_epochs=5,
            ),
        )
