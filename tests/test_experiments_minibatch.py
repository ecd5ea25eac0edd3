"""The minibatch chapter's fair-test machinery (_fair, _chain): runs
trained to one loss and remembered across sections, their measures, and
the chain's statistics paired by seed; and every section's
configuration and variants."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from batchlab import claims, data, landscape, stats
from batchlab.experiments import minibatch
from batchlab.experiments.minibatch import _chain, _fair, fixed
from batchlab.runtime import Scale, variants_of

LEDGER = (
    Path(__file__).resolve().parents[1]
    / "benchmarks/results/ledger/minibatch.json"
)


@pytest.fixture(scope="module")
def mnist():
    return data.mnist1d(num_samples=600)


@pytest.mark.parametrize("section", claims.sections(minibatch))
def test_every_section_has_configs_variants_and_claims(section):
    for scale in Scale:
        cfg = section.Config.for_scale(scale)
        assert dataclasses.is_dataclass(cfg)
    book = section.Config.for_scale("book")
    found = variants_of(book)
    assert list(found) == ["longer", "wider", "rate", "digits"]
    assert found["digits"].dataset == "digits"
    assert section.CLAIMS and all(
        c.id.startswith("mb-") for c in section.CLAIMS
    )


@pytest.mark.parametrize("section", claims.sections(minibatch))
def test_findings_name_every_variant_in_which_the_ledger_holds(section):
    """A finding lists in ``where`` every variant in which it held in all
    the ledger's seed sets (that it holds where it is listed is
    tests/test_ledger.py's); a finding may list none."""
    rows = json.loads(LEDGER.read_text())["claims"]
    for claim in section.CLAIMS:
        if claim.kind != "finding":
            continue
        cells = rows[claim.id]["variants"]
        held = {
            v
            for v, cell in cells.items()
            if v != "book" and cell["held"] and not cell["failed"]
        }
        missing = held - set(claim.where)
        assert not missing, f"{claim.id} also holds in {sorted(missing)}"


def test_fair_test_configs_share_one_protocol():
    for section in (fixed, minibatch.grid, minibatch.counter):
        cfg = section.Config.for_scale("book")
        assert isinstance(cfg, _fair.Protocol) and cfg.seeds >= 6
        assert cfg.target == cfg.target_loss
        longer = variants_of(cfg)["longer"]
        assert longer.target == pytest.approx(cfg.target / 3)
        digits = variants_of(cfg)["digits"]
        assert digits.n_train + digits.n_val <= 1438  # the digits' train
    grid = minibatch.grid.Config.for_scale("book")
    assert grid.grid[-1][0] == grid.n_train  # the last B is the full batch
    assert [b for b, _ in grid.grid] == sorted(b for b, _ in grid.grid)
    assert sum(grid.shared_lr in r for _, r in grid.grid) >= 3
    for b in grid.ratio_batches:  # every eta/B is a rate of every B
        rates = dict(grid.grid)[b]
        assert all(np.isclose(rates, r * b).any() for r in grid.ratios)


def test_split_keeps_train_val_and_test_apart(mnist):
    train, val = _fair.split(mnist, 100, 50)
    assert torch.equal(train.x_train, mnist.x_train[:100])
    assert torch.equal(val.x_train, mnist.x_train[:100])
    assert torch.equal(val.x_test, mnist.x_train[100:150])
    assert torch.equal(train.x_test, mnist.x_test)
    with pytest.raises(ValueError, match="exceeds"):
        _fair.split(mnist, 400, 100)


def test_budget_is_the_same_for_every_rate_of_a_batch_size():
    cfg = minibatch.grid.Config.for_scale("book")
    assert _fair.budget(cfg, 1) == cfg.budget_epochs * cfg.n_train
    assert _fair.budget(cfg, cfg.n_train) == cfg.budget_steps * cfg.n_train


@dataclasses.dataclass(frozen=True)
class Tiny(_fair.Protocol):
    budget_epochs: float = 40
    budget_steps: int = 60


TINY = Tiny(
    sizes=(40, 16, 10),
    n_train=100,
    n_val=50,
    seeds=2,
    target_loss=0.6,
    near_examples=10,
)


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(_fair, "_runs", type(_fair._runs)())
    monkeypatch.setattr(_fair, "_measures", type(_fair._measures)())


