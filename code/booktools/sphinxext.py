"""A small Sphinx extension: every chapter offers its executed notebook.

* The ``notebook-links`` directive renders, in HTML only, a link to the
  chapter's executed ``.ipynb`` (outputs included) and an "Open in Colab"
  link to the same file on the published site's branch.
  It also links the source of the ``batchlab`` modules the page imports
  (pages made by :mod:`booktools.sourcepages`) and, for a numbered
  chapter, its two PDF handouts under ``pdf/`` (``make pdf`` puts them
  there).
* The ``ja`` role marks Japanese text: ``<span lang="ja">`` in HTML and
  the IPAex font (``\\cjkfont``, defined in ``_config.yml``) in LaTeX,
  whose main font has no Japanese glyphs.
* Each page's script list is deduplicated: sphinx-thebe registers its
  configuration script once per source-reading pass, and Jupyter Book's
  build reads twice, so pages declared ``THEBE_JS_URL`` twice and the
  browser raised a SyntaxError.
* After an HTML build, every page that runs code is written to
  ``_notebooks/`` as a plain Jupyter notebook with this build's outputs
  (:mod:`booktools.notebooks`), and the theme's Binder button opens it.
* ``{web}`...``` and ``{print}`...``` hold wording for one medium
  ("the rocket button" exists only on the site).
* Search: the English site indexes the words of Japanese terms too; the
  Japanese edition (``language: ja``) uses Sphinx's Japanese search.
* Tables made by a cell (``plots.table(..., caption=, name=)``) can be
  referred to with ``{numref}``.
* The back matter is lettered (:mod:`booktools.numbering`).

The repository URL comes from the theme options Jupyter Book fills from
``repository.url`` in ``_config.yml``, so it stays in one place.
"""

from __future__ import annotations

import re
import shutil
from html import escape
from pathlib import Path

from babel.messages.pofile import read_po
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.search import languages as search_languages
from sphinx.search.en import SearchEnglish
from sphinx.search.ja import DefaultSplitter
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective

from booktools import (
    bibstyle,
    claimmarks,
    i18n,
    latex,
    notebooks,
    numbering,
    sourcepages,
)
from booktools.handouts import chapter_titles

NOTEBOOK_DIR = "_notebooks"
PAGES_BRANCH = "gh-pages"
PDF_DIR = "pdf"
STATIC = Path(__file__).with_name("static")


#: The words of the links these directives write (raw HTML, which the
#: catalogues do not reach), per language; English for any other.
LINK_WORDS = {
    "en": dict(
        download="Download this chapter as a notebook ({name}.ipynb, with "
        "outputs)",
        colab="Open it in Colab",
        binder="in Binder",
        binder_note=" (its first cell installs what it needs)",
        code="The code this chapter runs ({n} modules of batchlab, with "
        "their source)",
        print="Print this chapter: ",
        student="student handout (PDF, exercises without solutions)",
        instructor="instructor edition (PDF, with solutions)",
        book="The whole book",
        student_short="student handout",
        instructor_short="instructor edition",
        both=" and ",
    ),
    "ja": dict(
        download="この章をノートブック（英語版、{name}.ipynb、出力つき）として"
        "ダウンロード",
        colab="Colab で開く",
        binder="Binder で開く",
        binder_note="（最初のセルが必要なものをインストールする）",
        code="この章が実行するコード（batchlab の {n} 個のモジュールとその"
        "ソース）",
        print="この章を印刷する：",
        student="学生用配布資料（PDF、演習の解答なし）",
        instructor="教員用（PDF、演習の解答つき）",
        book="本全体",
        student_short="学生用配布資料",
        instructor_short="教員用",
        both="、",
    ),
}


def translated_title(config, srcdir: str, docname: str, title: str) -> str:
    """A page's title as its catalogue translates it for this build's
    language (the title itself in English, or when untranslated)."""
    language = config.language
    if not language or language.startswith("en"):
        return title
    for folder in config.locale_dirs or ():
        po = Path(srcdir, folder, language, "LC_MESSAGES", f"{docname}.po")
        if po.exists():
            with po.open("rb") as f:
                message = read_po(f).get(title)
            if message is not None and message.string and not message.fuzzy:
                return message.string
    return title


def colab_url(repository_url: str, docname: str) -> str:
    """Colab's address for the executed notebook on the site's branch."""
    repo = repository_url.rstrip("/").removesuffix(".git")
    prefix = "https://github.com/"
    if not repo.startswith(prefix) or repo.count("/") != 4:
        raise ValueError(
            "repository.url in _config.yml must look like "
            f"https://github.com/OWNER/REPO, got {repository_url!r}"
        )
    return (
        "https://colab.research.google.com/github/"
        f"{repo[len(prefix) :]}/blob/{PAGES_BRANCH}/{NOTEBOOK_DIR}/"
        f"{docname}.ipynb"
    )


