import dataclasses
import os
import typing

import numpy as np
import pytest
import torch

from batchlab import data, models, runtime, train
from batchlab.runtime import Scale


def test_default_is_book(monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    assert runtime.current_scale() is Scale.BOOK


@pytest.mark.parametrize("raw", ["quick", "QUICK", " quick "])
def test_env_var_selects_scale(monkeypatch, raw):
    monkeypatch.setenv(runtime.ENV_VAR, raw)
    assert runtime.current_scale() is Scale.QUICK


def test_unknown_scale_names_the_choices(monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "huge")
    with pytest.raises(ValueError, match="quick, book, full"):
        runtime.current_scale()


def test_pick_returns_the_value_of_each_scale():
    picked = [runtime.pick(s, 1, 2, 3) for s in ("quick", "book", "full")]
    assert picked == [1, 2, 3]


# -- cgroup CPU quota ------------------------------------------------------


def v2(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text)
    return tmp_path


def v1(tmp_path, quota, period):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


def test_more_of_raises_repetition_counts_only():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        seeds: int
        draws: int
        steps: int

    book = Cfg(seeds=3, draws=40, steps=100)
    assert runtime.more_of(book, seeds=8) == Cfg(seeds=8, draws=40, steps=100)
    with pytest.raises(ValueError, match="'steps' would change"):
        runtime.more_of(book, steps=1000)
    with pytest.raises(ValueError, match="at least the book's 3"):
        runtime.more_of(book, seeds=2)
    for bad in (4.0, True, "8"):
        with pytest.raises(ValueError, match="integer"):
            runtime.more_of(book, seeds=bad)
    with pytest.raises(ValueError, match="at least one"):
        runtime.more_of(book)


def _configs():
    from batchlab import claims
    from batchlab.experiments import (
        batchnorm,
        eigenvalues,
        minibatch,
        normalization,
    )

    # sections that are closed-form or one run have no full scale of
    # their own (their full scale is their book scale)
    return [
        *(section.Config for section in claims.sections(minibatch)),
        *[
            s.Config
            for chapter in (normalization, batchnorm, eigenvalues)
            for s in claims.sections(chapter)
            if s.Config.for_scale("full") != s.Config.for_scale("book")
        ],
    ]


@pytest.mark.parametrize(
    "cls", _configs(), ids=lambda c: f"{c.__module__}.{c.__name__}"
)
def test_full_scale_repeats_the_book_experiments(cls):
    """Every chapter's full configuration is its book configuration with
    more seeds, draws or starts, field by field: the claims the text
    makes about the book's experiments are then tested more tightly at
    full scale, not on other experiments."""
    from dataclasses import fields

    book, full = cls.for_scale("book"), cls.for_scale("full")
    changed = [
        f.name
        for f in fields(cls)
        if getattr(book, f.name) != getattr(full, f.name)
    ]
    assert changed, "full must repeat something more often than book"
    assert set(changed) <= runtime.PRECISION_FIELDS, changed
    assert all(getattr(full, n) > getattr(book, n) for n in changed)


def test_cgroup_v2_quota_in_cpus(tmp_path):
    assert runtime.cgroup_cpu_limit(v2(tmp_path, "150000 100000\n")) == 1.5
    assert runtime.cgroup_cpu_limit(v2(tmp_path, "200000 100000")) == 2.0


def test_cgroup_v2_max_means_no_limit(tmp_path):
    assert runtime.cgroup_cpu_limit(v2(tmp_path, "max 100000\n")) is None


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    assert runtime.cgroup_cpu_limit(v1(tmp_path, 50000, 100000)) == 0.5
    other = tmp_path / "other"
    other.mkdir()
    assert runtime.cgroup_cpu_limit(v1(other, -1, 100000)) is None


def test_missing_or_garbled_cgroup_files_mean_no_limit(tmp_path):
    assert runtime.cgroup_cpu_limit(tmp_path) is None
    assert runtime.cgroup_cpu_limit(v2(tmp_path, "garbage")) is None


def test_v2_wins_over_v1(tmp_path):
    v1(tmp_path, 400000, 100000)
    assert runtime.cgroup_cpu_limit(v2(tmp_path, "100000 100000")) == 1.0


def test_thread_count_takes_the_smallest_limit():
    # the default cap applies only when nothing is requested
    assert runtime.thread_count(8, None, None, cap=4) == 4
    assert runtime.thread_count(8, 2.0, None, cap=4) == 2
    assert runtime.thread_count(2, None, "6", cap=1) == 2
    assert runtime.thread_count(8, 3.0, "6", cap=1) == 3
    assert runtime.thread_count(8, None, "3", cap=1) == 3


def test_fractional_quota_rounds_down_but_not_to_zero():
    assert runtime.thread_count(8, 1.5, "8") == 1
    assert runtime.thread_count(8, 2.9, "8") == 2
    assert runtime.thread_count(8, 0.5, "8") == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_thread_request_says_what_to_set(bad):
    with pytest.raises(ValueError, match="BATCHLAB_THREADS"):
        runtime.thread_count(4, None, bad)


def test_apply_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv(runtime.THREADS_VAR, "1")
    try:
        assert runtime.apply_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_import_applied_the_policy():
    expected = runtime.thread_count(
        quota=runtime.cgroup_cpu_limit(),
        requested=os.environ.get(runtime.THREADS_VAR),
    )
    assert torch.get_num_threads() == expected


# -- seeds -----------------------------------------------------------------


def test_seed_sets_are_disjoint(monkeypatch):
    seen = {}
    for s in range(3):
        monkeypatch.setenv(runtime.SEED_VAR, str(s))
        seen[s] = {runtime.seed(k) for k in range(5)}
    monkeypatch.delenv(runtime.SEED_VAR)
    assert seen[0] == set(range(5))  # the default set is the seeds as given
    assert not seen[0] & seen[1] and not seen[1] & seen[2]


@pytest.mark.parametrize("bad", ["-1", "x"])
def test_bad_seed_set_is_refused(monkeypatch, bad):
    monkeypatch.setenv(runtime.SEED_VAR, bad)
    with pytest.raises(ValueError, match="BATCHLAB_SEED"):
        runtime.seed(0)


def test_seed_outside_one_set_is_refused():
    with pytest.raises(ValueError, match="seeds must lie"):
        runtime.seed(runtime.SEED_STRIDE)


def test_seed_set_changes_every_random_draw(monkeypatch):
    def draws():
        return (
            models.mlp([4, 3, 2], seed=0)[0].weight.detach().clone(),
            train.batch_schedule(20, 4, 5, seed=0),
            runtime.rng(0).standard_normal(3),
        )

    base = draws()
    again = draws()
    monkeypatch.setenv(runtime.SEED_VAR, "1")
    other = draws()
    for a, b, c in zip(base, again, other):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_mnist1d_follows_the_seed_set(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path))
    base = data.mnist1d(num_samples=200)
    monkeypatch.setenv(runtime.SEED_VAR, "1")
    other = data.mnist1d(num_samples=200)
    assert not torch.equal(base.x_train, other.x_train)


