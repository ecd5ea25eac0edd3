import ast
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, jupyter_book
from docutils import nodes

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
    japanese = latex.title_block(
        book="本",
        chapter=3,
        edition="instructor",
        date="2026-01-02",
        commit="abc_123",
        url="https://github.com/o/r",
        language="ja",
    )
    assert "第 3 章" in japanese and "Chapter" not in japanese
    assert "解答つき" in japanese and "2026-01-02 にビルド" in japanese
    assert r"abc\_123" in japanese


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


# --- print: handouts, cross-references, bookkeeping (booktools.latex) -------
# A two-chapter Sphinx project built to LaTeX sources in a few seconds: no
# LaTeX, no chapter executed, no book built.

TINY_CONF = """
project = "Tiny"
extensions = ["myst_nb", "sphinx_exercise", "sphinxcontrib.bibtex",
              "booktools.sphinxext"]
nb_execution_mode = "off"
bibtex_bibfiles = ["refs.bib"]
bibtex_reference_style = "author_year_label"
bibtex_default_style = "authoryear"
numfig = True
latex_documents = [("index", "book.tex", "Tiny", "A", "manual")]
html_theme_options = {"repository_url": "https://github.com/o/r"}
html_baseurl = "https://o.github.io/r/"
"""
TINY_PAGES = {
    "refs.bib": """
@misc{alpha, author = {Alpha, Ann}, title = {Only in one}, year = {2001}}
@misc{beta, author = {Beta, Bob}, title = {Only in two}, year = {2002}}
""",
    "index.md": """# Tiny

```{toctree}
:numbered:
one
two
```

```{toctree}
back
```
""",
    "one.md": """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

(one)=
# First chapter

Cites {cite:p}`alpha`; see {ref}`two`, {ref}`sec-two`, {numref}`fig-two`,
{ref}`back` and {ref}`that one <two>`.

Term: 学習率 (learning rate).
Launch it {web}`with the WEBONLY button`{print}`from PRINTONLY *page*`.

```{code-cell} ipython3
x = 1
claims.verify(sec,
              sec.facts(x, 2))
plots.settings(x)
```

```{code-cell} ipython3
glue("k", x, display=False)
```

```{code-cell} ipython3
claims.report()
```

```{exercise}
:label: ex-one
Do it.
```

```{solution} ex-one
SOLVEDONE the answer.
```

## References

Listed in the back.
""",
    "two.md": """(two)=
# Second chapter

Cites {cite:p}`beta`, after {ref}`one`.

(sec-two)=
## A section

```{figure} pic.png
:name: fig-two

A picture.
```
""",
    "back.md": """(back)=
# Back page

```{figure} pic.png
:name: fig-back

Back picture.
```

```{bibliography}
:all:
```
""",
}


def _png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiny_project(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conf.py").write_text(TINY_CONF)
    for name, text in TINY_PAGES.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "pic.png").write_bytes(_png())
    return folder


