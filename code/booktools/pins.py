"""Exact pins: read a requirements file and compare it with what is
installed (the reproducing page and the Binder test use these)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


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


def pin_table(path: str):
    """Every pin of the requirements file at ``path`` beside the version
    installed here, and whether the two are the same release: a table
    (``pandas.DataFrame``) with columns ``pinned``, ``installed`` and
    ``matches``, indexed by package."""
    import pandas as pd

    pins = read_pins(path)
    found = installed_versions(list(pins))
    table = pd.DataFrame({"pinned": pins, "installed": found})
    table["matches"] = [same_release(p, found[n]) for n, p in pins.items()]
    return table.rename_axis("package")
