"""Figures and tables: one function per kind, all in one style.

Every plot function takes the axes first, draws one result on it and
returns the axes; none calls ``show``, ``savefig`` or ``matplotlib.use``.
Chapters call :func:`use_style` once and :func:`figure` for new figures;
figures then leave the notebook as SVG (HTML) and PDF (LaTeX), vector in
both. Statistics over seeds (:func:`over_seeds`) are drawn with seaborn,
ordered quantities on an ordered palette with a numerically sorted legend.

:func:`table` and :func:`settings` turn a frame or a configuration into a
Markdown table, which the book renders identically in HTML and PDF.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib_inline.backend_inline import set_matplotlib_formats

STYLE = Path(__file__).with_name("style.mplstyle")


# A figure is scaled to the width of the page: on a 390 px phone, two
# panels side by side or a figure wider than this (inches) make 10-point
# labels a few pixels tall. Panels are stacked instead.
MAX_COLUMNS = 1
MAX_WIDTH = 5.5


def use_style() -> None:
    """Apply the book's matplotlib style to every later figure, and make
    figures shown or glued in a notebook carry SVG and PDF (vector)."""
    plt.style.use(str(STYLE))
    set_matplotlib_formats("svg", "pdf")


def figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.5, height: float = 3.4
) -> tuple[Figure, np.ndarray]:
    """A new figure in the book's style and its axes as a flat array.

    Raises:
        ValueError: more than :data:`MAX_COLUMNS` panels side by side
            (stack them with ``nrows`` so that they read on a phone).
    """
    if ncols > MAX_COLUMNS:
        raise ValueError(
            f"{ncols} panels side by side do not read at phone width; "
            "stack them (nrows)"
        )
    if width > MAX_WIDTH:
        raise ValueError(
            f"a figure {width} inches wide does not read at phone width; "
            f"use at most {MAX_WIDTH}"
        )
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


def ordered_palette(values: Sequence[float]) -> dict:
    """Colours for an ordered quantity (batch size, learning rate): one
    colour per distinct value, light to dark in increasing order."""
    keys = sorted(set(values))
    colours = sns.color_palette("viridis_r", n_colors=max(len(keys), 2))
    return {k: colours[i] for i, k in enumerate(keys)}


def over_seeds(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    logx: bool = False,
    logy: bool = False,
    label: str | None = None,
) -> Axes:
    """Mean of ``y`` over seeds against ``x`` with a band of one standard
    deviation (seaborn), one line per value of an ordered ``hue``.

    ``frame`` is tidy: one row per seed and ``x`` (and ``hue``). The
    legend lists ``hue`` values in numerical order under the title
    ``label`` (``hue`` when omitted).
    """
    _require(frame, [c for c in (x, y, hue) if c])
    kwargs: dict = {}
    if hue:
        palette = ordered_palette(frame[hue])
        order = list(palette)
        kwargs = dict(
            hue=hue,
            hue_order=order,
            palette=palette,
            style=hue,
            style_order=order,
            dashes=dict(zip(order, _seaborn_dashes(len(order)))),
            markers=dict(zip(order, (MARKERS * len(order))[: len(order)])),
        )
    sns.lineplot(
        data=frame,
        x=x,
        y=y,
        errorbar="sd",
        marker=None if hue else "o",
        ax=ax,
        legend="full" if hue else False,
        **kwargs,
    )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if hue:
        sorted_legend(ax, title=label or hue)
    return ax


def _seaborn_dashes(n: int) -> list:
    # seaborn's dash specs: "" is solid, then (on, off, ...) lengths.
    specs = ["", (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1, 1, 1)]
    return (specs * n)[:n]


def plain_log(
    ax: Axes, axis: str = "y", subs: Sequence[float] = (1, 2, 5)
) -> Axes:
    """Plain numbers (``0.5``, ``20``), not powers of ten, as the tick
    labels of a log axis, at ``subs`` times each power of ten.

    Raises:
        ValueError: ``axis`` is not ``"x"`` or ``"y"``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(mpl.ticker.LogLocator(subs=tuple(subs)))
    target.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(mpl.ticker.NullFormatter())
    return ax


#: Line styles given to the levels of a hue in order, so that lines of
#: one colour family stay apart in grayscale print.
DASHES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P")


