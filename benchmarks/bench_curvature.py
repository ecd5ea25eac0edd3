"""Largest Hessian eigenvalue: our Lanczos against PyHessian's power
iteration, measured in one run on one model and data set.

The model is a 40-100-100-10 tanh MLP (15,210 parameters) trained on
MNIST-1D; the Hessian is that of the mean cross-entropy over the 4000
training examples. The reference eigenvalue is computed in float64 to
ARPACK's tightest tolerance. Both methods run in float32 and are compared
at equal measured accuracy (relative error <= 1e-4): for PyHessian we
record its estimate after every Hessian-vector product and count the
products until it is that close, since its own stopping rule (change
between iterates below ``tol``) stops early.

Run: ``make bench`` (installs ``benchmarks/requirements.txt``).
"""

from __future__ import annotations

import copy
import importlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from batchlab import curvature, data, models, train
from pyhessian import hessian as PyHessian

# pyhessian/__init__ rebinds the name `hessian` to the class, so fetch the
# module itself to instrument its group_product.
ph_module = importlib.import_module("pyhessian.hessian")

TARGET = 1e-4


def trained_model(d: data.Dataset) -> torch.nn.Module:
    net = models.mlp([40, 100, 100, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(32, 0.05, 3000, seed=0))
    return net


def reference(net, d) -> float:
    net64 = copy.deepcopy(net).double()
    op = curvature.HessianOperator(
        net64, F.cross_entropy, d.x_train.double(), d.y_train
    )
    return float(curvature.top_eigenvalues(op, k=1, tol=1e-14).values[0])


def ours(net, d, ref: float, k: int = 1, method: str = "lanczos"):
    """Loosest tolerance (of a fixed ladder) whose result meets the target;
    the stopping rule is the method's own."""
    for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
        op = curvature.HessianOperator(
            net, F.cross_entropy, d.x_train, d.y_train
        )
        start = time.perf_counter()
        eig = curvature.top_eigenvalues(
            op, k=k, tol=tol, seed=0, method=method
        )
        elapsed = time.perf_counter() - start
        err = abs(eig.values[0] - ref) / ref
        if err <= TARGET:
            return eig, elapsed, err, tol
    raise RuntimeError(f"{method} did not reach the target accuracy")


def lanczos_products_to_target(net, d, ref: float) -> int:
    """Products after which plain Lanczos's top Ritz value is within the
    target (the same oracle count as for PyHessian)."""
    op = curvature.HessianOperator(net, F.cross_entropy, d.x_train, d.y_train)
    gen = torch.Generator().manual_seed(0)  # the start lanczos_top uses
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    for steps in range(1, 200):
        a, b = curvature.lanczos(op.matvec, v0, steps)
        T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        if abs(float(torch.linalg.eigvalsh(T)[-1]) - ref) / ref <= TARGET:
            return steps
    raise RuntimeError("Lanczos did not reach the target in 200 steps")


def pyhessian_trace(net, d, max_iter: int, top_n: int = 1, tol=0.0):
    """Run PyHessian, recording the estimate after every product."""
    estimates: list[float] = []
    original = ph_module.group_product

    def recording(xs, ys):
        value = original(xs, ys)
        if xs is not ys:  # the Rayleigh quotient v . Hv
            estimates.append(float(value))
        return value

    ph_module.group_product = recording
    try:
        torch.manual_seed(0)
        h = PyHessian(
            copy.deepcopy(net),
            F.cross_entropy,
            data=(d.x_train, d.y_train),
            cuda=False,
        )
        start = time.perf_counter()
        values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_n)
        elapsed = time.perf_counter() - start
    finally:
        ph_module.group_product = original
    return values, np.array(estimates), elapsed


def seconds_per(fn, repeats: int = 20) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.manual_seed(0)
    d = data.mnist1d()
    net = trained_model(d)
    ref = reference(net, d)

    eig, t_ours, err_ours, tol = ours(net, d, ref)
    arp, t_arp, err_arp, tol_arp = ours(net, d, ref, method="arpack")
    n_oracle = lanczos_products_to_target(net, d, ref)
    _, est, t_ph = pyhessian_trace(net, d, max_iter=3000)
    errs = np.abs(est - ref) / ref
    hit = np.flatnonzero(errs <= TARGET)
    if len(hit) == 0:
        raise RuntimeError("PyHessian did not reach 1e-4 in 3000 products")
    n_ph = int(hit[0]) + 1
    t_ph_equal = t_ph * n_ph / len(est)
    default_vals, default_est, _ = pyhessian_trace(net, d, 100, tol=1e-3)
    default_err = abs(default_vals[0] - ref) / ref

    op = curvature.HessianOperator(net, F.cross_entropy, d.x_train, d.y_train)
    v = torch.randn(op.dim)
    t_hvp = seconds_per(lambda: op.matvec(v))

    def gradient():
        net.zero_grad()
        F.cross_entropy(net(d.x_train), d.y_train).backward()

    t_grad = seconds_per(gradient)
    eig5, t5, err5, tol5 = ours(net, d, ref, k=5)
    ph5, est5, t_ph5 = pyhessian_trace(net, d, 100, top_n=5, tol=1e-3)

    print(f"reference lambda_max (float64): {ref:.8f}")
    print("| method | HVPs | seconds | rel. error |")
    print("|---|---|---|---|")
    print(
        f"| ours, Lanczos, own stopping rule (tol {tol:g}) | "
        f"{eig.n_products} | {t_ours:.3f} | {err_ours:.1e} |"
    )
    print(
        f"| ours, Lanczos, first iterate within 1e-4 | {n_oracle} | - | "
        "<= 1e-4 |"
    )
    print(
        f"| scipy eigsh (ARPACK, tol {tol_arp:g}) | {arp.n_products} | "
        f"{t_arp:.3f} | {err_arp:.1e} |"
    )
    print(
        f"| PyHessian power iteration, to 1e-4 | {n_ph} | "
        f"{t_ph_equal:.3f} | {errs[n_ph - 1]:.1e} |"
    )
    print(
        f"| PyHessian, its own rule (tol 1e-3) | {len(default_est)} | "
        f"- | {default_err:.1e} |"
    )
    print(
        f"| ours, top 5 (tol {tol5:g}) | {eig5.n_products} | {t5:.3f} | "
        f"{err5:.1e} |"
    )
    print(
        f"| PyHessian, top 5, its own rule | {len(est5)} | {t_ph5:.3f} | "
        f"{abs(ph5[0] - ref) / ref:.1e} |"
    )
    print()
    print(
        f"products, PyHessian / ours at 1e-4: own rule "
        f"{n_ph / eig.n_products:.2f}x, first iterate "
        f"{n_ph / n_oracle:.2f}x (target >= 3x)"
    )
    print(f"one HVP / one gradient: {t_hvp / t_grad:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
