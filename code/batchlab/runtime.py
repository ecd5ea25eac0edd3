"""Where and how experiments run: scale, threads, device and seeds.

Everything is read from the environment, in one place:

* ``BATCHLAB_SCALE`` -- ``quick`` (the test suite: every chapter in
  seconds), ``book`` (default; what the published book runs) or ``full``
  (the book's experiments over more seeds, draws and random starts, on a
  GPU when one is present; see :func:`more_of`).
* ``BATCHLAB_THREADS`` -- an upper bound on the threads PyTorch and the
  BLAS libraries use. The count is otherwise the CPUs this process may
  really use: its affinity mask and its cgroup CPU quota (which a
  container or Binder imposes and PyTorch's own default ignores), capped
  at :data:`DEFAULT_MAX_THREADS` because the book's models are too small
  to gain from more.
* ``BATCHLAB_DEVICE`` -- ``cpu`` or ``cuda`` to override the device.
* ``BATCHLAB_SEED`` -- the seed set (default 0). Every random draw of
  :mod:`batchlab` takes a seed ``k`` and uses ``seed(k) = k + s *
  SEED_STRIDE``, so seed sets never share a seed.

Importing :mod:`batchlab` applies the thread policy (:func:`apply_threads`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

ENV_VAR = "BATCHLAB_SCALE"
THREADS_VAR = "BATCHLAB_THREADS"
DEVICE_VAR = "BATCHLAB_DEVICE"
SEED_VAR = "BATCHLAB_SEED"
# Seeds of one seed set are 0 <= k < SEED_STRIDE; set s adds s * stride.
SEED_STRIDE = 1_000_000
# Threads one chapter uses at most unless BATCHLAB_THREADS says otherwise:
# the book's models are small, and a second thread bought little on a
# quiet machine and cost a lot on a busy one (see the reproducing page).
DEFAULT_MAX_THREADS = 1
CGROUP = Path("/sys/fs/cgroup")

T = TypeVar("T")


class Scale(StrEnum):
    """Experiment size; compare with ``Scale.QUICK`` and friends."""

    QUICK = "quick"
    BOOK = "book"
    FULL = "full"


def parse_scale(name: str | Scale) -> Scale:
    """Turn ``"quick"``, ``"book"`` or ``"full"`` into a :class:`Scale`.

    Raises:
        ValueError: the name is none of the three.
    """
    if isinstance(name, Scale):
        return name
    cleaned = str(name).strip().lower()
    try:
        return Scale(cleaned)
    except ValueError:
        allowed = ", ".join(s.value for s in Scale)
        raise ValueError(
            f"unknown scale {name!r}: {ENV_VAR} must be one of {allowed}"
        ) from None


def current_scale() -> Scale:
    """The scale named by ``$BATCHLAB_SCALE`` (``book`` when unset)."""
    return parse_scale(os.environ.get(ENV_VAR, Scale.BOOK.value))


#: The only fields a full-scale configuration may change: counts of
#: independent repetitions (seeds, random draws, random starts). Anything
#: else (network sizes, data, grids, training lengths, rates) would change
#: the experiment the text describes, not the precision of its estimates,
#: and the chapters' claims are statements about the book's experiments.
PRECISION_FIELDS = frozenset({"seeds", "draws", "noise_draws", "starts"})


def more_of(book: T, **counts: int) -> T:
    """The full-scale configuration: ``book`` repeated more often.

    Args:
        book: a frozen dataclass, the book-scale configuration.
        counts: new values of fields in :data:`PRECISION_FIELDS`, each an
            integer at least the book's.

    Raises:
        ValueError: a field outside :data:`PRECISION_FIELDS`, or a count
            below the book's (full would then be less precise).
    """
    if not counts:
        raise ValueError("more_of needs at least one count to raise")
    for name, value in counts.items():
        if name not in PRECISION_FIELDS:
            raise ValueError(
                f"the full scale may only repeat the book's experiments "
                f"more often ({', '.join(sorted(PRECISION_FIELDS))}); "
                f"{name!r} would change the experiment itself"
            )
        old = getattr(book, name)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or value < old:
            raise ValueError(
                f"{name}={value!r} at full scale: it must be an integer of "
                f"at least the book's {old}"
            )
    return dataclasses.replace(book, **counts)


def pick(scale: Scale | str, quick: T, book: T, full: T) -> T:
    """Return the value that belongs to ``scale``."""
    return {Scale.QUICK: quick, Scale.BOOK: book, Scale.FULL: full}[
        parse_scale(scale)
    ]


# --------------------------------------------------------------------------
# Threads


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5`` for a
    quota of 150 ms per 100 ms period), or ``None`` when there is none.

    Reads cgroup v2's ``cpu.max`` (``"max 100000"`` means no limit), else
    cgroup v1's ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``
    (a quota of ``-1`` means no limit). Missing or unreadable files mean
    no limit.
    """
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields[0] == "max":
            return None
        return int(fields[0]) / int(fields[1])
    except (OSError, IndexError, ValueError):
        pass
    try:
        v1 = root / "cpu"
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        period = int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count(
    affinity: int | None = None,
    quota: float | None = None,
    requested: str | None = None,
    cap: int = DEFAULT_MAX_THREADS,
) -> int:
    """Threads to use: ``min(affinity, floor(quota), requested)``, and at
    most ``cap`` unless ``requested`` (``$BATCHLAB_THREADS``) is given.

    A fractional quota rounds down (1.5 CPUs give one thread), never
    below one.

    Raises:
        ValueError: ``requested`` is not a positive integer.
    """
    limits = [affinity if affinity is not None else affinity_cpus()]
    if quota is not None:
        limits.append(max(1, math.floor(quota)))
    if requested is not None and requested.strip():
        try:
            wanted = int(requested)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise ValueError(
                f"{THREADS_VAR} must be a positive integer, got {requested!r}"
            )
        limits.append(wanted)
    else:
        limits.append(cap)
    return max(1, min(limits))