def test_train_rows_and_models_agree(mnist, fresh):
    cells = ((1, (0.05,)), (100, (0.5, 1.0)))
    runs, models = _fair.train(TINY, mnist, cells)
    assert len(runs) == len(models) == 2 * 3
    assert set(models) == set(runs[["B", "lr", "seed"]].itertuples(False))
    done = runs[runs["reached"]]
    assert (done["train_loss"] < TINY.target).all() and len(done)
    assert (runs["examples"] <= runs["budget"]).all()
    np.testing.assert_allclose(runs["lr_over_B"], runs["lr"] / runs["B"])
    train, val = _fair.split(mnist, 100, 50)
    for r in runs.itertuples():
        net = models[(r.B, r.lr, r.seed)]
        with torch.no_grad():
            loss = F.cross_entropy(net(train.x_train), train.y_train)
            acc = (net(val.x_test).argmax(1) == val.y_test).float().mean()
        if r.reached:
            assert float(loss) == pytest.approx(r.train_loss, rel=1e-4)
        assert float(acc) == pytest.approx(r.val_acc)


def test_train_remembers_runs_across_sections_but_not_data(mnist, fresh):
    """A cell trained by one section is reused by the next (a run does
    not depend on its stack mates); other data, another seed set or
    another budget for a run that missed the target train again."""
    first, nets = _fair.train(TINY, mnist, ((4, (0.05,)),))
    again, nets2 = _fair.train(TINY, mnist, ((4, (0.05, 0.1)),))
    assert all(nets[k] is nets2[k] for k in nets)
    pd.testing.assert_frame_equal(
        first, again[again["lr"] == 0.05].reset_index(drop=True)
    )
    alone, _ = _fair.train(TINY, mnist, ((4, (0.1,)),))
    pd.testing.assert_frame_equal(
        alone, again[again["lr"] == 0.1].reset_index(drop=True)
    )
    other = data.mnist1d(num_samples=600, seed=7)
    _, nets3 = _fair.train(TINY, other, ((4, (0.05,)),))
    assert all(nets3[k] is not nets[k] for k in nets)
    short = dataclasses.replace(TINY, budget_epochs=1, budget_steps=1)
    cut, nets4 = _fair.train(short, mnist, ((4, (0.05,)),))
    assert not cut["reached"].any() and (cut["examples"] == 100).all()
    assert all(nets4[k] is not nets[k] for k in nets)


def test_measures_are_the_landscape_measures(mnist, fresh):
    runs, models = _fair.train(TINY, mnist, ((100, (1.0,)),))
    got = _fair.measure(TINY, mnist, runs, models)
    train, _ = _fair.split(mnist, 100, 50)
    for r in got[got["reached"]].itertuples():
        net = models[(r.B, r.lr, r.seed)]
        ref = landscape.flatness_metrics(
            net,
            F.cross_entropy,
            train.x_train,
            train.y_train,
            [TINY.weight_radius],
            seed=r.seed,
            eps=TINY.eps,
        )
        assert r.lambda_max == pytest.approx(ref["lambda_max"])
        assert r.keskar == pytest.approx(ref["keskar"])
        assert r.weight_noise == pytest.approx(ref["weight_noise"][0])
        flips = landscape.input_noise_flips(
            net, train.x_test, TINY.input_sd, TINY.input_draws, _fair.NOISE
        )
        assert r.flips == pytest.approx(flips)
    assert got["lambda_max"].notna().sum() == got["reached"].sum() > 0


def synthetic(seeds=8, rates=(0.015, 0.03), batches=(1, 4, 16), seed=0):
    """A fair-test frame with known structure: lambda_max grows with B
    and falls with the rate; test accuracy is B's and the rate's effect
    plus seed noise."""
    gen = np.random.default_rng(seed)
    rows = []
    for lr in rates:
        for b in batches:
            for s in range(seeds):
                lam = b**0.5 / lr * 0.01 * np.exp(gen.normal(0, 0.05))
                acc = 0.45 + 0.002 * np.log(b) + gen.normal(0, 0.004)
                rows.append(
                    dict(
                        B=b,
                        lr=lr,
                        seed=s,
                        reached=True,
                        train_loss=0.095,
                        test_acc=acc,
                        val_acc=acc + gen.normal(0, 0.002),
                        lambda_max=lam,
                        keskar=lam * 0.5,
                        weight_noise=lam * 1e-3,
                        flips=0.4 + 0.01 * lam,
                        lr_over_B=lr / b,
                        epochs=10.0,
                        train_acc=0.99,
                    )
                )
    return pd.DataFrame(rows)