def styles(levels: Sequence) -> dict:
    """A line style and a marker per level, in the levels' sorted order:
    ``{level: dict(linestyle=..., marker=...)}``."""
    keys = sorted(set(levels), key=_order_key)
    return {
        k: dict(
            linestyle=DASHES[i % len(DASHES)], marker=MARKERS[i % len(MARKERS)]
        )
        for i, k in enumerate(keys)
    }


def _order_key(value):
    return (0, float(value), "") if _is_number(value) else (1, 0.0, str(value))


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def sorted_legend(ax: Axes, title: str | None = None) -> Axes:
    """The legend with its entries in numerical (or alphabetical) order
    of their labels, and reference lines (dashed grey) last."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return ax
    pairs = sorted(zip(labels, handles), key=lambda p: _order_key(p[0]))
    ax.legend([h for _, h in pairs], [lab for lab, _ in pairs], title=title)
    return ax


def variance_law(ax: Axes, frame: pd.DataFrame) -> Axes:
    """Measured minibatch-gradient variance (points) and the exact law
    (lines) against the batch size, one style per ``point`` of training;
    ``frame`` has columns ``point``, ``B``, ``measured`` and ``law``."""
    _require(frame, ["point", "B", "measured", "law"])
    looks = dict(zip(pd.unique(frame["point"]), DASHES))
    for point, part in frame.groupby("point", sort=False):
        part = part.sort_values("B")
        (dots,) = ax.plot(
            part["B"], part["measured"], "o", label=f"measured, {point}"
        )
        ax.plot(
            part["B"],
            part["law"],
            color=dots.get_color(),
            linestyle=looks[point],
            label=f"law, {point}",
        )
    ax.set(xscale="log", yscale="log", xlabel="batch size B")
    ax.set_ylabel(r"E$\,|g_B - G|^2$")
    plain_log(ax, "x", subs=(1,))
    plain_log(ax, "y", subs=(1,))
    ax.legend()
    return ax


def over_steps(
    ax: Axes, frame: pd.DataFrame, y: str, label: str, logy: bool = True
) -> Axes:
    """One quantity at checkpoints of a run: ``frame`` has ``step`` and
    ``y``; drawn with markers, on a log axis with plain labels."""
    _require(frame, ["step", y])
    part = frame.sort_values("step")
    ax.plot(part["step"], part[y], "o-")
    ax.set(xlabel="step", ylabel=label)
    if logy:
        ax.set_yscale("log")
        plain_log(ax, "y")
    return ax


def reference_line(ax: Axes, value: float, label: str) -> Axes:
    """A dashed horizontal line with its label (chance, a target)."""
    ax.axhline(value, color="0.4", linestyle="--", linewidth=1, label=label)
    return ax


# --------------------------------------------------------------------------
# Tables


def format_number(value: object, digits: int = 3) -> str:
    """A number as people read it: ``digits`` significant figures, no
    exponent between 1e-3 and 1e6, integers as integers, ``-`` for a
    missing value, yes/no for truth values; anything else as ``str``."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if not isinstance(value, float | np.floating):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    exponent = math.floor(math.log10(abs(v)))
    if not -3 <= exponent < 6:
        return f"{v:.{digits - 1}e}"
    rounded = round(v, digits - 1 - exponent)
    if rounded == int(rounded) and abs(rounded) >= 1:
        return str(int(rounded))
    decimals = max(0, digits - 1 - exponent)
    return f"{rounded:.{decimals}f}"


