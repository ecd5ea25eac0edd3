"""Largest Hessian eigenvalue: our Lanczos against PyHessian's power
iteration, over several random starts and several trained models.

The models are 40-100-100-10 tanh MLPs (15,210 parameters) trained on
MNIST-1D by minibatch SGD (batch 32); the Hessian is that of the mean
cross-entropy over the 4000 training examples. ``REGIMES`` fixes the
training runs in advance. The first is the benchmark model: the issue
describes it as one on which PyHessian's own stopping rule stops with
0.3-8 % error, and that holds after 300 SGD steps, when the two largest
eigenvalues are nearly equal, but not after 3000 or more, when they are
well apart (the run prints which). The others show how the comparison
depends on how long or how hard the model was trained: Lanczos's lead over
power iteration grows as lambda_2 / lambda_1 approaches one.

Each model's reference eigenvalues are computed in float64 to ARPACK's
tightest tolerance; both methods run in float32.

Products are counted at equal measured accuracy (relative error at most
``TARGET``), three ways, each over the ``SEEDS`` random starts:

* oracle: the first product after which the estimate is within the target
  (this needs the reference, so no user can stop there; it measures the
  method, not its stopping rule);
* own rule: each method stops by its own test, with one fixed tolerance
  chosen as the loosest of ``TOLS`` whose result meets the target for every
  start. PyHessian's test is the relative change between consecutive
  estimates; ours is Lanczos's ``r^2 / gap`` error bound.

PyHessian's estimates after every product are recorded by wrapping its
``group_product``, so one long run per start gives both its oracle count
and the stop of its own rule at any tolerance (the replay is checked
against a real run at PyHessian's default ``tol=1e-3``).

Run: ``make bench`` (installs ``benchmarks/requirements.txt``).
"""

from __future__ import annotations

import copy
import importlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pyhessian import hessian as PyHessian

from batchlab import data, hessian, lanczos, models, train
from batchlab.experiments.eigenvalues._race import stop_on_change

# pyhessian/__init__ rebinds the name `hessian` to the class, so fetch the
# module itself to instrument its group_product.
ph_module = importlib.import_module("pyhessian.hessian")

TARGET = 1e-4
SEEDS = range(10)
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
PH_DEFAULT_TOL = 1e-3  # PyHessian's default for eigenvalues()
PH_FIRST_ITER = 100  # products of a first PyHessian trace; doubled as needed
PH_REPLAY_TOL = 1e-6  # every trace runs until this rule would have fired
# (learning rate, SGD steps). The first row is the benchmark model: the one
# on which PyHessian's own rule errs by 0.3-8 %, as the issue describes;
# main() checks that this still holds.
REGIMES = (
    (0.05, 300),
    (0.05, 1000),
    (0.05, 3000),
    (0.05, 10000),
    (0.05, 40000),
    (0.2, 20000),
)
PREMISE = (3e-3, 8e-2)


def trained_model(d: data.Dataset, lr: float, steps: int) -> torch.nn.Module:
    net = models.mlp([40, 100, 100, 10], seed=0)
    train.train_sgd(net, d, train.SGDConfig(32, lr, steps, seed=0))
    return net


def operator(net, d) -> hessian.HessianOperator:
    loss = F.cross_entropy
    return hessian.HessianOperator(net, loss, d.x_train, d.y_train)


def reference(net, d, k: int) -> np.ndarray:
    """The ``k`` largest eigenvalues in float64."""
    return hessian.reference_top_eigenvalues(
        net, F.cross_entropy, d.x_train, d.y_train, k=k, tol=1e-14
    )


def rel_err(estimate, ref) -> float:
    return float(np.max(np.abs(np.asarray(estimate) - ref) / np.abs(ref)))


# --------------------------------------------------------------------------
# Ours


def lanczos_run(net, d, seed: int, tol: float, k: int = 1):
    """Our Lanczos with its own stopping rule: (Eigen, seconds)."""
    op = operator(net, d)
    start = time.perf_counter()
    eig = hessian.top_eigenvalues(op, k=k, tol=tol, seed=seed)
    return eig, time.perf_counter() - start


def lanczos_oracle(net, d, ref: float, seed: int) -> int:
    """Products after which plain Lanczos's top Ritz value (same start as
    ``lanczos_top``) is first within the target."""
    op = operator(net, d)
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    return first_within(lanczos.lanczos_estimates(op, v0, 40), ref)


# --------------------------------------------------------------------------
# PyHessian


def pyhessian_run(net, d, seed: int, max_iter: int, tol: float, top_n=1):
    """Run PyHessian from the start ``seed`` gives, recording the estimate
    after every product: (eigenvalues, estimates, seconds)."""
    estimates: list[float] = []
    original = ph_module.group_product

    def recording(xs, ys):
        value = original(xs, ys)
        if xs is not ys:  # the Rayleigh quotient v . Hv
            estimates.append(float(value))
        return value

    ph_module.group_product = recording
    try:
        torch.manual_seed(seed)  # PyHessian draws its start from torch.randn
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


