"""Why the condition number matters: gradient descent on the synthetic
set's regression bowl after each normalization, its steps to a tolerance
against the condition-number bound, and a step just past the stability
limit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ... import runtime
from ...claims import Claim
from ...normalize import fit_transform, linear_regression_hessian
from ...runtime import Rate, Wider, pick
from .linear import synthetic_inputs


@dataclass(frozen=True)
class Config:
    """The bowls and the descent."""

    dim: int = 20  # features of the synthetic set (as in the first section)
    n_synthetic: int = 10000  # its examples
    rho: float = 0.9  # correlation between any two features
    scale_lo: float = 0.5  # smallest standard deviation
    scale_hi: float = 3.0  # largest
    mean_shift: float = 3.0  # the shift of the "shifted mean" bowl
    step: float = 1.0  # the step, in units of 1 / lambda_max
    blow_step: float = 2.1  # a step past the stability limit 2 / lambda_max
    tol: float = 1e-3  # relative error at which descent counts as converged
    max_steps: int = 2_000_000  # steps at most
    blow_steps: int = 5000  # steps given to the larger step to blow up

    RATE_FIELDS: ClassVar = ("step",)
    # no training data set or hidden layer: "wider" doubles the features,
    # "rate" halves the step.
    VARIANTS: ClassVar = {
        "wider": Wider("dim", factor=2),
        "rate": Rate(step=0.5),
    }

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls()
        quick = replace(book, dim=10, n_synthetic=2000, tol=1e-2)
        return pick(scale, quick=quick, book=book, full=book)


def gd_steps_on_quadratic(
    H: torch.Tensor,
    lr: float,
    tol: float = 1e-6,
    max_steps: int = 100_000,
    seed: int = 0,
) -> tuple[int, bool]:
    """Gradient descent steps on ``f(w) = w^T H w / 2`` until the error
    ``|w_t| / |w_0|`` falls below ``tol``.

    The start is a random unit vector; ``H`` must be symmetric.

    Returns:
        ``(steps, diverged)``: the steps to tolerance (``max_steps`` if
        never reached) and whether the iterate blew up (norm above 1e12
        or NaN), which is told apart from merely not converging in time.
    """
    H = torch.as_tensor(H, dtype=torch.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square, got {tuple(H.shape)}")
    gen = runtime.generator(seed)
    w = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
    w = (w / w.norm()).numpy()
    step = np.eye(len(w)) - lr * H.cpu().numpy()  # w_{t+1} = (I - lr H) w_t
    for t in range(1, max_steps + 1):
        w = step @ w
        norm = float(np.sqrt(w @ w))
        if not norm <= 1e12:  # diverged (or NaN)
            return max_steps, True
        if norm < tol:
            return t, False
    return max_steps, False


def gd_bound(kappa: float, tol: float, step: float = 1.0) -> float:
    """Steps of gradient descent with step ``step / lambda_max`` (``0 <
    step < 2``) that reach relative error ``tol`` on any quadratic of
    condition number ``kappa``: every error component shrinks at least by
    ``q = max(|1 - step|, 1 - step / kappa)`` per step, so
    ``ceil(ln(1 / tol) / -ln q)`` steps suffice (1 if ``q = 0``)."""
    if not 0 < step < 2 or kappa < 1:
        raise ValueError(f"need 0 < step < 2 and kappa >= 1: {step}, {kappa}")
    q = max(abs(1 - step), abs(1 - step / kappa))
    if q == 0:
        return 1.0
    return float(np.ceil(np.log(1 / tol) / -np.log(q)))


def run(cfg: Config, data=None) -> pd.DataFrame:
    """Gradient descent on the regression bowl of the synthetic inputs
    shifted by ``cfg.mean_shift``, raw, standardized and ZCA-whitened,
    from one random start, with step ``cfg.step / lambda_max`` and with
    ``cfg.blow_step / lambda_max``.

    Returns:
        One row per ``inputs`` with ``condition``, ``steps`` to relative
        error ``cfg.tol``, the ``bound`` (:func:`gd_bound`) and whether
        the larger step blew up (``diverges``, not merely slow).
    """
    x = synthetic_inputs(cfg)
    rows = []
    for kind in ["shifted mean", "raw", "standardize", "zca"]:
        shifted = kind == "shifted mean"
        inputs = x + cfg.mean_shift if shifted else x
        z = fit_transform(inputs, "raw" if shifted else kind)(inputs)
        H = linear_regression_hessian(z)
        ev = torch.linalg.eigvalsh(H)
        top, kappa = float(ev[-1]), float(ev[-1] / ev[0])
        steps, _ = gd_steps_on_quadratic(
            H, cfg.step / top, cfg.tol, cfg.max_steps
        )
        _, blew = gd_steps_on_quadratic(
            H, cfg.blow_step / top, cfg.tol, cfg.blow_steps
        )
        bound = gd_bound(kappa, cfg.tol, cfg.step)
        rows.append(
            dict(
                inputs=kind,
                condition=kappa,
                steps=steps,
                bound=bound,
                diverges=blew,
            )
        )
    return pd.DataFrame(rows)


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """Steps of the whitened and raw bowls, the largest excess of steps
    over the bound (``gd_over``, at most 0 when the bound holds), whether
    the steps rise with the condition number and whether every larger
    step blew up."""
    by = frame.set_index("inputs")
    ordered = frame.sort_values("condition")["steps"]
    return dict(
        gd_tol=cfg.tol,
        gd_step=cfg.step,
        gd_blow_step=cfg.blow_step,
        gd_white_steps=int(by.loc["zca", "steps"]),
        gd_raw_steps=int(by.loc["raw", "steps"]),
        gd_shift_steps=int(by.loc["shifted mean", "steps"]),
        gd_over=float((frame["steps"] - frame["bound"]).max()),
        gd_rising=bool((ordered.diff().dropna() >= 0).all()),
        gd_blown=bool(frame["diverges"].all()),
    )


CLAIMS = [
    Claim(
        "nz-gd-bound",
        "identity",
        "gradient descent never needs more steps than the "
        "condition-number bound",
        lambda f: f["gd_over"] <= 0,
        measure=("gd_over",),
        quick=True,
    ),
    Claim(
        "nz-gd-blowup",
        "identity",
        "a step of 2.1 / lambda_max blows up (not merely fails to "
        "converge) for every normalization",
        lambda f: f["gd_blown"],
        quick=True,
    ),
    Claim(
        "nz-gd-rising",
        "finding",
        "the steps to tolerance rise with the condition number",
        lambda f: f["gd_rising"],
        where=("wider", "rate"),
        measure=("gd_white_steps", "gd_raw_steps", "gd_shift_steps"),
    ),
]
