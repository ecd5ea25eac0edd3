"""Chapter 2, does normalization equalize the Hessian's eigenvalues:
its configuration and experiments."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import data, hessian, models, normalize, runtime, train
from ..data import Dataset
from ..normalize import CenteredMLP, InputTransform
from ..runtime import more_of, pick


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


@dataclass(frozen=True)
class NormalizationConfig:
    """Sizes of the normalization chapter's experiments."""

    dim: int  # features of the synthetic regression sets
    n_synthetic: int  # examples of each synthetic set
    rho: float  # strong correlation between any two synthetic features
    weak_rho: float  # weak correlation between any two synthetic features
    rhos: tuple[float, ...]  # correlations of the sweep (both of the above)
    scale_spread: float  # badly scaled features: standard deviations from
    # 1 / scale_spread to scale_spread
    mean_shift: float  # offset added to every input to show a mean's effect
    gd_tol: float  # error at which gradient descent counts as converged
    logistic_steps: int  # gradient-descent steps of logistic regression
    logistic_lr: float  # their learning rate, the same for every input
    mlp_width: int  # hidden width of the MLP whose Hessian is formed exactly
    mlp_lr: float  # its SGD learning rate (batch 32)
    hessian_examples: int  # training examples in that exact Hessian
    mlp_steps: int  # SGD steps training that MLP
    center_sizes: tuple[int, ...]  # widths of the centring MLP
    center_lr: float  # its SGD learning rate (batch 32)
    center_steps: int  # SGD steps of the hidden-unit centring comparison
    center_every: int  # steps between renormalizations
    seeds: int  # seeds of the centring comparison
    factor_examples: int  # examples over which K-FAC factors are averaged

    @classmethod
    def for_scale(cls, scale) -> NormalizationConfig:
        """The configuration for ``quick``, ``book`` or ``full``."""
        book = cls(
            dim=20,
            n_synthetic=10000,
            rho=0.9,
            weak_rho=0.02,
            rhos=(0.0, 0.02, 0.1, 0.3, 0.6, 0.9),
            scale_spread=10.0,
            mean_shift=3.0,
            gd_tol=0.001,
            logistic_steps=300,
            logistic_lr=1.0,
            mlp_width=16,
            mlp_lr=0.1,
            hessian_examples=1000,
            mlp_steps=2000,
            center_sizes=(40, 100, 100, 10),
            center_lr=0.05,
            center_steps=3000,
            center_every=50,
            seeds=2,
            factor_examples=1000,
        )
        quick = replace(
            book,
            dim=10,
            rhos=(0.0, 0.02, 0.3, 0.9),
            gd_tol=0.01,
            logistic_steps=60,
            mlp_width=8,
            hessian_examples=300,
            mlp_steps=300,
            center_steps=300,
            seeds=1,
            factor_examples=300,
        )
        full = more_of(book, seeds=6)
        return pick(scale, quick=quick, book=book, full=full)


# --------------------------------------------------------------------------
# Linear models


def synthetic_inputs(cfg: NormalizationConfig) -> torch.Tensor:
    """Training inputs ``(cfg.n_synthetic, cfg.dim)`` with pairwise
    correlation ``cfg.rho`` and standard deviations from 0.5 to 3."""
    scales = torch.linspace(0.5, 3.0, cfg.dim)
    cov = data.correlated_covariance(cfg.dim, cfg.rho, scales)
    return data.synthetic_regression(cfg.n_synthetic, cov, seed=0).x_train


def badly_scaled(d: int, spread: float, shift: float, seed: int = 0):
    """A transform that gives ``d`` features standard deviations from
    ``1 / spread`` to ``spread`` (log-spaced, in a seeded random order)
    times their own, and adds ``shift`` to every one: ``x -> x * s +
    shift``, as an :class:`InputTransform` (its ``mean`` is ``-shift /
    s``)."""
    if spread < 1:
        raise ValueError(f"spread must be at least 1, got {spread}")
    order = torch.randperm(d, generator=runtime.generator(seed))
    s = torch.logspace(-1, 1, d, base=spread, dtype=torch.float64)[order]
    return InputTransform("badly scaled", -shift / s, torch.diag(s))