def pyhessian_trace(net, d, seed: int, lam1: float):
    """PyHessian's estimates after every product, run (tol 0) long enough
    to reach the target and for its rule to fire at ``PH_REPLAY_TOL``."""
    max_iter = PH_FIRST_ITER
    while True:
        _, est, secs = pyhessian_run(net, d, seed, max_iter, tol=0.0)
        try:
            first_within(est, lam1)
            stop_on_change(est, PH_REPLAY_TOL)
            return est, secs
        except (RuntimeError, ValueError):
            if max_iter >= 3200:
                raise
            max_iter *= 2


def first_within(estimates: np.ndarray, ref: float) -> int:
    hit = np.flatnonzero(np.abs(estimates - ref) / ref <= TARGET)
    if len(hit) == 0:
        raise RuntimeError(
            f"no estimate within {TARGET:g} in {len(estimates)} products"
        )
    return int(hit[0]) + 1


# --------------------------------------------------------------------------
# One model


@dataclass
class Counts:
    """Products per start for one method and protocol."""

    products: list[int]
    errors: list[float]
    seconds: list[float]
    tol: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.products))

    def cell(self) -> str:
        p = self.products
        return f"{np.mean(p):.1f} ({min(p)}-{max(p)})"


def loosest_meeting_target(run_at) -> Counts:
    """Of ``TOLS``, the loosest tolerance whose run meets the target for
    every start; ``run_at(tol)`` returns the Counts at that tolerance."""
    for tol in TOLS:
        counts = run_at(tol)
        if max(counts.errors) <= TARGET:
            counts.tol = tol
            return counts
    raise RuntimeError("no tolerance in TOLS meets the target")


def measure(net, d) -> dict:
    ref = reference(net, d, k=2)
    lam1 = float(ref[0])

    traces, ph_seconds = [], []
    for seed in SEEDS:
        est, secs = pyhessian_trace(net, d, seed, lam1)
        traces.append(est)
        ph_seconds.append(secs / len(est))  # per product
    per_product = float(np.mean(ph_seconds))

    def ph_at(tol: float) -> Counts:
        stops = [stop_on_change(est, tol) for est in traces]
        n = [s[0] for s in stops]
        return Counts(
            n,
            [rel_err(s[1], lam1) for s in stops],
            [k * per_product for k in n],
        )

    def ours_at(tol: float) -> Counts:
        runs = [lanczos_run(net, d, seed, tol) for seed in SEEDS]
        return Counts(
            [e.n_products for e, _ in runs],
            [rel_err(e.values[0], lam1) for e, _ in runs],
            [s for _, s in runs],
        )

    ph_oracle = [first_within(est, lam1) for est in traces]
    ours_oracle = [lanczos_oracle(net, d, lam1, seed) for seed in SEEDS]
    return {
        "ref": ref,
        "ph_oracle": Counts(ph_oracle, [TARGET] * len(ph_oracle), []),
        "ours_oracle": Counts(ours_oracle, [TARGET] * len(ours_oracle), []),
        "ph_own": loosest_meeting_target(ph_at),
        "ours_own": loosest_meeting_target(ours_at),
        "ph_default": ph_at(PH_DEFAULT_TOL),
        "traces": traces,
        "ph_per_product": per_product,
    }


def check_replay(net, d, traces) -> None:
    """The replayed stopping rule must match a real run of PyHessian."""
    for seed in list(SEEDS)[:3]:
        values, est, _ = pyhessian_run(net, d, seed, 100, PH_DEFAULT_TOL)
        n, value = stop_on_change(traces[seed], PH_DEFAULT_TOL)
        if len(est) != n or abs(values[0] - value) > 1e-6 * abs(value):
            raise RuntimeError(
                f"replay of PyHessian's rule is off for start {seed}: "
                f"{n} products / {value} against {len(est)} / {values[0]}"
            )


