"""Appendix, finding the top eigenvalue: power iteration against Lanczos,
on a network's Hessian and on test matrices with a chosen gap, and the
"stop when the estimate stops changing" rule replayed on their traces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .. import hessian, models, runtime, train
from ..data import Dataset
from ..lanczos import lanczos_estimates, lanczos_stop, power_estimates
from ..runtime import more_of, pick

TARGET = 1e-4  # relative error at which a method counts as converged


@dataclass(frozen=True)
class EigenvaluesConfig:
    """Sizes of the appendix's race between power iteration and Lanczos."""

    hessian_examples: int  # training examples in the loss whose Hessian
    # is probed
    train_steps: tuple[int, ...]  # SGD steps of the models raced on
    lr: float  # their SGD learning rate
    batch_size: int  # their SGD batch size
    starts: int  # random starts shared by both methods
    power_steps: int  # products of power iteration per start (MLP)
    lanczos_steps: int  # products of Lanczos per start (MLP)
    gaps: tuple[float, ...]  # lambda_2 / lambda_1 of the test spectra
    dim: int  # size of those (diagonal) test matrices
    diag_power_steps: int  # products of power iteration there
    diag_lanczos_steps: int  # products of Lanczos there

    @classmethod
    def for_scale(cls, scale) -> EigenvaluesConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls(
            hessian_examples=1000,
            train_steps=(300, 3000),
            lr=0.05,
            batch_size=32,
            starts=5,
            power_steps=200,
            lanczos_steps=25,
            gaps=(0.5, 0.8, 0.9, 0.95, 0.99),
            dim=2000,
            diag_power_steps=2000,
            diag_lanczos_steps=100,
        )
        quick = replace(
            book,
            hessian_examples=300,
            train_steps=(300, 1000),
            starts=2,
            gaps=(0.5, 0.9, 0.99),
            dim=500,
        )
        full = more_of(book, starts=10)
        return pick(scale, quick=quick, book=book, full=full)


def gapped_spectrum(dim: int, gap: float) -> torch.Tensor:
    """Eigenvalues ``(dim,)`` of a test matrix: ``1``, then ``gap`` (the
    ratio ``lambda_2 / lambda_1``), then ``dim - 2`` values spread evenly
    over ``gap * [-0.1, 0.9]``, a bulk with a few negative eigenvalues like
    a network's. Use ``lambda v: spectrum * v`` as the matrix."""
    if dim < 3:
        raise ValueError(f"dim must be at least 3, got {dim}")
    if not 0 < gap < 1:
        raise ValueError(f"gap (lambda_2 / lambda_1) must be in (0, 1): {gap}")
    bulk = gap * torch.linspace(-0.1, 0.9, dim - 2, dtype=torch.float64)
    return torch.cat([torch.tensor([1.0, gap], dtype=torch.float64), bulk])


def stop_on_change(estimates: np.ndarray, tol: float) -> tuple[int, float]:
    """Replay the stopping rule "stop when the estimate changes by less
    than ``tol``, relatively" (PyHessian's, with its ``+1e-6`` guard) on a
    sequence of estimates, one per product.

    Returns:
        ``(products, value)``: the products spent when the rule fires and
        the estimate it returns (the one before the last, as PyHessian
        does).

    Raises:
        ValueError: the rule never fires on ``estimates``.
    """
    est = np.asarray(estimates, dtype=float)
    for i in range(1, len(est)):
        if abs(est[i - 1] - est[i]) / (abs(est[i - 1]) + 1e-6) < tol:
            return i + 1, float(est[i - 1])
    raise ValueError(
        f"the estimate never changed by less than {tol:g} in {len(est)} "
        "products; run more"
    )


@dataclass(frozen=True)
class Race:
    """Power iteration against Lanczos from the same starts.

    ``power`` and ``lanczos`` hold relative errors ``(starts, steps)``
    after each product (a Lanczos row that broke down early repeats its
    last value). ``*_to_target`` give the products after which the error
    first is at most ``target`` (NaN if never). ``change_products`` and
    ``change_error`` are where power iteration's change-between-estimates
    rule at ``change_tol`` stops, and the error it returns;
    ``lanczos_stop_error`` is the error where Lanczos's own rule
    (:func:`batchlab.lanczos.lanczos_stop`, same tolerance, within its
    budget) stops. A start's power
    iteration ends early once its error is at most ``floor`` (if given);
    the rest of its row is NaN.
    """

    power: np.ndarray
    lanczos: np.ndarray
    power_to_target: np.ndarray
    lanczos_to_target: np.ndarray
    change_products: np.ndarray
    change_error: np.ndarray
    lanczos_stop_error: np.ndarray