def table(
    frame: pd.DataFrame,
    names: dict[str, str] | None = None,
    digits: int = 3,
    keep_constant: bool = False,
    caption: str | None = None,
    name: str | None = None,
) -> Markdown:
    """A frame as a table for people, the same in HTML and PDF.

    A named index becomes the first column(s); a plain range index is
    dropped. Columns holding one value in every row are dropped (say it
    in the text) unless ``keep_constant``; ``names`` renames columns;
    numbers get :func:`format_number`.

    With ``caption`` the table is numbered and captioned ("Table 2.1:
    ..."), on the site, in print and in the notebooks; ``name`` is the
    label the prose refers to it by (``{numref}`tab-spectra```). Column
    names and the caption may hold inline math (``$\\lambda_{\\max}$``).

    Raises:
        ValueError: the frame is empty, ``names`` renames a column it
            does not have, or a ``name`` comes without a ``caption``.
    """
    if frame.empty:
        raise ValueError("table got an empty frame")
    if name is not None and not caption:
        raise ValueError(
            f"table {name!r} has a name but no caption: a numbered table "
            "needs a caption"
        )
    out = frame.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(map(str, c)).strip() for c in out.columns]
    if not isinstance(out.index, pd.RangeIndex) or out.index.name:
        out = out.reset_index()
    if not keep_constant and len(out) > 1:
        constant = [
            c for c in out.columns if out[c].nunique(dropna=False) == 1
        ]
        out = out.drop(columns=constant)
    unknown = set(names or {}) - set(map(str, out.columns))
    if unknown:
        raise ValueError(f"names renames columns the table lacks: {unknown}")
    out.columns = [(names or {}).get(str(c), str(c)) for c in out.columns]
    header = "| " + " | ".join(_cell(c) for c in out.columns) + " |"
    rule = (
        "|"
        + "|".join(
            "---:" if pd.api.types.is_numeric_dtype(out[c]) else ":---"
            for c in out.columns
        )
        + "|"
    )
    body = [
        "| " + " | ".join(_cell(format_number(v, digits)) for v in row) + " |"
        for row in out.itertuples(index=False)
    ]
    rows = "\n".join([header, rule, *body])
    if not caption:
        return Markdown(rows)
    if not os.environ.get(MYST_ENV):
        # a notebook a reader runs in plain Jupyter: no MyST directive
        return Markdown(f"**{_cell(caption)}**\n\n{rows}")
    label = f":name: {name}\n" if name else ""
    fence = "````"  # longer than any code span a cell may hold
    return Markdown(
        f"{fence}{{table}} {_cell(caption)}\n{label}\n{rows}\n{fence}"
    )


#: Set by the book's build (the Makefile exports it): captioned tables
#: are then numbered MyST tables; without it (a notebook run in plain
#: Jupyter) a caption is a bold line above a plain Markdown table.
MYST_ENV = "BATCHLAB_MYST"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings(config: object, names: dict[str, str] | None = None) -> Markdown:
    """A frozen configuration (dataclass) as a two-column table."""
    if not dataclasses.is_dataclass(config):
        raise ValueError(
            f"settings takes a dataclass, got {type(config).__name__}"
        )
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple | list):
            value = ", ".join(format_number(v) for v in value)
        rows.append({"setting": f.name, "value": format_number(value)})
    return table(pd.DataFrame(rows), names=names, keep_constant=True)


# --------------------------------------------------------------------------
# BatchNorm chapter

#: Width (inches) of the BatchNorm chapter's figures: narrower than the
#: page so that, scaled to a 390 px phone, labels stay about 13 px tall.
BN_WIDTH = 4.2
#: Distinct colours for unordered levels (the style's Okabe-Ito cycle),
#: and dark-to-light blues for ordered ones, all readable on white.
BN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#000000", "#E69F00")


