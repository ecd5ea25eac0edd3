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
    fig, axes = plots.figure(ncols=2)
    assert len(axes) == 2
    assert not axes[0].spines["top"].get_visible()
