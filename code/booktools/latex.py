"""The printed book and its handouts, built by Sphinx's LaTeX builder.

Besides the whole book (``book.tex``), every numbered chapter becomes two
documents of its own in the same LaTeX build:

* ``handout-<chapter>.tex``, the student handout: a title block (book,
  chapter, edition, build date and commit, the book's address), the
  chapter with its exercises but without their solutions, and a list of
  the works this chapter cites, in place of its "References" section;
* ``handout-<chapter>-instructor.tex``, the same with the solutions.

Handouts use the ``article`` class (Sphinx's ``howto``), so pages count
from 1 and no chapter opens on a fresh right-hand page. The chapter
heading keeps its number in the book (``\\section`` counter), so section,
figure and exercise numbers match the site.

Two numbering fixes apply to the whole LaTeX build:

* sphinx-jupyterbook-latex numbers figures per chapter by setting
  ``numfig_secnum_depth = 2`` (parts shift LaTeX's levels), which made
  sphinx-exercise print "Exercise 1.9.2" where the site says
  "Exercise 1.2". Exercises are renumbered per chapter, as on the site.
* The bibliography is set as a list with hanging indents under the
  heading of the page that holds it, not as a chapter of its own.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import subprocess
from importlib import resources
from pathlib import Path

from docutils import nodes
from pybtex.plugin import find_plugin
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.builders.latex import LaTeXBuilder
from sphinx.builders.latex.nodes import thebibliography
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.writers.latex import LaTeXTranslator
from sphinx_jupyterbook_latex import theme as jblatex_theme
from sphinxcontrib.bibtex.transforms import node_text_transform

from booktools import i18n
from booktools.numbering import chapter_name

THEMES = Path(__file__).with_name("latex_themes")
#: LaTeX theme name -> edition.
EDITIONS = {"handout": "student", "handout-instructor": "instructor"}
EDITION_NAMES = {
    "student": "Student handout (exercises without solutions)",
    "instructor": "Instructor edition (exercises with solutions)",
}
REFERENCES_TITLE = "References"
#: The handouts' own words in each edition's language (the Japanese
#: handouts are built from the same pages, see booktools.i18n).
PRINT_WORDS = {
    "en": dict(
        editions=EDITION_NAMES,
        references=REFERENCES_TITLE,
        chapter="Chapter {n}",
        built="Built {date} from commit",
        no_citations="This chapter cites no other work.",
    ),
    "ja": dict(
        editions={
            "student": "学生用配布資料（演習の解答なし）",
            "instructor": "教員用（演習の解答つき）",
        },
        references="参考文献",
        chapter="第 {n} 章",
        built="{date} にビルド、コミット",
        no_citations="この章は他の文献を引用していない。",
    ),
}


def print_words(language: str | None) -> dict:
    """The handouts' words in ``language`` (English for any other)."""
    return i18n.in_language(PRINT_WORDS, language)


#: Runs of Japanese (kana, kanji, full-width forms) in running text.
CJK_RUN = re.compile(
    r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+"
)
#: Tables with at least this many columns print in a smaller font.
WIDE_TABLE = 7

# Bibliography entries: a list with hanging indents whose label is the
# author-year label in brackets, set where the bibliography directive is
# (no \chapter*{Bibliography} and no page break of its own).
PREAMBLE = r"""
% booktools.latex: the bibliography as an author-year list in place.
\makeatletter
\renewenvironment{sphinxthebibliography}[1]{%
  \list{}{\setlength{\leftmargin}{1.5em}%
    \setlength{\itemindent}{-\leftmargin}%
    \setlength{\labelwidth}{0pt}\setlength{\labelsep}{0.4em}%
    \setlength{\itemsep}{0.5ex}\setlength{\parsep}{0pt}%
    \def\makelabel##1{##1}}%
  \renewcommand\@biblabel[1]{[##1]}%
  \sloppy\clubpenalty4000\widowpenalty4000\sfcode`\.\@m}
  {\endlist}
\makeatother
% Table columns for {tabularcolumns}: N{a}{b} (no hyphenation, for terms)
% and Q{a}{b} (ragged right), a/b of the line width (Sphinx's \X).
\newcolumntype{N}[2]{>{\raggedright\arraybackslash\hyphenpenalty=10000%
  \exhyphenpenalty=10000}\X{#1}{#2}}
\newcolumntype{Q}[2]{>{\raggedright\arraybackslash}\X{#1}{#2}}
"""


