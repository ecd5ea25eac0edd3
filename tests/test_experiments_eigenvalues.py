"""The eigenvalue appendix's sections: the race against closed forms, the
stopping rules replayed by hand, both sections at quick scale and their
facts on synthetic frames."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from batchlab import claims, data, lanczos
from batchlab.experiments import eigenvalues
from batchlab.experiments.eigenvalues import _race, gaps, race
from batchlab.runtime import Scale


def test_sections_in_page_order_with_prefixed_claims():
    assert claims.sections(eigenvalues) == [race, gaps]
    ids = [c.id for s in (race, gaps) for c in s.CLAIMS]
    assert len(ids) == len(set(ids)) and all(i.startswith("ev-") for i in ids)


def test_stop_on_change_replays_the_rule_by_hand():
    # changes: 1 -> 2 (50 %), 2 -> 2.001 (0.05 %): fires at the third
    # product and returns the second estimate, as PyHessian does.
    assert _race.stop_on_change(np.array([1.0, 2.0, 2.001, 5.0]), 1e-3) == (
        3,
        2.0,
    )
    with pytest.raises(ValueError, match="never changed"):
        _race.stop_on_change(np.array([1.0, 2.0, 4.0]), 1e-3)


def known(d: torch.Tensor) -> lanczos.Eigen:
    order = torch.argsort(d, descending=True)[:2]
    vectors = torch.eye(len(d), dtype=torch.float64)[:, order]
    return lanczos.Eigen(d[order].numpy(), vectors.numpy(), 0)


def test_race_counts_products_from_the_closed_form():
    d = torch.cat(
        [
            torch.linspace(-0.2, 0.4, 48, dtype=torch.float64),
            torch.tensor([0.5, 1.0], dtype=torch.float64),
        ]
    )
    cfg = replace(
        race.Config(),
        starts=3,
        power_steps=60,
        lanczos_steps=50,
        stop_steps=50,
    )
    op = lanczos.MatrixOperator(d, diagonal=True)
    traces, stops = _race.race_starts(op, known(d), cfg.budget())
    gen = torch.Generator().manual_seed(0)  # the race's own starts
    for i in range(3):
        c = torch.randn(50, generator=gen, dtype=torch.float64)
        j = torch.arange(60, dtype=torch.float64)[:, None]
        w = c**2 * d.abs() ** (2 * j)
        err = (1.0 - (w * d).sum(1) / w.sum(1)).numpy()
        row = stops.iloc[i]
        assert row["power_to_target"] == np.flatnonzero(err <= 1e-4)[0] + 1
        n, value = _race.stop_on_change(1.0 - err, 1e-3)
        assert row["change_products"] == n
        assert row["change_error"] == pytest.approx(1.0 - value)
        rule = lanczos.lanczos_top(op, tol=1e-3, max_steps=50, v0=c)
        assert row["stop_error"] == pytest.approx(abs(1 - rule.values[0]))
        assert row["component"] == pytest.approx(
            abs(float(c[-1])) * 50**0.5 / float(c.norm())
        )
    assert (stops["lanczos_to_target"] <= stops["power_to_target"]).all()
    assert _race.never_worse(traces)
    with pytest.raises(ValueError, match="positive top eigenvalue"):
        negative = lanczos.Eigen(np.array([-1.0, -2.0]), np.eye(50, 2), 0)
        _race.race_starts(op, negative, cfg.budget())


def test_never_worse_detects_a_worse_lanczos_row():
    traces = pd.DataFrame(
        dict(
            start=0,
            product=[1, 2, 3],
            power=[0.5, 0.1, np.nan],
            lanczos=[0.4, 0.2, 0.3],
        )
    )
    assert not _race.never_worse(traces)  # 0.2 > 0.1 at the second product
    traces["lanczos"] = [0.4, 0.1, 0.9]
    assert _race.never_worse(traces)  # NaN: power iteration had converged


def test_gapped_spectrum_has_the_asked_ratio_and_rejects_bad_gaps():
    spec = gaps.gapped_spectrum(100, 0.9)
    top = torch.sort(spec, descending=True).values
    assert top[0] == 1.0 and top[1] == pytest.approx(0.9)
    assert top[2] < top[1] and spec.min() == pytest.approx(-0.09)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="gap"):
            gaps.gapped_spectrum(10, bad)
    with pytest.raises(ValueError, match="dim"):
        gaps.gapped_spectrum(2, 0.5)


def test_gaps_at_quick_scale_and_its_facts():
    cfg = replace(
        gaps.Config.for_scale(Scale.QUICK),
        dim=80,
        starts=2,
        power_steps=400,
        lanczos_steps=40,
    )
    frame = gaps.run(cfg)
    assert set(frame["method"]) == set(gaps.METHODS)
    f = gaps.facts(frame, cfg)
    assert f["gap_never_worse"] and f["gap_reached"]
    mean = frame.groupby(["gap", "method"])["products"].mean()
    assert f["gap_ratio_hi"] == pytest.approx(
        mean[(0.99, "power iteration")] / mean[(0.99, "Lanczos")]
    )
    assert claims.evaluate(gaps, f, Scale.QUICK) == {
        "ev-diagonal-never-worse": True
    }


def test_race_at_quick_scale_and_the_bad_stop_facts():
    cfg = replace(
        race.Config.for_scale(Scale.QUICK),
        hessian_examples=100,
        short_steps=20,
        long_steps=60,
        power_steps=150,
    )
    frame = race.run(cfg, data.mnist1d(num_samples=400))
    starts = frame[frame["kind"] == "start"]
    assert set(starts["steps"]) == {20, 60} and len(starts) == 2 * cfg.starts
    f = race.facts(frame, cfg)
    assert f["race_params"] == 40 * 32 + 32 + 32 * 10 + 10
    assert claims.evaluate(race, f, Scale.QUICK) == {"ev-never-worse": True}
    # a start that settled on lambda_2: the facts find it
    bad = starts.iloc[[0]].assign(
        stop_error=0.05,
        stop_value=starts["gap"].iloc[0] * starts["lambda_1"].iloc[0],
        component=0.07,
        ritz_gap=1.0,
    )
    f = race.facts(pd.concat([frame, bad]), cfg)
    assert f["bad_stops"] >= 1 and f["bad_from_l2"] < 1e-12
    assert f["bad_component"] >= 0.07
