"""The chapters as plain Jupyter notebooks (booktools.notebooks).

The fast tests build a two-page Sphinx project whose one notebook page
executes a few trivial cells (no chapter runs); the ``book`` tests open
the book's own notebooks with nbformat and run one with nbclient.
"""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from conftest import ROOT, code_pages
from nbclient import NotebookClient
from test_sphinxext import TINY_CONF, sphinx_build, tiny_project

from booktools import notebooks

# Anything MyST that Jupyter would show as it is: a role, a directive
# fence, a label line.
MYST_LEFT = re.compile(
    r"\{[A-Za-z][\w:+-]*\}`|^\s*(?:`{3,}|:{3,})\{|^\([\w-]+\)=\s*$", re.M
)

RUNNABLE = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

(one)=
# First chapter

```{code-cell} ipython3
:tags: [hide-input]
from types import SimpleNamespace

import matplotlib.pyplot as plt
from myst_nb import glue

claims = SimpleNamespace(verify=lambda *a: None, report=lambda *a: None)
```

```{admonition} What you will learn
:class: tip

Glue, {ja}`学習率`.
```

The value is {glue:text}`k:.2f` and {glue:text}`n` {cite:p}`alpha`,
as {cite:t}`beta` found; see {ref}`two`, {ref}`sec-two`,
{numref}`fig-two`, {numref}`fig-one` and [the back](back.md).

```{code-cell} ipython3
glue("k", 3.14159, display=False)
glue("n", 12, display=False)
print("ran")
```

```{code-cell} ipython3
fig, ax = plt.subplots()
ax.plot([0, 1])
glue("fig_one", fig, display=False)
plt.close(fig)
```

```{code-cell} ipython3
import pandas as pd

from batchlab import plots

plots.table(pd.DataFrame({"a": [1], "b": [2]}), caption="A small table",
            name="tab-small")
```

As {numref}`tab-small` shows.

```{glue:figure} fig_one
:name: fig-one
:alt: a line

A glued figure.
```

```{exercise}
:label: ex-one
Do it.
```