def book_chapters(srcdir: str) -> dict[str, str]:
    """The numbered chapters (stem -> title) of the book's table of
    contents; none when a page is built alone (``make chapter``), whose
    source folder has no ``_toc.yml``."""
    toc = Path(srcdir) / "_toc.yml"
    return chapter_titles(toc) if toc.exists() else {}


class NotebookLinks(SphinxDirective):
    """``{notebook-links}``: download and Colab links for this page, the
    source of the ``batchlab`` modules its code cells import, and, for a
    numbered chapter, its printable handouts."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        docname = self.env.docname
        up = "../" * docname.count("/")
        href = up + f"{NOTEBOOK_DIR}/{docname}.ipynb"
        repo = self.config.html_theme_options.get("repository_url", "")
        colab = colab_url(repo, docname)
        binderhub = self.config.html_theme_options.get(
            "launch_buttons", {}
        ).get("binderhub_url", "https://mybinder.org")
        binder = notebooks.binder_url(binderhub, repo, docname)
        name = Path(docname).name
        words = i18n.in_language(LINK_WORDS, self.config.language)
        download = words["download"].format(name=name)
        paragraphs = [
            f'<a class="reference download" href="{href}" download>'
            f"{download}</a> &middot; "
            f'<a class="reference external" href="{colab}">{words["colab"]}'
            "</a> &middot; "
            f'<a class="reference external" href="{binder}">'
            f"{words['binder']}</a>{words['binder_note']}"
        ]
        source = Path(self.env.doc2path(docname)).read_text(encoding="utf-8")
        used = sourcepages.modules_used(source)
        if used:
            links = ", ".join(
                f'<a class="reference internal source-link" '
                f'href="{up}{sourcepages.source_page(m)}.html">'
                f"<code>{m}</code></a>"
                for m in used
            )
            code = words["code"].format(n=len(used))
            paragraphs.append(
                '<details class="source-links notebook-links"><summary>'
                f"{code}</summary>{links}.</details>"
            )
        if name in book_chapters(self.env.srcdir):
            pdf = f"{up}{PDF_DIR}/{name}"
            paragraphs.append(
                words["print"]
                + f'<a class="reference external handout" href="{pdf}.pdf">'
                f"{words['student']}</a> &middot; "
                f'<a class="reference external handout" '
                f'href="{pdf}-instructor.pdf">{words["instructor"]}</a>'
            )
        html = "".join(
            p
            if p.startswith("<details")
            else f'<p class="notebook-links">{p}</p>'
            for p in paragraphs
        )
        return [nodes.raw("", html, format="html")]


def pdf_address(config, name: str) -> str:
    """A PDF's address on the published site (``html_baseurl``), or its
    path in the site when the book has no address."""
    base = (config.html_baseurl or "").rstrip("/")
    return f"{base}/{PDF_DIR}/{name}" if base else f"{PDF_DIR}/{name}"


class HandoutLinks(SphinxDirective):
    """``{handout-links}``: the book and every chapter's handouts as PDF
    (HTML only; ``make pdf`` puts the files under ``pdf/``)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        up = "../" * self.env.docname.count("/")
        pdf = f"{up}{PDF_DIR}"
        words = i18n.in_language(LINK_WORDS, self.config.language)
        titles = {
            stem: translated_title(
                self.config, self.env.srcdir, f"chapters/{stem}", title
            )
            for stem, title in book_chapters(self.env.srcdir).items()
        }
        items = [
            f'<li><a class="reference external handout" '
            f'href="{pdf}/book.pdf">{words["book"]}</a></li>'
        ] + [
            f"<li>{escape(title)} &mdash; "
            f'<a class="reference external handout" href="{pdf}/{stem}.pdf">'
            f"{words['student_short']}</a> &middot; "
            f'<a class="reference external handout" '
            f'href="{pdf}/{stem}-instructor.pdf">'
            f"{words['instructor_short']}</a></li>"
            for stem, title in titles.items()
        ]
        html = '<ul class="handout-links">' + "".join(items) + "</ul>"
        # In print, the addresses where the site serves them.
        printed = addnodes.only(expr="latex")
        files = nodes.bullet_list()
        names = [(words["book"], ["book.pdf"])] + [
            (title, [f"{stem}.pdf", f"{stem}-instructor.pdf"])
            for stem, title in titles.items()
        ]
        for title, pdfs in names:
            item = nodes.paragraph(text=f"{title} \u2014 ")
            for i, name in enumerate(pdfs):
                if i:
                    item += nodes.Text(words["both"])
                address = pdf_address(self.config, name)
                item += nodes.reference(address, address, refuri=address)
            files += nodes.list_item("", item)
        printed += files
        return [nodes.raw("", html, format="html"), printed]


