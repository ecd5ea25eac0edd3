from dataclasses import replace

import numpy as np
import pytest
import torch

from batchlab import data, lanczos
from batchlab.experiments import eigenvalues as eig
from batchlab.runtime import Scale


def test_stop_on_change_replays_the_rule_by_hand():
    # changes: 1 -> 2 (50 %), 2 -> 2.001 (0.05 %): fires at the third
    # product and returns the second estimate, as PyHessian does.
    assert eig.stop_on_change(np.array([1.0, 2.0, 2.001, 5.0]), 1e-3) == (
        3,
        2.0,
    )
    with pytest.raises(ValueError, match="never changed"):
        eig.stop_on_change(np.array([1.0, 2.0, 4.0]), 1e-3)


def test_race_counts_products_from_the_closed_form():
    d = torch.cat(
        [
            torch.linspace(-0.2, 0.4, 48, dtype=torch.float64),
            torch.tensor([0.5, 1.0], dtype=torch.float64),
        ]
    )
    race = eig.race_top_eigenvalue(
        lambda v: d * v, 50, 1.0, starts=3, power_steps=60, lanczos_steps=50
    )
    gen = torch.Generator().manual_seed(0)  # the race's own starts
    for i in range(3):
        c = torch.randn(50, generator=gen, dtype=torch.float64)
        j = torch.arange(60, dtype=torch.float64)[:, None]
        w = c**2 * d.abs() ** (2 * j)
        err = (1.0 - (w * d).sum(1) / w.sum(1)).numpy()
        assert race.power_to_target[i] == np.flatnonzero(err <= 1e-4)[0] + 1
        n, value = eig.stop_on_change(1.0 - err, 1e-3)
        assert race.change_products[i] == n
        assert race.change_error[i] == pytest.approx(1.0 - value)
        _, lz = lanczos.lanczos_stop(lambda v: d * v, c, 1e-3, 50)
        assert race.lanczos_stop_error[i] == pytest.approx(abs(1.0 - lz))
    # Lanczos never needs more products than power iteration
    assert np.all(race.lanczos_to_target <= race.power_to_target)
    assert np.all(race.lanczos <= race.power[:, :50] + 1e-12)
    with pytest.raises(ValueError, match="reference"):
        eig.race_top_eigenvalue(lambda v: v, 5, 0.0, 1, 5, 5)
    with pytest.raises(ValueError, match="starts"):
        eig.race_top_eigenvalue(lambda v: v, 5, 1.0, 0, 5, 5)


def test_gapped_spectrum_has_the_asked_ratio_and_rejects_bad_gaps():
    spec = eig.gapped_spectrum(100, 0.9)
    top = torch.sort(spec, descending=True).values
    assert top[0] == 1.0 and top[1] == pytest.approx(0.9)
    assert top[2] < top[1] and spec.min() == pytest.approx(-0.09)
    assert spec.shape == (100,)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="gap"):
            eig.gapped_spectrum(10, bad)
    with pytest.raises(ValueError, match="dim"):
        eig.gapped_spectrum(2, 0.5)


def test_race_floor_ends_power_iteration_early():
    spec = eig.gapped_spectrum(60, 0.5)
    full = eig.race_top_eigenvalue(lambda v: spec * v, 60, 1.0, 2, 80, 20)
    early = eig.race_top_eigenvalue(
        lambda v: spec * v, 60, 1.0, 2, 80, 20, floor=1e-6
    )
    for row_full, row in zip(full.power, early.power):
        done = ~np.isnan(row)
        n = int(done.sum())
        assert 1 < n < 80 and done[:n].all()  # a prefix, then NaN
        assert row[n - 1] <= 1e-6 < row[n - 2]  # stopped at the first hit
        np.testing.assert_array_equal(row[:n], row_full[:n])
    np.testing.assert_array_equal(early.power_to_target, full.power_to_target)


def test_config_scales_and_diagonal_race_row():
    quick = eig.EigenvaluesConfig.for_scale(Scale.QUICK)
    book = eig.EigenvaluesConfig.for_scale(Scale.BOOK)
    assert quick.dim < book.dim and quick.starts <= book.starts
    cfg = replace(
        quick, dim=80, starts=2, diag_power_steps=300, diag_lanczos_steps=40
    )
    race, row = eig.race_on_diagonal(cfg, 0.8)
    assert race.power.shape == (2, 300) and race.lanczos.shape == (2, 40)
    assert row["model"] == "diagonal" and row["gap"] == 0.8
    assert row["power"] == race.power_to_target.mean()
    assert row["lanczos"] == race.lanczos_to_target.mean()
    assert row["change_stop_error"] == np.median(race.change_error)
    assert row["lanczos_stop_error"] == np.median(race.lanczos_stop_error)
    assert eig.never_worse(race)


def test_never_worse_detects_a_worse_lanczos_row():
    power = np.array([[0.5, 0.1, np.nan]])
    race = eig.Race(
        power,
        np.array([[0.4, 0.2, 0.3]]),
        power[:, 0],
        power[:, 0],
        power[:, 0],
        power[:, 0],
        power[:, 0],
    )
    assert not eig.never_worse(race)  # 0.2 > 0.1 at the second product
    good = eig.Race(
        power,
        np.array([[0.4, 0.1, 0.9]]),
        power[:, 0],
        power[:, 0],
        power[:, 0],
        power[:, 0],
        power[:, 0],
    )
    assert eig.never_worse(good)  # NaN: power iteration had converged


def test_race_on_mlp_row():
    cfg = replace(
        eig.EigenvaluesConfig.for_scale(Scale.QUICK),
        hessian_examples=100,
        train_steps=(20,),
        starts=1,
        power_steps=150,
        lanczos_steps=30,
    )
    race, row = eig.race_on_mlp(cfg, data.mnist1d(num_samples=400), 20)
    assert row["params"] == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert 0 < row["gap"] < 1
    assert race.lanczos.shape == (1, 30)
