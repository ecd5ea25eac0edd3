"""The book as a whole: every page executes, the build fails loudly, the
built site has a page per table-of-contents entry, the cache is dropped
when the helpers change."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jupytext
import pytest
import yaml
from conftest import ROOT
from nbclient import NotebookClient


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def code_pages() -> list[str]:
    return [
        f
        for f in toc_files()
        if "```{code-cell}" in (ROOT / f"{f}.md").read_text()
    ]


def make_var(name: str) -> str:
    out = subprocess.run(
        ["make", "-s", f"print-{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def jupyter_book(*args: str, cwd: Path, scale: str = "quick"):
    env = dict(os.environ, BATCHLAB_SCALE=scale)
    exe = Path(os.sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(exe), "build", *args, *make_var("JBFLAGS").split()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_toc_lists_existing_pages():
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists(), f


@pytest.mark.book
@pytest.mark.parametrize("page", code_pages())
def test_page_executes_as_a_notebook_at_quick_scale(page, monkeypatch):
    """Open the page the way JupyterLab does (jupytext) and run it."""
    monkeypatch.setenv("BATCHLAB_SCALE", "quick")
    nb = jupytext.read(ROOT / f"{page}.md")
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str((ROOT / page).parent)}},
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


@pytest.fixture(scope="session")
def quick_site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = jupyter_book(str(ROOT), "--path-output", str(out), cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out / "_build" / "html"


@pytest.mark.book
def test_built_book_has_a_page_per_toc_entry(quick_site):
    for f in toc_files():
        page = quick_site / f"{f}.html"
        assert page.exists(), f"no page built for {f}"
        assert "<h1" in page.read_text(encoding="utf-8")


def _tiny_book(tmp_path: Path, body: str) -> Path:
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    header = (
        "---\njupytext:\n  text_representation:\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n"
        "  name: python3\n---\n\n# A page\n\n"
    )
    (book / "page.md").write_text(header + body)
    return book


CASES = {
    "healthy": ("```{code-cell} ipython3\nprint(1 + 1)\n```\n", None),
    "cell_raises": (
        "```{code-cell} ipython3\n1 / 0\n```\n",
        "ZeroDivisionError",
    ),
    "claim_fails": (
        "```{code-cell} ipython3\nfrom batchlab import claims\n"
        "claims.check(1 > 2, 'one exceeds two')\n```\n",
        "ClaimFailed",
    ),
    "sphinx_warning": ("See {ref}`no-such-label`.\n", "no-such-label"),
}


@pytest.mark.book
@pytest.mark.parametrize("case", list(CASES))
def test_build_fails_loudly(tmp_path, case):
    body, expected = CASES[case]
    book = _tiny_book(tmp_path, body)
    done = jupyter_book(str(book), cwd=tmp_path)
    log = done.stdout + done.stderr
    if expected is None:
        assert done.returncode == 0, log[-3000:]
    else:
        assert done.returncode != 0, f"{case} did not fail the build"
        assert expected in log


def test_cache_is_dropped_when_helpers_or_scale_change(tmp_path):
    dep = tmp_path / "helper.py"
    dep.write_text("x = 1\n")
    build = tmp_path / "_build"

    def check(scale="book"):
        subprocess.run(
            [
                "make",
                "-s",
                "cache-check",
                f"BUILD={build}",
                f"DEPS={dep}",
                f"SCALE={scale}",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )

    def marker() -> Path:
        m = build / ".jupyter_cache" / "marker"
        m.parent.mkdir(parents=True, exist_ok=True)
        m.touch()
        return m

    check()
    m = marker()
    check()
    assert m.exists(), "cache dropped although nothing changed"
    dep.write_text("x = 2\n")
    check()
    assert not m.exists(), "cache kept after a helper changed"
    m = marker()
    check(scale="quick")
    assert not m.exists(), "cache kept after the scale changed"
