import numpy as np
import pandas as pd
import pytest
import torch

from batchlab import data, models
from batchlab.experiments import minibatch as exp
from batchlab.runtime import Scale


@pytest.fixture(scope="module")
def mnist():
    return data.mnist1d(num_samples=600)


def test_configs_for_every_scale():
    for scale in Scale:
        k = exp.EqualLossConfig.for_scale(scale)
        assert k.batch_sizes[-1] == k.n_train  # the last B is full batch
        assert list(k.batch_sizes) == sorted(k.batch_sizes)
        assert all(k.fixed_lr in k.rates(b) for b in k.batch_sizes)
        s = exp.EqualStepsConfig.for_scale(scale)
        assert s.batch_sizes[-1] == s.n_train
        assert list(s.batch_sizes) == sorted(set(s.batch_sizes))
        n = exp.NoiseConfig.for_scale(scale)
        assert list(n.batch_sizes) == sorted(set(n.batch_sizes))
    k = exp.EqualLossConfig.for_scale("book")
    assert k.budget(1, k.fixed_lr) == k.fixed_epochs * k.n_train
    assert k.budget(k.n_train, 1.92) == k.grid_steps * k.n_train
    with pytest.raises(ValueError, match="grid"):
        k.rates(3)


def test_split_keeps_train_val_and_test_apart(mnist):
    train, val = exp.split(mnist, 100, 50)
    assert torch.equal(train.x_train, mnist.x_train[:100])
    assert torch.equal(val.x_test, mnist.x_train[100:150])
    assert torch.equal(train.x_test, mnist.x_test)
    with pytest.raises(ValueError, match="exceeds"):
        exp.split(mnist, 400, 100)


@pytest.fixture(scope="module")
def fair(mnist):
    cfg = exp.EqualLossConfig.for_scale("quick")
    cfg = exp.replace(cfg, n_train=100, n_val=50, seeds=2, grid_steps=30)
    cfg = exp.replace(cfg, grid=((1, (0.015, 0.03)), (100, (0.96, 1.92))))
    runs, nets = exp.equal_loss_runs(cfg, mnist)
    return cfg, runs, nets


def test_equal_loss_runs_bookkeeping(fair):
    cfg, runs, nets = fair
    want = cfg.seeds * sum(len(cfg.rates(b)) for b in cfg.batch_sizes)
    assert len(runs) == len(nets) == want == 10
    assert set(nets) == set(runs[["B", "lr", "seed"]].itertuples(False))
    reached = runs[runs["reached"]]
    assert (reached["train_loss"] < cfg.target_loss).all()
    assert (
        runs["epochs"]
        <= runs.apply(lambda r: cfg.budget(r.B, r.lr), axis=1) / cfg.n_train
    ).all()
    np.testing.assert_allclose(runs["lr_over_B"], runs["lr"] / runs["B"])


def test_arms_pick_fixed_rate_and_best_heldout_rate(fair):
    cfg, runs, _ = fair
    fake = runs.assign(reached=True, val_acc=runs["lr"] * runs["B"])
    picked = exp.arms(fake, cfg)
    assert (picked[picked["arm"] == "fixed"]["lr"] == cfg.fixed_lr).all()
    tuned = picked[picked["arm"] == "tuned"].groupby("B")["lr"].first()
    assert tuned.to_dict() == {1: 0.03, 100: 1.92}
    fake.loc[fake["lr"] == 1.92, "reached"] = False
    tuned = exp.arms(fake, cfg).query("arm == 'tuned'")
    assert set(tuned[tuned["B"] == 100]["lr"]) == {0.96}


def test_chain_links_are_spearman_correlations():
    gen = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            c: gen.normal(size=12)
            for c in [
                "B",
                "lambda_max",
                "keskar",
                "weight_noise",
                "noisy_acc",
                "test_acc",
            ]
        }
    ).assign(arm="tuned", reached=True)
    frame["lambda_max"] = frame["B"] ** 3  # a monotone link: rho = 1
    links = exp.verdicts(exp.chain_links(frame)).set_index("link")
    assert np.isclose(links.loc["batch size -> top eigenvalue", "rho"], 1)
    assert links.loc["batch size -> top eigenvalue", "verdict"] == "supports"
    want = frame["keskar"].rank().corr(frame["test_acc"].rank())
    got = (
        exp.chain_links(frame.assign(lambda_max=frame["keskar"]))
        .set_index("link")
        .loc["top eigenvalue -> test accuracy", "rho"]
    )
    assert np.isclose(got, want)


