import pytest
import torch
from batchlab import scale
from batchlab.scale import Scale


def test_default_is_book(monkeypatch):
    monkeypatch.delenv(scale.ENV_VAR, raising=False)
    assert scale.current_scale() is Scale.BOOK


@pytest.mark.parametrize("raw", ["quick", "QUICK", " quick "])
def test_env_var_selects_scale(monkeypatch, raw):
    monkeypatch.setenv(scale.ENV_VAR, raw)
    assert scale.current_scale() is Scale.QUICK


def test_unknown_scale_names_the_choices(monkeypatch):
    monkeypatch.setenv(scale.ENV_VAR, "huge")
    with pytest.raises(ValueError, match="quick, book, full"):
        scale.current_scale()


def test_pick_returns_the_value_of_each_scale():
    assert [scale.pick(s, 1, 2, 3) for s in ("quick", "book", "full")] == [
        1,
        2,
        3,
    ]


def test_device_is_cpu_below_full():
    assert scale.device_for("book") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert scale.device_for("full").type == expected


def test_read_pins_skips_options_and_rejects_ranges(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text("# c\nTorch==2.13.0+cpu\n-e .\n\nmy_pkg==1.0  # x\n")
    assert scale.read_pins(str(req)) == {
        "torch": "2.13.0+cpu",
        "my-pkg": "1.0",
    }
    req.write_text("numpy>=1\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        scale.read_pins(str(req))


def test_same_release_ignores_local_label_only():
    assert scale.same_release("2.13.0", "2.13.0+cpu")
    assert not scale.same_release("2.13.0", "2.13.1")


def test_installed_versions_reports_missing():
    found = scale.installed_versions(["pytest", "surely-not-installed-x"])
    assert found["pytest"] == pytest.__version__
    assert found["surely-not-installed-x"] == "missing"
