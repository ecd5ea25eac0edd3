import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from batchlab import plots  # noqa: E402


def test_lines_draws_one_line_per_group_and_returns_the_axes():
    frame = pd.DataFrame(
        {
            "B": [1, 4, 1, 4],
            "loss": [1.0, 2.0, 3.0, 4.0],
            "sd": [0.1] * 4,
            "rule": ["a", "a", "b", "b"],
        }
    )
    fig, (ax,) = plots.figure()
    out = plots.lines(ax, frame, "B", "loss", hue="rule", band="sd", logx=True)
    assert out is ax
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [3.0, 4.0])


def test_lines_rejects_missing_columns():
    fig, (ax,) = plots.figure()
    with pytest.raises(ValueError, match="lacks columns"):
        plots.lines(ax, pd.DataFrame({"a": [1]}), "a", "b")


def test_curves_checks_shapes():
    fig, (ax,) = plots.figure()
    plots.curves(ax, np.arange(3), np.ones((2, 3)), ["a", "b"])
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="shape"):
        plots.curves(ax, np.arange(3), np.ones((2, 4)), ["a", "b"])


def test_spectrum_sorts_descending():
    fig, (ax,) = plots.figure()
    plots.spectrum(ax, {"h": np.array([1.0, 3.0, 2.0])})
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3.0, 2.0, 1.0])


def test_style_file_exists_and_figure_uses_it():
    assert plots.STYLE.exists()
    fig, axes = plots.figure(nrows=2)
    assert len(axes) == 2
    assert not axes[0].spines["top"].get_visible()


@pytest.mark.parametrize(
    "value, text",
    [
        (117.003998, "117"),
        (20000.0, "20000"),
        (89394.026814, "89400"),
        (0.0123456, "0.0123"),
        (1.5, "1.50"),
        (2.0, "2"),
        (3.2e-5, "3.20e-05"),
        (float("nan"), "-"),
        (7, "7"),
        (True, "yes"),
        ("raw", "raw"),
    ],
)
def test_format_number_gives_three_significant_figures(value, text):
    assert plots.format_number(value) == text


def test_table_drops_constant_columns_and_range_index_and_renames():
    frame = pd.DataFrame(
        {"B": [1, 16], "acc": [0.51234, 0.6], "std": [0.0, 0.0]}
    )
    md = plots.table(frame, names={"acc": "test accuracy"}).data
    lines = md.splitlines()
    assert lines[0] == "| B | test accuracy |"
    assert lines[1] == "|---:|---:|"
    assert lines[2:] == ["| 1 | 0.512 |", "| 16 | 0.600 |"]
    kept = plots.table(frame, keep_constant=True).data
    assert "std" in kept.splitlines()[0]


def test_table_keeps_a_named_index_and_escapes_pipes():
    frame = pd.DataFrame({"x": [1.0]}, index=pd.Index(["a|b"], name="kind"))
    md = plots.table(frame).data
    assert md.splitlines()[0] == "| kind | x |"
    assert md.splitlines()[2] == "| a\\|b | 1 |"


def test_table_flattens_multiindex_columns():
    frame = pd.DataFrame({("loss", "mean"): [1.0, 2.0], ("B", ""): [1, 2]})
    assert plots.table(frame).data.splitlines()[0] == "| loss mean | B |"


def test_table_refuses_empty_frames_and_unknown_names():
    with pytest.raises(ValueError, match="empty"):
        plots.table(pd.DataFrame())
    with pytest.raises(ValueError, match="lacks"):
        plots.table(pd.DataFrame({"a": [1, 2]}), names={"b": "B"})


def test_table_has_no_html_repr():
    # HTML and PDF must get the same Markdown table, not a Styler
    md = plots.table(pd.DataFrame({"a": [1, 2]}))
    assert not hasattr(md, "_repr_html_")


def test_settings_lists_every_field():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        lr: float = 0.05
        sizes: tuple = (40, 100)

    lines = plots.settings(Cfg()).data.splitlines()
    assert lines[2:] == ["| lr | 0.0500 |", "| sizes | 40, 100 |"]
    with pytest.raises(ValueError, match="dataclass"):
        plots.settings({"lr": 1})


def test_figure_refuses_side_by_side_panels_and_wide_figures():
    with pytest.raises(ValueError, match="stack them"):
        plots.figure(ncols=2)
    with pytest.raises(ValueError, match="inches wide"):
        plots.figure(width=7.5)
    fig, axes = plots.figure(nrows=2)
    assert len(axes) == 2


def test_over_seeds_orders_hue_numerically_with_an_ordered_palette():
    rows = [
        {"B": b, "step": t, "loss": 1.0 / (t + b) + s, "seed": s}
        for b in (1, 1024, 16)
        for t in (1, 2)
        for s in (0.0, 0.1)
    ]
    fig, (ax,) = plots.figure()
    plots.over_seeds(ax, pd.DataFrame(rows), "step", "loss", hue="B")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["1", "16", "1024"]
    palette = plots.ordered_palette([1, 1024, 16])
    assert list(palette) == [1, 16, 1024]
    # light to dark: luminance falls with the value
    lum = [sum(palette[k]) for k in (1, 16, 1024)]
    assert lum[0] > lum[1] > lum[2]
    # the line is the mean over seeds
    line = ax.get_lines()[0]
    assert np.allclose(line.get_ydata(), [1 / 2 + 0.05, 1 / 3 + 0.05])


