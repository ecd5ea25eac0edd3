"""The race between power iteration and Lanczos from shared random
starts, and the stopping rules replayed on it: shared by the sections
:mod:`.race` (a network's Hessian) and :mod:`.gaps` (test matrices)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ... import runtime
from ...lanczos import (
    Eigen,
    SymmetricOperator,
    lanczos_estimates,
    lanczos_top,
    power_estimates,
)


@dataclass(frozen=True)
class Budget:
    """Starts, products and tolerances of one race."""

    starts: int  # random starts shared by both methods
    power_steps: int  # products of power iteration per start
    lanczos_steps: int  # products of Lanczos per start (the race)
    stop_steps: int  # products Lanczos's rule may use at most
    target: float = 1e-4  # relative error at which a method has converged
    tol: float = 1e-3  # tolerance of both stopping rules
    tight_tol: float = 1e-6  # a tighter tolerance for Lanczos's rule


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


def _first_at_most(errors: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(errors <= target)
    return float(hit[0] + 1) if len(hit) else float("nan")


def race_starts(
    op: SymmetricOperator,
    reference: Eigen,
    cfg: Budget,
    seed: int = 0,
    floor: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both methods from ``cfg.starts`` seeded Gaussian starts on ``op``,
    against its two largest eigenvalues and the top eigenvector known from
    ``reference`` (the largest must also be the largest in magnitude, or
    power iteration converges elsewhere). A start's power iteration ends
    once its error is at most ``floor`` (if given).

    Returns:
        ``(traces, stops)``: per ``start`` and ``product`` the relative
        errors ``power`` (NaN once ended) and ``lanczos`` (NaN past its
        products); per start the products to ``cfg.target`` of each
        method, where the change rule stops (``change_products``,
        ``change_error``), where Lanczos's rule stops at ``cfg.tol``
        (``stop_products``, ``stop_error``, ``stop_value`` and the gap
        between its two largest Ritz values there, ``ritz_gap``) and at
        ``cfg.tight_tol`` (``tight_error``), and the start's component
        along the top eigenvector in units of a typical one's
        (``component``, ``|v0 . q1| sqrt(p) / |v0|``).
    """
    lam1 = float(reference.values[0])
    if lam1 <= 0 or cfg.starts < 1 or cfg.lanczos_steps > cfg.power_steps:
        raise ValueError(
            f"need a positive top eigenvalue ({lam1}), starts >= 1 and "
            "lanczos_steps <= power_steps"
        )
    q1 = torch.from_numpy(reference.vectors[:, 0]).double()
    gen = runtime.generator(seed)
    traces, stops = [], []

    def done(estimate: float) -> bool:
        return floor is not None and abs(estimate / lam1 - 1) <= floor

    for start in range(cfg.starts):
        v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        power = np.full(cfg.power_steps, np.nan)
        lz = np.full(cfg.power_steps, np.nan)
        p = power_estimates(op, v0, cfg.power_steps, done)
        power[: len(p)] = np.abs(p / lam1 - 1)
        est = lanczos_estimates(op, v0, cfg.lanczos_steps)
        lz[: cfg.lanczos_steps] = np.abs(
            np.pad(est, (0, cfg.lanczos_steps - len(est)), "edge") / lam1 - 1
        )
        traces.append(
            pd.DataFrame(
                dict(
                    start=start,
                    product=np.arange(1, cfg.power_steps + 1),
                    power=power,
                    lanczos=lz,
                )
            )
        )
        n, value = stop_on_change(p, cfg.tol)
        rule = lanczos_top(op, tol=cfg.tol, max_steps=cfg.stop_steps, v0=v0)
        tight = lanczos_top(
            op, tol=cfg.tight_tol, max_steps=cfg.stop_steps, v0=v0
        )
        stops.append(
            dict(
                start=start,
                power_to_target=_first_at_most(power, cfg.target),
                lanczos_to_target=_first_at_most(lz, cfg.target),
                change_products=n,
                change_error=abs(value / lam1 - 1),
                stop_products=rule.n_products,
                stop_value=float(rule.values[0]),
                stop_error=abs(float(rule.values[0]) / lam1 - 1),
                ritz_gap=float(rule.ritz[0] - rule.ritz[1]),
                tight_error=abs(float(tight.values[0]) / lam1 - 1),
                component=float(abs(v0 @ q1) * op.dim**0.5 / v0.norm()),
            )
        )
    return pd.concat(traces, ignore_index=True), pd.DataFrame(stops)


def never_worse(traces: pd.DataFrame, slack: float = 1e-6) -> bool:
    """Whether, after every product and from every start, Lanczos's
    error is at most power iteration's (plus ``slack``; products where
    either has no estimate are skipped)."""
    both = traces.dropna(subset=["power", "lanczos"])
    return bool((both["lanczos"] <= both["power"] + slack).all())
