"""The Hessian of a loss: products with it and, for tiny models, the
whole matrix; K-FAC's factors of each layer's curvature.

The Hessian of a network is never formed except for tiny models; we only
multiply by it (Pearlmutter's trick, differentiating the gradient along a
vector). :class:`HessianOperator` keeps the gradient's graph at one point
so that every product there costs one extra backward pass; it is a
:class:`batchlab.lanczos.SymmetricOperator`, so
:func:`batchlab.lanczos.top_eigenvalues` (also importable from here)
finds its largest eigenvalues.

* :func:`reference_eigen`, :func:`reference_top_eigenvalues` -- the same
  in float64 by ARPACK, the reference against which estimates are judged.
* :func:`exact_hessian`, :func:`hessian_spectrum` -- the full matrix and
  its eigenvalues, for tiny models.
* :func:`kronecker_factors` -- K-FAC's two factors of every linear
  layer's Gauss-Newton block: its inputs' and its output gradients'
  second moments; :func:`kfac_error` -- how far their Kronecker product
  is from the exact block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

# top_eigenvalues lives in batchlab.lanczos; it is imported here because
# reference_top_eigenvalues uses it, and callers may import it from here.
from .lanczos import Eigen, top_eigenvalues

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flat_params(model: nn.Module) -> torch.Tensor:
    """All trainable parameters as one vector, shape ``(p,)``."""
    return torch.cat([p.detach().reshape(-1) for p in _params(model)])


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict:
    """A vector ``(p,)`` as parameter views by name (``functional_call``)."""
    out, offset = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
    return out


class HessianOperator:
    """Products with the Hessian of ``loss_fn(model(x), y)`` at the
    model's current parameters.

    The gradient is computed once with ``create_graph=True``; each call of
    :meth:`matvec` then differentiates ``g . v`` (one backward pass).

    Args:
        model: the network; evaluated in its current mode (use ``eval()``
            for BatchNorm models unless batch statistics are meant).
        loss_fn: mean loss of outputs and targets.
        x: inputs, shape ``(n, d)``.
        y: targets, shape ``(n,)``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x, y):
        self.params = _params(model)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.loss = loss_fn(model(x), y)
        self.grads = torch.autograd.grad(
            self.loss, self.params, create_graph=True
        )
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(p,)``, computed on the model's
        device and returned on ``v``'s, in the model's dtype."""
        if v.shape != (self.dim,):
            raise ValueError(f"need a vector of {self.dim}, got {v.shape}")
        where = v.device
        v = v.to(device=self.device, dtype=self.dtype)
        dot = sum(
            (g * v_part.view_as(g)).sum()
            for g, v_part in zip(self.grads, _split(v, self.params))
        )
        hv = torch.autograd.grad(dot, self.params, retain_graph=True)
        self.n_products += 1
        return torch.cat([h.reshape(-1) for h in hv]).detach().to(where)


def _split(v: torch.Tensor, params: Sequence[torch.Tensor]):
    offset = 0
    for p in params:
        yield v[offset : offset + p.numel()]
        offset += p.numel()


def exact_hessian(
    model: nn.Module, loss_fn: LossFn, x, y, chunk: int | None = None
) -> torch.Tensor:
    """The full Hessian, shape ``(p, p)``; only for small models.

    With ``chunk``, the examples are taken ``chunk`` at a time and the
    Hessians of the chunks averaged, weighted by their sizes: the same
    matrix for a mean loss, in a fraction of the memory.
    """
    theta = flat_params(model)
    if theta.numel() > 5000:
        raise ValueError(
            f"exact_hessian forms a {theta.numel()}^2 matrix; use "
            "HessianOperator with top_eigenvalues for models this large"
        )
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive count, got {chunk}")
    n = x.shape[0]
    step = n if chunk is None else chunk
    total = theta.new_zeros(theta.numel(), theta.numel())
    for start in range(0, n, step):
        xs, ys = x[start : start + step], y[start : start + step]

        def loss_of(flat: torch.Tensor, xs=xs, ys=ys) -> torch.Tensor:
            out = functional_call(model, unflatten(model, flat), (xs,))
            return loss_fn(out, ys)

        part = torch.autograd.functional.hessian(
            loss_of, theta, vectorize=True
        )
        total += part * (xs.shape[0] / n)
    return total


def condition_number(eigenvalues: np.ndarray | torch.Tensor) -> float:
    """Largest over smallest eigenvalue of a positive definite matrix.

    Raises:
        ValueError: the smallest eigenvalue is not positive (the matrix is
            singular or indefinite; a condition number would mislead).
    """
    ev = np.asarray(eigenvalues, dtype=float)
    lo, hi = ev.min(), ev.max()
    if lo <= 0:
        raise ValueError(
            f"smallest eigenvalue is {lo:.3g}: the matrix is not positive "
            "definite, so its condition number is undefined; compare the top "
            "eigenvalues with the bulk instead"
        )
    return float(hi / lo)


def reference_eigen(
    model: nn.Module, loss_fn: LossFn, x, y, k: int = 1, tol: float = 1e-12
) -> Eigen:
    """The ``k`` largest Hessian eigenvalues and their eigenvectors in
    double precision (a float64 copy of the model and inputs, ARPACK at
    ``tol``): the reference against which float32 estimates are judged."""
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(model64, loss_fn, x.double(), y)
    return top_eigenvalues(op, k=k, tol=tol, method="arpack")


def reference_top_eigenvalues(
    model: nn.Module, loss_fn: LossFn, x, y, k: int = 1, tol: float = 1e-12
) -> np.ndarray:
    """The eigenvalues of :func:`reference_eigen`, shape ``(k,)``."""
    return reference_eigen(model, loss_fn, x, y, k=k, tol=tol).values


# --------------------------------------------------------------------------
# The loss around a point


def hessian_spectrum(
    model: nn.Module, loss_fn: LossFn, x, y, chunk: int | None = None
) -> np.ndarray:
    """All eigenvalues of a small model's Hessian, descending, float64
    (``chunk``: see :func:`exact_hessian`)."""
    H = exact_hessian(model, loss_fn, x, y, chunk=chunk).double()
    H = (H + H.T) / 2
    return torch.linalg.eigvalsh(H).flip(0).cpu().numpy()


def spectrum_summary(ev: np.ndarray, n_outliers: int) -> dict:
    """Summary of an (indefinite) Hessian spectrum, descending ``ev``.

    ``outlier_ratio`` is the largest eigenvalue over the first eigenvalue
    after ``n_outliers`` (the edge of the bulk); ``negative_mass`` is the
    share of the absolute spectrum carried by negative eigenvalues.
    """
    ev = np.sort(np.asarray(ev, dtype=float))[::-1]
    if not 0 < n_outliers < len(ev):
        raise ValueError(f"n_outliers must be between 1 and {len(ev) - 1}")
    return {
        "lambda_max": ev[0],
        "lambda_min": ev[-1],
        "bulk_edge": ev[n_outliers],
        "outlier_ratio": ev[0] / ev[n_outliers],
        "negative_mass": np.abs(ev[ev < 0]).sum() / np.abs(ev).sum(),
    }


# --------------------------------------------------------------------------
# Kronecker factors of the Gauss-Newton matrix, layer by layer


@dataclass(frozen=True)
class KroneckerFactors:
    """The two factors of one linear layer's Gauss-Newton block.

    Attributes:
        inputs: ``A = E[a a^T]``, the second moment of the layer's inputs
            with a constant one appended for the bias, ``(d_in + 1,
            d_in + 1)``, float64 (the last row and column belong to the
            bias).
        outputs: ``G = E[J^T (diag p - p p^T) J]``, the second moment of
            the loss gradient with respect to the layer's outputs (``d``)
            under labels drawn from the model's softmax, ``(d_out,
            d_out)``, float64; ``J`` is the Jacobian of the logits with
            respect to those outputs.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor


