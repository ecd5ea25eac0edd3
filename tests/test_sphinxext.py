import ast
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, jupyter_book

from booktools import bibstyle, latex, sourcepages, sphinxext


def test_colab_url_points_at_the_pages_branch():
    url = sphinxext.colab_url(
        "https://github.com/owner/repo.git", "chapters/normalization"
    )
    assert url == (
        "https://colab.research.google.com/github/owner/repo/"
        "blob/gh-pages/_notebooks/chapters/normalization.ipynb"
    )
    with pytest.raises(ValueError, match="OWNER/REPO"):
        sphinxext.colab_url("https://gitlab.com/owner/repo", "x")


def test_dedupe_keeps_the_first_of_equal_scripts_in_place():
    from sphinx.builders.html._assets import _JavaScript

    scripts = [
        _JavaScript(None, body="a=1", priority=500),
        _JavaScript("x.js", priority=500),
        _JavaScript("", body="a=1", priority=800),
        _JavaScript(None, body="b=2", priority=500),
    ]
    original = scripts
    context = {"script_files": scripts}
    sphinxext.dedupe_scripts(None, "p", "t", context, None)
    assert context["script_files"] is original
    assert [s.attributes.get("body") for s in original] == ["a=1", None, "b=2"]


def test_ja_role_and_notebook_links_in_a_tiny_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (book / "page.md").write_text(
        "# A page\n\n```{notebook-links}\n```\n\nTerm: {ja}`学習率`.\n"
    )
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    assert '<span lang="ja">学習率</span>' in html
    assert 'href="_notebooks/page.ipynb"' in html
    assert "colab.research.google.com/github/" in html
    (book / "page.md").write_text("# A page\n\nBad: {ja}`$x$`.\n")
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode != 0
    assert "plain Japanese text" in done.stdout + done.stderr


# --- references: one author-year style (booktools.bibstyle) ---------------

BIB = r"""
@misc{b, author = {Cho, Kyunghyun}, title = {Second}, year = {2020}}
@misc{a, author = {Cho, Kyunghyun}, title = {First}, year = {2020}}
@misc{g, author = {Doll{\'a}r, Piotr and Goyal, Priya and He, Kaiming},
  title = {Three}, year = {2017}}
@misc{s, author = {Smith, Samuel L. and Le, Quoc V.}, title = {Two},
  year = {2018}}
@misc{l98, author = {LeCun, Yann and Bottou, L{\'e}on and Orr, G.},
  title = {Late}, year = {1998}}
@misc{l91, author = {LeCun, Yann and Kanter, Ido and Solla, Sara},
  title = {Early}, year = {1991}}
"""


def formatted(tmp_path):
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin

    bibstyle.register()
    data = parse_string(BIB, "bibtex")
    style = find_plugin("pybtex.style.formatting", bibstyle.STYLE)()
    return list(style.format_entries(data.entries.values()))


def test_list_labels_are_author_year_in_author_year_order(tmp_path):
    labels = [(e.key, e.label) for e in formatted(tmp_path)]
    assert labels == [
        ("a", "Cho, 2020a"),  # same author and year: a, b by title
        ("b", "Cho, 2020b"),
        ("g", "Dollár et al., 2017"),  # accent decoded, not "Dollar"
        ("l91", "LeCun et al., 1991"),
        ("l98", "LeCun et al., 1998"),
        ("s", "Smith and Le, 2018"),
    ]


def test_text_citations_use_the_list_labels(tmp_path):
    """A tiny book: the citation in the text carries the same year
    suffix as the list (two works of one author and year)."""
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book)
    (book / "references.bib").write_text(BIB)
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (book / "page.md").write_text(
        "# A page\n\nFirst {cite:p}`a`, second {cite:t}`b`.\n\n"
        "```{bibliography}\n```\n"
    )
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    text = re.sub(r"<[^>]+>", "", html)
    assert "Cho, 2020a" in text and "Cho [2020b]" in text
    assert "[Cho, 2020b]" in text  # the list's label
    assert not re.search(r"\[[A-Z][a-z]{0,3}\d\d[a-z]?\]", text)


# --- exercise numbers (booktools.latex) -------------------------------------


def test_exercises_are_numbered_per_chapter_as_on_the_site():
    env = SimpleNamespace(
        toc_fignumbers={
            "ch1": {
                "exercise": {"a": (1, 9, 1), "b": (1, 9, 2)},
                "figure": {"f": (1, 1)},
            },
            "ch2": {"exercise": {"c": (2, 10, 2), "d": (2, 10, 1)}},
            "glossary": {"exercise": {"e": ()}},
            # an unnumbered appendix: its exercise must not join chapter 1
            "appendix": {"exercise": {"g": (1,)}},
        },
        toc_secnumbers={
            "index": {"": (1,)},
            "ch1": {"": (1,)},
            "ch2": {"": (2,)},
        },
        config=SimpleNamespace(root_doc="index"),
    )
    latex.renumber_exercises(None, env)
    assert env.toc_fignumbers["ch1"]["exercise"] == {"a": (1, 1), "b": (1, 2)}
    assert env.toc_fignumbers["appendix"]["exercise"] == {"g": (1,)}
    assert env.toc_fignumbers["ch2"]["exercise"] == {"d": (2, 1), "c": (2, 2)}
    assert env.toc_fignumbers["ch1"]["figure"] == {"f": (1, 1)}
    # Already per chapter (the HTML build): unchanged.
    latex.renumber_exercises(None, env)
    assert env.toc_fignumbers["ch2"]["exercise"] == {"d": (2, 1), "c": (2, 2)}


