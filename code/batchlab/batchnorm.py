"""BatchNorm written out, population statistics and running averages.

* :class:`ScratchBatchNorm1d` -- BatchNorm for ``(n, c)`` inputs written
  out for the text; equal to ``nn.BatchNorm1d`` in both modes.
* :class:`BatchRenorm1d` -- Batch Renormalization (Ioffe 2017).
* :class:`GhostBatchNorm1d` -- BatchNorm whose statistics come from
  groups of a fixed size within the batch ("ghost batches", Hoffer et
  al. 2017), while the loss and its gradient span the whole batch.
* :func:`population_stats` / :func:`set_precise_stats` -- exact mean and
  variance of every BatchNorm layer's inputs over a data set under the
  current weights ("precise BN").
* :class:`RunningTracker` -- running averages of several momenta riding
  along one training run, compared with population statistics.
* :func:`data_stats_forward` and :class:`WholeDataBatchNorm` -- a
  BatchNorm MLP normalized with statistics of a whole data set, held
  constant or differentiated through.
* :class:`StepLengths` -- the squared steps and the radial terms of the
  incoming weights of every unit along a training run: what lengthens
  the scale-invariant weights of a BatchNorm network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .models import mlp


def check_momentum(momentum: float | None) -> None:
    """Refuse a running-average momentum outside (0, 1] (None: cumulative)."""
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
        check_momentum(momentum)
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


class GhostBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm whose training-mode statistics come from consecutive
    groups of ``group`` examples of the batch ("ghost batches").

    In training mode a batch of ``n`` examples (``n`` a multiple of
    ``group``) is cut into ``n / group`` groups, and every group is
    normalized with its own mean and biased variance, inside the
    gradient; a loss over the whole batch then has the gradient of the
    large batch and the statistics of the small groups. With ``group ==
    n`` it is ``nn.BatchNorm1d``. The running averages take one update
    per batch, with the mean over groups of the group means and of the
    unbiased group variances. Evaluation mode is ``nn.BatchNorm1d``'s.
    """

    def __init__(
        self,
        num_features: int,
        group: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ):
        check_momentum(momentum)
        if group < 2:
            raise ValueError(
                f"a ghost batch needs at least 2 examples, got group={group}"
            )
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``(n, c)``, group by group."""
        if not self.training:
            return super().forward(x)
        n = x.shape[0]
        if x.ndim != 2 or n % self.group:
            raise ValueError(
                f"expected inputs (n, {self.num_features}) with n a multiple "
                f"of group={self.group}, got {tuple(x.shape)}"
            )
        h = x.reshape(n // self.group, self.group, -1)
        mean = h.mean(1, keepdim=True)
        centred = h - mean
        var = (centred * centred).mean(1, keepdim=True)  # biased
        self._update(mean, var * (self.group / (self.group - 1)))
        out = centred / torch.sqrt(var + self.eps)
        return out.reshape(n, -1) * self.weight + self.bias

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var_unbiased: torch.Tensor):
        self.num_batches_tracked += 1
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(m * mean.detach().mean((0, 1)))
        self.running_var.mul_(1 - m).add_(
            m * var_unbiased.detach().mean((0, 1))
        )


NORMS = ("batchnorm", "renorm", "layernorm", "groupnorm", "none")


def bn_mlp(
    sizes: Sequence[int],
    norm: str = "batchnorm",
    seed: int = 0,
    momentum: float | None = 0.1,
    activation: str = "tanh",
    group: int | None = None,
) -> nn.Sequential:
    """An MLP with a normalization layer before every hidden activation.

    ``norm`` is ``"batchnorm"`` (``nn.BatchNorm1d``), ``"renorm"``
    (:class:`BatchRenorm1d`, limits ``r_max = 1, d_max = 0`` until
    :meth:`BatchRenorm1d.set_limits` relaxes them), ``"layernorm"``,
    ``"groupnorm"`` (4 groups) or ``"none"``; ``momentum`` is that of
    the running averages of the two batch-dependent kinds. ``group``
    (with ``"batchnorm"`` only) makes every BatchNorm layer a
    :class:`GhostBatchNorm1d` with statistics over groups of that size.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if group is not None and norm != "batchnorm":
        raise ValueError(f"group is for norm='batchnorm', not {norm!r}")
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
                ).to(m.weight.device)
    if group is not None:
        for i, m in enumerate(net):
            if isinstance(m, nn.BatchNorm1d):
                net[i] = GhostBatchNorm1d(
                    m.num_features, group, momentum=momentum
                ).to(m.weight.device)
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
    check_momentum(momentum)
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
            check_momentum(m)
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


