"""The book as a whole: every page executes, the build fails loudly, the
built site has a page per table-of-contents entry, the cache is dropped
when the helpers change, an output folder inside the book is no source,
and `make robust` stops with the build it runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jupytext
import pytest
from conftest import (
    ROOT,
    code_pages,
    jupyter_book,
    make,
    make_var,
    toc_files,
)
from jupyter_book.config import get_final_config
from nbclient import NotebookClient
from sphinx.util.matching import get_matching_files


def test_toc_lists_existing_pages():
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists(), f


@pytest.mark.parametrize("page", code_pages())
def test_code_cells_fit_a_rendered_page(page):
    # Code is read on the rendered page: 79 characters, as for code/.
    nb = jupytext.read(ROOT / f"{page}.md")
    long = [
        line
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if len(line) > 79
    ]
    assert not long, f"{page}: lines over 79 characters: {long}"


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


@pytest.mark.book
def test_built_book_has_a_page_per_toc_entry(built):
    site = built.html()
    for f in toc_files():
        page = site / f"{f}.html"
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


@pytest.mark.book
@pytest.mark.parametrize("case", ["claim_fails", "sphinx_warning"])
def test_single_page_build_fails_on_claims_not_on_links(tmp_path, case):
    # `make chapter` builds one page, whose links to other pages cannot
    # resolve; a failed claim must still stop it.
    body, expected = CASES[case]
    book = _tiny_book(tmp_path, body)
    done = jupyter_book(str(book / "page.md"), cwd=tmp_path, flags="PAGEFLAGS")
    log = done.stdout + done.stderr
    assert expected in log
    if case == "claim_fails":
        assert done.returncode != 0, "a failed claim passed a page build"
    else:
        assert done.returncode == 0, log[-3000:]


def test_chapter_target_builds_the_named_page_with_page_flags():
    dry = make("-n", "chapter", "NAME=normalization", check=True).stdout
    line = next(x for x in dry.splitlines() if "jupyter-book build" in x)
    assert "chapters/normalization.md" in line
    assert make_var("PAGEFLAGS") in line and " -W" not in line
    bad = make("chapter", "NAME=no-such-page")
    assert bad.returncode != 0 and "no chapters/no-such-page.md" in bad.stdout


def test_cache_is_dropped_when_helpers_or_scale_change(tmp_path):
    dep = tmp_path / "helper.py"
    dep.write_text("x = 1\n")
    build = tmp_path / "_build"

    def check(scale="book", seed="0"):
        subprocess.run(
            [
                "make",
                "-s",
                "cache-check",
                f"BUILD={build}",
                f"DEPS={dep}",
                f"SCALE={scale}",
                f"BATCHLAB_SEED={seed}",
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
    m = marker()
    check(scale="quick", seed="1")
    assert not m.exists(), "cache kept after the seed set changed"


def test_real_deps_cover_every_file_the_chapters_run():
    # The test above overrides DEPS; this checks the Makefile's own list.
    deps = set(make_var("DEPS").split())
    code = {
        str(f.relative_to(ROOT))
        for f in (ROOT / "code").rglob("*")
        if f.suffix in (".py", ".mplstyle") and "__pycache__" not in f.parts
    }
    assert code, "no code found"
    assert code <= deps, f"not in DEPS: {sorted(code - deps)}"
    assert {"requirements.txt", "pyproject.toml"} <= deps


def test_robust_builds_each_seed_set_into_its_own_folder():
    dry = make("-n", "robust", "ROBUST_SEEDS=1 2").stdout
    assert "for s in 1 2; do" in dry
    assert "make execute BATCHLAB_SEED=$s OUT=./_build/robust/seed$s" in dry
    # executing checks every claim; rendering a site again would not
    assert "jupyter-book build" not in dry
    # the recursive builds each clear their own folder's cache
    for s in ("1", "2"):
        assert f"robust/seed{s}/_build/.jupyter_cache" in dry
    assert make_var("ROBUST_SEEDS").split() == ["1", "2"]


def test_an_output_folder_inside_the_book_is_not_read_as_pages(tmp_path):
    # `make book OUT=dir` puts dir/_build (its cached notebooks included)
    # inside the sources; Sphinx must not read it as pages.
    config, _ = get_final_config(
        user_yaml=ROOT / "_config.yml",
        cli_config={"latex_individualpages": False},  # as the CLI passes
    )
    pages = ["chapters/a.md"]
    builds = [
        "out/_build/.jupyter_cache/executed/0123/base.ipynb",
        "out/_build/jupyter_execute/chapters/a.ipynb",
        "deeper/out/_build/html/_sources/chapters/a.md",
        "_build/jupyter_execute/chapters/a.ipynb",
    ]
    for name in pages + builds:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    found = get_matching_files(tmp_path, ("**",), config["exclude_patterns"])
    assert sorted(found) == pages


def test_robust_stops_at_a_build_that_a_signal_ended(tmp_path):
    # A stand-in for the recursive make, killed by a signal as a build is
    # when it is stopped: the loop must not go on to the next seed set.
    calls, stub = tmp_path / "calls.txt", tmp_path / "make"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nkill -KILL $$\n')
    stub.chmod(0o755)
    stamp = make_var("STAMP")
    done = make("-o", stamp, "robust", "ROBUST_SEEDS=1 2 3", f"MAKE={stub}")
    assert done.returncode != 0
    assert len(calls.read_text().splitlines()) == 1
    assert "make robust: stopped at seed set 1" in done.stdout


@pytest.mark.book
def test_tables_render_as_tables(built):
    # plots.table emits Markdown; rendered as CommonMark it shows as raw
    # pipes, so every page that shows one must hold an HTML table and no
    # paragraph of pipes.
    site = built.html()
    for page in code_pages():
        source = (ROOT / f"{page}.md").read_text()
        html = (site / f"{page}.html").read_text(encoding="utf-8")
        assert "<p>| " not in html, f"{page}: a table rendered as text"
        if "plots.table(" in source or "plots.settings(" in source:
            assert "<table" in html, f"{page}: no table rendered"
