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
import typing
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


def apply_precision() -> None:
    """Full float32 on a GPU: no TF32 in matrix products or cuDNN
    convolutions (cuDNN's default allows it), so that a GPU run computes
    what the CPU run computes, to float32 rounding. Applied when
    :mod:`batchlab` is imported."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


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


# --------------------------------------------------------------------------
# Variants: the neighbourhood of the book's configuration that the ledger
# (booktools.ledger) reruns every claim in.

#: The variants a section may declare, in the order the ledger lists them.
VARIANTS = ("longer", "wider", "rate", "digits")
#: How much longer the ``longer`` variant trains.
LONGER_FACTOR = 3
#: The range of the ``wider`` variant's factor on hidden widths.
WIDER_FACTORS = (2, 4)
#: Data sets a configuration's ``dataset`` field may name.
DATASETS = ("mnist1d", "digits", "digits-8x8")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One named change of a configuration (declared by a section in its
    ``Config.VARIANTS``, applied by :func:`variants_of`).

    Subclasses say what may change: :class:`Longer`, :class:`Wider`,
    :class:`Rate` and :class:`Digits`. ``fields`` names the fields the
    variant touches; nothing else may change.
    """

    name: typing.ClassVar[str] = ""

    def apply(self, cfg: T) -> T:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require(self, cfg, fields) -> None:
        known = {f.name for f in dataclasses.fields(cfg)}
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise ValueError(
                f"the {self.name} variant names fields {unknown} that "
                f"{type(cfg).__name__} lacks"
            )
        if not fields:
            raise ValueError(f"the {self.name} variant needs a field")


def _times(value, factor: float, name: str, what: str):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} multiplies numbers; {name} is {value!r}")
    out = value * factor
    return int(out) if isinstance(value, int) else float(out)


@dataclasses.dataclass(frozen=True)
class Longer(Variant):
    """Train :data:`LONGER_FACTOR` times longer: each named field (steps,
    epochs, a budget) is multiplied by it."""

    fields: tuple[str, ...]
    name: typing.ClassVar[str] = "longer"

    def __init__(self, *fields: str):
        object.__setattr__(self, "fields", tuple(fields))

    def apply(self, cfg: T) -> T:
        self._require(cfg, self.fields)
        new = {
            f: _times(getattr(cfg, f), LONGER_FACTOR, f, "longer")
            for f in self.fields
        }
        return dataclasses.replace(cfg, **new)


@dataclasses.dataclass(frozen=True)
class Wider(Variant):
    """Widen the hidden layers by ``factor`` (2 to 4): a named field is an
    integer width, or a tuple of layer sizes whose first (input) and last
    (output) entries stay and whose others are multiplied."""

    fields: tuple[str, ...]
    factor: int = 2
    name: typing.ClassVar[str] = "wider"

    def __init__(self, *fields: str, factor: int = 2):
        lo, hi = WIDER_FACTORS
        if not lo <= factor <= hi or int(factor) != factor:
            raise ValueError(
                f"the wider variant's factor must be an integer from {lo} "
                f"to {hi}, got {factor!r}"
            )
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "factor", int(factor))

    def apply(self, cfg: T) -> T:
        self._require(cfg, self.fields)
        new = {}
        for f in self.fields:
            value = getattr(cfg, f)
            if isinstance(value, tuple):
                if len(value) < 3 or not all(
                    isinstance(v, int) for v in value
                ):
                    raise ValueError(
                        f"{f}={value!r}: the wider variant needs layer "
                        "sizes (input, hidden..., output)"
                    )
                inner = tuple(v * self.factor for v in value[1:-1])
                new[f] = (value[0], *inner, value[-1])
            else:
                new[f] = _times(value, self.factor, f, "wider")
        return dataclasses.replace(cfg, **new)


@dataclasses.dataclass(frozen=True)
class Rate(Variant):
    """Another learning rate: each named field gets the given value. The
    fields must be listed in the configuration's ``RATE_FIELDS`` (its
    rates, or grids of rates), so that a rate variant changes nothing
    else."""

    values: tuple[tuple[str, object], ...]
    name: typing.ClassVar[str] = "rate"

    def __init__(self, **values):
        object.__setattr__(self, "values", tuple(sorted(values.items())))

    def apply(self, cfg: T) -> T:
        fields = [f for f, _ in self.values]
        self._require(cfg, fields)
        allowed = set(getattr(cfg, "RATE_FIELDS", ()))
        outside = [f for f in fields if f not in allowed]
        if outside:
            raise ValueError(
                f"the rate variant may change only the rates "
                f"{sorted(allowed)} of {type(cfg).__name__}; {outside} "
                "would change something else"
            )
        same = [f for f, v in self.values if getattr(cfg, f) == v]
        if same:
            raise ValueError(f"the rate variant leaves {same} unchanged")
        return dataclasses.replace(cfg, **dict(self.values))


@dataclasses.dataclass(frozen=True)
class Digits(Variant):
    """The experiment on scikit-learn's handwritten digits
    (:func:`batchlab.data.digits`): sets ``dataset`` and may change only
    what the data impose, the fields of the configuration's
    ``DATA_FIELDS`` (example counts, say) and the first entry (the input
    width) of layer-size tuples."""

    values: tuple[tuple[str, object], ...]
    dataset: str = "digits"
    name: typing.ClassVar[str] = "digits"

    def __init__(self, dataset: str = "digits", **values):
        if dataset not in ("digits", "digits-8x8"):
            raise ValueError(
                f"the digits variant uses digits or digits-8x8, got "
                f"{dataset!r}"
            )
        object.__setattr__(self, "values", tuple(sorted(values.items())))
        object.__setattr__(self, "dataset", dataset)

    def apply(self, cfg: T) -> T:
        self._require(cfg, ["dataset", *(f for f, _ in self.values)])
        allowed = set(getattr(cfg, "DATA_FIELDS", ()))
        for f, v in self.values:
            old = getattr(cfg, f)
            if f in allowed:
                continue
            if (
                isinstance(old, tuple)
                and isinstance(v, tuple)
                and len(old) == len(v)
                and old[1:] == v[1:]
            ):
                continue  # only the input width differs
            raise ValueError(
                f"the digits variant may change only {sorted(allowed)} and "
                f"the input width of layer sizes; {f}={v!r} (was {old!r}) "
                "would change something else"
            )
        return dataclasses.replace(
            cfg, dataset=self.dataset, **dict(self.values)
        )


def variants_of(cfg: T) -> dict[str, T]:
    """The named neighbourhood of a book configuration: its class's
    ``VARIANTS`` (a dict from a name of :data:`VARIANTS` to a
    :class:`Variant` of that name) applied to ``cfg``, in the order of
    :data:`VARIANTS`. A configuration without variants has none.

    Raises:
        ValueError: an unknown name, a variant filed under another name,
            or a variant that would change a field outside its own.
    """
    declared = getattr(type(cfg), "VARIANTS", {}) or {}
    unknown = set(declared) - set(VARIANTS)
    if unknown:
        raise ValueError(
            f"unknown variants {sorted(unknown)}; the ledger knows "
            f"{', '.join(VARIANTS)}"
        )
    out = {}
    for name in VARIANTS:
        if name not in declared:
            continue
        variant = declared[name]
        if not isinstance(variant, Variant) or variant.name != name:
            raise ValueError(
                f"VARIANTS[{name!r}] must be a {name} variant, got {variant!r}"
            )
        out[name] = variant.apply(cfg)
    return out