def ja_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{ja}`...```: Japanese text, typeset in a Japanese font that may
    break lines between characters (``\\bookja``, ``_config.yml``)."""
    if any(c in text for c in "\\{}$&#%^_~"):
        msg = inliner.reporter.error(
            f"the ja role takes plain Japanese text, got {text!r}",
            line=lineno,
        )
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    html = nodes.raw(
        "", f'<span lang="ja">{escape(text)}</span>', format="html"
    )
    latex = nodes.raw("", f"\\bookja{{{text}}}", format="latex")
    return [html, latex], []


def _variant_role(expr: str):
    """A role whose text appears only in one kind of output: ``{web}``
    on the site (and in the notebooks), ``{print}`` in the PDFs. Its text
    is parsed as inline Markdown, so it may hold links, math and roles."""

    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        children, messages = inliner.parse(
            text, lineno, inliner, nodes.inline()
        )
        only = addnodes.only(expr=expr)
        only += nodes.inline(text, "", *children)
        return [only], messages

    return role


CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff66-\uff9f]")


class SearchEnglishJapanese(SearchEnglish):
    """English search whose index also holds the words of Japanese runs
    (the glossary's terms): "確率的勾配" is indexed whole and as 確率, 的
    and 勾配, segmented by Sphinx's Japanese splitter, so searching for
    勾配 finds it. English words are stemmed as before."""

    def init(self, options: dict) -> None:
        super().init(options)
        self._japanese = DefaultSplitter(options)

    def split(self, input: str) -> list[str]:
        words = super().split(input)
        extra = [
            part
            for word in words
            if CJK.search(word)
            for part in self._japanese.split(word)
            if part.strip() and part != word
        ]
        return words + extra


def search_language(app: Sphinx, config) -> None:
    """Japanese search where Japanese appears: the Japanese edition
    (``language: ja``) searches with Sphinx's Japanese index; the English
    one indexes Japanese words too (:class:`SearchEnglishJapanese`)."""
    language = (config.language or "en").split("_")[0]
    if language == "ja" and not config.html_search_language:
        config.html_search_language = "ja"
    search_languages["en"] = SearchEnglishJapanese


class OutputTableLabels(SphinxTransform):
    """Numbered tables made by a cell (``plots.table(..., caption=...,
    name=...)``) can be referred to: myst-nb parses a Markdown output in a
    document of its own, so the table's name never reached the page's
    labels and ``{numref}`` to it failed. Runs before Sphinx collects the
    labels."""

    default_priority = 840  # SphinxDomains (labels) is 850

    def apply(self, **kwargs) -> None:
        for table in self.document.findall(nodes.table):
            for name in table.get("names", []):
                if name not in self.document.nametypes:
                    table["names"].remove(name)
                    table["names"].append(name)
                    self.document.note_explicit_target(table, table)


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated entries (same file and attributes, such as an inline
    body, whatever their priority) from a page's scripts."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        key = (
            str(getattr(js, "filename", js) or ""),  # None and "" alike
            repr(sorted(attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: it is the builder's own list


def copy_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """Write the executed chapters as plain notebooks into the site
    (:mod:`booktools.notebooks`), and copy the PDFs of an earlier
    ``make pdf`` (``_build/pdf``) to ``pdf/``, where the pages link them
    (``make pdf`` run after the site copies them too)."""
    if exception is not None or app.builder.format != "html":
        return
    pdfs = Path(app.outdir).parent / PDF_DIR
    for pdf in sorted(pdfs.glob("*.pdf")):
        dest = Path(app.outdir) / PDF_DIR / pdf.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf, dest)
    notebooks.write_notebooks(app, exception)


def add_static(app: Sphinx) -> None:
    """The extension's stylesheet (``static/booktools.css``)."""
    if app.builder.format == "html":
        app.config.html_static_path.append(str(STATIC))
        app.add_css_file("booktools.css")


def setup(app: Sphinx) -> dict:
    bibstyle.register()
    latex.setup(app)
    numbering.setup(app)
    sourcepages.setup(app)
    claimmarks.setup(app)
    i18n.setup(app)
    app.add_directive("notebook-links", NotebookLinks)
    app.add_directive("handout-links", HandoutLinks)
    app.add_role("ja", ja_role)
    # Wording for one medium: "the rocket button" exists only on the
    # site; "the address below" only in print.
    app.add_role("web", _variant_role("html"))
    app.add_role("print", _variant_role("latex"))
    # Late, after handlers that add page-specific scripts (MathJax).
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("build-finished", copy_notebooks)
    app.connect(
        "html-page-context", notebooks.point_binder_at_notebooks, priority=510
    )
    app.connect("builder-inited", add_static)
    app.connect("config-inited", search_language)
    app.add_transform(OutputTableLabels)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
