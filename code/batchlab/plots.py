"""Plotting: one function per kind of figure, all in one style.

Every plot function takes the axes first, draws one result on it and
returns the axes; none calls ``show``, ``savefig`` or ``matplotlib.use``.
Chapters call :func:`use_style` once and :func:`figure` for new figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

STYLE = Path(__file__).with_name("style.mplstyle")


def use_style() -> None:
    """Apply the book's matplotlib style to every later figure."""
    plt.style.use(str(STYLE))


def figure(
    ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.4
) -> tuple[Figure, np.ndarray]:
    """A new figure in the book's style and its axes as a flat array."""
    with plt.style.context(str(STYLE)):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(width, height),
            squeeze=False,
            layout="constrained",
        )
    return fig, axes.ravel()


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame)}")


def lines(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    band: str | None = None,
    logx: bool = False,
    logy: bool = False,
    marker: str = "o",
    label_fmt: str = "{}",
) -> Axes:
    """Lines of ``y`` against ``x``, one per value of ``hue``.

    ``band`` names a column with a half-width drawn as a shaded band
    (a standard deviation over seeds, say).
    """
    _require(frame, [c for c in (x, y, hue, band) if c])
    groups = frame.groupby(hue, sort=True) if hue else [(None, frame)]
    for key, part in groups:
        part = part.sort_values(x)
        label = label_fmt.format(key) if hue else None
        (line,) = ax.plot(part[x], part[y], marker=marker, label=label)
        if band:
            ax.fill_between(
                part[x],
                part[y] - part[band],
                part[y] + part[band],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if hue:
        ax.legend(title=hue)
    return ax


def curves(
    ax: Axes,
    x: np.ndarray,
    ys: np.ndarray,
    labels: Sequence[str],
    logy: bool = False,
    xlabel: str = "step",
    ylabel: str = "loss",
) -> Axes:
    """Several curves over one x axis: ``ys`` has shape ``(k, len(x))``."""
    ys = np.atleast_2d(ys)
    if ys.shape[1] != len(x) or len(labels) != ys.shape[0]:
        raise ValueError(
            f"need ys of shape ({len(labels)}, {len(x)}), got {ys.shape}"
        )
    for row, label in zip(ys, labels):
        ax.plot(x, row, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def spectrum(
    ax: Axes,
    eigenvalues: dict[str, np.ndarray],
    logy: bool = True,
) -> Axes:
    """Sorted eigenvalues (largest first) of several matrices."""
    for label, ev in eigenvalues.items():
        ev = np.sort(np.asarray(ev))[::-1]
        ax.plot(np.arange(1, len(ev) + 1), ev, marker=".", label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index (largest first)")
    ax.set_ylabel("eigenvalue")
    ax.legend()
    return ax


def density(ax: Axes, grid: np.ndarray, values: dict[str, np.ndarray]) -> Axes:
    """Spectral densities on a shared grid, log scale on y."""
    for label, v in values.items():
        ax.plot(grid, np.maximum(v, 1e-12), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend()
    return ax


def scatter(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    logx: bool = False,
) -> Axes:
    """Points of ``y`` against ``x`` coloured by ``hue``."""
    _require(frame, [x, y, hue])
    for key, part in frame.groupby(hue, sort=True):
        ax.scatter(part[x], part[y], label=str(key), s=18)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(title=hue)
    return ax