# The BLAS limit object must stay alive for the limit to hold.
_blas_limit: list[threadpool_limits] = []


def apply_threads() -> int:
    """Set PyTorch's and the BLAS libraries' thread counts to
    :func:`thread_count` for this process; returns the count."""
    n = thread_count(
        quota=cgroup_cpu_limit(), requested=os.environ.get(THREADS_VAR)
    )
    torch.set_num_threads(n)
    try:  # only possible before any inter-op work has started
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass
    _blas_limit[:] = [threadpool_limits(limits=n)]  # numpy's, scipy's BLAS
    return n


# --------------------------------------------------------------------------
# Device


def device(scale: Scale | str | None = None) -> torch.device:
    """The device experiments run on: ``$BATCHLAB_DEVICE`` when set, else
    a GPU at ``full`` scale when one is present, else the CPU.

    Raises:
        ValueError: ``$BATCHLAB_DEVICE`` names a device that is not here.
    """
    wanted = os.environ.get(DEVICE_VAR, "").strip().lower()
    if wanted:
        if wanted not in ("cpu", "cuda"):
            raise ValueError(f"{DEVICE_VAR} must be cpu or cuda: {wanted!r}")
        if wanted == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_VAR}=cuda but no GPU is available")
        return torch.device(wanted)
    scale = current_scale() if scale is None else parse_scale(scale)
    if scale is Scale.FULL and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# --------------------------------------------------------------------------
# Seeds


def seed_set() -> int:
    """The seed set ``$BATCHLAB_SEED`` (0 when unset), a non-negative int.

    Raises:
        ValueError: it is not a non-negative integer.
    """
    raw = os.environ.get(SEED_VAR, "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{SEED_VAR} must be a non-negative integer, got {raw!r}"
        )
    return value


def seed(k: int) -> int:
    """Seed ``k`` of the current seed set: ``k + BATCHLAB_SEED *
    SEED_STRIDE``. Different seed sets never share a seed.

    Raises:
        ValueError: ``k`` is outside ``[0, SEED_STRIDE)``.
    """
    k = int(k)
    if not 0 <= k < SEED_STRIDE:
        raise ValueError(f"seeds must lie in [0, {SEED_STRIDE}), got {k}")
    return k + seed_set() * SEED_STRIDE


def generator(k: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with :func:`seed` of ``k``."""
    return torch.Generator(device=device).manual_seed(seed(k))


def rng(k: int) -> np.random.Generator:
    """A numpy ``Generator`` seeded with :func:`seed` of ``k``."""
    return np.random.default_rng(seed(k))
