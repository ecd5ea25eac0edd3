"""What goes wrong when the statistics are held constant: Ioffe and
Szegedy's example (their section 2), ``x_hat = x - E[x]`` with ``x = u +
b``, trained on a squared loss with the mean outside or inside the
gradient."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ... import runtime
from ...claims import Claim
from ...data import Dataset
from ...runtime import Longer, Rate, pick
from ...train import SGDConfig, train_sgd

MEANS = ("held constant", "inside the gradient")

#: The exact laws hold to this tolerance (float64).
EXACT_TOL = 1e-9


@dataclass(frozen=True)
class Config:
    """The toy problem and its full-batch gradient descent."""

    n: int = 64  # values u_i (drawn from a standard normal)
    target_mean: float = 1.0  # targets are standard normal plus this
    steps: int = 100  # gradient steps
    lr: float = 0.5  # learning rate

    RATE_FIELDS: ClassVar = ("lr",)
    VARIANTS: ClassVar = {"longer": Longer("steps"), "rate": Rate(lr=0.25)}

    @classmethod
    def for_scale(cls, scale) -> Config:
        """The configuration for ``quick``, ``book`` or ``full`` (one
        exact computation at every scale)."""
        book = cls()
        return pick(scale, quick=replace(book), book=book, full=book)


class CentredBias(nn.Module):
    """``u + b - mean(u + b)``, the mean inside the gradient or held
    constant (detached)."""

    def __init__(self, inside: bool):
        super().__init__()
        self.inside = inside
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """The centred values, shape of ``u``."""
        x = u + self.b
        mean = x.mean() if self.inside else x.mean().detach()
        return x - mean


def toy_data(cfg: Config) -> Dataset:
    """``u`` and the targets (float64, seeded), as train and test set."""
    gen = runtime.generator(0)
    u = torch.randn(cfg.n, generator=gen, dtype=torch.float64)
    t = torch.randn(cfg.n, generator=gen, dtype=torch.float64)
    return Dataset(u, t + cfg.target_mean, u, t + cfg.target_mean)


def run(cfg: Config, data: None = None) -> pd.DataFrame:
    """Full-batch gradient descent on the squared loss, both ways.

    Returns:
        Rows with ``mean`` (one of :data:`MEANS`), ``step``, ``bias``,
        ``loss`` and ``target_mean`` (of the drawn targets).
    """
    toy = toy_data(cfg)
    rows = []
    for mean in MEANS:
        model = CentredBias(inside=mean == MEANS[1])

        def record(step: int, model: nn.Module, mean=mean) -> None:
            with torch.no_grad():
                loss = F.mse_loss(model(toy.x_train), toy.y_train)
            rows.append(
                dict(
                    mean=mean, step=step, bias=model.b.item(), loss=loss.item()
                )
            )

        record(0, model)
        sgd = SGDConfig(cfg.n, cfg.lr, cfg.steps)
        train_sgd(model, toy, sgd, loss_fn=F.mse_loss, on_step=record)
    return pd.DataFrame(rows).assign(target_mean=float(toy.y_train.mean()))


def facts(frame: pd.DataFrame, cfg: Config) -> dict:
    """``esc_bias``: the held-constant run's final bias, against the law
    ``2 eta T mean(t)`` (``esc_law``); ``esc_loss_change``: how far its
    loss moved; ``esc_inside``: the largest bias with the mean inside."""
    out = frame[frame["mean"] == MEANS[0]].sort_values("step")
    inside = frame[frame["mean"] == MEANS[1]]
    law = 2 * cfg.lr * cfg.steps * frame["target_mean"].iloc[0]
    return dict(
        esc_steps=cfg.steps,
        esc_lr=cfg.lr,
        esc_target_mean=float(frame["target_mean"].iloc[0]),
        esc_bias=out["bias"].iloc[-1],
        esc_law=law,
        esc_law_gap=abs(out["bias"].iloc[-1] - law) / abs(law),
        esc_loss_change=(out["loss"] - out["loss"].iloc[0]).abs().max(),
        esc_inside=inside["bias"].abs().max(),
        esc_tol=EXACT_TOL,
    )


CLAIMS = [
    Claim(
        "bn-escape-drift",
        "identity",
        "with the mean held constant, every step moves the bias by the "
        "same amount, 2 eta times the mean target, while the loss does not "
        "change",
        lambda f: (
            f["esc_law_gap"] < f["esc_tol"]
            and f["esc_loss_change"] < f["esc_tol"]
        ),
        measure=("esc_bias", "esc_law_gap", "esc_loss_change"),
        quick=True,
    ),
    Claim(
        "bn-escape-inside",
        "identity",
        "with the mean inside the gradient, the bias gets no gradient and "
        "stays at zero",
        lambda f: f["esc_inside"] < f["esc_tol"],
        measure=("esc_inside",),
        quick=True,
    ),
]