def build_stamp(root: Path) -> tuple[str, str]:
    """The build date (UTC, or ``SOURCE_DATE_EPOCH``) and the commit."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        if epoch
        else dt.datetime.now(dt.UTC)
    )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", ""
    return when.strftime("%Y-%m-%d"), commit + ("+changes" if dirty else "")


def handout_docs(env) -> dict[str, int]:
    """Numbered chapters (a one-part section number) -> chapter number."""
    chapters = {}
    for docname, numbers in env.toc_secnumbers.items():
        top = numbers.get("")
        if (
            top
            and len(top) == 1
            and isinstance(top[0], int)
            and docname != env.config.root_doc
        ):
            chapters[docname] = top[0]
    return dict(sorted(chapters.items(), key=lambda item: item[1]))


def handout_target(docname: str, edition: str) -> str:
    """The ``.tex`` file name of a chapter's handout."""
    stem = Path(docname).name
    suffix = "" if edition == "student" else f"-{edition}"
    return f"handout-{stem}{suffix}.tex"


def add_handout_documents(app: Sphinx, env) -> list[str]:
    """Append both editions of every chapter to ``latex_documents``.

    Done once the chapters' numbers are known (``env-get-updated``, after
    reading), when Jupyter Book has already set up the book's own entry.
    """
    if not isinstance(app.builder, LaTeXBuilder):
        return []
    book = app.config.latex_documents[0]
    known = {entry[1] for entry in app.config.latex_documents}
    for docname in handout_docs(env):
        for theme, edition in EDITIONS.items():
            target = handout_target(docname, edition)
            if target not in known:
                # The book's title, so that links to other chapters print
                # as "(in <book>)".
                app.config.latex_documents.append(
                    (docname, target, book[2], book[3], theme, False)
                )
    return []


def renumber_exercises(app: Sphinx, env) -> list[str]:
    """Number exercises per chapter, (chapter, k), as the site does.

    Runs after Sphinx assigns figure numbers (``env-get-updated``).
    """
    # Only numbered chapters: an unnumbered page's exercise (an appendix)
    # would otherwise join chapter 1 and shift its numbers.
    chapters = handout_docs(env)
    by_chapter: dict[int, list[tuple[tuple, str, str]]] = {}
    for docname, kinds in env.toc_fignumbers.items():
        if docname not in chapters:
            continue
        for ident, number in kinds.get("exercise", {}).items():
            if number:
                by_chapter.setdefault(chapters[docname], []).append(
                    (tuple(number), docname, ident)
                )
    for chapter, entries in by_chapter.items():
        for k, (_, docname, ident) in enumerate(sorted(entries), start=1):
            env.toc_fignumbers[docname]["exercise"][ident] = (chapter, k)
    return []


def cited_citations(app: Sphinx, docname: str) -> list:
    """The bibliography entries (``Citation``) cited in ``docname``, in
    the order of the book's bibliography."""
    domain = app.env.get_domain("cite")
    keys = {
        key
        for ref in domain.citation_refs
        if ref.docname == docname
        for key in (target.key for target in ref.targets)
    }
    seen, chosen = set(), []
    for citation in domain.citations:
        if citation.key in keys and citation.key not in seen:
            seen.add(citation.key)
            chosen.append(citation)
    return chosen


def chapter_bibliography(app: Sphinx, docname: str) -> nodes.Element | None:
    """A ``thebibliography`` node of the works ``docname`` cites, made as
    sphinxcontrib-bibtex makes the book's list (same ids, so the citations
    in the text link to them)."""
    backend = find_plugin("pybtex.backends", "docutils")()
    bib = thebibliography()
    for citation in cited_citations(app, docname):
        entry = nodes.citation(
            ids=[citation.citation_id],
            docname=citation.bibliography_key.docname,
        )
        entry += nodes.label(
            "", citation.formatted_entry.label, support_smartquotes=False
        )
        entry += backend.paragraph(citation.formatted_entry)
        node_text_transform(entry)
        bib += entry
    return bib if len(bib) else None