def test_a_captioned_table_is_a_numbered_myst_table(monkeypatch):
    monkeypatch.setenv(plots.MYST_ENV, "1")
    frame = pd.DataFrame({"B": [1, 2], "loss": [0.5, 0.25]})
    text = plots.table(
        frame, caption="Loss by batch size", name="tab-loss"
    ).data
    lines = text.splitlines()
    assert lines[0] == "````{table} Loss by batch size"
    assert lines[1] == ":name: tab-loss" and lines[-1] == "````"
    assert "| B | loss |" in text
    assert plots.table(frame).data.startswith("| B | loss |")  # default
    with pytest.raises(ValueError, match="no caption"):
        plots.table(frame, name="tab-x")


# BatchNorm chapter


def _seeded(levels, xs=(1, 2, 4)):
    return pd.DataFrame(
        [
            dict(level=lev, x=x, seed=s, y=i + x + 0.1 * s)
            for i, lev in enumerate(levels)
            for x in xs
            for s in range(3)
        ]
    )


def test_by_level_gives_every_level_its_own_look_and_a_legend_below():
    fig, (ax,) = plots.figure(width=plots.BN_WIDTH)
    frame = _seeded(["b", "a", "c"])
    plots.by_level(ax, frame, "x", "y", "level", names={"a": "A"})
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["A", "b", "c"]
    looks = {
        (ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in lines
    }
    assert len({c for c, _, _ in looks}) == 3  # colours
    assert len({s for _, s, _ in looks}) == 3  # and line styles
    # the mean over seeds: level "a" (index 1) at x = 2 is 1 + 2 + 0.1
    a = lines[0]
    assert np.allclose(a.get_ydata(), [1 + x + 0.1 for x in (1, 2, 4)])
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 < ax.bbox.y0
    matplotlib.pyplot.close(fig)


def test_running_errors_draws_the_cumulative_average_last_in_orange():
    rows = [
        dict(step=s, error=0.1 * (1 + i), momentum=m, seed=k)
        for i, m in enumerate([0.01, 0.1, np.nan])
        for s in (10, 20)
        for k in range(2)
    ]
    fig, (ax,) = plots.figure()
    plots.running_errors(ax, pd.DataFrame(rows))
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["momentum 0.01", "momentum 0.1", "cumulative"]
    assert (
        matplotlib.colors.to_hex(ax.get_lines()[-1].get_color()) == "#d55e00"
    )
    assert ax.get_yscale() == "log"
    matplotlib.pyplot.close(fig)


def test_fall_against_steps_draws_the_law_through_the_points():
    start = 1 / 3
    s = np.array([1e-3, 1e-2, 1e-1])
    frame = pd.DataFrame(
        dict(
            squared_steps=s,
            fall=s / (start + s),
            run=["a", "b", "c"],
            start=start,
        )
    )
    fig, (ax,) = plots.figure()
    plots.fall_against_steps(ax, frame)
    law = ax.get_lines()[-1]
    x, y = law.get_xdata(), law.get_ydata()
    assert np.allclose(y, x / (start + x))
    assert ax.get_xscale() == "log"
    matplotlib.pyplot.close(fig)


def test_relative_spectrum_has_integer_rank_ticks():
    rows = [
        dict(network=n, seed=k, rank=r, relative=r**-p)
        for n, p in (("one", 1.0), ("two", 0.5))
        for k in range(2)
        for r in range(1, 8)
    ]
    fig, (ax,) = plots.figure()
    plots.relative_spectrum(ax, pd.DataFrame(rows))
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert np.allclose(ax.get_lines()[0].get_ydata(), np.arange(1, 8) ** -1.0)
    matplotlib.pyplot.close(fig)


def test_rate_ticks_label_only_the_grid_as_plain_decimals():
    fig, (ax,) = plots.figure()
    ax.plot([0.025, 0.8], [1, 2])
    ax.set_xscale("log")
    plots.rate_ticks(ax, [0.8, 0.025, 0.05, 0.05])
    fig.canvas.draw()
    assert list(ax.get_xticks()) == [0.025, 0.05, 0.8]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["0.025", "0.05", "0.8"]
    assert len(ax.xaxis.get_minorticklocs()) == 0
    with pytest.raises(ValueError, match="axis"):
        plots.rate_ticks(ax, [0.1], axis="z")


def test_outside_the_book_a_captioned_table_is_plain_markdown(monkeypatch):
    """A notebook run in plain Jupyter shows no MyST directive."""
    monkeypatch.delenv(plots.MYST_ENV, raising=False)
    frame = pd.DataFrame({"B": [1, 2], "loss": [0.5, 0.25]})
    text = plots.table(frame, caption="Loss", name="tab-loss").data
    assert text.startswith("**Loss**\n\n| B | loss |")
    assert "{table}" not in text and "tab-loss" not in text
