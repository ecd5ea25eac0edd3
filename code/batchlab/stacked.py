"""Many normalized networks trained at once, stacked so that a
small-batch study of several seeds and normalizations costs one training
loop.

:class:`StackedNormMLP` holds MLP members (BatchNorm, Batch Renorm,
LayerNorm), :class:`StackedConvNet` convolutional members for 8x8 images
(BatchNorm, GroupNorm); :func:`train_stacked` runs plain SGD on all
members of either (each with its own batch order) and
:func:`stacked_metrics` evaluates them. Tests check both stacks step for
step against single models built by :func:`batchlab.batchnorm.bn_mlp`
and :func:`batchlab.models.conv_net`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batchnorm import bn_mlp, check_momentum
from .models import conv_net
from .train import PlainSGD, batch_schedule


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
        # runs of consecutive members with one normalization
        self.blocks: list[tuple[str, slice]] = []
        for i, norm in enumerate(norms):
            if self.blocks and self.blocks[-1][0] == norm:
                self.blocks[-1] = (
                    norm,
                    slice(self.blocks[-1][1].start, i + 1),
                )
            else:
                self.blocks.append((norm, slice(i, i + 1)))
        self.to(next(self.parameters()).device)  # the members' device

    def _normalize(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Layer ``k``'s pre-activations ``h`` ``(M, B, width)``, each
        block of members normalized its own way."""
        outs = [
            self._layernorm(h[part])
            if norm == "layernorm"
            else self._batch_renorm(h[part], k, part, norm == "renorm")
            for norm, part in self.blocks
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _layernorm(self, h: torch.Tensor) -> torch.Tensor:
        """LayerNorm: each example over its own units."""
        centred = h - h.mean(2, keepdim=True)
        var = (centred * centred).mean(2, keepdim=True)
        return centred / torch.sqrt(var + self.eps)

    def _batch_renorm(
        self, h: torch.Tensor, k: int, part: slice, renorm: bool
    ) -> torch.Tensor:
        """BatchNorm, or with ``renorm`` Batch Renormalization, of layer
        ``k``'s members ``part``: in training mode each unit over the
        batch (dimension 1), corrected by ``r`` and ``d`` for Renorm; in
        evaluation mode with the running averages."""
        mu = getattr(self, f"mean{k}")[part]  # running averages
        sigma = torch.sqrt(getattr(self, f"var{k}")[part] + self.eps)
        if not self.training:
            return (h - mu) / sigma
        mean = h.mean(1, keepdim=True)
        var = ((h - mean) ** 2).mean(1, keepdim=True)  # biased
        sigma_b = torch.sqrt(var + self.eps)
        out = (h - mean) / sigma_b
        if renorm:  # r and d are constants in the gradient
            r = (sigma_b / sigma).detach().clamp(1 / self.r_max, self.r_max)
            d = ((mean - mu) / sigma).detach().clamp(-self.d_max, self.d_max)
            out = out * r + d
        self._update_running(k, part, mean, var, h.shape[1])
        return out

    @torch.no_grad()
    def _update_running(self, k, part, mean, var, n: int) -> None:
        """Running averages of layer ``k``'s members ``part``, in place,
        with the batch mean and the unbiased batch variance."""
        if n < 2:
            raise ValueError("batch statistics need at least 2 examples")
        a = self.momentum
        getattr(self, f"mean{k}")[part].mul_(1 - a).add_(a * mean)
        getattr(self, f"var{k}")[part].mul_(1 - a).add_(a * var * n / (n - 1))

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


class StackedConvNet(nn.Module):
    """Several :func:`batchlab.models.conv_net` networks (one per
    ``(norm, seed)`` pair) evaluated as one.

    The members' convolutions are stacked as the groups of one grouped
    convolution, so member ``m`` owns channels ``m * c`` to ``(m + 1) *
    c - 1`` of every layer. A BatchNorm over all those channels
    normalizes each over the batch and positions of its own member, and
    a GroupNorm with ``M * groups`` groups splits each member's channels
    into its own ``groups``: both are exactly the members' own layers.
    ``norms`` are ``"batchnorm"`` or ``"groupnorm"``.

    Inputs have shape ``(M, B, 1, H, W)``: member ``m`` sees ``x[m]``.
    """

    KINDS = ("batchnorm", "groupnorm")

    def __init__(
        self,
        norms: Sequence[str],
        seeds: Sequence[int],
        channels: Sequence[int] = (16, 32),
        classes: int = 10,
        groups: int = 4,
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
        self.norms, self.groups = list(norms), groups
        self.momentum, self.eps = momentum, eps
        nets = [
            conv_net(n, channels, classes, groups, momentum, s)
            for n, s in zip(norms, seeds)
        ]
        convs = [[m for m in net if isinstance(m, nn.Conv2d)] for net in nets]
        normals = [
            [m for m in net if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
            for net in nets
        ]

        def cat(get) -> nn.Parameter:
            return nn.Parameter(torch.cat([get(k) for k in range(len(nets))]))

        self.conv_w = nn.ParameterList(
            cat(lambda m, i=i: convs[m][i].weight) for i in range(2)
        )
        self.conv_b = nn.ParameterList(
            cat(lambda m, i=i: convs[m][i].bias) for i in range(2)
        )
        self.gains = nn.ParameterList(
            cat(lambda m, i=i: normals[m][i].weight) for i in range(2)
        )
        self.shifts = nn.ParameterList(
            cat(lambda m, i=i: normals[m][i].bias) for i in range(2)
        )
        heads = [net[-1] for net in nets]
        self.head_w = nn.Parameter(torch.stack([h.weight.T for h in heads]))
        self.head_b = nn.Parameter(torch.stack([h.bias[None] for h in heads]))
        for k, c in enumerate(channels):
            member_gn = torch.tensor([n == "groupnorm" for n in norms])
            self.register_buffer(f"gn{k}", member_gn.repeat_interleave(c))
            self.register_buffer(f"mean{k}", torch.zeros(len(norms) * c))
            self.register_buffer(f"var{k}", torch.ones(len(norms) * c))
        self.to(self.head_w.device)  # the members' device

    def _normalize(self, z: torch.Tensor, k: int) -> torch.Tensor:
        gn = getattr(self, f"gn{k}")
        out = None
        if not gn.all():
            out = F.batch_norm(
                z,
                getattr(self, f"mean{k}"),
                getattr(self, f"var{k}"),
                training=self.training,
                momentum=self.momentum,
                eps=self.eps,
            )
        if gn.any():
            grouped = F.group_norm(
                z, len(self.norms) * self.groups, eps=self.eps
            )
            out = (
                grouped
                if out is None
                else torch.where(gn[:, None, None], grouped, out)
            )
        gain, shift = self.gains[k], self.shifts[k]
        return out * gain[:, None, None] + shift[:, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(M, B, classes)`` for images ``(M, B, 1, H, W)``."""
        m = len(self.norms)
        if x.ndim != 5 or x.shape[0] != m or x.shape[2] != 1:
            raise ValueError(
                f"expected images (M={m}, B, 1, H, W), got {tuple(x.shape)}"
            )
        z = x.transpose(0, 1).flatten(1, 2)  # (B, M, H, W)
        for k, (w, b) in enumerate(zip(self.conv_w, self.conv_b)):
            z = F.conv2d(z, w, b, stride=k + 1, padding=1, groups=m)
            z = torch.relu(self._normalize(z, k))
        pooled = z.mean((2, 3)).unflatten(1, (m, -1)).transpose(0, 1)
        return torch.baddbmm(self.head_b, pooled, self.head_w)


def train_stacked(
    model: StackedNormMLP | StackedConvNet,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    lr: float | Sequence[float],
    steps: int,
    seeds: Sequence[int],
    limits: Callable[[int], tuple[float, float]] | None = None,
    on_step: Callable[[int], None] | None = None,
    every: int = 1,
) -> None:
    """Plain SGD on every member of ``model`` at once, in place.

    Member ``m`` visits ``x`` (``(n, d)``, or images ``(n, 1, H, W)``)
    in the order ``train.batch_schedule(n, batch_size, steps,
    seeds[m])``, as ``train_sgd`` with that seed would. ``lr`` is one
    rate for all or one per member: member ``m``'s loss is then weighted
    by ``lr[m] / max(lr)`` under the rate ``max(lr)``, which for plain
    SGD is a step of rate ``lr[m]`` (the members share no parameter).
    ``limits(step)`` gives Batch Renormalization's ``(r_max, d_max)``
    before each step (default: 1, 0); ``on_step(step)`` is called every
    ``every`` steps and after the last.
    """
    m = len(model.norms)
    if len(seeds) != m:
        raise ValueError("need one batch-order seed per member")
    rates = torch.as_tensor(lr, dtype=torch.float32).flatten()
    if rates.numel() not in (1, m) or not (rates > 0).all():
        raise ValueError(
            f"lr must be one positive rate or one per member ({m}), got {lr}"
        )
    weight = (rates / rates.max()).expand(m).to(x.device)
    orders = torch.stack(
        [batch_schedule(x.shape[0], batch_size, steps, s) for s in seeds], 1
    ).to(x.device)
    opt = PlainSGD(model.parameters(), lr=float(rates.max()))
    model.train()
    for step in range(1, steps + 1):
        if limits is not None:
            model.r_max, model.d_max = limits(step)
        idx = orders[step - 1]
        out = model(x[idx])
        per_member = F.cross_entropy(
            out.flatten(0, 1), y[idx].flatten(), reduction="none"
        ).view(m, -1)
        loss = (per_member.sum(1) * weight).sum() / batch_size
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None and (step % every == 0 or step == steps):
            on_step(step)
            model.train()


@torch.no_grad()
def stacked_metrics(
    model: StackedNormMLP | StackedConvNet,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (mean cross-entropy) and accuracy of every member in
    evaluation mode on ``x`` (``(n, d)`` or images ``(n, 1, H, W)``),
    each of shape ``(M,)``, computed ``chunk`` examples at a time (in
    evaluation mode examples do not interact); the model's mode is
    restored."""
    was_training = model.training
    model.eval()
    m = len(model.norms)
    losses, hits = [], []
    try:
        for xc, yc in zip(x.split(chunk), y.split(chunk)):
            out = model(xc.expand(m, *xc.shape))
            losses.append(
                F.cross_entropy(
                    out.flatten(0, 1), yc.repeat(m), reduction="none"
                ).view(m, -1)
            )
            hits.append(out.argmax(2) == yc)
    finally:
        model.train(was_training)
    loss, hit = torch.cat(losses, 1), torch.cat(hits, 1)
    return loss.mean(1), hit.float().mean(1)


def stacked_accuracy(
    model: StackedNormMLP | StackedConvNet, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Accuracy of every member in evaluation mode on ``x``, ``(M,)``."""
    return stacked_metrics(model, x, y)[1]