# -- device ----------------------------------------------------------------


def test_device_is_cpu_below_full(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_VAR, raising=False)
    assert runtime.device("book") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.device("full").type == expected


def test_device_override_and_its_errors(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_VAR, "cpu")
    assert runtime.device("full") == torch.device("cpu")
    monkeypatch.setenv(runtime.DEVICE_VAR, "tpu")
    with pytest.raises(ValueError, match="cpu or cuda"):
        runtime.device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(runtime.DEVICE_VAR, "cuda")
        with pytest.raises(ValueError, match="no GPU"):
            runtime.device()


# --------------------------------------------------------------------------
# Variants


@dataclasses.dataclass(frozen=True)
class Toy:
    sizes: tuple = (40, 100, 100, 10)
    steps: int = 300
    epochs: float = 1.5
    lr: float = 0.05
    momentum: float = 0.0
    n_train: int = 1000
    dataset: str = "mnist1d"
    RATE_FIELDS: typing.ClassVar = ("lr",)
    DATA_FIELDS: typing.ClassVar = ("n_train",)
    VARIANTS: typing.ClassVar = {
        "longer": runtime.Longer("steps", "epochs"),
        "wider": runtime.Wider("sizes", factor=3),
        "rate": runtime.Rate(lr=0.1),
        "digits": runtime.Digits(sizes=(64, 100, 100, 10), n_train=800),
    }


def changed(a, b) -> dict:
    return {
        f.name: getattr(b, f.name)
        for f in dataclasses.fields(a)
        if getattr(a, f.name) != getattr(b, f.name)
    }