def sphinx_build(src, builder: str):
    out = src / "_build" / builder
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-b",
            builder,
            str(src),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny_latex(tmp_path_factory):
    src = tiny_project(tmp_path_factory.mktemp("tiny"))
    out = sphinx_build(src, "latex")
    return {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.tex")}


def test_student_handouts_drop_solutions_and_instructor_ones_keep_them(
    tiny_latex,
):
    assert "SOLVEDONE" not in tiny_latex["handout-one.tex"]
    assert "SOLVEDONE" in tiny_latex["handout-one-instructor.tex"]
    assert "SOLVEDONE" in tiny_latex["book.tex"]
    assert "Do it." in tiny_latex["handout-one.tex"]  # the exercise stays


def _bibitems(tex: str) -> list[str]:
    return re.findall(r"\\bibitem\[([^\]]+)\]", tex)


def test_each_handout_lists_only_the_works_its_chapter_cites(tiny_latex):
    for edition in ("", "-instructor"):
        assert _bibitems(tiny_latex[f"handout-one{edition}.tex"]) == [
            "Alpha, 2001"
        ]
        assert _bibitems(tiny_latex[f"handout-two{edition}.tex"]) == [
            "Beta, 2002"
        ]
    assert _bibitems(tiny_latex["book.tex"]) == ["Alpha, 2001", "Beta, 2002"]


def test_handout_cross_references_name_chapter_title_and_address(
    tiny_latex,
):
    tex = tiny_latex["handout-one.tex"]
    assert "xref" not in tex  # Sphinx's unresolved label
    url = r"\sphinxurl{https://o.github.io/r/two.html"
    assert (
        r"see Chapter 2, \sphinxstyleemphasis{Second chapter} (" + url + "})"
    ) in tex
    assert r"A section (Chapter 2, " + url + r"\#sec-two})" in tex
    assert r"Fig. 2.1 (Chapter 2, " + url + r"\#fig-two})" in tex
    # The back matter by its title, not "Appendix A".
    assert (
        r"\sphinxstyleemphasis{Back page} "
        r"(\sphinxurl{https://o.github.io/r/back.html})"
    ) in tex
    assert (
        r"that one (Chapter 2, \sphinxstyleemphasis{Second chapter}, " in tex
    )


def test_book_cross_references_to_a_chapter_read_chapter_n(tiny_latex):
    tex = tiny_latex["book.tex"]
    assert r"\DUrole{std,std-ref}{Chapter 2}" in tex
    assert r"\DUrole{std,std-ref}{Chapter 1}" in tex
    assert r"\DUrole{std,std-ref}{that one}" in tex  # explicit text kept
    assert r"\DUrole{std,std-ref}{A section}" in tex
    assert r"\DUrole{std,std-ref}{Back page}" in tex  # not "Appendix A"


def test_web_and_print_wording_each_in_its_medium(tiny_latex, tmp_path):
    tex = tiny_latex["handout-one.tex"]
    assert "WEBONLY" not in tex
    assert r"from PRINTONLY \sphinxstyleemphasis{page}" in tex
    out = sphinx_build(tiny_project(tmp_path / "tiny"), "html")
    html = (out / "one.html").read_text(encoding="utf-8")
    assert "with the WEBONLY button" in html and "PRINTONLY" not in html


def test_a_heading_keeps_room_for_the_table_after_it():
    table = nodes.table()
    group = nodes.tgroup()
    body = nodes.tbody()
    body += [nodes.row() for _ in range(5)]
    group += body
    table += group
    section = nodes.section()
    section += [nodes.title(text="Map"), nodes.target(), table]
    assert latex.heading_room(section) == 16
    plain = nodes.section()
    plain += [nodes.title(text="Text"), nodes.paragraph(text="x"), table]
    assert latex.heading_room(plain) == 6


def test_japanese_in_running_text_prints_in_the_japanese_font(tiny_latex):
    assert (
        r"Term: \bookja{学習率} (learning rate)"
        in tiny_latex["handout-one.tex"]
    )


def test_a_work_without_author_is_cited_by_its_short_title():
    from pybtex.database import parse_string

    bib = parse_string(
        "@misc{j, title = {長い題名の記事}, shorttitle = {題名}}\n"
        "@misc{k, author = {Cho, K.}, title = {T}, year = {2020}}\n",
        "bibtex",
    )
    bibstyle.register()
    style = bibstyle.AuthorYearStyle()
    labels = [e.label for e in style.format_entries(bib.entries.values())]
    assert labels == ["Cho, 2020", "題名, n.d."]
    with pytest.raises(ValueError, match="no author, editor or title"):
        bibstyle.authors_text(
            parse_string("@misc{x, year={1}}", "bibtex").entries["x"]
        )


def test_back_matter_is_lettered_in_print(tiny_latex):
    tex = tiny_latex["book.tex"]
    assert tex.index(r"\appendix") < tex.index(r"\chapter{Back page}")
    assert r"\renewcommand{\thefigure}{\thechapter." in tex
    assert tex.index(r"\chapter{Second chapter}") < tex.index(r"\appendix")
    assert r"\appendix" not in tiny_latex["handout-two.tex"]


def test_print_leaves_out_claim_and_glue_bookkeeping(tiny_latex):
    for name in ("book.tex", "handout-one.tex"):
        tex = tiny_latex[name]
        assert "verify" not in tex and "facts" not in tex
        assert r"\PYG{n}{report}" not in tex
        assert r"\PYG{n}{glue}" not in tex
        assert "settings" in tex  # the rest of the cell prints
        assert r"\needspace{5\baselineskip}" in tex


def test_printed_code_drops_whole_statements_only():
    code = "a = 1\nclaims.verify(sec,\n    facts)\nb = glue_like(2)\n"
    assert latex.printed_code(code) == "a = 1\nb = glue_like(2)"
    assert latex.printed_code("x = claims.verify(s, f)") == (
        "x = claims.verify(s, f)"
    )
    assert latex.printed_code("claims.report(exp)") is None
    nested = (
        "x = run()\nif quick:\n    claims.check(a,\n                 'b')\n"
        "for n in names:\n    claims.publish(n, 1)\n"
        "if y:\n    glue('k', y)\n    print(y)\n"
    )
    assert latex.printed_code(nested) == "x = run()\nif y:\n    print(y)"
    assert latex.printed_code("%pip install x") == "%pip install x"


def test_back_matter_is_lettered_on_the_site(tmp_path):
    src = tiny_project(tmp_path / "tiny")
    out = sphinx_build(src, "html")
    back = (out / "back.html").read_text(encoding="utf-8")
    assert "Fig. A.1" in back
    assert re.search(r'section-number">A\.\s', back)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "A. Back page" in index and "2. Second chapter" in index


# --- Japanese: search and print ---------------------------------------------


def test_english_search_indexes_the_words_of_japanese_terms():
    search = sphinxext.SearchEnglishJapanese({})
    words = search.split("the stochastic gradient 確率的勾配 here")
    assert {"the", "stochastic", "gradient", "here"} <= set(words)
    assert "確率的勾配" in words and "勾配" in words and "確率" in words
    assert search.split("no Japanese") == ["no", "Japanese"]


def test_the_japanese_edition_searches_in_japanese():
    ja = SimpleNamespace(language="ja", html_search_language=None)
    sphinxext.search_language(None, ja)
    assert ja.html_search_language == "ja"
    en = SimpleNamespace(language="en", html_search_language=None)
    sphinxext.search_language(None, en)
    assert en.html_search_language is None


def test_japanese_prints_with_line_breaks_between_characters():
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    assert r'\XeTeXlinebreaklocale "ja"' in config
    assert r"\DeclareRobustCommand{\bookja}" in config
    out, _ = sphinxext.ja_role("ja", "", "学習率", 1, None)
    latex_node = [n for n in out if n.get("format") == "latex"][0]
    assert latex_node.astext() == r"\bookja{学習率}"


def test_text_cites_a_work_without_author_by_its_short_title(tmp_path):
    src = tiny_project(tmp_path / "tiny")
    bib = src / "refs.bib"
    bib.write_text(
        bib.read_text()
        + "@misc{gamma, title = {長い題名の記事}, shorttitle = {題名}}\n"
    )
    page = src / "two.md"
    page.write_text(
        page.read_text().replace(
            "after {ref}`one`.", "after {ref}`one` {cite:p}`gamma`."
        )
    )
    html = (sphinx_build(src, "html") / "two.html").read_text("utf-8")
    assert "題名, n.d." in html and "長い題名の記事, n.d." not in html


def test_list_label_keeps_the_von_part_the_text_prints():
    from pybtex.database import parse_string

    entry = parse_string(
        "@misc{l, author = {van Laarhoven, Twan}, title = {T}, year = {2017}}",
        "bibtex",
    ).entries["l"]
    assert bibstyle.authors_text(entry) == "van Laarhoven"
