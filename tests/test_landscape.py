import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchlab import hessian, landscape, models


@pytest.fixture(scope="module")
def tiny():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    net = models.mlp([5, 6, 3], seed=1).double()
    return net, x, y


def test_loss_along_direction_is_a_parabola_for_least_squares():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=gen)
    y = torch.randn(50, 1, generator=gen)
    net = models.linear_model(3, 1, seed=0)
    d = torch.randn(4, generator=gen)
    alphas = np.linspace(-1, 1, 7)
    losses = landscape.loss_along(net, F.mse_loss, x, y, d, alphas)
    coeffs = np.polyfit(alphas, losses, 2)
    assert np.allclose(np.polyval(coeffs, alphas), losses, atol=1e-5)
    H = hessian.exact_hessian(net, F.mse_loss, x, y)
    assert np.isclose(2 * coeffs[0], float(d @ H @ d), rtol=1e-4)
    with pytest.raises(ValueError, match="direction"):
        landscape.loss_along(net, F.mse_loss, x, y, torch.ones(3), alphas)


def test_perturbations_and_sharpness_grow_with_curvature():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=gen)
    y = x @ torch.ones(4, 1)
    flat = models.linear_model(4, 1, seed=0)
    sharp = models.linear_model(4, 1, seed=0)
    with torch.no_grad():
        for net in (flat, sharp):
            net.weight.copy_(torch.ones(1, 4))
            net.bias.zero_()

    # Same minimum; scaling the inputs by 3 makes the loss 9x as curved.
    def sharp_loss(out, target):
        return F.mse_loss(out, target)

    r_flat = landscape.perturbed_losses(
        flat, F.mse_loss, x, y, [0.01, 0.1], relative=False
    )
    r_sharp = landscape.perturbed_losses(
        sharp, sharp_loss, 3 * x, 3 * y, [0.01, 0.1], relative=False
    )
    assert np.all(r_sharp > 5 * r_flat) and r_flat[1] > r_flat[0]
    k_flat = landscape.keskar_sharpness(flat, F.mse_loss, x, y, eps=1e-2)
    k_sharp = landscape.keskar_sharpness(
        sharp, F.mse_loss, 3 * x, 3 * y, eps=1e-2
    )
    assert k_sharp > 5 * k_flat > 0


def test_flatness_metrics_agree_with_the_parts(tiny):
    net, x, y = tiny
    m = landscape.flatness_metrics(
        net, F.cross_entropy, x, y, [0.1, 0.2], seed=0
    )
    ev = hessian.hessian_spectrum(net, F.cross_entropy, x, y)
    assert np.isclose(m["lambda_max"], ev[0], rtol=1e-3)
    np.testing.assert_allclose(
        m["weight_noise"],
        landscape.perturbed_losses(
            net, F.cross_entropy, x, y, [0.1, 0.2], n_directions=4, seed=0
        ),
    )
    assert np.isclose(
        m["keskar"],
        landscape.keskar_sharpness(net, F.cross_entropy, x, y, seed=0),
    )


def test_keskar_sharpness_of_a_linear_loss_is_the_box_corner():
    # loss = mean(w.x + b) + 3 is linear in the parameters, so the largest
    # loss in the box |delta_i| <= eps (|theta_i| + 1) is reached at the
    # corner delta_i = eps (|theta_i| + 1) sign(grad_i), exactly.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    net = models.linear_model(5, 1, seed=2).double()

    def loss_fn(out, target):
        return out.mean() + 3.0

    theta = hessian.flat_params(net)
    grad = torch.cat([x.mean(0), torch.ones(1, dtype=torch.float64)])
    with torch.no_grad():
        base = float(loss_fn(net(x), None))
    for eps in (1e-3, 1e-2):
        rise = float((eps * (theta.abs() + 1) * grad.abs()).sum())
        want = 100 * rise / (1 + base)
        got = landscape.keskar_sharpness(net, loss_fn, x, None, eps=eps)
        assert np.isclose(got, want, rtol=1e-9)


def test_keskar_sharpness_of_a_quadratic_is_its_largest_vertex():
    # At a least-squares solution with zero residual the loss is
    # delta^T C delta; its maximum over the box sits on one of the 2^p
    # vertices, which we enumerate (p = 4 parameters, 16 vertices).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64).abs() + 0.5
    net = models.linear_model(3, 1, seed=0).double()
    y = net(x).detach()
    theta = hessian.flat_params(net)
    bound = 0.05 * (theta.abs() + 1)
    xb = torch.cat([x, torch.ones(30, 1, dtype=torch.float64)], 1)
    best = 0.0
    for signs in torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * 4):
        delta = signs.double() * bound
        best = max(best, float((xb @ delta).pow(2).mean()))
    got = landscape.keskar_sharpness(net, F.mse_loss, x, y, eps=0.05)
    assert np.isclose(got, 100 * best, rtol=1e-6)


def test_input_noise_flips_count_changed_predictions_by_hand():
    """The flip rate compares a model with itself on the same noisy
    copies: a hand computation with the same draws gives the same share,
    labels never enter, and a constant classifier never flips."""
    from batchlab import runtime

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 4, generator=gen)
    net = models.linear_model(4, 3, seed=2)
    got = landscape.input_noise_flips(net, x, sd=0.7, draws=3, seed=5)
    noise = torch.randn((3, 200, 4), generator=runtime.generator(5))
    with torch.no_grad():
        clean = net(x).argmax(1)
        want = np.mean(
            [
                (net(x + 0.7 * e).argmax(1) != clean).float().mean()
                for e in noise
            ]
        )
    assert np.isclose(got, want) and 0 < got < 1
    assert got == landscape.input_noise_flips(net, x, 0.7, 3, seed=5)
    assert got != landscape.input_noise_flips(net, x, 0.7, 3, seed=6)
    small = landscape.input_noise_flips(net, x, 1e-6, 3, seed=5)
    assert small < 0.01
    with torch.no_grad():
        net.weight.zero_()  # outputs = bias: the same class for every x
    assert landscape.input_noise_flips(net, x, 5.0, 3, seed=5) == 0
    with pytest.raises(ValueError, match="sd > 0"):
        landscape.input_noise_flips(net, x, 0.0, 3)
