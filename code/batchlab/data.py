"""Data sets, all generated locally: nothing is downloaded.

* :func:`mnist1d` builds the MNIST-1D set (Greydanus 2020) with the
  package's own generator ``mnist1d.data.make_dataset``; its
  ``get_dataset`` would try to download a pickle, so it is never used.
  The generated arrays are kept in a local cache (:func:`cache_dir`), so
  that each chapter does not spend two seconds generating them again.
* :func:`digits` gives the real handwritten digits that ship inside
  scikit-learn (``load_digits``: 1797 images of 8x8 pixels, no
  download), split into training and test examples by a seeded draw.
* :func:`load` gives either by name, as a configuration's ``dataset``
  field says.
* :func:`synthetic_regression` draws Gaussian inputs with a chosen
  covariance and a linear target with noise.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.datasets import load_digits

from . import runtime


@dataclass(frozen=True)
class Dataset:
    """A train/test split as float32 inputs and integer or float targets.

    Attributes:
        x_train: inputs, shape ``(n, d)``.
        y_train: targets, shape ``(n,)`` (class indices or real values).
        x_test: held-out inputs, shape ``(m, d)``.
        y_test: held-out targets, shape ``(m,)``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return self.x_train.shape[0]

    @property
    def n_features(self) -> int:
        """Input dimension."""
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        """Number of classes (for integer targets)."""
        return int(self.y_train.max()) + 1

    def to(self, device: torch.device | str) -> Dataset:
        """The same data on ``device`` (this object if already there)."""
        device = torch.device(device)
        if self.x_train.device == device:
            return self
        return Dataset(
            *(
                t.to(device)
                for t in (self.x_train, self.y_train, self.x_test, self.y_test)
            )
        )

    def subset(self, n_train: int, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` (and ``n_test``) examples."""
        _check_count("n_train", n_train, self.n_train)
        n_test = self.x_test.shape[0] if n_test is None else n_test
        _check_count("n_test", n_test, self.x_test.shape[0])
        return Dataset(
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
        )


def _check_count(name: str, value: int, limit: int) -> None:
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must be between 1 and {limit}, got {value}")


MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def cache_dir() -> Path | None:
    """Where generated data sets are kept between runs: ``$BATCHLAB_CACHE``
    if set (``off`` disables the cache), else ``batchlab`` under
    ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    chosen = os.environ.get("BATCHLAB_CACHE")
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "batchlab"


def _mnist1d_path(num_samples: int, seed: int) -> Path | None:
    root = cache_dir()
    if root is None:
        return None
    version = importlib.metadata.version("mnist1d")
    return root / f"mnist1d-{version}-n{num_samples}-seed{seed}.npz"


def _generate_mnist1d(num_samples: int, seed: int) -> tuple[np.ndarray, ...]:
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    # make_dataset reseeds the global generators of numpy and random;
    # restore them so that calling it has no side effect on the caller.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return tuple(np.asarray(raw[k]) for k in MNIST1D_KEYS)


@lru_cache(maxsize=8)
def _mnist1d_arrays(num_samples: int, seed: int) -> tuple[np.ndarray, ...]:
    """The generated arrays, read from the disk cache when present (the
    file name carries the mnist1d version, the size and the seed)."""
    path = _mnist1d_path(num_samples, seed)
    if path is not None and path.exists():
        try:
            with np.load(path) as f:
                return tuple(f[k] for k in MNIST1D_KEYS)
        except (OSError, ValueError, KeyError):
            pass  # unreadable: generate it again and overwrite
    arrays = _generate_mnist1d(num_samples, seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **dict(zip(MNIST1D_KEYS, arrays)))
            os.replace(tmp, path)  # atomic: readers never see half a file
        except OSError:
            pass  # a read-only home only costs the generation time
    return arrays


def mnist1d(
    num_samples: int = 5000,
    seed: int = 42,
    device: torch.device | str | None = None,
) -> Dataset:
    """MNIST-1D generated locally: 40 features, 10 classes, 80/20 split.

    Args:
        num_samples: examples in total (train and test); a multiple of 10
            of at least 100.
        seed: the generator's seed, offset by the seed set
            (:func:`batchlab.runtime.seed`); 42 in the default set 0
            reproduces the published data set.
        device: where the tensors live; ``runtime.device()`` (a GPU only
            at full scale) when omitted.

    Returns:
        A :class:`Dataset` with float32 inputs ``(0.8 n, 40)`` and int64
        labels.
    """
    if num_samples < 100 or num_samples % 10:
        raise ValueError(
            "num_samples must be a multiple of 10 of at least 100, got "
            f"{num_samples}"
        )
    x, y, xt, yt = _mnist1d_arrays(int(num_samples), runtime.seed(seed))
    return Dataset(
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.int64),
        torch.as_tensor(xt, dtype=torch.float32),
        torch.as_tensor(yt, dtype=torch.int64),
    ).to(device or runtime.device())


DIGITS_PIXELS = 16.0  # load_digits' pixels are counts from 0 to 16


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    raw = load_digits()
    return raw.images.astype(np.float32), raw.target.astype(np.int64)


def digits(
    seed: int = 0,
    test_fraction: float = 0.2,
    flatten: bool = True,
    device: torch.device | str | None = None,
) -> Dataset:
    """scikit-learn's handwritten digits (UCI; 1797 images of 8x8 pixels,
    10 classes), bundled with the package: nothing is downloaded.

    Pixels are divided by 16, so they lie in ``[0, 1]``, as they were
    recorded, not standardized (three pixels are zero in every image).

    Args:
        seed: seed of the split (offset by the seed set, as for every
            draw of :mod:`batchlab`): a random permutation of the images,
            the first ``1 - test_fraction`` for training.
        test_fraction: share of the images held out, in ``(0, 1)``.
        flatten: inputs of shape ``(n, 64)`` for an MLP; ``False`` keeps
            images, ``(n, 1, 8, 8)``, for a convolutional network.
        device: where the tensors live; ``runtime.device()`` when omitted.

    Returns:
        A :class:`Dataset` of float32 inputs and int64 labels.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must lie strictly between 0 and 1, got "
            f"{test_fraction}"
        )
    images, labels = _digits_arrays()
    order = runtime.rng(seed).permutation(len(labels))
    n_test = max(1, round(test_fraction * len(labels)))
    train, test = order[n_test:], order[:n_test]
    x = torch.as_tensor(images / DIGITS_PIXELS)
    x = x.reshape(len(labels), -1) if flatten else x[:, None]
    y = torch.as_tensor(labels)
    return Dataset(x[train], y[train], x[test], y[test]).to(
        device or runtime.device()
    )


def load(name: str, device: torch.device | str | None = None) -> Dataset:
    """The data set a configuration names: ``"mnist1d"`` (:func:`mnist1d`
    with its defaults), ``"digits"`` (:func:`digits`, flattened) or
    ``"digits-8x8"`` (:func:`digits` as images).

    Raises:
        ValueError: another name.
    """
    if name == "mnist1d":
        return mnist1d(device=device)
    if name in ("digits", "digits-8x8"):
        return digits(flatten=name == "digits", device=device)
    raise ValueError(
        f"unknown data set {name!r}: use one of {runtime.DATASETS}"
    )


def correlated_covariance(
    dim: int, rho: float, scales: torch.Tensor | None = None
) -> torch.Tensor:
    """An equicorrelated covariance ``D (rho 11^T + (1-rho) I) D``.

    Args:
        dim: dimension ``d``.
        rho: correlation between any two features, in ``(-1/(d-1), 1)``.
        scales: per-feature standard deviations ``D``, shape ``(d,)``;
            ones when omitted.

    Returns:
        A symmetric positive definite matrix, shape ``(d, d)``, float64.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    low = -1.0 / (dim - 1) if dim > 1 else -1.0
    if not low < rho < 1:
        raise ValueError(
            f"rho must lie in ({low:.3g}, 1) for a positive definite "
            f"covariance in {dim} dimensions, got {rho}"
        )
    corr = torch.full((dim, dim), float(rho), dtype=torch.float64)
    corr.fill_diagonal_(1.0)
    if scales is None:
        return corr
    scales = torch.as_tensor(scales, dtype=torch.float64)
    if scales.shape != (dim,) or bool((scales <= 0).any()):
        raise ValueError(f"scales must be {dim} positive numbers")
    return scales[:, None] * corr * scales[None, :]


def synthetic_regression(
    n: int,
    covariance: torch.Tensor,
    mean: torch.Tensor | float = 0.0,
    noise: float = 0.1,
    n_test: int = 0,
    seed: int = 0,
) -> Dataset:
    """Gaussian inputs with a given covariance and a noisy linear target.

    ``x ~ N(mean, covariance)``, ``y = x @ w + b + noise * eps`` with
    ``w ~ N(0, I / d)`` and ``b ~ N(0, 1)`` drawn from the same seed.

    Args:
        n: training examples.
        covariance: input covariance, shape ``(d, d)``, positive definite.
        mean: input mean, a scalar or shape ``(d,)``.
        noise: standard deviation of the target noise.
        n_test: held-out examples drawn the same way.
        seed: seed of every draw.

    Returns:
        A :class:`Dataset` of float32 tensors.
    """
    covariance = torch.as_tensor(covariance, dtype=torch.float64)
    d = covariance.shape[0]
    if covariance.shape != (d, d):
        raise ValueError(
            f"covariance must be square, got {tuple(covariance.shape)}"
        )
    if n < 1 or n_test < 0 or noise < 0:
        raise ValueError("need n >= 1, n_test >= 0 and noise >= 0")
    try:
        chol = torch.linalg.cholesky(covariance)
    except RuntimeError:
        raise ValueError("covariance must be positive definite") from None
    gen = runtime.generator(seed)
    mean = torch.broadcast_to(torch.as_tensor(mean, dtype=torch.float64), (d,))
    w = torch.randn(d, generator=gen, dtype=torch.float64) / d**0.5
    b = torch.randn((), generator=gen, dtype=torch.float64)
    z = torch.randn(n + n_test, d, generator=gen, dtype=torch.float64)
    x = mean + z @ chol.T
    eps = torch.randn(n + n_test, generator=gen, dtype=torch.float64)
    y = x @ w + b + noise * eps
    x, y = x.float(), y.float()
    return Dataset(x[:n], y[:n], x[n:], y[n:])
