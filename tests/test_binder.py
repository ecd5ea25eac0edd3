"""Binder: the same pins as the book, a postBuild that runs, launch URLs."""

from __future__ import annotations

import json
import os
import subprocess
import venv

import yaml
from conftest import ROOT

from booktools.pins import read_pins, same_release

# Packages Binder needs on top of the book's own, and test tools of the
# book that a reader's session does not need.
BINDER_ONLY = {"jupyterlab"}
TESTS_ONLY = {"playwright", "check-jsonschema"}


def test_binder_pins_agree_with_requirements():
    book = read_pins(str(ROOT / "requirements.txt"))
    binder = read_pins(str(ROOT / "binder" / "requirements.txt"))
    assert set(binder) - set(book) == BINDER_ONLY
    assert set(book) - set(binder) == TESTS_ONLY
    for name, version in book.items():
        if name in TESTS_ONLY:
            continue
        if name == "torch":
            assert same_release(version, binder[name])
            assert binder[name].endswith("+cpu"), "Binder needs CPU torch"
        else:
            assert binder[name] == version, name
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text


def test_post_build_runs_in_a_throwaway_environment(tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    home = tmp_path / "home"
    home.mkdir()
    # pip of the throwaway env: the running interpreter's pip, installing
    # into the throwaway prefix.
    shim = env_dir / "bin" / "python"
    env = dict(
        os.environ,
        HOME=str(home),
        PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}",
    )
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    overrides = json.loads(
        (
            home / ".jupyter/labconfig/default_setting_overrides.json"
        ).read_text()
    )
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"][
        "defaultViewers"
    ]
    assert viewers["markdown"] == "Jupytext Notebook"
    found = subprocess.run(
        # find_spec locates the package without importing torch, which
        # this throwaway environment does not have.
        [
            str(shim),
            "-c",
            "import importlib.util as u; "
            "print(u.find_spec('batchlab').origin)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert str(ROOT / "code" / "batchlab") in found.stdout


def test_launch_buttons_point_at_the_repository():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"]
    assert url.startswith("https://github.com/") and url.count("/") == 4
    assert cfg["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert cfg["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == (
        "python-3.11"
    )