def add_chapter_bibliography(
    app: Sphinx, doctree: nodes.document, docname: str
) -> None:
    """In a handout, the chapter's "References" section lists the works
    the chapter cites (not the whole bibliography, not a pointer to it)."""
    if not isinstance(app.builder, LaTeXBuilder):
        return
    if docname not in handout_docs(app.env):
        return
    bib = chapter_bibliography(app, docname)
    words = print_words(app.config.language)
    sections = [
        s
        for s in doctree.findall(nodes.section)
        if s.children
        and isinstance(s[0], nodes.title)
        and s[0].astext().strip() in (REFERENCES_TITLE, words["references"])
    ]
    if sections:
        section = sections[-1]
        del section[1:]
    else:
        if bib is None:
            return
        top = next(iter(doctree.findall(nodes.section)))
        section = nodes.section(ids=["handout-references"])
        section += nodes.title(words["references"], words["references"])
        top += section
    if bib is None:
        section += nodes.paragraph(text=words["no_citations"])
    else:
        section += bib


def book_address(config, docname: str, anchor: str = "") -> str:
    """The page's address on the published site (``html_baseurl``), or
    "" when the book has no address."""
    base = (config.html_baseurl or "").rstrip("/")
    if not base:
        return ""
    return f"{base}/{docname}.html" + (f"#{anchor}" if anchor else "")


def _chapter_only(name: str) -> str:
    """ "Chapter 2" stays; "Appendix B" (a back-matter page) becomes ""."""
    return name if name.startswith("Chapter") else ""


class PrintedCrossReferences(SphinxPostTransform):
    """Cross-references as print reads them (LaTeX only, before Sphinx
    resolves them).

    A page's own reference (``{ref}`hessian```) prints "Chapter 2" (or
    "Appendix A") in the book, where the reader can turn to it; in a
    handout, whose other chapters are not in the file, it prints
    "Chapter 2, *Title* (address)". A reference to a section, figure or
    exercise of another page prints its title or number, where it is and
    the address. Without this, Sphinx printed the bare label ("as
    hessian showed") in a handout.
    """

    default_priority = 5  # before ReferencesResolver (10)
    formats = ("latex",)
    # Pages whose terms the text links to (the Japanese edition links
    # each term to the glossary on first use): in a file without that
    # page, such a link prints its text alone, not "term (Glossary,
    # address)" after every term.
    PLAIN = ("chapters/glossary",)

    def run(self, **kwargs) -> None:
        env = self.env
        builder = self.app.builder
        inside = set(getattr(builder, "docnames", ()) or ())
        std = env.get_domain("std")
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("refdomain") != "std":
                continue
            kind, target = node.get("reftype"), node.get("reftarget", "")
            if kind == "doc":
                where = (target.lstrip("/"), "")
            elif kind in ("ref", "numref"):
                where = std.anonlabels.get(target.lower())
            else:
                continue
            if not where or where[0] not in env.all_docs:
                continue  # unknown: Sphinx warns as usual
            docname, labelid = where
            top = self._is_top(docname, labelid)
            if (
                docname in self.PLAIN
                and top
                and node.get("refexplicit")
                and docname not in inside
            ):
                # A term linked to the glossary: its text alone.
                text = node.astext()
                node.replace_self(nodes.inline(text, text))
                continue
            if docname in inside:
                if top and kind != "numref" and not node.get("refexplicit"):
                    # "Chapter 2"; the back matter keeps its title ("the
                    # Glossary"), which the prose reads better with.
                    name = _chapter_only(chapter_name(env, docname))
                    if name:
                        node["refexplicit"] = True
                        node.children = [nodes.inline(name, name)]
                continue
            node.replace_self(self._outside(node, docname, labelid, top))

    def _is_top(self, docname: str, labelid: str) -> bool:
        if not labelid:
            return True
        doctree = self.env.get_doctree(docname)
        first = next(iter(doctree.findall(nodes.section)), None)
        return first is not None and labelid in first["ids"]

    def _outside(self, node, docname: str, labelid: str, top: bool):
        """ "Chapter 2, *Title* (address)", "*Glossary* (address)",
        "Fig. 2.1 (Chapter 2, address)", "*Section* (Chapter 2, address)",
        "their text (Chapter 2, *Title*, address)"."""
        env = self.env
        title = env.titles[docname].astext()
        chapter = _chapter_only(chapter_name(env, docname))
        explicit = node.get("refexplicit")
        address = book_address(env.config, docname, "" if top else labelid)
        link = (
            [nodes.reference(address, address, refuri=address)]
            if address
            else []
        )
        where: list[nodes.Node] = (
            [nodes.Text(f"{chapter}, ")] if chapter else []
        )
        if top and not explicit:
            out = [*where, nodes.emphasis(title, title)]
            return out + (
                [nodes.Text(" ("), *link, nodes.Text(")")] if link else []
            )
        if top:
            what = node.astext()
        else:
            what = self._label_text(node, docname, labelid) or node.astext()
            if node.get("reftype") != "numref" and explicit:
                what = node.astext()
        inner = [*where]
        if top or not chapter:
            inner.append(nodes.emphasis(title, title))
        elif where:
            inner[-1] = nodes.Text(chapter)
        if link:
            inner += [nodes.Text(", "), *link]
        return [nodes.Text(what + " ("), *inner, nodes.Text(")")]

    def _label_text(self, node, docname: str, labelid: str) -> str:
        """ "Fig. 2.3", "Exercise 2.1" or the section's title."""
        env = self.env
        std = env.get_domain("std")
        target = env.get_doctree(docname).ids.get(labelid)
        if target is None:
            return ""
        figtype = std.get_enumerable_node_type(target)
        number = env.toc_fignumbers.get(docname, {}).get(figtype or "", {})
        if figtype and labelid in number and figtype != "section":
            prefix = env.config.numfig_format.get(figtype, "%s")
            text = ".".join(map(str, number[labelid]))
            return (prefix % text).replace("\\@", "")
        label = std.labels.get(node.get("reftarget", "").lower())
        return label[2] if label else ""


