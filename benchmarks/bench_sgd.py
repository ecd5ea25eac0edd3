"""Ratios for the minibatch chapter, measured in one run on one machine.

1. Throughput of 16 MLPs (40-100-100-10, batch size 1) trained at once by
   ``ensemble.EnsembleMLP`` against a per-seed eager PyTorch loop.
2. Cost of tr(Sigma) over N = 4000 examples by ``noise.noise_stats``
   (layer-wise per-sample norms) against one full-batch gradient, and the
   same for ``torch.func.vmap`` per-sample gradients.

Run: ``.venv/bin/python benchmarks/bench_sgd.py``.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from batchlab import data, ensemble, models, noise, train

SIZES = [40, 100, 100, 10]


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def eager_loop(d: data.Dataset, n_models: int, steps: int) -> float:
    """Seconds for a plain PyTorch loop training the models one by one."""
    start = time.perf_counter()
    for seed in range(n_models):
        net = models.mlp(SIZES, seed=seed)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        order = train.batch_schedule(d.n_train, 1, steps, seed)
        for idx in order:
            loss = F.cross_entropy(net(d.x_train[idx]), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def main() -> None:
    d = data.mnist1d()
    m, steps = 16, 2000
    nets = [models.mlp(SIZES, seed=s) for s in range(m)]
    ens = ensemble.EnsembleMLP.from_models(nets)
    h = ensemble.train_ensemble(ens, d, 1, [0.05] * m, steps, list(range(m)))
    ours = m * steps / h.wall_time
    eager = m * 250 / eager_loop(d, m, 250)
    net = models.mlp(SIZES, seed=0)
    x, y = d.x_train, d.y_train

    def gradient():
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()

    t_grad = best_of(gradient)
    t_norms = best_of(lambda: noise.noise_stats(net, x, y))
    t_vmap = best_of(
        lambda: noise.per_sample_grads(net, F.cross_entropy, x, y), repeats=2
    )
    print("| measurement | ours | reference | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| model-steps/s, 16 MLPs, B=1 | {ours:.0f} | {eager:.0f} | "
        f"{ours / eager:.1f}x | >= 10x |"
    )
    print(
        f"| tr(Sigma), N=4000 (s) | {t_norms:.4f} | gradient "
        f"{t_grad:.4f} | {t_norms / t_grad:.2f}x a gradient | <= 3x |"
    )
    print(
        f"| vmap per-sample gradients (s) | {t_vmap:.3f} | gradient "
        f"{t_grad:.4f} | {t_vmap / t_grad:.0f}x a gradient | (reference) |"
    )


if __name__ == "__main__":
    main()