def test_handout_title_block_names_book_chapter_build_and_address():
    block = latex.title_block(
        book="A & B",
        chapter=3,
        edition="student",
        date="2026-01-02",
        commit="abc_123",
        url="https://github.com/o/r",
    )
    assert r"A \& B" in block and "Chapter 3" in block
    assert "without solutions" in block
    assert r"abc\_123" in block and "2026-01-02" in block
    assert r"\url{https://github.com/o/r}" in block
    assert r"\setcounter{section}{2}" in block  # the chapter keeps its number
    assert r"\counterwithin{figure}{section}" in block


def test_handout_documents_are_every_numbered_chapter_twice():
    env = SimpleNamespace(
        toc_secnumbers={
            "intro": {},
            "ch/one": {"": (1,), "#a": (1, 1)},
            "ch/two": {"": (2,)},
            "glossary": {},
        },
        config=SimpleNamespace(root_doc="intro"),
    )
    assert latex.handout_docs(env) == {"ch/one": 1, "ch/two": 2}
    assert latex.handout_target("ch/one", "student") == "handout-one.tex"
    assert latex.handout_target("ch/two", "instructor") == (
        "handout-two-instructor.tex"
    )


# --- source pages (booktools.sourcepages) -----------------------------------

NOTEBOOK = """\
# A chapter

```{code-cell} ipython3
:tags: [hide-input]
%matplotlib inline
from batchlab import (claims,
                      plots)
from batchlab.experiments import minibatch as exp
from batchlab.runtime import current_scale
import numpy as np
```

Text with `from batchlab import lanczos` that is not code.

```{code-cell} ipython3
import batchlab.noise
```
"""


def test_modules_used_follow_imports_like_python_does():
    """The static closure of a page's imports equals the batchlab modules
    Python loads when it runs those imports (package inits aside)."""
    used = sourcepages.modules_used(NOTEBOOK)
    code = (
        "import sys\n"
        "from batchlab import claims, plots\n"
        "from batchlab.experiments import minibatch\n"
        "from batchlab.runtime import current_scale\n"
        "import batchlab.noise\n"
        "print(' '.join(m for m in sys.modules if m.startswith('batchlab')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split()) - {"batchlab"}
    assert set(used) == loaded
    assert "batchlab.experiments.minibatch" in used
    assert "batchlab.ensemble" in used  # through the experiment's imports
    files = sourcepages.module_files()
    assert used == [m for m in files if m in used]  # in a stable order


def test_modules_used_rejects_code_that_does_not_parse():
    bad = "```{code-cell} ipython3\nfrom batchlab import (\n```\n"
    with pytest.raises(ValueError, match="does not parse"):
        sourcepages.modules_used(bad)


def test_definitions_are_anchored_where_they_start():
    code = (
        "import x\n\n\ndef f():\n    pass\n\n\n@dataclass\n"
        "class C:\n    def m(self):\n        pass\n"
    )
    assert sourcepages.definitions(code) == {4: "f", 8: "C", 10: "C.m"}


def test_chapter_links_its_source_and_handouts_in_a_tiny_book(tmp_path):
    book = tmp_path / "book"
    (book / "ch").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Q\n"
        "    numbered: true\n    chapters:\n      - file: ch/one\n"
    )
    (book / "intro.md").write_text("# Intro\n\n```{handout-links}\n```\n")
    (book / "ch" / "one.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n"
        "    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
        "  language: python\n  name: python3\n---\n"
        "# One\n\n```{notebook-links}\n```\n\n"
        "```{code-cell} ipython3\nfrom batchlab import noise\n```\n"
    )
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    site = book / "_build" / "html"
    page = (site / "ch" / "one.html").read_text()
    assert 'href="../_source/batchlab/noise.html"' in page
    assert 'href="../_source/batchlab/runtime.html"' in page  # via noise
    assert 'href="../pdf/one.pdf"' in page
    assert 'href="../pdf/one-instructor.pdf"' in page
    intro = (site / "intro.html").read_text()
    assert 'href="pdf/one.pdf"' in intro and 'href="pdf/book.pdf"' in intro
    source = (site / "_source" / "batchlab" / "noise.html").read_text()
    for anchor in sourcepages.definitions(
        (sourcepages.package_root() / "noise.py").read_text()
    ).values():
        assert f'id="{anchor}"' in source
    assert '<span class="k">def</span>' in source  # highlighted
    assert (site / "_source" / "index.html").exists()


def test_relative_imports_resolve_from_modules_and_packages():
    known = sourcepages.module_files()

    def resolve(code: str, here: str) -> set[str]:
        return sourcepages.imported_modules(ast.parse(code), known, here)

    # In a package's __init__, "." is the package itself.
    assert resolve("from . import runtime", "batchlab") == {"batchlab.runtime"}
    # In a module, "." is the package holding it; ".." its parent.
    assert resolve("from .lanczos import lanczos_top", "batchlab.hessian") == {
        "batchlab.lanczos"
    }
    assert resolve(
        "from ... import runtime\nfrom ...train import train_sgd",
        "batchlab.experiments.normalization.linear",
    ) == {"batchlab.runtime", "batchlab.train"}
    assert resolve("import os\nfrom numpy import linalg", "batchlab") == set()


def test_a_page_built_alone_has_no_handout_links(tmp_path):
    """``make chapter`` builds one page from its own folder, where there
    is no table of contents: the links directives must not fail."""
    book = tmp_path / "book"
    (book / "ch").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", book / "ch")
    shutil.copy(ROOT / "references.bib", book / "ch")
    (book / "ch" / "one.md").write_text(
        "# One\n\n```{notebook-links}\n```\n\n```{handout-links}\n```\n"
    )
    done = jupyter_book(str(book / "ch" / "one.md"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    html = next((book / "ch" / "_build").rglob("one.html")).read_text()
    assert "one.ipynb" in html
    assert "-instructor.pdf" not in html.split("handout-links")[0]