def _layer_terms(
    model: nn.Module, x: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For every ``nn.Linear`` of a softmax classifier, in forward order:
    its inputs with a one appended, ``a`` ``(n, d_in + 1)``, and ``C``
    ``(n, d_out, c)`` with ``C_i C_i^T = J_i^T (diag p_i - p_i p_i^T)
    J_i = G_i``, both float64."""
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"need inputs of shape (n >= 1, d), got {x.shape}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer")
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out))
        )
        for m in linears
    ]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    p = torch.softmax(logits.detach().double(), dim=1)
    # diag p - p p^T = L L^T with L = diag(sqrt p) - p sqrt(p)^T (sum p = 1)
    root = p.sqrt()
    L = torch.diag_embed(root) - p[:, :, None] * root[:, None, :]
    outs = [seen[m][1] for m in linears]
    # Examples are independent, so the gradient of a summed logit k with
    # respect to a layer's outputs holds every example's Jacobian row k.
    rows = [
        torch.autograd.grad(logits[:, k].sum(), outs, retain_graph=True)
        for k in range(logits.shape[1])
    ]
    terms = []
    for j, m in enumerate(linears):
        jac = torch.stack([r[j] for r in rows], 1).double()  # (n, c, out)
        a = seen[m][0].detach().double()
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], 1)
        terms.append((a, torch.einsum("nko,nkl->nol", jac, L)))
    return terms


def kronecker_factors(
    model: nn.Module, x: torch.Tensor
) -> list[KroneckerFactors]:
    """K-FAC's factors ``A`` and ``G`` for every ``nn.Linear`` of a
    classifier with softmax cross-entropy, in forward order.

    For one example the Gauss-Newton block of a layer's weight ``W``
    (flattened row by row, as PyTorch stores it) is exactly
    ``G_i (x) a_i a_i^T``; over a data set it is the mean of those
    products, which K-FAC approximates by ``G (x) A``, the product of
    the means (Martens and Grosse 2015); :func:`kfac_error` measures how
    well.

    Args:
        model: maps inputs ``(n, d)`` to logits ``(n, c)``, treating
            examples independently (no BatchNorm in training mode).
        x: inputs ``(n, d)``.

    Returns:
        One :class:`KroneckerFactors` per linear layer.
    """
    factors = []
    for a, C in _layer_terms(model, x):
        n = a.shape[0]
        G = torch.einsum("nok,npk->op", C, C) / n
        factors.append(KroneckerFactors(a.T @ a / n, G))
    return factors


def _mean_gram(C: torch.Tensor, chunk: int) -> torch.Tensor:
    """``<G_i, G_j> = |C_i^T C_j|_F^2`` for all pairs, ``(n, n)``."""
    n, d, c = C.shape
    flat = C.transpose(1, 2).reshape(n * c, d)  # row (i, k) is C_i[:, k]
    parts = []
    for s in range(0, n, chunk):
        block = flat[s * c : (s + chunk) * c] @ flat.T
        rows = block.shape[0] // c
        parts.append((block.reshape(rows, c, n, c) ** 2).sum((1, 3)))
    return torch.cat(parts)


def kfac_error(model: nn.Module, x: torch.Tensor) -> list[float]:
    """How far K-FAC's ``G (x) A`` is from each linear layer's exact
    Gauss-Newton block ``B = mean_i G_i (x) a_i a_i^T`` over ``x`` (the
    weights and the bias together): ``|B - G (x) A|_F / |B|_F``.

    Neither ``B`` nor the product is formed: with ``<X (x) Y, Z (x) W> =
    <X, Z> <Y, W>`` every term of ``|B - G (x) A|^2`` reduces to inner
    products of the per-example factors, ``O(n^2 c^2 d_out)`` work for
    ``n`` examples and ``c`` classes.

    Args:
        model: as for :func:`kronecker_factors`.
        x: inputs ``(n, d)``.

    Returns:
        The relative Frobenius error per linear layer, in forward order.
    """
    errors = []
    for a, C in _layer_terms(model, x):
        n, _, c = C.shape
        chunk = max(1, 2_000_000 // (n * c * c))
        G = torch.einsum("nok,npk->op", C, C) / n
        A = a.T @ a / n
        exact_sq = (_mean_gram(C, chunk) * (a @ a.T) ** 2).sum() / n**2
        g_i = torch.einsum("nok,op,npk->n", C, G, C)  # <G_i, G>
        a_i = torch.einsum("nq,qr,nr->n", a, A, a)  # <a_i a_i^T, A>
        cross = (g_i * a_i).sum() / n
        kfac_sq = (G**2).sum() * (A**2).sum()
        diff_sq = (exact_sq - 2 * cross + kfac_sq).clamp_min(0)
        errors.append(float((diff_sq / exact_sq).sqrt()))
    return errors