def test_holm_adjusts_by_hand_and_verdicts_use_it():
    p = np.array([0.04, 0.001, 0.03, 0.2])
    # by hand: sorted 0.001, 0.03, 0.04, 0.2 times 4, 3, 2, 1, running max
    want = [0.09, 0.004, 0.09, 0.2]
    np.testing.assert_allclose(exp.holm(p), want)
    np.testing.assert_allclose(exp.holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(exp.holm([0.02, np.nan]), [0.02, np.nan])
    assert set(exp.CHAIN_SIGN) == set(exp.CHAIN_SHORT)
    assert set(exp.CHAIN_SIGN) == {name for name, _, _ in exp.CHAIN}
    with pytest.raises(ValueError, match="p-values"):
        exp.holm([[0.1]])
    links = pd.DataFrame(
        dict(
            link=["batch size -> top eigenvalue"] * 3
            + ["batch size -> test accuracy"],
            rho=[0.5] * 4,
            p=[0.001, 0.04, 0.03, 0.002],  # Holm: 0.004, 0.06, 0.06, 0.006
        )
    )
    out = exp.verdicts(links)
    want = ["supports", "undecided", "undecided", "opposes"]
    assert out["verdict"].tolist() == want
    assert out["expected"].tolist() == [1, 1, 1, -1]


def test_saturation_finds_the_first_batch_near_full_batch():
    frame = pd.DataFrame(
        dict(
            lr=[0.1] * 3 + [0.4] * 3,
            B=[1, 10, 100] * 2,
            init_loss=[2.0] * 6,
            train_loss=[1.5, 1.02, 1.0, 1.9, 1.3, 0.5],
        )
    )
    assert exp.saturation(frame, 0.1).to_dict() == {0.1: 10, 0.4: 100}
    # a second seed at B = 10, rate 0.1, that diverged (missing loss)
    diverged = frame.iloc[[1]].assign(train_loss=np.nan)
    both = pd.concat([frame, diverged], ignore_index=True)
    assert exp.saturation(both, 0.1)[0.1] == 100


def test_equal_steps_and_variance_law_rows(mnist):
    cfg = exp.EqualStepsConfig.for_scale("quick")
    cfg = exp.replace(cfg, n_train=100, batch_sizes=(1, 100), steps=5)
    rows = exp.equal_steps(cfg, mnist)
    assert len(rows) == 2 * len(cfg.lrs) * cfg.seeds
    assert (rows["examples"] == 5 * rows["B"]).all()
    ncfg = exp.replace(exp.NoiseConfig.for_scale("quick"), draws=3)
    net = models.mlp(ncfg.sizes, seed=0)
    law = exp.variance_law(net, mnist.subset(256), ncfg, 0, "init")
    assert list(law["B"]) == [1, 16]
    assert np.allclose(
        law["b_simple"],
        law["trace"] / law["trace"].iloc[0] * law["b_simple"].iloc[0],
    )


def test_sharpness_rows_match_the_landscape_measures(fair, mnist):
    cfg, runs, nets = fair
    keys = [(1, 0.03, 0), (100, 0.96, 1)]
    rows = exp.sharpness(cfg, mnist, nets, keys).set_index(["B", "lr"])
    assert list(rows.index) == [(1, 0.03), (100, 0.96)]
    train, _ = exp.split(mnist, cfg.n_train, cfg.n_val)
    ref = exp.flatness_metrics(
        nets[(1, 0.03, 0)],
        exp.F.cross_entropy,
        train.x_train,
        train.y_train,
        [cfg.weight_radius],
        seed=0,
        eps=cfg.eps,
    )
    assert np.isclose(rows.loc[(1, 0.03), "lambda_max"], ref["lambda_max"])
    assert np.isclose(rows.loc[(1, 0.03), "keskar"], ref["keskar"])
    assert rows["noisy_acc"].between(0, 1).all()