def best_seconds(fns, rounds: int = 15, calls: int = 5) -> list[float]:
    """Seconds per call of each function: the best of ``rounds`` rounds of
    ``calls`` calls, the functions taking turns round by round so that a
    slow spell of the machine hits them alike (the minimum is the least
    disturbed by other work)."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / calls)
    return best


def cost_ratio(net, d) -> float:
    """Seconds of one Hessian-vector product over one full-batch gradient
    (forward and backward pass)."""
    op = operator(net, d)
    v = torch.randn(op.dim)

    def gradient():
        net.zero_grad()
        F.cross_entropy(net(d.x_train), d.y_train).backward()

    t_hvp, t_grad = best_seconds([lambda: op.matvec(v), gradient])
    net.zero_grad()
    return t_hvp / t_grad


def top5(net, d, seeds=range(3)) -> list[str]:
    ref = reference(net, d, k=5)
    rows = []
    ours = [lanczos_run(net, d, seed, 1e-4, k=5) for seed in seeds]
    rows.append(
        "| ours, Lanczos, tol 1e-4 | "
        f"{np.mean([e.n_products for e, _ in ours]):.1f} | "
        f"{np.mean([s for _, s in ours]):.2f} | "
        f"{max(rel_err(e.values, ref) for e, _ in ours):.1e} |"
    )
    ph = [
        pyhessian_run(net, d, seed, 100, PH_DEFAULT_TOL, top_n=5)
        for seed in seeds
    ]
    rows.append(
        f"| PyHessian, its default rule (tol {PH_DEFAULT_TOL:g}) | "
        f"{np.mean([len(est) for _, est, _ in ph]):.1f} | "
        f"{np.mean([s for _, _, s in ph]):.2f} | "
        f"{max(rel_err(sorted(v, reverse=True), ref) for v, _, _ in ph):.1e} |"
    )
    return rows


def main() -> None:
    wall = time.perf_counter()
    d = data.mnist1d()
    n = len(SEEDS)
    print(
        f"Products to relative error <= {TARGET:g}: mean (min-max) over "
        f"{n} random starts; own-rule tolerances are the loosest of "
        f"{', '.join(f'{t:g}' for t in TOLS)} meeting the target on all "
        "starts.\n"
    )
    print(
        "| SGD lr, steps | lambda_1 | lambda_2 / lambda_1 | "
        "PyHessian oracle | ours oracle | PyHessian own rule (tol) | "
        "ours own rule (tol) | own-rule ratio | oracle ratio | "
        f"PyHessian at tol {PH_DEFAULT_TOL:g}: products, worst error |"
    )
    print("|" + "---|" * 10)
    headline, others = None, []
    for lr, steps in REGIMES:
        net = trained_model(d, lr, steps)
        m = measure(net, d)
        ph, ours = m["ph_own"], m["ours_own"]
        if headline is None:
            check_replay(net, d, m["traces"])
            headline = (net, m)
        else:
            others.append(ph.mean / ours.mean)
        default = m["ph_default"]
        print(
            f"| {lr:g}, {steps} | {m['ref'][0]:.4f} | "
            f"{m['ref'][1] / m['ref'][0]:.2f} | {m['ph_oracle'].cell()} | "
            f"{m['ours_oracle'].cell()} | {ph.cell()} ({ph.tol:g}) | "
            f"{ours.cell()} ({ours.tol:g}) | {ph.mean / ours.mean:.2f}x | "
            f"{m['ph_oracle'].mean / m['ours_oracle'].mean:.2f}x | "
            f"{default.mean:.1f}, {max(default.errors):.1e} |",
            flush=True,
        )

    net, m = headline
    ph, ours = m["ph_own"], m["ours_own"]
    lr, steps = REGIMES[0]
    errs = m["ph_default"].errors
    median = float(np.median(errs))
    holds = PREMISE[0] <= median <= PREMISE[1]
    print(
        f"\nPyHessian's default rule errs by {min(errs):.2%} to "
        f"{max(errs):.2%} (median {median:.2%}) on the benchmark model; the "
        f"issue describes {PREMISE[0]:.1%} to {PREMISE[1]:.0%}: the median "
        + ("is in that range" if holds else "is NOT in that range")
    )
    print(f"\nBenchmark model (lr {lr:g}, {steps} steps): wall time per run")
    print("| method | HVPs | seconds | worst rel. error |")
    print("|---|---|---|---|")
    print(
        f"| ours, Lanczos, own rule (tol {ours.tol:g}) | {ours.mean:.1f} | "
        f"{np.mean(ours.seconds):.3f} | {max(ours.errors):.1e} |"
    )
    print(
        f"| PyHessian, own rule (tol {ph.tol:g}) | {ph.mean:.1f} | "
        f"{np.mean(ph.seconds):.3f} | {max(ph.errors):.1e} |"
    )
    print("\nTop 5 eigenvalues, benchmark model (3 starts; error: worst of 5)")
    print("| method | HVPs | seconds | worst rel. error |")
    print("|---|---|---|---|")
    for row in top5(net, d):
        print(row)
    print()
    print(
        f"products, PyHessian / ours at {TARGET:g}, benchmark model: own rule "
        f"{ph.mean / ours.mean:.2f}x, oracle "
        f"{m['ph_oracle'].mean / m['ours_oracle'].mean:.2f}x (target >= 3x); "
        f"wall time {np.mean(ph.seconds) / np.mean(ours.seconds):.2f}x"
    )
    print(
        "own-rule ratio on the other models: "
        f"{min(others):.2f}x to {max(others):.2f}x"
    )
    ratios = [cost_ratio(net, d) for _ in range(5)]
    print(
        f"one HVP / one gradient: median {np.median(ratios):.2f} of five "
        f"measurements ({min(ratios):.2f} to {max(ratios):.2f}; target <= 2)"
    )
    print(f"benchmark wall time: {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
