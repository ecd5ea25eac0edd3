"""The full-scale path with an explicit device: data, models, both
trainers, noise statistics and the curvature code take the device they
are given and give the same numbers as the default. Here that device is
the CPU; with a GPU present the same checks run on it too."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import data, ensemble, hessian, landscape, models, noise, train

DEVICES = [torch.device("cpu")]
if torch.cuda.is_available():
    DEVICES.append(torch.device("cuda"))


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(num_samples=600).subset(128, 64)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_data_and_models_land_on_the_device(small, device):
    d = small.to(device)
    assert d.x_train.device.type == device.type
    assert d.y_test.device.type == device.type
    net = models.mlp([40, 8, 10], seed=3, device=device)
    assert all(p.device.type == device.type for p in net.parameters())
    ref = models.mlp([40, 8, 10], seed=3)
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_trainers_on_the_device_match_the_cpu(small, device):
    cfg = train.SGDConfig(batch_size=8, lr=0.05, steps=20, seed=1)
    net = models.mlp([40, 8, 10], seed=0, device=device)
    hist = train.train_sgd(net, small.to(device), cfg)
    ref = train.train_sgd(models.mlp([40, 8, 10], seed=0), small, cfg)
    np.testing.assert_allclose(hist.train_loss, ref.train_loss, rtol=1e-4)
    nets = [models.mlp([40, 8, 10], seed=s, device=device) for s in (0, 1)]
    ens = ensemble.EnsembleMLP.from_models(nets)
    assert ens.W[0].device.type == device.type
    h = ensemble.train_ensemble(
        ens,
        small.to(device),
        8,
        [0.05, 1e7],
        20,
        [1, 2],
        on_divergence="record",
    )
    assert h.diverged.tolist() == [False, True]
    np.testing.assert_allclose(h.train_loss[0], ref.train_loss[0], rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_curvature_and_noise_on_the_device(small, device):
    x, y = small.x_train[:64], small.y_train[:64]
    net = models.mlp([40, 6, 10], seed=0)
    ev = hessian.hessian_spectrum(net, F.cross_entropy, x, y)
    dnet = models.mlp([40, 6, 10], seed=0, device=device)
    dx, dy = x.to(device), y.to(device)
    op = hessian.HessianOperator(dnet, F.cross_entropy, dx, dy)
    top = hessian.top_eigenvalues(op, k=2, tol=1e-8)
    np.testing.assert_allclose(top.values, ev[:2], rtol=1e-3)
    stats = noise.noise_stats(dnet, dx, dy)
    ref = noise.noise_stats(net, x, y)
    assert stats.trace == pytest.approx(ref.trace, rel=1e-4)
    measured = noise.measured_minibatch_variance(
        dnet, F.cross_entropy, dx, dy, np.array([4]), draws=3
    )
    assert np.isfinite(measured).all()
    k = landscape.keskar_sharpness(dnet, F.cross_entropy, dx, dy, steps=2)
    k_ref = landscape.keskar_sharpness(net, F.cross_entropy, x, y, steps=2)
    assert k == pytest.approx(k_ref, rel=1e-3)
    rise = landscape.perturbed_losses(dnet, F.cross_entropy, dx, dy, [0.1])
    ref_rise = landscape.perturbed_losses(net, F.cross_entropy, x, y, [0.1])
    np.testing.assert_allclose(rise, ref_rise, rtol=1e-3)


def test_defaults_follow_the_runtime_device(monkeypatch):
    # "meta" stands in for a GPU: data and models made without a device
    # go wherever runtime.device() says (a GPU at full scale).
    from batchlab import runtime

    monkeypatch.setattr(runtime, "device", lambda: torch.device("meta"))
    net = models.mlp([4, 3, 2], seed=0)
    assert all(p.device.type == "meta" for p in net.parameters())
    d = data.mnist1d(num_samples=200)
    assert d.x_train.device.type == "meta"


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_train_to_loss_on_the_device_matches_the_cpu(small, device):
    def run(dev):
        nets = [models.mlp([40, 8, 10], seed=s, device=dev) for s in (0, 1)]
        ens = ensemble.EnsembleMLP.from_models(nets)
        return ensemble.train_to_loss(
            ens, small.to(dev), 8, [0.05, 0.1], 1.5, 4000, [0, 1], 256
        )

    a, b = run(device), run(torch.device("cpu"))
    assert a.steps.tolist() == b.steps.tolist()
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda dev: models.mlp([4, 3, 2], seed=0, device=dev).parameters(),
        lambda dev: models.mlp(
            [4, 4, 2], seed=0, norm="batchnorm", device=dev
        ).buffers(),
        lambda dev: [data.mnist1d(num_samples=200, device=dev).x_train],
        lambda dev: [data.digits(device=dev).x_train],
        lambda dev: [data.load("digits", device=dev).y_test],
    ],
    ids=["mlp", "mlp-buffers", "mnist1d", "digits", "load"],
)
def test_an_explicit_device_wins_over_the_default(monkeypatch, make):
    # Without a GPU: the default device is "meta" (as a GPU would be at
    # full scale) and the caller asks for the CPU. A factory that
    # ignores its device= argument lands on meta and fails here.
    from batchlab import runtime

    monkeypatch.setattr(runtime, "device", lambda *a: torch.device("meta"))
    tensors = list(make("cpu"))
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert all(t.device.type == "meta" for t in make(None))