def test_each_variant_changes_only_its_own_fields():
    book = Toy()
    found = runtime.variants_of(book)
    assert list(found) == ["longer", "wider", "rate", "digits"]
    assert changed(book, found["longer"]) == {"steps": 900, "epochs": 4.5}
    assert isinstance(found["longer"].steps, int)
    assert changed(book, found["wider"]) == {"sizes": (40, 300, 300, 10)}
    assert changed(book, found["rate"]) == {"lr": 0.1}
    assert changed(book, found["digits"]) == {
        "sizes": (64, 100, 100, 10),
        "n_train": 800,
        "dataset": "digits",
    }


def test_a_rate_variant_refuses_a_field_that_is_no_rate():
    bad = dataclasses.replace(Toy())
    with pytest.raises(ValueError, match="only the rates"):
        runtime.Rate(lr=0.1, momentum=0.9).apply(bad)
    with pytest.raises(ValueError, match="unchanged"):
        runtime.Rate(lr=0.05).apply(bad)


def test_a_digits_variant_changes_only_the_data_and_input_width():
    with pytest.raises(ValueError, match="something else"):
        runtime.Digits(sizes=(64, 200, 100, 10)).apply(Toy())
    with pytest.raises(ValueError, match="something else"):
        runtime.Digits(steps=10).apply(Toy())
    with pytest.raises(ValueError, match="digits or digits-8x8"):
        runtime.Digits(dataset="cifar")


def test_wider_and_longer_validate_what_they_multiply():
    with pytest.raises(ValueError, match="integer from 2 to 4"):
        runtime.Wider("sizes", factor=8)
    with pytest.raises(ValueError, match="lacks"):
        runtime.Longer("epoch").apply(Toy())
    with pytest.raises(ValueError, match="multiplies numbers"):
        runtime.Longer("dataset").apply(Toy())
    with pytest.raises(ValueError, match="layer sizes"):
        runtime.Wider("sizes").apply(dataclasses.replace(Toy(), sizes=(4, 2)))


def test_variants_must_be_filed_under_their_own_name():
    @dataclasses.dataclass(frozen=True)
    class Misfiled(Toy):
        VARIANTS: typing.ClassVar = {"wider": runtime.Longer("steps")}

    with pytest.raises(ValueError, match="must be a wider variant"):
        runtime.variants_of(Misfiled())

    @dataclasses.dataclass(frozen=True)
    class Unknown(Toy):
        VARIANTS: typing.ClassVar = {"deeper": runtime.Longer("steps")}

    with pytest.raises(ValueError, match="unknown variants"):
        runtime.variants_of(Unknown())
    assert runtime.variants_of(dataclasses.replace(Toy())) != {}


def test_every_section_of_the_book_has_valid_variants():
    from batchlab import claims

    for _, module, _ in claims.registry().values():
        book = module.Config.for_scale("book")
        for name, cfg in runtime.variants_of(book).items():
            assert cfg != book, f"{module.__name__}: {name} changes nothing"


# -- the thread policy as applied (no real quota needed) --------------------


@pytest.mark.parametrize(
    ("quota", "requested", "expected"),
    [(2.0, "6", 2), (3.5, "8", 3), (None, "3", 3), (4.0, None, 1)],
)
def test_apply_threads_reads_the_quota_above_a_larger_request(
    monkeypatch, quota, requested, expected
):
    # The default cap of one thread hides a policy that ignores the
    # cgroup quota; with BATCHLAB_THREADS above the quota the quota must
    # still win, for PyTorch and for the BLAS libraries alike.
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(runtime, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda *a: quota)
    if requested is None:
        monkeypatch.delenv(runtime.THREADS_VAR, raising=False)
    else:
        monkeypatch.setenv(runtime.THREADS_VAR, requested)
    before = torch.get_num_threads()
    try:
        assert runtime.apply_threads() == expected
        assert torch.get_num_threads() == expected
        blas = [p["num_threads"] for p in threadpool_info()]
        assert blas and all(n == expected for n in blas)
    finally:
        torch.set_num_threads(before)
        runtime._blas_limit.clear()  # let the BLAS pools go back


def test_importing_batchlab_switches_tf32_off():
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    runtime.apply_precision()
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32