def legend_below(ax: Axes, ncol: int = 2, title: str | None = None) -> Axes:
    """The axes' legend under the panel, outside the data, in ``ncol``
    columns, entries in the order they were drawn."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            title=title,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.22),
            ncol=ncol,
            handlelength=2.6,
            fontsize=10,
        )
    return ax


def level_looks(levels: Sequence, ordered: bool = False) -> dict:
    """A colour, a line style and a marker per level, in the levels'
    sorted order; ordered levels get dark-to-light blues, unordered ones
    the distinct :data:`BN_COLOURS`."""
    keys = sorted(set(levels), key=_order_key)
    if ordered:
        colours = sns.color_palette("Blues_r", n_colors=len(keys) + 2)
    else:
        colours = list(BN_COLOURS) * len(keys)
    return {
        k: dict(color=colours[i], **looks)
        for i, (k, looks) in enumerate(styles(keys).items())
    }


def by_level(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    ordered: bool = False,
    logx: bool = False,
    logy: bool = False,
    names: dict | None = None,
    ncol: int = 2,
) -> Axes:
    """Mean of ``y`` over seeds against ``x``, one line per level of
    ``hue`` with its own colour, line style and marker
    (:func:`level_looks`), a band of one standard deviation (from a
    column ``seed``), and the legend below the panel; ``names`` renames
    levels in the legend."""
    _require(frame, [x, y, hue, "seed"])
    looks = level_looks(frame[hue], ordered)
    for level, part in sorted(
        frame.groupby(hue), key=lambda kv: _order_key(kv[0])
    ):
        stats = part.groupby(x)[y].agg(["mean", "std"]).sort_index()
        label = (names or {}).get(level, str(level))
        ax.plot(stats.index, stats["mean"], label=label, **looks[level])
        ax.fill_between(
            stats.index,
            stats["mean"] - stats["std"].fillna(0),
            stats["mean"] + stats["std"].fillna(0),
            color=looks[level]["color"],
            alpha=0.15,
            linewidth=0,
        )
    if logx:
        ax.set_xscale("log")
        plain_log(ax, "x", subs=(1, 2, 5))
    if logy:
        ax.set_yscale("log")
        plain_log(ax, "y", subs=(1, 2, 5))
    ax.set(xlabel=x, ylabel=y)
    return legend_below(ax, ncol)


def before_after(ax: Axes, frame: pd.DataFrame, hue: str, label: dict) -> Axes:
    """A quantity just before and just after events at ``step`` (mean
    over seeds), as a sawtooth per level of ``hue``: columns ``step``,
    ``before``, ``after`` and ``hue``; ``label`` names the levels."""
    _require(frame, ["step", "before", "after", hue])
    looks = level_looks(frame[hue])
    for level, part in frame.groupby(hue, sort=True):
        mean = part.groupby("step")[["before", "after"]].mean()
        ax.plot(
            np.repeat(mean.index.to_numpy(), 2),
            mean.to_numpy().ravel(),
            label=label[level],
            **looks[level],
        )
    return legend_below(ax)


def law_points(ax: Axes, frame: pd.DataFrame, x: str, label: str) -> Axes:
    """Measured values (points, column ``measured``) against a law (a
    line, column ``law``) over ``x``, on log-log axes with plain labels."""
    _require(frame, [x, "measured", "law"])
    part = frame.sort_values(x)
    ax.plot(part[x], part["law"], "-", color="0.3", label="law")
    ax.plot(
        part[x], part["measured"], "o", color=BN_COLOURS[0], label="measured"
    )
    ax.set(xscale="log", yscale="log", xlabel=x, ylabel=label)
    plain_log(ax, "x", subs=(1, 2, 5))
    plain_log(ax, "y", subs=(1, 2, 5))
    return legend_below(ax)


def running_errors(ax: Axes, frame: pd.DataFrame) -> Axes:
    """Error of running averages over steps (mean and one standard
    deviation over seeds), one style per ``momentum`` (dark to light
    blues, in increasing order) and the cumulative average (``momentum``
    NaN) in orange, last; log y axis."""
    _require(frame, ["step", "error", "momentum", "seed"])
    momenta = sorted(frame["momentum"].dropna().unique())
    by_level(
        ax,
        frame[frame["momentum"].notna()],
        "step",
        "error",
        "momentum",
        ordered=True,
        logy=True,
        names={m: f"momentum {m:g}" for m in momenta},
    )
    cum = frame[frame["momentum"].isna()].groupby("step")["error"]
    stats = cum.agg(["mean", "std"])
    look = styles(range(len(momenta) + 1))[len(momenta)]
    ax.plot(
        stats.index,
        stats["mean"],
        color=BN_COLOURS[1],
        label="cumulative",
        **look,
    )
    ax.fill_between(
        stats.index,
        stats["mean"] - stats["std"].fillna(0),
        stats["mean"] + stats["std"].fillna(0),
        color=BN_COLOURS[1],
        alpha=0.15,
        linewidth=0,
    )
    return legend_below(ax)


def fall_against_steps(ax: Axes, frame: pd.DataFrame) -> Axes:
    """The fall of the effective rate against the summed squared steps,
    a point per run (style per ``run``), with the law ``S / (|w_0|^2 +
    S)`` that every unit growing by ``S`` would give (``|w_0|^2`` the mean
    of column ``start``); log x axis."""
    _require(frame, ["squared_steps", "fall", "run", "start"])
    looks = level_looks(frame["run"])
    for run, part in frame.groupby("run", sort=True):
        look = looks[run]
        ax.plot(
            part["squared_steps"],
            part["fall"],
            linestyle="none",
            marker=look["marker"],
            color=look["color"],
            label=run,
        )
    s = np.geomspace(
        frame["squared_steps"].min(), frame["squared_steps"].max()
    )
    c = frame["start"].mean()
    ax.plot(s, s / (c + s), "-", color="0.3", label=r"$S/(|w_0|^2+S)$")
    ax.set_xscale("log")
    ax.set(
        xlabel=r"summed squared steps $S = \eta^2 \sum |g|^2$",
        ylabel=r"fall of $\eta / |w|^2$",
    )
    return legend_below(ax, ncol=1)


def relative_spectrum(ax: Axes, frame: pd.DataFrame) -> Axes:
    """Eigenvalues over the largest, ``lambda_i / lambda_1``, against
    their rank (integer ticks), mean over seeds per ``network``, log y;
    ``frame`` has ``network``, ``seed``, ``rank`` and ``relative``."""
    _require(frame, ["network", "seed", "rank", "relative"])
    looks = level_looks(frame["network"])
    for network, part in frame.groupby("network", sort=True):
        mean = part.groupby("rank")["relative"].mean()
        ax.plot(mean.index, mean.to_numpy(), label=network, **looks[network])
    ax.set_yscale("log")
    plain_log(ax, "y", subs=(1, 2, 5))
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="rank i", ylabel=r"$\lambda_i / \lambda_1$")
    return legend_below(ax, ncol=1)


# --------------------------------------------------------------------------
# The normalization chapter and the eigenvalue appendix


def levels(
    ax: Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str,
    logx: bool = False,
    logy: bool = False,
    symlog: float | None = None,
    markers: bool = True,
) -> Axes:
    """One line of ``y`` against ``x`` per level of ``hue`` (a category),
    each with its own line style and marker (:func:`styles`), so that
    lines that coincide stay apart in grayscale print; the legend is
    sorted. ``symlog`` makes the y axis symmetric-logarithmic with that
    linear threshold (for spectra with negative eigenvalues)."""
    _require(frame, [x, y, hue])
    looks = styles(frame[hue])
    for level, part in frame.groupby(hue, sort=False):
        part = part.sort_values(x)
        look = dict(looks[level])
        if not markers:
            look["marker"] = None
        ax.plot(part[x], part[y], label=str(level), markevery=0.1, **look)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if symlog is not None:
        ax.set_yscale("symlog", linthresh=symlog)
    ax.set(xlabel=x, ylabel=y)
    return sorted_legend(ax)


def race(ax: Axes, traces: pd.DataFrame, target: float) -> Axes:
    """Relative error of the largest-eigenvalue estimate after each
    product, one thin line per start, power iteration and Lanczos in two
    styles; ``traces`` has ``start``, ``product``, ``power`` and
    ``lanczos``; a dotted line at ``target``."""
    _require(traces, ["start", "product", "power", "lanczos"])
    looks = {"power iteration": ("C0", "-"), "Lanczos": ("C1", "--")}
    for column, name in (("power", "power iteration"), ("lanczos", "Lanczos")):
        colour, dash = looks[name]
        for i, (_, part) in enumerate(traces.groupby("start")):
            part = part.dropna(subset=[column])
            ax.plot(
                part["product"],
                np.maximum(part[column], 1e-9),
                color=colour,
                linestyle=dash,
                lw=1,
                alpha=0.8,
                label=name if i == 0 else None,
            )
    ax.axhline(target, color="0.5", ls=":", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="Hessian-vector products",
        ylabel="relative error",
    )
    ax.legend()
    return ax


def rate_ticks(ax: Axes, rates: Sequence[float], axis: str = "x") -> Axes:
    """Ticks of a log rate axis at the grid's ``rates`` only, labelled as
    plain decimals (``0.025``), without minor ticks or their labels.

    Raises:
        ValueError: ``axis`` is not ``"x"`` or ``"y"``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    grid = sorted({float(r) for r in rates})
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_locator(mpl.ticker.FixedLocator(grid))
    labels = [f"{r:g}" for r in grid]
    which.set_major_formatter(mpl.ticker.FixedFormatter(labels))
    which.set_minor_locator(mpl.ticker.NullLocator())
    return ax