def _first_at_most(errors: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(errors <= target)
    return float(hit[0] + 1) if len(hit) else float("nan")


def race_top_eigenvalue(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    reference: float,
    starts: int,
    power_steps: int,
    lanczos_steps: int,
    target: float = 1e-4,
    change_tol: float = 1e-3,
    seed: int = 0,
    floor: float | None = None,
) -> Race:
    """Estimate the largest eigenvalue by power iteration and by Lanczos
    from ``starts`` seeded Gaussian vectors, against a known ``reference``
    (which must be the largest eigenvalue and also the largest in
    magnitude, or power iteration converges elsewhere)."""
    if reference <= 0:
        raise ValueError(
            f"reference must be a positive largest eigenvalue, got {reference}"
        )
    if starts < 1:
        raise ValueError(f"starts must be at least 1, got {starts}")

    def converged(estimate: float) -> bool:
        return floor is not None and abs(estimate / reference - 1) <= floor

    gen = runtime.generator(seed)
    power, lanczos_err, stops, lz_stops = [], [], [], []
    for _ in range(starts):
        v0 = torch.randn(dim, generator=gen, dtype=torch.float64)
        p = power_estimates(matvec, v0, power_steps, done=converged)
        lz = lanczos_estimates(matvec, v0, lanczos_steps)
        lz = np.pad(lz, (0, lanczos_steps - len(lz)), mode="edge")
        err = np.full(power_steps, np.nan)
        err[: len(p)] = np.abs(p - reference) / reference
        power.append(err)
        lanczos_err.append(np.abs(lz - reference) / reference)
        stops.append(stop_on_change(p, change_tol))
        lz_stops.append(lanczos_stop(matvec, v0, change_tol, lanczos_steps))
    power_a, lanczos_a = np.array(power), np.array(lanczos_err)
    return Race(
        power=power_a,
        lanczos=lanczos_a,
        power_to_target=np.array([_first_at_most(r, target) for r in power_a]),
        lanczos_to_target=np.array(
            [_first_at_most(r, target) for r in lanczos_a]
        ),
        change_products=np.array([s[0] for s in stops]),
        change_error=np.array(
            [abs(s[1] - reference) / reference for s in stops]
        ),
        lanczos_stop_error=np.array(
            [abs(s[1] - reference) / reference for s in lz_stops]
        ),
    )


def race_on_mlp(
    cfg: EigenvaluesConfig, data: Dataset, steps: int
) -> tuple[Race, dict]:
    """Train a 40-100-100-10 tanh MLP for ``steps`` SGD steps and race
    the two methods to its Hessian's largest eigenvalue (cross-entropy on
    the first ``cfg.hessian_examples`` training examples).

    Returns:
        The :class:`Race` and a row: ``model``, ``params``, ``gap``
        (``lambda_2 / lambda_1``, from a float64 reference), mean products
        to :data:`TARGET` of ``power`` and ``lanczos``, and the median
        errors where the change rule stops (``change_stop_error``) and
        where Lanczos's own rule stops (``lanczos_stop_error``).
    """
    net = models.mlp([data.n_features, 100, 100, data.n_classes], seed=0)
    sgd = train.SGDConfig(cfg.batch_size, cfg.lr, steps, seed=0)
    train.train_sgd(net, data, sgd)
    x = data.x_train[: cfg.hessian_examples]
    y = data.y_train[: cfg.hessian_examples]
    ref = hessian.reference_top_eigenvalues(net, F.cross_entropy, x, y, k=2)
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    race = race_top_eigenvalue(
        op.matvec,
        op.dim,
        float(ref[0]),
        starts=cfg.starts,
        power_steps=cfg.power_steps,
        lanczos_steps=cfg.lanczos_steps,
        target=TARGET,
        floor=TARGET / 100,
    )
    return race, _row(
        f"MLP, {steps} steps", float(ref[1] / ref[0]), race, params=op.dim
    )


def race_on_diagonal(cfg: EigenvaluesConfig, gap: float) -> tuple[Race, dict]:
    """The same race on the diagonal test matrix
    :func:`gapped_spectrum` ``(cfg.dim, gap)``; returns it and its row."""
    spec = gapped_spectrum(cfg.dim, gap)
    race = race_top_eigenvalue(
        lambda v: spec * v,
        cfg.dim,
        1.0,
        starts=cfg.starts,
        power_steps=cfg.diag_power_steps,
        lanczos_steps=cfg.diag_lanczos_steps,
        target=TARGET,
        floor=TARGET / 100,
    )
    return race, _row("diagonal", gap, race, params=cfg.dim)


def _row(model: str, gap: float, race: Race, params: int) -> dict:
    return dict(
        model=model,
        params=params,
        gap=gap,
        power=float(race.power_to_target.mean()),
        lanczos=float(race.lanczos_to_target.mean()),
        change_stop_error=float(np.median(race.change_error)),
        lanczos_stop_error=float(np.median(race.lanczos_stop_error)),
    )


def never_worse(race: Race, slack: float = 1e-6) -> bool:
    """Whether, after every product and from every start, Lanczos's error
    is at most power iteration's (plus ``slack``; power iteration's row
    is NaN once it has converged, and those products are skipped)."""
    power = race.power[:, : race.lanczos.shape[1]]
    return bool(np.all((race.lanczos <= power + slack) | np.isnan(power)))