@torch.no_grad()
def population_loss(
    net: nn.Sequential, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Mean cross-entropy of ``net`` on ``(x, y)`` with every BatchNorm
    layer normalized by the population statistics of ``x`` (the
    network's own mode is restored; its running averages are untouched).
    """
    was_training = net.training
    net.eval()
    try:
        out = data_stats_forward(net, x, x, differentiate=False)
    finally:
        net.train(was_training)
    return float(torch.nn.functional.cross_entropy(out, y))


class WholeDataBatchNorm(nn.Module):
    """A BatchNorm MLP whose BatchNorm layers normalize with the
    statistics of a fixed data set ``x_stats`` (the whole training set,
    say), recomputed at every call: :func:`data_stats_forward` as a
    module, so that :func:`batchlab.train.train_sgd` trains it.

    Its parameters are ``net``'s; its output does not depend on the
    mode, and ``net``'s running averages are never touched.
    """

    def __init__(
        self, net: nn.Sequential, x_stats: torch.Tensor, differentiate: bool
    ):
        super().__init__()
        if not bn_layers(net):
            raise ValueError("the model has no BatchNorm layer")
        self.net, self.x_stats = net, x_stats
        self.differentiate = differentiate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(n, out)`` for ``x`` ``(n, d)``."""
        return data_stats_forward(
            self.net, x, self.x_stats, self.differentiate
        )


class StepLengths:
    """``on_step`` of :func:`~batchlab.train.train_sgd` that follows the
    incoming weights ``w_j`` (rows of ``weight``) of every unit.

    In float64, whatever the network's precision: after each step it
    adds the squared step ``|w_j' - w_j|^2`` (``eta^2 |g_j|^2`` for
    plain SGD) and the radial term ``-2 w_j . (w_j' - w_j)`` (``2 eta
    w_j . g_j`` for plain SGD) to running sums, with ``w_j`` and
    ``w_j'`` the weights before and after the step, so that ``|w_T|^2 -
    |w_0|^2 = sum of squared steps - sum of radial terms``. It also keeps
    the largest ``|cos|`` between ``w_j`` and the gradient ``g_j``.
    """

    def __init__(self, weight: torch.Tensor):
        self.weight = weight
        self.before = weight.detach().double().clone()
        self.start = (self.before**2).sum(1)
        self.squared_steps = torch.zeros_like(self.start)
        self.radial = torch.zeros_like(self.start)
        self.cos = torch.zeros_like(self.start)  # largest |cos| per unit

    def __call__(self, step: int, model) -> None:
        g = self.weight.grad.detach().double()
        w = self.before
        after = self.weight.detach().double().clone()
        move = after - w
        self.squared_steps += (move * move).sum(1)
        self.radial -= 2 * (w * move).sum(1)
        cos = (w * g).sum(1).abs() / (w.norm(dim=1) * g.norm(dim=1)).clamp_min(
            1e-300
        )
        self.cos = torch.maximum(self.cos, cos)
        self.before = after

    def summary(self) -> dict:
        """Means over units: ``rate_ratio`` (``eta / |w|^2`` now over at
        the start), ``squared_steps``, ``growth`` of ``|w|^2``,
        ``radial``, the largest ``cos`` over units and steps and
        ``start``, the mean ``|w_0|^2``."""
        end = (self.before**2).sum(1)
        return dict(
            start=float(self.start.mean()),
            rate_ratio=float((1 / end).mean() / (1 / self.start).mean()),
            squared_steps=float(self.squared_steps.mean()),
            growth=float((end - self.start).mean()),
            radial=float(self.radial.mean()),
            cos=float(self.cos.max()),
        )