#: Calls that are bookkeeping, not the experiment: print leaves them out
#: (the claims are listed at the end of each chapter, as on the site).
#: A cell whose statements are all such calls prints no code; a cell that
#: calls one of ``PRINT_DROPPED_CELLS`` prints nothing at all.
PRINT_HIDDEN_CALLS = (
    "claims.verify",
    "claims.check",
    "claims.publish",
    "claims.report",
    "glue",
    "plt.close",
)
PRINT_DROPPED_CELLS = ("claims.report",)
#: A code cell of at most this many lines is kept on one page.
KEEP_TOGETHER_LINES = 30


def _called(statement: ast.stmt) -> str:
    """The dotted name a statement calls (``claims.verify``), or ""."""
    if not isinstance(statement, ast.Expr):
        return ""
    call = statement.value
    if not isinstance(call, ast.Call):
        return ""
    parts, func = [], call.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return ""
    return ".".join([func.id, *reversed(parts)])


def printed_code(code: str, hidden=PRINT_HIDDEN_CALLS) -> str | None:
    """The code a printed cell shows: ``code`` without its bookkeeping
    statements (calls named in ``hidden``, at any depth; a loop or an
    ``if`` left with nothing but such calls goes too), or ``None`` when
    the cell is a dropped one (``PRINT_DROPPED_CELLS``). Code that does
    not parse (a magic) is printed as it is."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    if any(
        _called(s) in PRINT_DROPPED_CELLS
        for s in ast.walk(tree)
        if isinstance(s, ast.stmt)
    ):
        return None
    drop: set[int] = set()
    _hide(tree.body, tuple(hidden), drop)
    kept = [line for i, line in enumerate(code.splitlines()) if i not in drop]
    return "\n".join(kept).strip("\n")


def _hide(statements: list[ast.stmt], hidden: tuple, drop: set[int]) -> bool:
    """Add the lines of hidden statements to ``drop``; whether every one
    of ``statements`` went."""
    gone = 0
    for statement in statements:
        bodies = [
            getattr(statement, field)
            for field in ("body", "orelse", "finalbody")
            if getattr(statement, field, None)
        ]
        if _called(statement) in hidden or (
            bodies
            and not isinstance(statement, (ast.FunctionDef, ast.ClassDef))
            and all([_hide(body, hidden, drop) for body in bodies])
        ):
            drop.update(range(statement.lineno - 1, statement.end_lineno))
            gone += 1
    return gone == len(statements)


class PrintedCells(SphinxPostTransform):
    """Code cells as print shows them (LaTeX only): bookkeeping calls
    left out (:func:`printed_code`), a cell with nothing else left out
    whole (its outputs stay), and every short cell kept on one page
    (``\\needspace``), so none splits with an orphan line."""

    default_priority = 5
    formats = ("latex",)

    def run(self, **kwargs) -> None:
        hidden = tuple(self.config.booktools_print_hidden_calls)
        for source in list(self.document.findall(nodes.container)):
            if source.get("nb_element") != "cell_code_source":
                continue
            cell = source.parent
            block = next(iter(source.findall(nodes.literal_block)), None)
            if block is None:
                continue
            code = printed_code(block.astext(), hidden)
            if code is None:
                cell.parent.remove(cell)
                continue
            if not code.strip():
                cell.remove(source)
                continue
            if code != block.astext():
                block.children = [nodes.Text(code)]
                block.rawsource = code
            n = code.count("\n") + 1
            if n <= KEEP_TOGETHER_LINES:
                space = nodes.raw(
                    "",
                    f"\\needspace{{{n + 3}\\baselineskip}}\n",
                    format="latex",
                )
                cell.insert(cell.index(source), space)


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    out = []
    for ch in text:
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        else:
            out.append(ch)
    return "".join(out)


def title_block(
    *,
    book: str,
    chapter: int,
    edition: str,
    date: str,
    commit: str,
    url: str,
    language: str | None = "en",
) -> str:
    """The LaTeX of a handout's title block, in ``language``; it also
    sets the section counter so the chapter keeps its number in the book,
    and numbers figures within it ("Fig. 2.1"), as the site does."""
    words = print_words(language)
    name = latex_escape(words["editions"][edition])
    built = latex_escape(words["built"].format(date=date))
    number = words["chapter"].format(n=chapter)
    return rf"""
