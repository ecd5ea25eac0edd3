import random
import urllib.request

import numpy as np
import pytest
import torch
from conftest import NetworkBlocked

from batchlab import data


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test starts from an empty disk cache of its own, so that the
    generator really runs where a test means it to."""
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path / "cache"))
    data._mnist1d_arrays.cache_clear()
    yield tmp_path / "cache"
    data._mnist1d_arrays.cache_clear()


def test_mnist1d_shapes_types_and_split():
    d = data.mnist1d()
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    assert set(d.y_train.unique().tolist()) == set(range(10))
    assert d.n_classes == 10 and d.n_features == 40


def test_mnist1d_is_the_packages_own_generator():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 500
    raw = make_dataset(args)
    ours = data.mnist1d(num_samples=500)
    np.testing.assert_allclose(ours.x_train.numpy(), raw["x"], rtol=1e-6)
    np.testing.assert_array_equal(ours.y_test.numpy(), raw["y_test"])


def test_mnist1d_seed_is_the_generators_seed():
    # the seed reaches make_dataset: another seed is another data set, and
    # the package's own generator with that seed gives it
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 500, 7
    raw = make_dataset(args)
    ours = data.mnist1d(num_samples=500, seed=7)
    np.testing.assert_allclose(ours.x_train.numpy(), raw["x"], rtol=1e-6)
    other = data.mnist1d(num_samples=500, seed=8)
    assert not torch.equal(ours.x_train, other.x_train)


def test_mnist1d_leaves_global_generators_alone():
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    data._mnist1d_arrays.cache_clear()
    data.mnist1d(num_samples=200, seed=7)
    assert (np.random.rand(), random.random()) == expected


def test_mnist1d_generates_with_the_network_blocked(no_network):
    data._mnist1d_arrays.cache_clear()
    d = data.mnist1d(num_samples=300, seed=3)
    assert d.n_train == 240


def test_network_guard_catches_a_download(no_network):
    # The guard used above really stops network access: if data
    # generation reached for the network it would fail the same way.
    with pytest.raises(NetworkBlocked):
        urllib.request.urlopen("http://example.org/mnist1d_data.pkl")


def _refuse(*args, **kwargs):
    raise AssertionError("generated although a cached copy exists")


def test_mnist1d_is_read_back_from_the_disk_cache(private_cache, monkeypatch):
    first = data.mnist1d(num_samples=300, seed=5)
    files = list(private_cache.glob("mnist1d-*-n300-seed5.npz"))
    assert len(files) == 1
    data._mnist1d_arrays.cache_clear()
    monkeypatch.setattr("mnist1d.data.make_dataset", _refuse)
    again = data.mnist1d(num_samples=300, seed=5)
    assert torch.equal(first.x_train, again.x_train)
    assert torch.equal(first.y_test, again.y_test)


def test_a_damaged_cache_file_is_generated_again(private_cache):
    fresh = data.mnist1d(num_samples=300, seed=5)
    (path,) = private_cache.glob("mnist1d-*.npz")
    path.write_bytes(b"not a numpy archive")
    data._mnist1d_arrays.cache_clear()
    again = data.mnist1d(num_samples=300, seed=5)
    assert torch.equal(fresh.x_train, again.x_train)
    with np.load(path) as f:  # and the file was repaired
        np.testing.assert_array_equal(f["y"], fresh.y_train.numpy())


def test_cache_can_be_switched_off(private_cache, monkeypatch):
    monkeypatch.setenv("BATCHLAB_CACHE", "off")
    assert data.cache_dir() is None
    data.mnist1d(num_samples=200, seed=1)
    assert not private_cache.exists()


def test_mnist1d_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 10"):
        data.mnist1d(num_samples=105)


def test_subset_checks_bounds():
    d = data.mnist1d()
    s = d.subset(100, 50)
    assert s.n_train == 100 and s.x_test.shape[0] == 50
    with pytest.raises(ValueError, match="n_train"):
        d.subset(0)


def test_correlated_covariance_matches_definition():
    scales = torch.tensor([1.0, 2.0, 3.0])
    c = data.correlated_covariance(3, 0.5, scales)
    assert c[0, 0] == 1 and c[1, 1] == 4 and c[2, 2] == 9
    assert torch.isclose(c[0, 2], torch.tensor(0.5 * 3, dtype=c.dtype))
    with pytest.raises(ValueError, match="rho"):
        data.correlated_covariance(3, -0.6)


def test_synthetic_regression_has_the_requested_covariance():
    cov = data.correlated_covariance(4, 0.7, torch.tensor([1, 2, 0.5, 1.0]))
    d = data.synthetic_regression(40_000, cov, mean=3.0, seed=1)
    x = d.x_train.double()
    assert torch.allclose(
        x.mean(0), torch.full((4,), 3.0, dtype=torch.float64), atol=0.05
    )
    emp = torch.cov(x.T)
    assert torch.allclose(emp, cov, atol=0.05 * cov.abs().max())


def test_synthetic_regression_is_deterministic_and_validates():
    cov = torch.eye(3)
    a = data.synthetic_regression(50, cov, seed=4, n_test=10)
    b = data.synthetic_regression(50, cov, seed=4, n_test=10)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(
        a.y_test, b.y_test
    )
    with pytest.raises(ValueError, match="positive definite"):
        data.synthetic_regression(10, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="square"):
        data.synthetic_regression(10, torch.zeros(3, 2))


def test_digits_are_scikit_learns_images_split_by_the_seed(no_network):
    from sklearn.datasets import load_digits

    raw = load_digits()
    d = data.digits(seed=0, device="cpu")
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.n_classes == 10 and float(d.x_train.max()) == 1.0
    # every image appears once, as scikit-learn has it (pixels / 16)
    both = torch.cat([d.x_train, d.x_test]).numpy() * 16
    labels = torch.cat([d.y_train, d.y_test]).numpy()
    order = np.lexsort(both.T[::-1])
    want = np.lexsort(raw.data.T[::-1])
    np.testing.assert_array_equal(both[order], raw.data[want])
    np.testing.assert_array_equal(labels[order], raw.target[want])
    again = data.digits(seed=0, device="cpu")
    assert torch.equal(again.x_train, d.x_train)
    other = data.digits(seed=1, device="cpu")
    assert not torch.equal(other.y_test, d.y_test)


def test_digits_follow_the_seed_set(monkeypatch):
    first = data.digits(device="cpu")
    monkeypatch.setenv("BATCHLAB_SEED", "1")
    second = data.digits(device="cpu")
    assert not torch.equal(first.y_train, second.y_train)


def test_digits_as_images_and_by_name():
    images = data.load("digits-8x8", device="cpu")
    flat = data.load("digits", device="cpu")
    assert images.x_train.shape == (1438, 1, 8, 8)
    assert torch.equal(images.x_train.reshape(1438, 64), flat.x_train)
    assert data.load("mnist1d", device="cpu").n_features == 40
    with pytest.raises(ValueError, match="unknown data set"):
        data.load("cifar10")
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.0)
