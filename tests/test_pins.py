import pytest

from booktools import pins


def test_read_pins_skips_options_and_rejects_ranges(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text("# c\nTorch==2.13.0+cpu\n-e .\n\nmy_pkg==1.0  # x\n")
    assert pins.read_pins(str(req)) == {
        "torch": "2.13.0+cpu",
        "my-pkg": "1.0",
    }
    req.write_text("numpy>=1\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        pins.read_pins(str(req))


def test_same_release_ignores_local_label_only():
    assert pins.same_release("2.13.0", "2.13.0+cpu")
    assert not pins.same_release("2.13.0", "2.13.1")


def test_installed_versions_reports_missing():
    found = pins.installed_versions(["pytest", "surely-not-installed-x"])
    assert found["pytest"] == pytest.__version__
    assert found["surely-not-installed-x"] == "missing"


def test_the_package_version_is_the_projects():
    import tomllib
    from pathlib import Path

    import batchlab

    project = tomllib.loads(
        (Path(__file__).parents[1] / "pyproject.toml").read_text()
    )["project"]
    assert batchlab.__version__ == project["version"]


def test_pin_table_compares_each_pin_with_what_is_installed(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("pytest==0.0.1\nno-such-package-here==1.0\n")
    table = pins.pin_table(str(req))
    assert list(table.index) == ["pytest", "no-such-package-here"]
    assert table.index.name == "package"
    assert not table["matches"].any()  # wrong version; missing package
    req.write_text(
        f"pytest=={pins.installed_versions(['pytest'])['pytest']}\n"
    )
    assert pins.pin_table(str(req))["matches"].all()
