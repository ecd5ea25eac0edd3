"""BatchNorm written out, population statistics and running averages.

* :class:`ScratchBatchNorm1d` -- BatchNorm for ``(n, c)`` inputs written
  out for the text; equal to ``nn.BatchNorm1d`` in both modes.
* :class:`BatchRenorm1d` -- Batch Renormalization (Ioffe 2017).
* :func:`population_stats` / :func:`set_precise_stats` -- exact mean and
  variance of every BatchNorm layer's inputs over a data set under the
  current weights ("precise BN").
* :class:`RunningTracker` -- running averages of several momenta riding
  along one training run, compared with population statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import mlp
from .train import batch_schedule


def _check_momentum(momentum: float | None) -> None:
    if momentum is not None and not 0 <= momentum <= 1:
        raise ValueError(
            f"momentum must lie in [0, 1] (or be None for a cumulative "
            f"average), got {momentum}"
        )


def _check_batch(x: torch.Tensor, features: int) -> None:
    if x.ndim != 2 or x.shape[1] != features:
        raise ValueError(
            f"expected inputs of shape (n, {features}), got {tuple(x.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(
            "BatchNorm in training mode needs at least 2 examples per batch "
            "(the variance of one example is zero); use a larger batch or "
            "call .eval()"
        )


class ScratchBatchNorm1d(nn.Module):
    """BatchNorm over the batch dimension of ``(n, c)`` inputs.

    Training mode (``module.training``, not gradient mode) normalizes
    with the batch mean and biased variance and updates
    ``running = (1 - momentum) running + momentum * batch`` with the
    *unbiased* batch variance; ``momentum=None`` keeps a cumulative
    average. Evaluation mode normalizes with the running statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        super().__init__()
        _check_momentum(momentum)
        self.num_features, self.eps, self.momentum = (
            num_features,
            eps,
            momentum,
        )
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(n, c)``."""
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            _check_batch(x, self.num_features)
            mean, var = x.mean(0), x.var(0, unbiased=False)
            self._update(mean.detach(), x.var(0, unbiased=True).detach())
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight + self.bias

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var_unbiased: torch.Tensor):
        self.num_batches_tracked += 1
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(m * mean)
        self.running_var.mul_(1 - m).add_(m * var_unbiased)


class BatchRenorm1d(ScratchBatchNorm1d):
    """Batch Renormalization: batch statistics corrected towards the
    running ones by ``r`` and ``d``, treated as constants in the gradient.

    ``y = ((x - mu_B) / sigma_B * r + d) * weight + bias`` with
    ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
    ``d = clip((mu_B - mu) / sigma, -d_max, d_max)``. With ``r_max = 1``
    and ``d_max = 0`` it is BatchNorm.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.01,
        r_max: float = 3.0,
        d_max: float = 5.0,
    ):
        super().__init__(num_features, eps, momentum)
        self.set_limits(r_max, d_max)

    def set_limits(self, r_max: float, d_max: float) -> None:
        """Change the clipping limits (Ioffe relaxes them in training)."""
        if r_max < 1 or d_max < 0:
            raise ValueError("need r_max >= 1 and d_max >= 0")
        self.r_max, self.d_max = float(r_max), float(d_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(n, c)``."""
        if not self.training:
            return super().forward(x)
        _check_batch(x, self.num_features)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        sigma_b = torch.sqrt(var + self.eps)
        sigma = torch.sqrt(self.running_var + self.eps)
        with torch.no_grad():
            r = (sigma_b / sigma).clamp(1 / self.r_max, self.r_max)
            d = ((mean - self.running_mean) / sigma).clamp(
                -self.d_max, self.d_max
            )
        self._update(mean.detach(), x.var(0, unbiased=True).detach())
        x_hat = (x - mean) / sigma_b * r + d
        return x_hat * self.weight + self.bias


NORMS = ("batchnorm", "renorm", "layernorm", "groupnorm", "none")


def bn_mlp(
    sizes: Sequence[int],
    norm: str = "batchnorm",
    seed: int = 0,
    momentum: float | None = 0.1,
    activation: str = "tanh",
) -> nn.Sequential:
    """An MLP with a normalization layer before every hidden activation.

    ``norm`` is ``"batchnorm"`` (``nn.BatchNorm1d``), ``"renorm"``
    (:class:`BatchRenorm1d`, limits ``r_max = 1, d_max = 0`` until
    :meth:`BatchRenorm1d.set_limits` relaxes them), ``"layernorm"``,
    ``"groupnorm"`` (4 groups) or ``"none"``; ``momentum`` is that of
    the running averages of the two batch-dependent kinds.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    kind = {"renorm": "batchnorm", "none": None}.get(norm, norm)
    net = mlp(
        sizes,
        activation=activation,
        seed=seed,
        bn_momentum=momentum,
        norm=kind,
    )
    if norm == "renorm":
        for i, m in enumerate(net):
            if isinstance(m, nn.BatchNorm1d):
                net[i] = BatchRenorm1d(
                    m.num_features, momentum=momentum, r_max=1.0, d_max=0.0
                )
    return net


def renorm_limits(
    step: int,
    warmup: int,
    r_end: int,
    d_end: int,
    r_max: float = 3.0,
    d_max: float = 5.0,
) -> tuple[float, float]:
    """Ioffe's schedule for Batch Renormalization's clipping limits.

    Plain BatchNorm (``r_max = 1``, ``d_max = 0``) for the first
    ``warmup`` steps, then both limits relaxed linearly, reaching
    ``r_max`` at step ``r_end`` and ``d_max`` at step ``d_end``.

    Returns:
        ``(r_max, d_max)`` for this step.
    """
    if not 0 <= warmup < min(r_end, d_end):
        raise ValueError("need 0 <= warmup < r_end and warmup < d_end")
    if r_max < 1 or d_max < 0:
        raise ValueError("need r_max >= 1 and d_max >= 0")

    def ramp(end: int) -> float:
        return min(max((step - warmup) / (end - warmup), 0.0), 1.0)

    return 1 + (r_max - 1) * ramp(r_end), d_max * ramp(d_end)


def set_renorm_limits(model: nn.Module, r_max: float, d_max: float) -> int:
    """Set the limits of every :class:`BatchRenorm1d` in ``model``;
    returns how many layers were set."""
    layers = [m for m in model.modules() if isinstance(m, BatchRenorm1d)]
    for m in layers:
        m.set_limits(r_max, d_max)
    return len(layers)


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers (torch's and ours), in order."""
    kinds = (nn.BatchNorm1d, ScratchBatchNorm1d)
    return [m for m in model.modules() if isinstance(m, kinds)]


@torch.no_grad()
def population_stats(
    model: nn.Module, x: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mean and (biased) variance of each BatchNorm layer's inputs over
    all of ``x``, layer by layer: layer k's inputs are computed with the
    layers below normalized by *their* population statistics, as a single
    batch of the whole data set would do.

    Returns:
        One ``(mean, var)`` pair of shape ``(c,)`` per BatchNorm layer.
    """
    layers = bn_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer")
    was_training = model.training
    saved = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    stats = []
    try:
        for k, layer in enumerate(layers):
            inputs = layer_inputs(model, x, k)
            mean, var = inputs.mean(0), inputs.var(0, unbiased=False)
            stats.append((mean, var))
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
    finally:
        for m, (rm, rv) in zip(layers, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
        model.train(was_training)
    return stats


@torch.no_grad()
def set_precise_stats(model: nn.Module, x: torch.Tensor) -> None:
    """Replace every running average by the population statistics."""
    for layer, (mean, var) in zip(
        bn_layers(model), population_stats(model, x)
    ):
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)


def ema_variance(
    momentum: float, sigma2: float | np.ndarray, batch_size: int
) -> np.ndarray:
    """Stationary variance of an EMA of batch means around a fixed target:
    ``alpha / (2 - alpha) * sigma^2 / B``."""
    _check_momentum(momentum)
    return momentum / (2 - momentum) * np.asarray(sigma2) / batch_size


class RunningTracker:
    """Running means of one BatchNorm layer's inputs for several momenta,
    fed with the same batch means a training run produces.

    Because running statistics never affect training-mode outputs, every
    momentum can ride along one run; each tracked value equals what an
    ``nn.BatchNorm1d`` with that momentum would hold.
    """

    def __init__(self, layer: nn.Module, momenta: Sequence[float | None]):
        for m in momenta:
            _check_momentum(m)
        self.momenta = list(momenta)
        c = layer.num_features
        device = layer.weight.device
        self.means = {m: torch.zeros(c, device=device) for m in self.momenta}
        self.count = 0
        self._hook = layer.register_forward_hook(self._see)

    def _see(self, module, args, out) -> None:
        if not module.training:
            return
        batch_mean = args[0].detach().mean(0)
        self.count += 1
        for m in self.momenta:
            a = 1.0 / self.count if m is None else m
            self.means[m].mul_(1 - a).add_(a * batch_mean)

    def remove(self) -> None:
        """Stop tracking."""
        self._hook.remove()


# --------------------------------------------------------------------------
# Experiments


@torch.no_grad()
def layer_inputs(
    model: nn.Module, x: torch.Tensor, index: int
) -> torch.Tensor:
    """Inputs of the ``index``-th BatchNorm layer for data ``x`` (eval
    mode, so layers below use their running statistics), ``(n, c)``."""
    layers = bn_layers(model)
    if not 0 <= index < len(layers):
        raise ValueError(f"index must be in [0, {len(layers) - 1}]")
    seen: dict = {}
    hook = layers[index].register_forward_hook(
        lambda mod, args, out: seen.setdefault("x", args[0])
    )
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        hook.remove()
        model.train(was_training)
    return seen["x"]


def data_stats_forward(
    model: nn.Sequential,
    x: torch.Tensor,
    x_stats: torch.Tensor,
    differentiate: bool,
) -> torch.Tensor:
    """Outputs for ``x`` with every BatchNorm layer normalizing by the
    mean and (biased) variance of its inputs over ``x_stats`` (the whole
    training set, say) instead of over ``x``.

    With ``differentiate=True`` the statistics are functions of the
    weights inside the gradient, as in BatchNorm with one batch of all of
    ``x_stats``; with ``False`` they are constants (detached), the scheme
    Ioffe and Szegedy warn against. Running averages are not touched.

    Returns:
        The model's output for ``x``, shape ``(n, out)``.
    """
    if not bn_layers(model):
        raise ValueError("the model has no BatchNorm layer")
    stats_grad = differentiate and torch.is_grad_enabled()
    z, zs = x, x_stats
    for m in model:
        if isinstance(m, nn.BatchNorm1d | ScratchBatchNorm1d):
            with torch.set_grad_enabled(stats_grad):
                mean, var = zs.mean(0), zs.var(0, unbiased=False)
            scale = m.weight / torch.sqrt(var + m.eps)
            z = (z - mean) * scale + m.bias
            with torch.set_grad_enabled(stats_grad):
                zs = (zs - mean) * scale + m.bias
        else:
            z = m(z)
            with torch.set_grad_enabled(stats_grad):
                zs = m(zs)
    return z


# --------------------------------------------------------------------------
# Many normalized MLPs trained at once


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
        _check_momentum(momentum)
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