```{solution} ex-one
:class: dropdown

SOLVEDONE the answer.
```
"""


@pytest.fixture(scope="module")
def tiny_notebook(tmp_path_factory):
    # the book's build sets this (the Makefile exports it), whoever runs
    # the tests: captioned tables are numbered MyST tables
    os.environ["BATCHLAB_MYST"] = "1"
    src = tiny_project(tmp_path_factory.mktemp("nb"))
    (src / "conf.py").write_text(
        TINY_CONF.replace('"off"', '"cache"')
        + "\nnb_render_markdown_format = 'myst'\n"
        + "html_theme_options['launch_buttons'] = "
        + "{'binderhub_url': 'https://mybinder.org'}\n"
    )
    (src / "requirements.txt").write_text(
        "torch==2.13.0\nnumpy==2.4.6\npytest==9.2.0\n-e .\n"
    )
    (src / "one.md").write_text(RUNNABLE, encoding="utf-8")
    (src / "binder").mkdir()
    (src / "binder" / "requirements.txt").write_text("numpy==2.4.6\n")
    (src / "binder" / "runtime.txt").write_text("python-3.11\n")
    return sphinx_build(src, "html")


def markdown_of(nb) -> str:
    parts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


def test_a_notebook_page_becomes_plain_jupyter_markdown(tiny_notebook):
    nb = nbformat.read(tiny_notebook / "_notebooks" / "one.ipynb", 4)
    nbformat.validate(nb)
    text = markdown_of(nb)
    assert not MYST_LEFT.search(text), MYST_LEFT.findall(text)
    assert "The value is 3.14 and 12 (Alpha, 2001)" in text
    assert "as Beta (2002) found" in text
    site = "https://o.github.io/r/"
    assert f"[Second chapter]({site}two.html#two)" in text
    assert f"[A section]({site}two.html#sec-two)" in text
    assert f"[Fig. 2.1]({site}two.html#fig-two)" in text
    assert f"[Fig. 1.1]({site}one.html#fig-one)" in text
    assert f"[the back]({site}back.html)" in text
    assert "> **What you will learn**" in text and "> Glue, 学習率." in text
    assert "> **Exercise 1.1**" in text and "> Do it." in text
    assert "<details><summary>Solution to Exercise 1.1</summary>" in text
    assert "**Fig. 1.1** (above). A glued figure." in text
    assert f"As [Table 1.1]({site}one.html#tab-small) shows." in text
    assert "**Table 1.1.** A small table\n\n| a | b |" in text
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "Works cited" in last.source
    assert "**Alpha, 2001.**" in last.source and "Only in two" in last.source


def test_the_notebook_keeps_this_builds_outputs(tiny_notebook):
    nb = nbformat.read(tiny_notebook / "_notebooks" / "one.ipynb", 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = [c for c in code if "print(" in c.source][0]
    assert any("ran" in o.get("text", "") for o in printed.outputs)
    drawn = [c for c in code if "fig_one" in c.source][0]
    assert "display=False" not in drawn.source  # shown when rerun too
    assert any(
        "image/svg+xml" in o.get("data", {}) for o in drawn.outputs
    ) or (any("image/png" in o.get("data", {}) for o in drawn.outputs))
    # The theme's own download button serves the same notebook.
    assert (tiny_notebook / "_sources" / "one.ipynb").read_text() == (
        (tiny_notebook / "_notebooks" / "one.ipynb").read_text()
    )


def test_a_captioned_table_is_numbered_on_the_site(tiny_notebook):
    html = (tiny_notebook / "one.html").read_text(encoding="utf-8")
    assert re.search(r"Table 1\.1\s*</span>", html), "no numbered caption"
    assert 'href="#tab-small"' in html


def test_first_cell_installs_the_package_and_the_pins(tiny_notebook):
    nb = nbformat.read(tiny_notebook / "_notebooks" / "one.ipynb", 4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "install" in first.metadata["tags"]
    assert 'find_spec("batchlab") is None' in first.source
    assert '"numpy==2.4.6"' in first.source
    assert "pytest" not in first.source  # a test tool, not for readers
    assert '"torch==2.13.0"' in first.source  # only where torch is missing
    assert "batchlab @ git+https://github.com/o/r.git@" in first.source
    assert "%pip install" in first.source


def test_binder_opens_the_executed_notebook_on_the_sites_branch(
    tiny_notebook,
):
    assert notebooks.binder_url(
        "https://mybinder.org", "https://github.com/o/r", "chapters/x"
    ) == (
        "https://mybinder.org/v2/gh/o/r/gh-pages"
        "?urlpath=lab/tree/_notebooks/chapters/x.ipynb"
    )
    pins = (tiny_notebook / "binder" / "requirements.txt").read_text()
    assert "batchlab @ git+https://github.com/o/r.git@" in pins
    assert os.access(tiny_notebook / "binder" / "postBuild", os.X_OK)


def test_a_role_without_a_plain_form_is_an_error():
    ctx = notebooks.Context.__new__(notebooks.Context)
    ctx.docname = "x"
    with pytest.raises(ValueError, match="no plain form"):
        notebooks.convert_role(ctx, "unknownrole", "text")


def test_package_url_falls_back_to_main_for_uncommitted_changes():
    assert notebooks.package_url("https://github.com/o/r", "abc+changes") == (
        "batchlab @ git+https://github.com/o/r.git@main"
    )
    assert notebooks.package_url("https://github.com/o/r.git", "abc") == (
        "batchlab @ git+https://github.com/o/r.git@abc"
    )


# --- the book's own notebooks (after make book) ----------------------------


@pytest.mark.book
@pytest.mark.parametrize("page", code_pages())
def test_book_notebooks_have_outputs_and_no_myst(built, page):
    path = built.html() / "_notebooks" / f"{page}.ipynb"
    nb = nbformat.read(path, 4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"][1:]
    with_output = [c for c in code if c.get("outputs")]
    assert len(with_output) >= len(code) // 3, "outputs missing"
    text = markdown_of(nb)
    assert not MYST_LEFT.search(text), MYST_LEFT.findall(text)[:5]
    assert "batchlab" in nb.cells[0].source


@pytest.mark.book
def test_a_downloaded_notebook_runs_top_to_bottom(
    built, tmp_path, monkeypatch
):
    """The smallest chapter's notebook, as a reader downloads it, in a
    plain kernel (batchlab is installed here, so the first cell skips)."""
    pages = [p for p in code_pages() if p != "chapters/reproducing"]
    page = min(pages, key=lambda p: (ROOT / f"{p}.md").stat().st_size)
    nb = nbformat.read(built.html() / "_notebooks" / f"{page}.ipynb", 4)
    monkeypatch.setenv("BATCHLAB_SCALE", "quick")
    # a reader's Jupyter is not the book's build (plain Markdown tables)
    monkeypatch.delenv("BATCHLAB_MYST", raising=False)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # The text's numbers are there without running anything.
    assert not MYST_LEFT.search(markdown_of(nb))