def test_within_seed_links_are_spearman_per_seed():
    frame = synthetic()
    rho = _chain.within(frame[frame["lr"] == 0.03], "B", "test_acc", "seed")
    for s, value in rho.items():
        part = frame[(frame["lr"] == 0.03) & (frame["seed"] == s)]
        assert value == pytest.approx(
            spearmanr(part["B"], part["test_acc"]).statistic
        )
    table = _chain.table(frame[frame["lr"] == 0.03]).set_index("link")
    assert table.loc["B → λmax", "rho"] == 1  # lambda grows with B
    assert table.loc["B → λmax", "verdict"] == "supports"
    got = _chain.link_interval(
        frame[frame["lr"] == 0.03], "B", "test_acc", 1 - 0.05 / 8
    )
    ref = stats.interval(rho.to_numpy(), level=1 - 0.05 / 8)
    assert (got.lo, got.hi) == pytest.approx((ref.lo, ref.hi))
    assert (table.loc["B → test acc", ["lo", "hi"]] == [ref.lo, ref.hi]).all()


def test_ratios_and_points_are_paired_by_seed():
    frame = synthetic()
    part = frame[frame["lr"] == 0.03]
    ratio, lo, hi = _chain.log_ratio(part, "lambda_max", "B", 1, 16)
    per_seed = (
        part[part["B"] == 16].set_index("seed")["lambda_max"]
        / part[part["B"] == 1].set_index("seed")["lambda_max"]
    )
    ref = stats.interval(np.log(per_seed.to_numpy()))
    assert ratio == pytest.approx(np.exp(ref.estimate))
    assert (lo, hi) == pytest.approx((np.exp(ref.lo), np.exp(ref.hi)))
    got = _chain.points(part, "test_acc", "B", 1, 4)
    diff = (
        part[part["B"] == 4].set_index("seed")["test_acc"]
        - part[part["B"] == 1].set_index("seed")["test_acc"]
    )
    assert got["diff"] == pytest.approx(100 * diff.mean())
    assert got["wins"] == int((diff > 0).sum())
    rolled = part.assign(  # B = 4 paired with the wrong seeds
        seed=np.where(part["B"] == 4, (part["seed"] + 1) % 8, part["seed"])
    )
    assert _chain.points(rolled, "test_acc", "B", 1, 4)["lo"] != got["lo"]


def test_fixed_facts_on_a_synthetic_frame():
    cfg = fixed.Config.for_scale("book")
    frame = synthetic()
    f = fixed.facts(frame, cfg)
    assert f["fx1_lam_ratio"] == pytest.approx(4.0, rel=0.1)  # sqrt(16)
    assert f["fx_b1_lam_ratio"] == pytest.approx(0.5, rel=0.1)  # 1/2
    assert f["fx_reached"] == 1 and f["fx_short"] == pytest.approx(0.05)
    assert f["fx2_v_b_lam"] == "supports"
    results = claims.evaluate(fixed, f, "book")
    assert results["mb-fixed-flatter"] and results["mb-fixed-reach"]
    assert not results["mb-b1-rate"]  # accuracy does not fall with rate
    worse = frame.assign(
        test_acc=frame["test_acc"] - 0.02 * (frame["lr"] == 0.03)
    )
    got = fixed.facts(worse, cfg)
    assert claims.evaluate(fixed, got, "book")["mb-b1-rate"]
    # the loss as a magnitude: 2 points more than without the planted fall
    assert got["fx_b1_drop"] == pytest.approx(2 - f["fx_b1_gain_diff"])
    assert got["fx_b1_drop_lo"] == pytest.approx(-got["fx_b1_gain_hi"])
    assert got["fx_b1_drop_hi"] == pytest.approx(-got["fx_b1_gain_lo"])
    table = fixed.chain(frame, cfg)
    assert list(table.columns[:2]) == ["lr", "link"] and len(table) == 16