def linear_table(
    x: torch.Tensor, shift: float
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The linear-regression Hessian after every normalization of ``x``
    (:data:`batchlab.normalize.KINDS`) and of ``x + shift`` left raw.

    Returns:
        A frame with ``inputs``, ``lambda_max``, ``lambda_min`` and
        ``condition``, and the spectra (descending) by the same names.
    """
    x = x.double()  # float32 would limit whitening to about 1e-6
    spectra, rows = normalize.linear_conditioning(x, normalize.KINDS)
    shifted, row = normalize.linear_conditioning(x + shift, ["raw"])
    row[0]["inputs"] = "shifted mean"
    spectra["shifted mean"] = shifted["raw"]
    frame = pd.DataFrame(rows + row)
    return frame, {k: v.cpu().numpy() for k, v in spectra.items()}


def standardized_condition(dim: int, rho: float) -> float:
    """Condition number of the linear-regression Hessian (bias included)
    for standardized equicorrelated features, in the population: the
    correlation matrix has eigenvalues ``1 + (d - 1) rho`` and ``1 - rho``
    and the bias adds an eigenvalue 1."""
    ev = np.array([1 + (dim - 1) * rho, 1 - rho, 1.0])
    return float(ev.max() / ev.min())


def sampling_band(dim: int, n: int) -> float:
    """Factor by which sampling can move a condition number computed from
    ``n`` examples in ``dim`` dimensions: each extreme eigenvalue of a
    sample covariance moves by up to ``(1 +- sqrt(d / n))^2`` (the
    Marchenko-Pastur edges), so their ratio by the quotient of the two."""
    g = (dim / n) ** 0.5
    return ((1 + g) / (1 - g)) ** 2


def correlation_sweep(cfg: NormalizationConfig) -> pd.DataFrame:
    """Badly scaled, shifted synthetic inputs with pairwise correlation
    ``rho`` for each ``rho`` in ``cfg.rhos``: condition numbers of the
    linear-regression Hessian raw, standardized and ZCA-whitened.

    Returns:
        One row per ``rho`` and ``inputs`` with ``condition`` and
        ``theory`` (the population value for standardized inputs).
    """
    scales = badly_scaled(cfg.dim, cfg.scale_spread, 0.0).matrix.diagonal()
    rows = []
    for rho in cfg.rhos:
        cov = data.correlated_covariance(cfg.dim, rho, scales)
        x = data.synthetic_regression(
            cfg.n_synthetic, cov, mean=cfg.mean_shift, seed=1
        ).x_train.double()
        _, conds = normalize.linear_conditioning(
            x, ["raw", "standardize", "zca"]
        )
        theory = standardized_condition(cfg.dim, rho)
        rows += [dict(r, rho=rho, theory=theory) for r in conds]
    return pd.DataFrame(rows)[["rho", "inputs", "condition", "theory"]]


def gd_table(
    cfg: NormalizationConfig, x: torch.Tensor, spectra: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Gradient descent on the linear-regression bowl of ``x`` after
    each normalization (and with the mean shifted by ``cfg.mean_shift``),
    with step ``1 / lambda_max`` and with step ``2.1 / lambda_max``.

    Returns:
        One row per ``inputs`` with ``condition``, ``steps`` (to relative
        error ``cfg.gd_tol``), ``bound`` (the condition-number bound on
        those steps) and ``diverges`` (whether the larger step blew up
        within 5000 steps, not merely failed to converge).
    """
    rows = []
    for kind in ["shifted mean", "raw", "standardize", "zca"]:
        ev = spectra[kind]
        shifted = kind == "shifted mean"
        inputs = x + cfg.mean_shift if shifted else x
        z = normalize.fit_transform(inputs, "raw" if shifted else kind)(inputs)
        H = normalize.linear_regression_hessian(z)
        kappa = float(ev[0] / ev[-1])
        steps, _ = gd_steps_on_quadratic(
            H, lr=1 / ev[0], tol=cfg.gd_tol, max_steps=2_000_000
        )
        _, blew_up = gd_steps_on_quadratic(
            H, lr=2.1 / ev[0], tol=cfg.gd_tol, max_steps=5000
        )
        rows.append(
            dict(
                inputs=kind,
                condition=kappa,
                steps=steps,
                bound=gd_bound(kappa, cfg.gd_tol),
                diverges=blew_up,
            )
        )
    return pd.DataFrame(rows)


def gd_bound(kappa: float, tol: float) -> float:
    """Steps of gradient descent with step ``1 / lambda_max`` that reach
    relative error ``tol`` on any quadratic of condition number
    ``kappa``: ``ceil(ln(1 / tol) / -ln(1 - 1 / kappa))`` (1 if round)."""
    if kappa <= 1:
        return 1.0
    return float(np.ceil(np.log(1 / tol) / -np.log1p(-1 / kappa)))


# --------------------------------------------------------------------------
# Networks


def input_transforms(
    cfg: NormalizationConfig, x: torch.Tensor
) -> dict[str, InputTransform]:
    """The MLP's four kinds of inputs, as transforms of MNIST-1D's ``x``:
    as given, badly scaled and shifted, standardized and ZCA-whitened.
    Standardization undoes any per-feature scale and shift, so it is the
    same for the given and the badly scaled inputs."""
    return {
        "as given": normalize.fit_transform(x, "raw"),
        "badly scaled": badly_scaled(
            x.shape[1], cfg.scale_spread, cfg.mean_shift
        ),
        "standardized": normalize.fit_transform(x, "standardize"),
        "whitened": normalize.fit_transform(x, "zca"),
    }


def mlp_spectra(
    cfg: NormalizationConfig, mnist: Dataset
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Every eigenvalue of a 40-``mlp_width``-10 tanh MLP's Hessian
    (cross-entropy on ``cfg.hessian_examples`` training examples) for
    each kind of input (:func:`input_transforms`), at initialization and
    after ``cfg.mlp_steps`` SGD steps from the same initialization.

    Returns:
        A frame with one row per ``inputs`` and ``point`` (``init`` or
        ``trained``): ``loss``, the summary of
        :func:`batchlab.hessian.spectrum_summary` and ``max_over_median``
        (largest eigenvalue over the median absolute one); and the
        spectra by ``(inputs, point)``.
    """
    rows, spectra = [], {}
    sizes = [mnist.n_features, cfg.mlp_width, mnist.n_classes]
    for name, T in input_transforms(cfg, mnist.x_train).items():
        d = Dataset(
            T(mnist.x_train), mnist.y_train, T(mnist.x_test), mnist.y_test
        )
        sub = d.subset(cfg.hessian_examples)
        net = models.mlp(sizes, seed=0)
        sgd = train.SGDConfig(32, cfg.mlp_lr, cfg.mlp_steps, seed=0)
        for point in ["init", "trained"]:
            if point == "trained":
                train.train_sgd(net, d, sgd)
            ev = hessian.hessian_spectrum(
                net, F.cross_entropy, sub.x_train, sub.y_train, chunk=250
            )
            with torch.no_grad():
                loss = F.cross_entropy(net(d.x_train), d.y_train)
            spectra[(name, point)] = ev
            row = hessian.spectrum_summary(ev, n_outliers=9)
            row.update(
                inputs=name,
                point=point,
                loss=float(loss),
                max_over_median=ev[0] / np.median(np.abs(ev)),
            )
            rows.append(row)
    return pd.DataFrame(rows), spectra


VARIANTS = {"none": None, "centre": False, "centre and scale": True}


@dataclass(frozen=True)
class CenteredRun:
    """One SGD run of a :class:`CenteredMLP`.

    Attributes:
        net: the network after the last step.
        history: training loss (``step``, ``loss``, ``variant``, ``seed``,
            ``test_acc``).
        matched: a copy of the network at the first check (every
            ``center_every`` steps) where its training loss was at most
            the ``match_loss`` asked for; ``None`` if never or not asked.
        matched_step: the step of that copy (``-1`` if none).
    """

    net: CenteredMLP
    history: pd.DataFrame
    matched: CenteredMLP | None = None
    matched_step: int = -1


def train_centered(
    cfg: NormalizationConfig,
    mnist: Dataset,
    variant: str,
    seed: int,
    match_loss: float | None = None,
) -> CenteredRun:
    """Train a :class:`CenteredMLP` with SGD, renormalizing every hidden
    layer over the training set every ``cfg.center_every`` steps (with
    the next layer compensated): ``variant`` is ``none``, ``centre`` or
    ``centre and scale`` (:data:`VARIANTS`). With ``match_loss``, keep a
    copy of the network when its training loss first reaches it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}")
    rescale = VARIANTS[variant]
    net = CenteredMLP(list(cfg.center_sizes), seed=seed)
    kept: dict = {}

    def hook(step: int, model: CenteredMLP) -> None:
        if step % cfg.center_every:
            return
        if rescale is not None:
            model.renormalize(mnist.x_train, compensate=True, rescale=rescale)
        if match_loss is not None and not kept:
            with torch.no_grad():
                loss = F.cross_entropy(model(mnist.x_train), mnist.y_train)
            if float(loss) <= match_loss:
                kept.update(net=copy.deepcopy(model), step=step)

    if rescale is not None:
        net.renormalize(mnist.x_train, compensate=True, rescale=rescale)
    sgd = train.SGDConfig(
        32,
        cfg.center_lr,
        cfg.center_steps,
        seed=seed,
        eval_every=max(1, cfg.center_steps // 10),
    )
    h = train.train_sgd(net, mnist, sgd, on_step=hook)
    frame = pd.DataFrame(dict(step=h.step, loss=h.train_loss[0]))
    frame = frame.assign(
        variant=variant, seed=seed, test_acc=float(h.final_test_acc[0])
    )
    return CenteredRun(net, frame, kept.get("net"), kept.get("step", -1))


def curvature_scale(
    net: torch.nn.Module, mnist: Dataset, cfg: NormalizationConfig
) -> dict:
    """The training loss and the largest Hessian eigenvalue of ``net``
    (cross-entropy on ``cfg.factor_examples`` training examples, Lanczos)
    and ``lr_x_lambda``, the learning rate ``cfg.center_lr`` times it:
    the step measured against the curvature (SGD on a quadratic is
    stable along the top direction only below 2). ``lambda_ref`` is the
    same eigenvalue in double precision (ARPACK), to check Lanczos."""
    x = mnist.x_train[: cfg.factor_examples]
    y = mnist.y_train[: cfg.factor_examples]
    op = hessian.HessianOperator(net, F.cross_entropy, x, y)
    top = float(hessian.top_eigenvalues(op, k=1, tol=1e-4).values[0])
    ref = hessian.reference_top_eigenvalues(net, F.cross_entropy, x, y)
    with torch.no_grad():
        loss = float(F.cross_entropy(net(mnist.x_train), mnist.y_train))
    return dict(
        loss=loss,
        lambda_max=top,
        lr_x_lambda=cfg.center_lr * top,
        lambda_ref=float(ref[0]),
    )


def standardized_copy(
    net: CenteredMLP, x: torch.Tensor, rescale: bool = True
) -> CenteredMLP:
    """The same function with every hidden layer's outputs centred (and
    scaled, with ``rescale``) over ``x``, the next layer compensated."""
    out = copy.deepcopy(net)
    out.renormalize(x, compensate=True, rescale=rescale)
    return out


def factor_table(
    nets: dict[str, torch.nn.Module], x: torch.Tensor
) -> pd.DataFrame:
    """K-FAC's two factors (:func:`batchlab.hessian.kronecker_factors`)
    of every linear layer of each network, summarized.

    Returns:
        One row per network and ``layer`` (1 = first): ``cond_A`` (the
        input factor's condition number), ``max_A``, ``max_G`` (the
        output-gradient factor's largest eigenvalue) and ``spread_G``
        (its largest over its median eigenvalue; its smallest may be
        zero).
    """
    rows = []
    for name, net in nets.items():
        for layer, f in enumerate(hessian.kronecker_factors(net, x), 1):
            ea = torch.linalg.eigvalsh(f.inputs)
            eg = torch.linalg.eigvalsh(f.outputs)
            rows.append(
                dict(
                    network=name,
                    layer=layer,
                    cond_A=float(ea[-1] / ea[0]),
                    max_A=float(ea[-1]),
                    max_G=float(eg[-1]),
                    spread_G=float(eg[-1] / eg.median()),
                )
            )
    return pd.DataFrame(rows)


def factor_change(
    before: torch.nn.Module, after: torch.nn.Module, x: torch.Tensor
) -> pd.DataFrame:
    """How much each K-FAC factor of every linear layer differs between
    two networks: the relative Frobenius distance ``|F_after - F_before|
    / |F_before|`` for ``A`` (``change_A``) and ``G`` (``change_G``), one
    row per ``layer`` (1 = first)."""
    rows = []
    pairs = zip(
        hessian.kronecker_factors(before, x),
        hessian.kronecker_factors(after, x),
    )
    for layer, (f0, f1) in enumerate(pairs, 1):
        rows.append(
            dict(
                layer=layer,
                change_A=float(
                    (f1.inputs - f0.inputs).norm() / f0.inputs.norm()
                ),
                change_G=float(
                    (f1.outputs - f0.outputs).norm() / f0.outputs.norm()
                ),
            )
        )
    return pd.DataFrame(rows)