\begingroup\sffamily\raggedright
{{\large\bfseries {latex_escape(book)}}}\hfill{{\small {number}}}\par
\smallskip{{\small {name}}}\par
\smallskip\hrule\smallskip
{{\footnotesize {built} \texttt{{{latex_escape(commit)}}}
\textbullet{{}} \url{{{url}}}}}\par
\endgroup
\bigskip
\setcounter{{section}}{{{chapter - 1}}}
\counterwithin{{figure}}{{section}}
"""


class BookLaTeXTranslator(LaTeXTranslator):
    """Sphinx's LaTeX translator, adapted for the handout themes: the
    chapter is a ``\\section``, the title block replaces Sphinx's title
    page and contents, and the student edition skips solutions."""

    def __init__(self, document, builder, theme) -> None:
        super().__init__(document, builder, theme)
        self.edition = EDITIONS.get(theme.name)
        if self.edition is None:
            return
        self.top_sectionlevel = self.sectionnames.index("section")
        # The chapter's heading is a numbered section, not the title.
        self.this_is_the_title = 0
        docname = document.settings._docname
        date, commit = build_stamp(Path(builder.srcdir))
        self.elements["maketitle"] = title_block(
            book=document.settings._title,
            chapter=handout_docs(builder.env)[docname],
            edition=self.edition,
            date=date,
            commit=commit,
            url=self.config.html_theme_options.get("repository_url", ""),
            language=self.config.language,
        )
        self.elements["tableofcontents"] = ""

    def visit_table(self, node: nodes.Element) -> None:
        # A wide table (a sweep with many columns) is set smaller, with
        # less space between columns and no hyphenation, so its words
        # and numbers need not wrap.
        columns = max((len(row) for row in node.findall(nodes.row)), default=0)
        self._wide_tables = getattr(self, "_wide_tables", [])
        self._wide_tables.append(columns >= WIDE_TABLE)
        if self._wide_tables[-1]:
            self.body.append(
                "\n\\begingroup\\footnotesize\\setlength{\\tabcolsep}{3pt}"
                "\\hyphenpenalty=10000\\exhyphenpenalty=10000\n"
            )
        super().visit_table(node)

    def depart_table(self, node: nodes.Element) -> None:
        super().depart_table(node)
        if self._wide_tables.pop():
            self.body.append("\\endgroup\n")

    def encode(self, text: str) -> str:
        # Japanese anywhere (a term, a title in the reference list, a
        # citation label) in the Japanese font, with line breaks between
        # its characters; the main font has no Japanese glyphs.
        encoded = super().encode(text)
        return CJK_RUN.sub(lambda m: f"\\bookja{{{m.group(0)}}}", encoded)

    def visit_title(self, node: nodes.Element) -> None:
        # A heading never ends a page: room for a few lines after it, or
        # for the whole of a table that follows it at once.
        if isinstance(node.parent, nodes.section):
            lines = heading_room(node.parent)
            self.body.append(f"\n\\needspace{{{lines}\\baselineskip}}\n")
        super().visit_title(node)

    def visit_line_block(self, node: nodes.Element) -> None:
        # The root page's headings become one bold line each
        # (sphinx-jupyterbook-latex): keep them with what follows too.
        if (
            len(node) == 1
            and isinstance(node[0], nodes.line)
            and node[0].children
            and all(isinstance(c, nodes.strong) for c in node[0].children)
        ):
            parent = node.parent
            rest = parent.children[parent.index(node) + 1 :]
            lines = room_after(rest)
            self.body.append(f"\n\\needspace{{{lines}\\baselineskip}}\n")
        super().visit_line_block(node)

    def visit_start_of_file(self, node: nodes.Element) -> None:
        # The back matter is lettered (booktools.numbering): LaTeX's
        # \appendix before its first page makes it "Appendix A".
        top = self.builder.env.toc_secnumbers.get(node["docname"], {})
        number = top.get("")
        if (
            self.edition is None
            and number
            and number[0] == "A"
            and len(number) == 1
        ):
            # Sphinx numbers figures and tables with the chapter's arabic
            # number; after \appendix they take its letter ("A.2").
            self.body.append(
                "\n\\appendix\n"
                "\\renewcommand{\\thefigure}{\\thechapter.\\arabic{figure}}\n"
                "\\renewcommand{\\thetable}{\\thechapter.\\arabic{table}}\n"
            )
        super().visit_start_of_file(node)

    def dispatch_visit(self, node: nodes.Node) -> None:
        if self.edition == "student" and is_solution(node):
            raise nodes.SkipNode
        super().dispatch_visit(node)


def heading_room(section: nodes.Element) -> int:
    """Lines to keep free below a section heading: 6, or, when a table
    comes first, the table's (two lines a row, at most 40)."""
    return room_after(section.children[1:])


