"""The experiment size in force: ``quick``, ``book`` or ``full``.

The scale is read from the environment variable ``BATCHLAB_SCALE``
(``book`` when unset). ``quick`` is for the test suite (every chapter in
seconds), ``book`` is what the published book runs, ``full`` runs bigger
experiments and uses a GPU when one is present.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import TypeVar

import torch

ENV_VAR = "BATCHLAB_SCALE"

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


def pick(scale: Scale | str, quick: T, book: T, full: T) -> T:
    """Return the value that belongs to ``scale``."""
    return {Scale.QUICK: quick, Scale.BOOK: book, Scale.FULL: full}[
        parse_scale(scale)
    ]


def device_for(scale: Scale | str) -> torch.device:
    """The device experiments run on: a GPU only at ``full`` scale."""
    if parse_scale(scale) is Scale.FULL and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def read_pins(path: str) -> dict[str, str]:
    """Exact pins ``name==version`` of a requirements file, by name.

    Comments, options (``-e .``, ``--extra-index-url``) and blank lines are
    skipped; a local version label (``+cpu``) is kept.
    """
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            if "==" not in line:
                raise ValueError(f"{path}: {line!r} is not an exact pin")
            name, version = (part.strip() for part in line.split("==", 1))
            pins[_normalize(name)] = version
    return pins


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_versions(names: list[str]) -> dict[str, str]:
    """Installed version of each distribution (``"missing"`` if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in names:
        try:
            found[_normalize(name)] = version(name)
        except PackageNotFoundError:
            found[_normalize(name)] = "missing"
    return found


def same_release(pinned: str, installed: str) -> bool:
    """Whether an installed version satisfies an exact pin.

    A local label on either side (``2.13.0+cpu``) is ignored, as pip does
    for a pin without one.
    """
    return pinned.split("+")[0] == installed.split("+")[0]
