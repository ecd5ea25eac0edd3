"""Chapter 2, does normalization equalize the Hessian's eigenvalues:
its configuration and experiments."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .. import runtime
from ..runtime import pick


def gd_steps_on_quadratic(
    H: torch.Tensor,
    lr: float,
    tol: float = 1e-6,
    max_steps: int = 100_000,
    seed: int = 0,
) -> int:
    """Gradient descent steps on ``f(w) = w^T H w / 2`` until the error
    ``|w_t| / |w_0|`` falls below ``tol`` (``max_steps`` if never).

    The start is a random unit vector; ``H`` must be symmetric.
    """
    H = torch.as_tensor(H, dtype=torch.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be square, got {tuple(H.shape)}")
    gen = runtime.generator(seed)
    w = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
    w /= w.norm()
    for t in range(1, max_steps + 1):
        w = w - lr * (H @ w)
        norm = float(w.norm())
        if not np.isfinite(norm) or norm > 1e12:
            return max_steps
        if norm < tol:
            return t
    return max_steps


@dataclass(frozen=True)
class NormalizationConfig:
    """Sizes of the normalization chapter's experiments."""

    dim: int  # features of the synthetic regression set
    rho: float  # correlation between any two synthetic features
    mean_shift: float  # offset added to every input to show a mean's effect
    gd_tol: float  # error at which gradient descent counts as converged
    logistic_steps: int  # gradient-descent steps of logistic regression
    mlp_width: int  # hidden width of the MLP whose Hessian is formed exactly
    hessian_examples: int  # training examples in that exact Hessian
    mlp_steps: int  # SGD steps training that MLP
    center_steps: int  # SGD steps of the hidden-unit centring comparison
    center_every: int  # steps between renormalizations
    seeds: int  # seeds of the centring comparison
    race_train_steps: tuple[int, ...]  # SGD steps of the models whose top
    # eigenvalue power iteration and Lanczos race to (lr 0.05, batch 32)
    race_starts: int  # random starts of that race
    race_power_steps: int  # products of power iteration per start
    race_lanczos_steps: int  # products of Lanczos per start
    race_gaps: tuple[float, ...]  # lambda_2 / lambda_1 of synthetic spectra
    race_dim: int  # size of those synthetic (diagonal) matrices

    @classmethod
    def for_scale(cls, scale) -> NormalizationConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""

        book = cls(
            dim=20,
            rho=0.9,
            mean_shift=3.0,
            gd_tol=0.001,
            logistic_steps=300,
            mlp_width=16,
            hessian_examples=1000,
            mlp_steps=2000,
            center_steps=3000,
            center_every=50,
            seeds=2,
            race_train_steps=(300, 3000),
            race_starts=5,
            race_power_steps=200,
            race_lanczos_steps=25,
            race_gaps=(0.5, 0.8, 0.9, 0.95, 0.99),
            race_dim=2000,
        )
        return pick(
            scale,
            quick=replace(
                book,
                dim=10,
                gd_tol=0.01,
                logistic_steps=60,
                mlp_width=8,
                hessian_examples=300,
                mlp_steps=300,
                center_steps=300,
                seeds=1,
                race_train_steps=(300, 1000),
                race_starts=2,
                race_gaps=(0.5, 0.9, 0.99),
                race_dim=500,
            ),
            book=book,
            full=replace(
                book,
                gd_tol=1e-06,
                logistic_steps=1000,
                mlp_width=24,
                hessian_examples=2000,
                mlp_steps=6000,
                center_steps=9000,
                seeds=4,
                race_starts=10,
                race_power_steps=400,
            ),
        )
