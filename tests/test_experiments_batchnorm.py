"""The BatchNorm chapter's sections: their measurements against direct
computations, and their facts on small synthetic frames (so that every
claim's predicate runs in the fast suite)."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from batchlab import batchnorm as bn
from batchlab import claims, data, runtime, train
from batchlab.experiments import batchnorm as chapter
from batchlab.experiments.batchnorm import (
    conv,
    edge,
    epsilon,
    escape,
    hessian,
    jumps,
    modes,
    pairs,
    rate,
    running,
    smallbatch,
    spread,
    wholedata,
    work,
)


@pytest.fixture(scope="module")
def mnist():
    return data.mnist1d(num_samples=600)


def test_every_section_is_listed_and_has_claims():
    names = [s.__name__.rsplit(".", 1)[1] for s in claims.sections(chapter)]
    assert len(names) == len(set(names)) == 14
    for section in claims.sections(chapter):
        assert section.CLAIMS and all(
            c.id.startswith("bn-") for c in section.CLAIMS
        )
        book = section.Config.for_scale("book")
        assert runtime.variants_of(book)  # every section has variants


def test_counting_sees_training_mode_only():
    net = bn.bn_mlp([4, 6, 3], seed=0)
    with work.counting(net[0]) as seen:
        net(torch.randn(5, 4))
        net.eval()
        net(torch.randn(7, 4))
    assert seen == [5]
    net.train()
    net(torch.randn(2, 4))
    assert seen == [5]  # the hook is gone


def test_work_counts_n_plus_b_and_facts_notice_a_miscount(mnist):
    cfg = replace(work.Config(), n_values=(100, 400), batch=16)
    cost = work.run(cfg, mnist)
    f = work.facts(cost, cfg)
    assert f["work_exact"] and f["work_cost"] == 416
    whole = cost[cost["mode"] != "per batch"]
    assert (whole["examples"] == whole["n"] + 16).all()
    assert not work.facts(cost.assign(examples=16), cfg)["work_exact"]


def test_escape_follows_the_law_and_facts_read_it():
    cfg = replace(escape.Config(), steps=10)
    frame = escape.run(cfg)
    f = escape.facts(frame, cfg)
    toy = escape.toy_data(cfg)
    law = 2 * cfg.lr * cfg.steps * float(toy.y_train.mean())
    assert np.isclose(f["esc_bias"], law, rtol=1e-12)
    assert f["esc_loss_change"] < 1e-12 and f["esc_inside"] < 1e-12
    assert all(c.check(f) for c in escape.CLAIMS)
    moved = frame.copy()
    moved.loc[moved["mean"] == escape.MEANS[1], "bias"] = 0.5
    assert not escape.CLAIMS[1].check(escape.facts(moved, cfg))


def test_wholedata_pins_in_gradient_biases_and_records_work(mnist):
    cfg = replace(
        wholedata.Config(), n_train=100, steps=6, every=3, seeds=2, batch=10
    )
    frame = wholedata.run(cfg, mnist)
    f = wholedata.facts(frame, cfg)
    assert f["whole_pinned"] < 1e-6
    const = frame[(frame["mode"] == work.MODES[1]) & (frame["seed"] == 0)]
    assert const["examples"].tolist() == [0, 3 * 110, 6 * 110]
    assert const["drift"].iloc[-1] > 0
    per_batch = frame[(frame["mode"] == work.MODES[0]) & (frame["seed"] == 0)]
    assert per_batch["examples"].tolist() == [0, 30, 60]
    net = bn.bn_mlp([40, 5, 4, 10], seed=0)
    assert torch.equal(
        wholedata.pre_norm_biases(net), torch.cat([net[0].bias, net[3].bias])
    )


def test_wholedata_facts_on_a_synthetic_frame():
    cfg = replace(wholedata.Config(), steps=20, every=10, seeds=3)
    loss = {work.MODES[0]: 1.0, work.MODES[1]: 1.05, work.MODES[2]: 0.9}
    rows = []
    for seed in range(3):
        for mode in work.MODES:
            for step, drift in ((0, 0.0), (10, 1.0), (20, 2.0)):
                rows.append(
                    dict(
                        seed=seed,
                        mode=mode,
                        step=step,
                        examples=step * 32,
                        loss=loss[mode]
                        + 0.01 * seed * (mode != work.MODES[0]),
                        drift=drift if mode == work.MODES[1] else 0.0,
                    )
                )
    frame = pd.DataFrame(rows)
    f = wholedata.facts(frame, cfg)
    assert f["whole_drift_grows"] and np.isclose(f["whole_cost"], 0.15)
    assert np.isclose(f["whole_gain"], 0.09)  # per batch minus differentiated
    # t interval of (0.1, 0.09, 0.08): 0.09 +- t(0.975, 2) * 0.01 / sqrt(3)
    half = 4.302652729749464 * 0.01 / 3**0.5
    assert np.isclose(f["whole_gain_lo"], 0.09 - half)
    assert f["whole_gain_verdict"].startswith("lower with")
    assert all(c.check(f) for c in wholedata.CLAIMS)
    same = frame.assign(loss=1.0)  # constant statistics cost nothing
    assert not wholedata.CLAIMS[2].check(wholedata.facts(same, cfg))
    flat = frame.copy()
    flat.loc[(flat["step"] == 20) & (flat["seed"] == 1), "drift"] = 1.0
    flat.loc[flat["mode"] != work.MODES[1], "drift"] = 0.0
    assert not wholedata.facts(flat, cfg)["whole_drift_grows"]


def test_jumps_compensated_renormalization_keeps_the_function(mnist):
    cfg = replace(
        jumps.Config(), steps=20, every=10, seeds=1, sizes=(40, 8, 6, 10)
    )
    frame = jumps.run(cfg, mnist)
    comp = frame[frame["compensated"]]
    assert ((comp["after"] - comp["before"]).abs() < 1e-5).all()
    raw = frame[~frame["compensated"]]
    assert ((raw["after"] - raw["before"]).abs() > 1e-4).any()
    f = jumps.facts(frame, cfg)
    assert f["jump_comp"] < jumps.EXACT_TOL


def test_spread_matches_the_finite_population_law():
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(200, 3, generator=gen) * torch.tensor([1.0, 2, 5])
    frame = spread.batch_mean_spread(inputs, [4, 150], draws=600)
    # in units of each column's sigma, the law is the same for all
    law = ((200 - 150) / (150 * 199)) ** 0.5
    assert np.isclose(frame["law"].iloc[1], law, rtol=1e-5)
    assert (abs(frame["ratio"] - 1) < 0.1).all()
    # the spread of a mean of 4 is about sigma / 2, whatever sigma is
    assert abs(frame["measured"].iloc[0] - 0.5) < 0.05
    # without the finite-population factor the B = 150 spread is off
    assert frame["measured"].iloc[1] < 0.7 / 150**0.5
    with pytest.raises(ValueError, match="batch sizes"):
        spread.batch_mean_spread(inputs, [200], draws=5)


def test_running_rows_match_a_direct_tracker(mnist):
    cfg = replace(
        running.Config(),
        steps=40,
        every=20,
        seeds=1,
        sizes=(40, 8, 6, 10),
        momenta=(0.01, 0.1, 0.5),
    )
    frame = running.run(cfg, mnist)
    assert set(frame["step"]) == {20, 40}
    assert frame["momentum"].isna().sum() == 4  # cumulative: 2 rates x 2
    # the same run by hand, with nn.BatchNorm1d's own running mean
    net = bn.bn_mlp(cfg.sizes, seed=0, momentum=0.1)
    train.train_sgd(net, mnist, train.SGDConfig(cfg.batch, cfg.fast_lr, 40))
    mean, var = bn.population_stats(net, mnist.x_train)[1]
    want = (
        (bn.bn_layers(net)[1].running_mean - mean).abs() / var.sqrt()
    ).mean()
    got = frame.query("lr == @cfg.fast_lr and step == 40 and momentum == 0.1")
    assert np.isclose(got["error"].iloc[0], float(want), rtol=1e-4)


def test_running_facts_rank_the_momenta():
    cfg = replace(running.Config(), steps=300, every=100, seeds=2)
    rows = []
    errors = {  # slow: noise ranks; fast: the middle momentum wins
        cfg.slow_lr: {0.01: 1, 0.1: 2, 0.5: 3, math.nan: 1.5},
        cfg.fast_lr: {0.01: 3, 0.1: 1, 0.5: 2, math.nan: 4},
    }
    for lr, by_m in errors.items():
        for seed in range(2):
            for step in (100, 200, 300):
                for m, e in by_m.items():
                    grow = step / 100 if math.isnan(m) else 1
                    rows.append(
                        dict(
                            seed=seed,
                            lr=lr,
                            step=step,
                            momentum=m,
                            error=e * grow,
                        )
                    )
    f = running.facts(pd.DataFrame(rows), cfg)
    assert f["run_ranked_slow"] and f["run_mid_wins_fast"]
    assert np.isclose(f["run_cum_growth"], 3.0)
    assert f["run_slow_lo"] == 1 and f["run_fast_cum"] == 4 * 2


def test_modes_batches_and_agreement(mnist):
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    order = torch.arange(9)
    chunks = list(modes.batches_of(order, y, 2, by_class=True))
    assert all(len(set(y[c].tolist())) == 1 for c in chunks)
    assert all(len(c) == 2 for c in chunks)
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    train.train_sgd(net, mnist, train.SGDConfig(16, 0.05, 30))
    frame = modes.train_eval_agreement(
        net, mnist.x_test, mnist.y_test, [2, 64]
    )
    assert (frame["agreement"] <= 1).all()
    big = frame[(frame["B"] == 64) & (frame["batches"] == "random")]
    small = frame[(frame["B"] == 2) & (frame["batches"] == "random")]
    assert big["agreement"].iloc[0] > small["agreement"].iloc[0]


def test_step_lengths_account_for_the_growth_of_the_weights(mnist):
    net = bn.bn_mlp([40, 6, 5, 10], "none", seed=1)
    follow = bn.StepLengths(net[0].weight)
    start = net[0].weight.detach().double().clone()
    grads = []
    record = lambda step, model: grads.append(model[0].weight.grad.clone())  # noqa: E731
    both = lambda step, model: (follow(step, model), record(step, model))  # noqa: E731
    train.train_sgd(net, mnist, train.SGDConfig(8, 0.3, 15), on_step=both)
    end = net[0].weight.detach().double()
    s = follow.summary()
    growth = float(((end**2).sum(1) - (start**2).sum(1)).mean())
    assert np.isclose(s["growth"], growth, rtol=1e-12)
    # |w_T|^2 - |w_0|^2 = sum |step|^2 - sum 2 w.(-step), exactly
    assert np.isclose(s["growth"], s["squared_steps"] - s["radial"], rtol=1e-9)
    # plain SGD: the squared steps are eta^2 |g|^2
    want = sum(0.3**2 * (g.double() ** 2).sum(1) for g in grads).mean()
    assert np.isclose(s["squared_steps"], float(want), rtol=1e-4)
    assert abs(s["radial"]) > 0.01 * s["squared_steps"]  # no BatchNorm
    assert s["start"] == pytest.approx(float((start**2).sum(1).mean()))
    ratio = float(
        (1 / (end**2).sum(1)).mean() / (1 / (start**2).sum(1)).mean()
    )
    assert np.isclose(s["rate_ratio"], ratio)


def test_first_examples_loss_takes_the_gradient_of_the_first_k():
    out = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    (g,) = torch.autograd.grad(rate.first_examples_loss(out, y, 2), out)
    assert (g[2:] == 0).all() and (g[:2] != 0).any()


def test_effective_rate_runs_put_statistics_and_gradient_in_place(mnist):
    # ghost BatchNorm: groups of 3 inside batches of 6
    sizes = (40, 6, 5, 10)
    got = rate.effective_rate_run(mnist, sizes, 3, 6, 0.1, 5, seed=0)
    assert (
        got["growth"] > 0 and abs(got["radial"]) < 0.01 * got["squared_steps"]
    )
    assert rate.run_name(2, 4, 480) == "statistics 2, gradient 4"
    assert rate.run_name(480, 480, 480) == "full batch"
    assert rate.run_name(None, 4, 480) == "no BatchNorm, B = 4"


def test_loss_trace_counts_rises_and_skips_evaluations():
    trace = rate.LossTrace(2)
    y = torch.tensor([0, 1, 0])
    for scale in (1.0, 2.0, 0.5, 3.0):
        out = (
            scale * torch.tensor([[2.0, 0], [0, 2], [1, 1]])
        ).requires_grad_()
        trace(out, y)
    with torch.no_grad():
        trace(torch.zeros(3, 2), y)  # an evaluation: not recorded
    assert len(trace.values) == 4
    # larger scales fit the first two examples better: the loss falls,
    # rises (2 -> 0.5), falls
    assert trace.rises() == 1


def test_momentum_steps_are_not_orthogonal_and_sharpness_is_exact(mnist):
    sizes = (40, 4, 3, 10)
    small = data.Dataset(
        mnist.x_train[:64], mnist.y_train[:64], mnist.x_test, mnist.y_test
    )
    plain = rate.effective_rate_run(small, sizes, 4, 4, 0.1, 20, seed=0)
    heavy = rate.effective_rate_run(
        small, sizes, 4, 4, 0.01, 20, seed=0, momentum=0.9
    )
    assert (
        abs(plain["growth"] - plain["squared_steps"])
        < 1e-3 * plain["squared_steps"]
    )
    assert heavy["growth"] > 2 * heavy["squared_steps"]
    full = rate.effective_rate_run(
        small, sizes, 64, 64, 0.05, 3, seed=0, sharpness=True
    )
    # against the exact Hessian of the same network after the same steps
    net = bn.bn_mlp(sizes, seed=0)
    train.train_sgd(net, small, train.SGDConfig(64, 0.05, 3, seed=0))
    net = net.double().train()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss_of(v):
        parts = dict(
            zip(
                names,
                (
                    t.view(s)
                    for t, s in zip(
                        v.split([math.prod(s) for s in shapes]), shapes
                    )
                ),
            )
        )
        out = torch.func.functional_call(net, parts, (small.x_train.double(),))
        return torch.nn.functional.cross_entropy(out, small.y_train)

    hess = torch.autograd.functional.hessian(loss_of, flat)
    top = torch.linalg.eigvalsh(hess)[-1]
    assert full["sharpness"] == pytest.approx(float(top), rel=2e-2)
    assert math.isnan(plain["sharpness"])


def _rate_frame(cfg, falls, plain=0.0):
    rows = []
    for seed in range(2):
        for lr in cfg.lrs:
            for (s, g), fall in falls.items():
                rows.append(
                    dict(
                        seed=seed,
                        lr=lr,
                        stats=s,
                        grad=g,
                        run=rate.run_name(s, g, 4000),
                        start=0.33,
                        rate_ratio=1 - fall,
                        squared_steps=fall,
                        growth=fall,
                        radial=0.0,
                        cos=1e-3,
                        fall=fall,
                    )
                )
        rows.append(
            dict(
                seed=seed,
                lr=cfg.lrs[0],
                stats=0,
                grad=cfg.small,
                run=rate.run_name(None, cfg.small, 4000),
                start=0.33,
                rate_ratio=1,
                squared_steps=0.1,
                growth=plain,
                radial=0.1,
                cos=0.5 + 0.1 * seed,
                fall=0.0,
            )
        )
    return pd.DataFrame(rows)


def test_rate_facts_compute_shares_along_both_paths():
    cfg = rate.Config()
    s, L = cfg.small, cfg.large
    falls = {(s, s): 0.4, (L, s): 0.3, (s, L): 0.09, (L, L): 0.1}
    f = rate.facts(_rate_frame(cfg, falls), cfg)
    assert np.isclose(f["rate_share_r0_gs"], 0.1 / 0.3)
    assert np.isclose(f["rate_share_r0_gl"], -0.01 / 0.3)
    assert f["rate_small_most"] and f["rate_ghost_smaller"]
    assert f["rate_cos_plain"] == 0.5 and f["rate_plain_off"] == 1.0
    assert not f["rate_ghost_flips"]  # the same falls at both rates
    flips = "bn-rate-ghost-flips"
    assert all(c.check(f) for c in rate.CLAIMS if c.id != flips)
    frame = _rate_frame(cfg, falls)
    ghost = (frame["lr"] == cfg.lrs[1]) & (frame["stats"] == s)
    frame.loc[ghost & (frame["grad"] == L), "fall"] = 0.2  # above 0.1
    assert rate.facts(frame, cfg)["rate_ghost_flips"]
    table = rate.summary(_rate_frame(cfg, falls))
    assert list(table.index) == list(range(len(table)))  # no index noise
    assert table[table["run"].str.startswith("no")]["fall"].isna().all()
    falls[(s, L)] = 0.45  # the ghost cell falls most
    f = rate.facts(_rate_frame(cfg, falls), cfg)
    assert not f["rate_small_most"] and not f["rate_ghost_smaller"]


def test_edge_facts_on_a_synthetic_frame():
    cfg = edge.Config()
    rows = []
    for seed in range(2):
        for lr, full_fall, rises, sharp in (
            (cfg.low_lr, 0.001, 0, 30.0),
            (cfg.high_lr, 0.06, 50 + seed, 25.0),
        ):
            rows.append(
                dict(
                    seed=seed,
                    run="full batch",
                    lr=lr,
                    momentum=0.0,
                    fall=full_fall,
                    squared_steps=full_fall,
                    growth=full_fall,
                    rises=rises,
                    sharpness=sharp,
                )
            )
            rows.append(
                dict(
                    seed=seed,
                    run="large batch",
                    lr=lr,
                    momentum=0.0,
                    fall=0.01 if lr == cfg.low_lr else 0.08,
                    squared_steps=0.01,
                    growth=0.01,
                    rises=100,
                    sharpness=math.nan,
                )
            )
        rows.append(
            dict(
                seed=seed,
                run="momentum",
                lr=0.01,
                momentum=0.9,
                fall=0.3,
                squared_steps=0.01,
                growth=0.1 + 0.1 * seed,
                rises=100,
                sharpness=math.nan,
            )
        )
    f = edge.facts(pd.DataFrame(rows), cfg)
    assert np.isclose(f["edge_share_lo"], 0.1)
    assert np.isclose(f["edge_share_hi"], 0.75)
    assert f["edge_rises_min_hi"] == 50 and f["edge_limit_hi"] == 20
    assert np.isclose(f["edge_mom_times"], 10)
    assert all(c.check(f) for c in edge.CLAIMS)
    calm = pd.DataFrame(rows).assign(rises=0)  # no step raises the loss
    assert not edge.CLAIMS[1].check(edge.facts(calm, cfg))


def test_epsilon_facts_name_the_runs():
    rows = [
        dict(
            seed=0,
            run=name,
            eps=1e-5 if not tiny else 1e-12,
            cos=c,
            squared_steps=0.2,
            growth=0.2 * (1 + m),
        )
        for (name, _, tiny), c, m in zip(
            epsilon.RUNS, (2e-3, 3e-3, 1e-10), (0.02, 0.01, 1e-9)
        )
    ]
    cfg = epsilon.Config()
    f = epsilon.facts(pd.DataFrame(rows), cfg)
    assert f["eps_cos_f32"] == 2e-3 and f["eps_cos_tiny"] == 1e-10
    assert np.isclose(f["eps_miss_f32"], 0.02)
    assert all(c.check(f) for c in epsilon.CLAIMS)
    rows[2]["growth"] = 0.2 * 1.01  # the negligible eps misses by 1%
    assert not epsilon.CLAIMS[0].check(epsilon.facts(pd.DataFrame(rows), cfg))


def test_epsilon_run_orthogonal_with_a_negligible_epsilon(mnist):
    cfg = replace(epsilon.Config(), steps=5, seeds=1, sizes=(40, 6, 5, 10))
    frame = epsilon.run(cfg, mnist).set_index("run")
    assert frame.loc["float64, negligible eps", "cos"] < 1e-8
    assert frame.loc["float64", "cos"] > 1e-7  # PyTorch's eps tilts it


def test_renorm_schedule_keeps_ioffes_proportions():
    cfg = smallbatch.Config()
    at = cfg.limits(1600)
    # Ioffe: plain BatchNorm to 5k, d_max at 25k, r_max at 40k steps
    assert at(100) == (1.0, 0.0)  # warm-up: 1/16 of 1600
    assert at(500) == (pytest.approx(1 + 2 * 400 / 700), 5.0)
    assert at(800) == (3.0, 5.0)
    assert 5000 / 40000 == cfg.renorm_warmup / cfg.renorm_r_end
    assert 25000 / 40000 == cfg.renorm_d_end / cfg.renorm_r_end


def test_smallbatch_facts_on_a_synthetic_frame():
    cfg = replace(smallbatch.Config(), seeds=3, small_steps=4, big_steps=2)
    acc = {"batchnorm": 0.2, "renorm": 0.25, "layernorm": 0.35}
    rows = []
    for b, steps, lrs in (
        (cfg.small, (2, 4), cfg.small_lrs),
        (cfg.big, (1, 2), cfg.big_lrs),
    ):
        for norm, a in acc.items():
            # each arm's own rate: the second for LayerNorm, else the first
            best = lrs[1] if norm == "layernorm" else lrs[0]
            for lr in lrs:
                for seed in range(3):
                    for step in steps:
                        top = (
                            a
                            if b == cfg.small
                            else 0.5 + (norm == "layernorm") * 0.01
                        )
                        rows.append(
                            dict(
                                B=b,
                                norm=norm,
                                lr=lr,
                                seed=seed,
                                step=step,
                                test_acc=(top if lr == best else 0.1)
                                + 0.01 * seed,
                                train_loss=1.0 if lr == best else 2.0,
                                epochs=1.0,
                            )
                        )
    frame = pd.DataFrame(rows)
    own = smallbatch.at_own_rate(frame)
    assert len(own) == len(frame) // len(cfg.small_lrs)
    f = smallbatch.facts(frame, cfg)
    assert np.isclose(f["small_lead"], 0.15)
    assert np.isclose(f["small_brn_gain_lo"], 0.05)
    assert f["small_lr_layernorm"] == cfg.small_lrs[1]
    assert f["small_lr_batchnorm"] == cfg.small_lrs[0]
    assert f["small_range_batchnorm"] == 0
    assert all(c.check(f) for c in smallbatch.CLAIMS)


def test_unit_share_counts_plus_minus_one_and_restores_the_layer(mnist):
    net = bn.bn_mlp([40, 8, 6, 10], seed=0)
    layer = bn.bn_layers(net)[0]
    before = layer.running_mean.clone()
    assert pairs.unit_share(net, mnist.x_train, 50, 0.01) > 0.9
    assert torch.equal(layer.running_mean, before)


def test_conv_facts_pick_each_arm_by_training_loss():
    cfg = replace(conv.Config(), seeds=3, steps=10)
    rows = []
    for norm in conv.NORMS:
        for lr in cfg.lrs:
            best = (lr == cfg.lrs[0]) == (norm == "batchnorm")
            for seed in range(3):
                rows.append(
                    dict(
                        norm=norm,
                        lr=lr,
                        seed=seed,
                        step=10,
                        test_acc=0.9 + 0.02 * best + 0.01 * seed,
                        train_loss=0.2 - 0.1 * best,
                        epochs=1.0,
                    )
                )
    f = conv.facts(pd.DataFrame(rows), cfg)
    assert f["conv_lr_bn"] == cfg.lrs[0] and f["conv_lr_gn"] == cfg.lrs[1]
    assert np.isclose(f["conv_lead"], 0.0) and np.isclose(
        f["conv_bn_min"], 0.91
    )


def test_spectrum_shape_on_a_power_law():
    ev = [10 * i**-1.5 for i in range(1, 21)]
    shape = hessian.spectrum_shape(ev[::-1])  # any order
    assert np.isclose(shape["decay"], 1.5)
    assert np.isclose(shape["ratio"], 20**1.5)
    assert np.isclose(shape["gap"], 2**1.5) and shape["gap_at"] == 1
    ev = ev[:5] + [e / 4 for e in ev[5:]]  # a gap after the fifth
    assert hessian.spectrum_shape(ev)["gap_at"] == 5
    with pytest.raises(ValueError, match="positive"):
        hessian.spectrum_shape([3.0, 2.0, -1.0])


def test_hessian_matches_losses_and_reads_the_spectra(mnist):
    cfg = replace(
        hessian.Config(),
        steps=20,
        max_steps=400,
        check_every=5,
        examples=100,
        k=4,
        seeds=2,
        sizes=(40, 8, 6, 10),
    )
    frame = hessian.run(cfg, mnist)
    assert list(frame["network"][:3]) == list(hessian.NETWORKS)
    row = frame.iloc[0]
    assert np.isclose(row["ratio"], row["lambda_1"] / row["lambda_k"])
    f = hessian.facts(frame, cfg)
    assert np.isclose(
        f["hess_ratio_plain"],
        frame[frame["network"] == hessian.NETWORKS[0]]["ratio"].mean(),
    )
    # the network without BatchNorm stopped at the first check at which
    # its loss was at most the BatchNorm network's (training mode)
    plain = frame[frame["network"] == hessian.NETWORKS[0]]
    batch = frame[frame["network"] == hessian.NETWORKS[1]]
    assert f["hess_matched"] and (plain["steps"] % 5 == 0).all()
    assert (plain["loss"].values <= batch["loss"].values).all()
    rel = hessian.relative_spectra(frame)
    assert (
        len(rel) == len(frame) * 4
        and (rel[rel["rank"] == 1]["relative"] == 1).all()
    )


def test_stop_at_loss_stops_training_once_the_loss_is_reached(mnist):
    net = bn.bn_mlp([40, 8, 6, 10], "none", seed=0)
    x, y = mnist.x_train[:100], mnist.y_train[:100]
    stop = hessian.StopAtLoss(x, y, target=2.0, every=5)
    hist = train.train_sgd(
        net, mnist, train.SGDConfig(16, 0.5, 500), on_step=stop
    )
    last = int(hist.step[-1])
    assert last % 5 == 0 and last < 500
    with torch.no_grad():
        assert float(torch.nn.functional.cross_entropy(net(x), y)) <= 2.0


def test_jumps_facts_count_diverged_runs():
    cfg = jumps.Config()
    rows = [
        dict(seed=0, compensated=c, step=s, before=b, after=a, diverged=d)
        for c, d in ((False, True), (True, False))
        for s, b, a in ((100, 2.0, 1.9), (200, 1.5, 1.45))
    ]
    f = jumps.facts(pd.DataFrame(rows), cfg)
    assert f["jump_diverged_raw"] == 1 and f["jump_diverged_comp"] == 0
    assert not f["jump_learns"] and math.isnan(f["jump_ratio"])
    clean = pd.DataFrame(rows).assign(diverged=False)
    assert jumps.facts(clean, cfg)["jump_learns"]


def test_modes_facts_read_one_class_losses():
    rows = [
        dict(B=b, batches=k, accuracy=acc, eval_accuracy=0.4, agreement=ag)
        for b, k, acc, ag in (
            (2, "random", 0.25, 0.3),
            (2, "one class", 0.2, 0.2),
            (8, "random", 0.4, 0.8),
            (8, "one class", 0.2, 0.3),
        )
    ]
    f = modes.facts(pd.DataFrame(rows), modes.Config())
    assert f["modes_rises"] and f["modes_one_class_loses"]
    rows[1]["accuracy"] = 0.3  # one-class batches better at B = 2
    assert not modes.facts(pd.DataFrame(rows), modes.Config())[
        "modes_one_class_loses"
    ]


def test_conv_claims_fail_when_groupnorm_leads():
    """The restated conv findings: GroupNorm is not shown to lead (the
    interval of its lead reaches below zero) and its lead stays below
    Wu and He's gap; both fail when GroupNorm clearly leads, both hold
    when BatchNorm does."""
    cfg = replace(conv.Config(), seeds=3, steps=10, lrs=(0.1,))

    def facts(leads):
        rows = [
            dict(
                norm=norm,
                lr=0.1,
                seed=seed,
                step=10,
                test_acc=0.9 + (lead if norm == "groupnorm" else 0.0),
                train_loss=0.1,
                epochs=1.0,
            )
            for norm in conv.NORMS
            for seed, lead in enumerate(leads)
        ]
        f = conv.facts(pd.DataFrame(rows), cfg)
        return {c.id: c.check(f) for c in conv.CLAIMS}

    tie = facts([0.02, -0.02, 0.01])
    assert tie["bn-conv-tie"] and tie["bn-conv-close"]
    ahead = facts([0.2, 0.21, 0.19])  # GroupNorm clearly ahead
    assert not ahead["bn-conv-tie"] and not ahead["bn-conv-close"]
    behind = facts([-0.2, -0.21, -0.19])  # BatchNorm clearly ahead
    assert behind["bn-conv-tie"] and behind["bn-conv-close"]
    slightly = facts([0.05, 0.06, 0.04])  # ahead, but by less than 10.6
    assert not slightly["bn-conv-tie"] and slightly["bn-conv-close"]


def test_outlier_findings_read_the_largest_neighbour_ratio():
    """No outlier without BatchNorm: every seed's largest ratio of
    neighbouring eigenvalues below 1.5. The BatchNorm network's outlier:
    some seed's ratio above 1.5 and the mean ratio above the plain
    network's. Each fails when its part of the spectrum says otherwise."""
    cfg = hessian.Config()
    plain, batch, pop = hessian.NETWORKS

    def checks(plain_gaps, batch_gaps):
        rows = []
        for seed, (gp, gb) in enumerate(zip(plain_gaps, batch_gaps)):
            for net, gap in ((plain, gp), (batch, gb), (pop, 1.1)):
                rows.append(
                    dict(
                        network=net,
                        seed=seed,
                        gap=gap,
                        ratio=3.0 + seed,
                        decay=0.5 + 0.01 * seed,
                        lambda_1=5.0,
                        lambda_k=1.0,
                        loss=1.0,
                        steps=100,
                    )
                )
        f = hessian.facts(pd.DataFrame(rows), cfg)
        return {c.id: c.check(f) for c in hessian.CLAIMS}

    both = checks([1.2, 1.3, 1.4], [1.6, 1.3, 1.35])
    assert both["bn-hess-no-outlier"] and both["bn-hess-batch-outlier"]
    no_isolated = checks([1.2, 1.3, 1.4], [1.45, 1.4, 1.49])
    assert not no_isolated["bn-hess-batch-outlier"]
    smaller_on_average = checks([1.4, 1.4, 1.4], [1.6, 1.0, 1.0])
    assert not smaller_on_average["bn-hess-batch-outlier"]
    plain_outlier = checks([1.2, 1.7, 1.3], [1.9, 1.8, 1.8])
    assert not plain_outlier["bn-hess-no-outlier"]
    assert plain_outlier["bn-hess-batch-outlier"]
