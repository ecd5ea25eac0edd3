"""Many normalized MLPs trained at once: BatchNorm, Batch Renorm and
LayerNorm members of one shape, stacked so that a small-batch study of
several seeds and normalizations costs one training loop.

:class:`StackedNormMLP` holds the members, :func:`train_stacked` runs
plain SGD on all of them (each with its own batch order) and
:func:`stacked_accuracy` evaluates them; a test checks the stack step for
step against single models built by :func:`batchlab.batchnorm.bn_mlp`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batchnorm import bn_mlp, check_momentum
from .train import batch_schedule


class StackedNormMLP(nn.Module):
    """Several tanh MLPs (one per ``(norm, seed)`` pair) evaluated as one.

    Member ``m`` starts from the weights of ``bn_mlp(sizes, norms[m],
    seeds[m], momentum)`` and computes what that model computes; the
    weights are stacked so that one batched product serves all members,
    which makes thousands of tiny-batch steps affordable. ``norms`` are
    ``"batchnorm"``, ``"renorm"`` or ``"layernorm"``.

    Inputs have shape ``(M, B, d)``: member ``m`` sees ``x[m]``.
    """

    KINDS = ("batchnorm", "renorm", "layernorm")

    def __init__(
        self,
        sizes: Sequence[int],
        norms: Sequence[str],
        seeds: Sequence[int],
        momentum: float = 0.1,
        eps: float = 1e-5,
    ):
        super().__init__()
        if len(norms) != len(seeds) or not norms:
            raise ValueError("need one seed per norm, and at least one")
        bad = set(norms) - set(self.KINDS)
        if bad:
            raise ValueError(f"norms must be among {self.KINDS}: {bad}")
        check_momentum(momentum)
        self.norms, self.momentum, self.eps = list(norms), momentum, eps
        self.r_max, self.d_max = 1.0, 0.0
        nets = [bn_mlp(sizes, n, s, momentum) for n, s in zip(norms, seeds)]
        linears = [
            [m for m in net if isinstance(m, nn.Linear)] for net in nets
        ]
        normals = [
            [
                m
                for m in net
                if hasattr(m, "bias") and not isinstance(m, nn.Linear)
            ]
            for net in nets
        ]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].weight.T for ls in linears]))
            for k in range(len(sizes) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].bias[None] for ls in linears]))
            for k in range(len(sizes) - 1)
        )
        self.gains = nn.ParameterList(
            nn.Parameter(torch.stack([ns[k].weight[None] for ns in normals]))
            for k in range(len(sizes) - 2)
        )
        self.shifts = nn.ParameterList(
            nn.Parameter(torch.stack([ns[k].bias[None] for ns in normals]))
            for k in range(len(sizes) - 2)
        )
        m = len(norms)
        for k, width in enumerate(sizes[1:-1]):
            self.register_buffer(f"mean{k}", torch.zeros(m, 1, width))
            self.register_buffer(f"var{k}", torch.ones(m, 1, width))
        kinds = torch.tensor([self.KINDS.index(n) for n in norms])
        self.register_buffer("kinds", kinds)
        self.to(next(self.parameters()).device)  # the members' device

    def _normalize(self, h: torch.Tensor, k: int) -> torch.Tensor:
        # means of squares instead of torch.var, which is slow over dim 1
        rm, rv = getattr(self, f"mean{k}"), getattr(self, f"var{k}")
        ln = (self.kinds == 2)[:, None, None]
        centred = h - h.mean(2, keepdim=True)
        var_ln = (centred * centred).mean(2, keepdim=True)
        out_ln = centred / torch.sqrt(var_ln + self.eps)
        if not self.training:
            out_bn = (h - rm) / torch.sqrt(rv + self.eps)
            return torch.where(ln, out_ln, out_bn)
        n = h.shape[1]
        if n < 2:
            raise ValueError("batch statistics need at least 2 examples")
        mean = h.mean(1, keepdim=True)
        centred = h - mean
        var = (centred * centred).mean(1, keepdim=True)
        sigma_b = torch.sqrt(var + self.eps)
        out_bn = centred / sigma_b
        with torch.no_grad():
            sigma = torch.sqrt(rv + self.eps)
            r = (sigma_b / sigma).clamp(1 / self.r_max, self.r_max)
            d = ((mean - rm) / sigma).clamp(-self.d_max, self.d_max)
            renorm = (self.kinds == 1)[:, None, None]
            r = torch.where(renorm, r, torch.ones_like(r))
            d = torch.where(renorm, d, torch.zeros_like(d))
            a = self.momentum
            rm.mul_(1 - a).add_(a * mean)
            rv.mul_(1 - a).add_(a * var * (n / (n - 1)))
        return torch.where(ln, out_ln, out_bn * r + d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(M, B, classes)`` for inputs ``(M, B, d)``."""
        if x.ndim != 3 or x.shape[0] != len(self.norms):
            raise ValueError(
                f"expected inputs (M={len(self.norms)}, B, d), got "
                f"{tuple(x.shape)}"
            )
        z = x
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(b, z, w)
            if k < last:
                z = self._normalize(z, k) * self.gains[k] + self.shifts[k]
                z = torch.tanh(z)
        return z


def train_stacked(
    model: StackedNormMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    lr: float,
    steps: int,
    seeds: Sequence[int],
    limits: Callable[[int], tuple[float, float]] | None = None,
    on_step: Callable[[int], None] | None = None,
    every: int = 1,
) -> None:
    """Plain SGD on every member of ``model`` at once, in place.

    Member ``m`` visits ``x`` ``(n, d)`` in the order
    ``train.batch_schedule(n, batch_size, steps, seeds[m])``, as
    ``train_sgd`` with that seed would; ``limits(step)`` gives Batch
    Renormalization's ``(r_max, d_max)`` before each step (default: 1, 0);
    ``on_step(step)`` is called every ``every`` steps and after the last.
    """
    if len(seeds) != len(model.norms):
        raise ValueError("need one batch-order seed per member")
    orders = torch.stack(
        [batch_schedule(x.shape[0], batch_size, steps, s) for s in seeds], 1
    ).to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for step in range(1, steps + 1):
        if limits is not None:
            model.r_max, model.d_max = limits(step)
        idx = orders[step - 1]
        out = model(x[idx])
        loss = (
            F.cross_entropy(
                out.flatten(0, 1), y[idx].flatten(), reduction="sum"
            )
            / batch_size
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None and (step % every == 0 or step == steps):
            on_step(step)
            model.train()


@torch.no_grad()
def stacked_accuracy(
    model: StackedNormMLP, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Accuracy of every member in evaluation mode on ``x`` ``(n, d)``,
    shape ``(M,)``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        out = model(x.expand(len(model.norms), -1, -1))
    finally:
        model.train(was_training)
    return (out.argmax(2) == y).float().mean(1)