def room_after(following: list[nodes.Node]) -> int:
    """Lines to keep free for what follows a heading (see
    :func:`heading_room`)."""
    for child in following:
        if isinstance(
            child, (nodes.target, addnodes.tabular_col_spec, nodes.raw)
        ):
            continue
        tables = (
            [child]
            if isinstance(child, nodes.table)
            else list(child.findall(nodes.table))
            if isinstance(child, nodes.container)
            else []
        )
        if tables:
            rows = len(list(tables[0].findall(nodes.row)))
            return min(40, 2 * rows + 6)
        break
    return 6


def is_solution(node: nodes.Node) -> bool:
    """A solution from sphinx-exercise (with or without its dropdown)."""
    return type(node).__name__ in {
        "solution_node",
        "solution_start_node",
        "solution_end_node",
    }


def write_handout_class(app: Sphinx) -> None:
    """``bookhandout.cls``: Jupyter Book's LaTeX class (its code-cell
    environments, colours and page size) on Sphinx's ``howto`` class
    (``article``) instead of ``manual`` (``report``)."""
    if not isinstance(app.builder, LaTeXBuilder):
        return
    source = resources.files(jblatex_theme).joinpath("jupyterBook.cls")
    text = source.read_text(encoding="utf-8")
    replaced = (
        text.replace(
            r"\ProvidesClass{jupyterBook}", r"\ProvidesClass{bookhandout}"
        )
        .replace("{sphinxmanual}", "{sphinxhowto}")
        .replace(
            r"\def\sphinxdocclass{report}", r"\def\sphinxdocclass{article}"
        )
    )
    if replaced.count("sphinxhowto") != 2 or "{article}" not in replaced:
        raise RuntimeError(
            "jupyterBook.cls changed: booktools.latex cannot derive the "
            "handout class from it"
        )
    out = Path(app.outdir) / "bookhandout.cls"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replaced, encoding="utf-8")


def configure(app: Sphinx, config) -> None:
    """Theme path and preamble for the LaTeX build."""
    config.latex_theme_path = [*config.latex_theme_path, str(THEMES)]
    elements = dict(config.latex_elements)
    elements["preamble"] = elements.get("preamble", "") + PREAMBLE
    config.latex_elements = elements


def setup(app: Sphinx) -> None:
    """Connect the LaTeX-only parts (called by ``booktools.sphinxext``)."""
    app.set_translator("latex", BookLaTeXTranslator, override=True)
    app.add_post_transform(PrintedCrossReferences)
    app.add_post_transform(PrintedCells)
    app.add_config_value(
        "booktools_print_hidden_calls", list(PRINT_HIDDEN_CALLS), "env"
    )
    app.connect("config-inited", configure)
    app.connect("builder-inited", write_handout_class)
    app.connect("env-get-updated", renumber_exercises, priority=900)
    app.connect("env-get-updated", add_handout_documents, priority=950)
    app.connect("doctree-resolved", add_chapter_bibliography)
