"""The printed book: the whole-book PDF and, per chapter, a student
handout and an instructor edition.

Every check reads the PDFs with poppler (pdftotext, pdfimages), not with
the code that made them, so a defect in booktools cannot hide itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    ROOT,
    chapter_pages,
    make,
    make_var,
    require_tool,
    toc_files,
)
from pybtex.database import parse_file
from pypdf import PdfReader

from booktools.handouts import chapter_titles

LEAKED_MARKUP = [
    r"\{glue",
    r"\{cite",
    r"\{ref\}",
    r"\{numref\}",
    "```",
    r"\{code-cell\}",
    r"\{exercise\}",
    r"\{solution\}",
    ":::",
    r"\{ja\}",
    r"\|\s*-{3,}\s*\|",  # a Markdown table left as text
]
# Python object reprs: "<pandas.io.formats.style.Styler at 0x7f...>",
# "<Figure size 640x480 with 2 Axes>", "<matplotlib.axes._axes.Axes ...>".
OBJECT_REPR = re.compile(
    r"<[A-Za-z_][\w.]*(?: object)? at 0x[0-9a-f]+>"
    r"|<Figure size \d+x\d+"
    r"|<(?:pandas|matplotlib|torch|numpy)\.[\w.]+"
)
# Alphabetic bibliography labels such as [Bot98] or [GDollarG+17].
ALPHA_LABEL = re.compile(r"\[[A-Z][A-Za-z]{0,20}\+?\d{2}[a-z]?\]")
MIN_PPI = 200


def pdf_tools() -> bool:
    done = make("-s", "pdf-check")
    return done.returncode == 0


@pytest.fixture(scope="module")
def pdfs(built) -> Path:
    require_tool(pdf_tools(), "LaTeX for make pdf (see README)")
    return built.pdf()


def pdf_text(path: Path, *, layout: bool = True, page: int = 0) -> str:
    args = ["pdftotext"]
    if layout:
        args.append("-layout")
    if page:
        args += ["-f", str(page), "-l", str(page)]
    out = subprocess.run(
        [*args, str(path), "-"], capture_output=True, text=True, check=True
    )
    return out.stdout


def page_texts(path: Path) -> list[str]:
    """The text of each page (pdftotext separates pages by form feeds)."""
    return pdf_text(path).split("\f")[: n_pages(path)]


def body_text(path: Path) -> str:
    """The squashed running text of a PDF without its page numbers, so a
    sentence broken by a page break reads whole."""
    pages = pdf_text(path, layout=False).split("\f")[: n_pages(path)]
    kept = []
    for text in pages:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines and lines[-1].strip().isdigit():
            lines = lines[:-1]
        kept.append(" ".join(lines))
    return squash(" ".join(kept))


def n_pages(path: Path) -> int:
    return len(PdfReader(str(path)).pages)


def page_title(page: str) -> str:
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    return re.search(r"^# (.+)$", text, re.M).group(1).strip()


def loose(text: str) -> str:
    """Lower case, one space, straight quotes: LaTeX sets curly ones."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", text).lower()


def images(path: Path) -> list[dict]:
    """Raster images in the PDF with their resolution (pdfimages)."""
    out = subprocess.run(
        ["pdfimages", "-list", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in out.stdout.splitlines()[2:]:
        cols = line.split()
        if cols[2] != "image":
            continue  # smasks and stencils belong to an image
        rows.append(
            {
                "page": int(cols[0]),
                "xppi": int(cols[12]),
                "yppi": int(cols[13]),
            }
        )
    return rows


def html_figures(site: Path, page: str) -> int:
    html = (site / f"{page}.html").read_text(encoding="utf-8")
    return len(re.findall(r"<figure[ >]", html))


def pdf_figure_captions(text: str) -> set[str]:
    return set(re.findall(r"Fig\. ([0-9A-Z]+\.\d+):", text))


def chapter_number(page: str) -> int:
    return chapter_pages().index(page) + 1


def md_count(page: str, directive: str) -> int:
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    return len(re.findall(rf"^```{{{directive}}}", text, re.M))


def cited_keys(page: str) -> set[str]:
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    keys = set()
    for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
        keys.update(k.strip() for k in group.split(","))
    return keys


def squash(text: str) -> str:
    """Letters and digits only, lower case: a title survives line breaks,
    hyphenation, quotes and BibTeX braces alike."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def bib_titles() -> dict[str, str]:
    """Key -> squashed title (its Latin letters and digits; a title
    without enough of them, a Japanese one, by its own text)."""
    data = parse_file(str(ROOT / "references.bib"))
    titles = {}
    for key, entry in data.entries.items():
        squashed = squash(entry.fields["title"])
        titles[key] = (
            squashed
            if len(squashed) >= 8
            else re.sub(r"\s+", "", entry.fields["title"]).lower()
        )
    return titles


def solution_phrases(page: str) -> list[str]:
    """A run of plain words from each solution of a chapter (no math or
    code), squashed, to look for in the PDFs."""
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    phrases = []
    for body in re.findall(
        r"^```\{solution\}[^\n]*\n(.*?)^```", text, re.M | re.S
    ):
        # the directive's options (":class: dropdown") are not text
        body = re.sub(r"^:[a-z-]+:.*$", "", body, flags=re.M)
        words = r"(?<!\S)(?:[A-Za-z0-9,\-]+\s+){3,}[A-Za-z0-9\-]+(?!\S)"
        runs = re.findall(words, body)
        assert runs, f"a solution of {page} has no plain sentence"
        phrases.append(squash(max(runs, key=len)))
    return phrases


def handout_paths(pdfs: Path, page: str) -> tuple[Path, Path]:
    stem = Path(page).stem
    return pdfs / f"{stem}.pdf", pdfs / f"{stem}-instructor.pdf"


def all_pdfs(pdfs: Path) -> list[Path]:
    """Every PDF of both editions (the Japanese ones where the book has
    catalogues)."""
    paths = []
    for folder in (pdfs, pdfs / "ja"):
        if folder.name == "ja" and not (ROOT / "locales" / "ja").exists():
            continue
        paths.append(folder / "book.pdf")
        for page in chapter_pages():
            paths += handout_paths(folder, page)
    return paths


def test_patterns_catch_the_defects_seen_in_print():
    seen = (
        "a table: <pandas.io.formats.style.Styler at 0x7f3a2b1c> and "
        "<Figure size 640x480 with 2 Axes>"
    )
    assert len(OBJECT_REPR.findall(seen)) == 2
    assert not OBJECT_REPR.search("a <b>bold</b> claim at 0.5")
    labels = "[GDollarG+17] [MKAOpenAIDTeam18] [Bot98] [Cho20a]"
    assert len(ALPHA_LABEL.findall(labels)) == 4
    assert not ALPHA_LABEL.search("[Cho, 2020a] [Goyal et al., 2017] [16]")
    assert re.search(LEAKED_MARKUP[-1], "| setting | value | |---|---|")


def test_missing_latex_is_explained_without_a_trace():
    done = make("-s", "pdf-check", "PDF_TOOLS=no-such-latex")
    assert done.returncode != 0
    assert "no-such-latex" in done.stdout
    assert "apt-get install" in done.stdout
    assert "texlive-fonts-extra" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_latex_reads_no_terminal():
    # After Ctrl-C, TeX asks at its "?" prompt what to do; reading the
    # terminal it would wait there, left behind when make returns.
    dry = make("-n", "-o", make_var("STAMP"), "pdf").stdout
    latex = [line for line in dry.splitlines() if "pdflatex" in line]
    assert latex and all(line.endswith("< /dev/null") for line in latex)


@pytest.mark.book
def test_book_pdf_has_every_page_and_no_leaks(pdfs):
    book = pdfs / "book.pdf"
    text = loose(pdf_text(book))
    for page in toc_files():
        assert loose(page_title(page)) in text, page
    assert "??" not in text, "unresolved reference in the PDF"
    for pattern in LEAKED_MARKUP:
        assert not re.search(pattern, text), f"raw markup {pattern} leaked"
    assert 20 <= n_pages(book) <= 200


@pytest.mark.book
def test_no_object_reprs_in_any_pdf(pdfs):
    for path in all_pdfs(pdfs):
        found = OBJECT_REPR.findall(pdf_text(path, layout=False))
        assert not found, f"{path.name} prints Python objects: {found[:3]}"


@pytest.mark.book
def test_no_blank_pages(pdfs):
    """A page with nothing on it but, at most, its number."""
    for path in all_pdfs(pdfs):
        pictures = {img["page"] for img in images(path)}
        reader = PdfReader(str(path))
        for i, text in enumerate(page_texts(path), start=1):
            words = re.sub(r"\s+", " ", text).strip()
            resources = reader.pages[i - 1].get("/Resources") or {}
            drawn = bool(resources.get("/XObject")) or i in pictures
            blank = (words == "" or words.isdigit()) and not drawn
            assert not blank, f"{path.name}: page {i} is blank"


@pytest.mark.book
def test_figures_are_vector_or_print_resolution(pdfs, built):
    """Every figure of the site is in the book; raster images, if any,
    have at least MIN_PPI (vector figures have no pixels to count)."""
    site = built.html()
    expected = sum(html_figures(site, p) for p in toc_files())
    captions = pdf_figure_captions(pdf_text(pdfs / "book.pdf", layout=False))
    assert len(captions) == expected > 0
    for path in all_pdfs(pdfs):
        for img in images(path):
            assert min(img["xppi"], img["yppi"]) >= MIN_PPI, (
                f"{path.name} page {img['page']}: {img} below {MIN_PPI} ppi"
            )


@pytest.mark.book
def test_nothing_runs_off_the_page(pdfs):
    """Tables, code and formulas stay inside the paper, a quarter inch
    from its edges (a table too wide for the text once ran off it)."""
    edge = 18  # points
    for path in all_pdfs(pdfs):
        out = subprocess.run(
            ["pdftotext", "-bbox", str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pages = re.split(r"<page ", out)[1:]
        for i, page in enumerate(pages, start=1):
            width = float(re.search(r'width="([\d.]+)"', page).group(1))
            for x0, x1, word in re.findall(
                r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"'
                r' yMax="[\d.]+">([^<]*)</word>',
                page,
            ):
                assert float(x0) >= edge and float(x1) <= width - edge, (
                    f"{path.name} page {i}: {word!r} at x {x0}-{x1} of {width}"
                )


@pytest.mark.book
def test_glossary_and_map_tables_do_not_hyphenate(pdfs):
    """Words of the glossary's and the map's table cells are never split
    across lines ("Hes- sian"); glossary terms print whole."""
    text = pdf_text(pdfs / "book.pdf", layout=False)
    words = set()
    for page in ["chapters/glossary", "chapters/intro"]:
        source = (ROOT / f"{page}.md").read_text(encoding="utf-8")
        rows = [r for r in source.splitlines() if r.startswith("|")]
        assert rows, page
        for row in rows:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]{4,}", row))
    split = [
        a + b
        for a, b in re.findall(r"([A-Za-z]+)-\s*\n\s*([a-z]+)", text)
        if (a + b).lower() in words
    ]
    assert not split, f"hyphenated across lines: {split}"
    source = (ROOT / "chapters/glossary.md").read_text(encoding="utf-8")
    terms = re.findall(r"^\| ([^|]+?) \|", source, re.M)[2:]
    flat = loose(text)
    for term in terms:
        assert loose(term) in flat, f"glossary term {term!r} not printed"


@pytest.mark.book
def test_reference_labels_are_author_year_in_text_and_list(pdfs):
    text = pdf_text(pdfs / "book.pdf", layout=False)
    assert not ALPHA_LABEL.search(text), ALPHA_LABEL.findall(text)[:5]
    flat = re.sub(r"\s+", " ", text)
    head = flat.rindex("Every work the book cites")
    listing = flat[head:]
    year = r"(?:\d{4}[a-z]?|n\.d\.)"  # a work without a date: n.d.
    labels = set(re.findall(rf"\[([^\[\]]+?, {year})\]", listing))
    assert len(labels) == len(parse_file(str(ROOT / "references.bib")).entries)
    # Every citation in the text names a work by its label in the list
    # (a citation broken across pages would have the running head, the
    # book's or the section's title and the page number, inside it).
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    kept = [
        ln
        for ln in pdf_text(pdfs / "book.pdf", layout=False).splitlines()
        if ln.strip() != title
        and not ln.strip().isdigit()
        and not re.match(r"\d+(?:\.\d+)*\.\s", ln.strip())
    ]
    body = re.sub(r"\s+", " ", " ".join(kept))
    body = body[: body.rindex("Every work the book cites")]
    cited = re.findall(rf"\[([^\[\]]*?{year})\]", body)
    assert cited
    for group in cited:
        for one in re.findall(rf"\s*([^,;\[\]]*?, {year})(?:[,;]|$)", group):
            assert one in labels, f"citation [{one}] is not a list label"
    assert "$" not in listing and "tr(f(A))" in listing  # math titles


@pytest.mark.book
@pytest.mark.parametrize("page", chapter_pages())
def test_handouts_per_chapter(pdfs, built, page):
    student, instructor = handout_paths(pdfs, page)
    title = page_title(page)
    n = chapter_number(page)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    for path in (student, instructor):
        assert path.exists(), path
        text = pdf_text(path)
        flat = loose(text)
        assert loose(title) in flat
        # Title block: book, chapter, build date and commit, address.
        first = loose(pdf_text(path, page=1))
        assert loose(config["title"]) in first
        assert f"chapter {n}" in first
        assert config["repository"]["url"].lower() in first
        built_from = re.search(
            r"built (\d{4}-\d\d-\d\d) from commit ([0-9a-f]{7,})", first
        )
        assert built_from, first[:400]
        known = subprocess.run(  # a commit of this repository
            [
                "git",
                "rev-parse",
                "--verify",
                f"{built_from.group(2)}^{{commit}}",
            ],
            cwd=ROOT,
            capture_output=True,
        )
        assert known.returncode == 0, built_from.group(0)
        # Only this chapter: other chapters' titles appear only in links.
        for other in chapter_pages():
            if other != page:
                assert flat.count(loose(page_title(other))) <= 2
        # Numbered from 1: each page's last line is its number.
        for i, page_text in enumerate(page_texts(path), start=1):
            lines = [ln.strip() for ln in page_text.splitlines()]
            lines = [ln for ln in lines if ln]
            assert lines and lines[-1] == str(i), (path.name, i, lines[-1:])
        # Exercises numbered as on the site: "Exercise <chapter>.<k>".
        numbers = re.findall(r"Exercise (\d+(?:\.\d+)+)", text)
        wanted = [f"{n}.{k}" for k in range(1, md_count(page, "exercise") + 1)]
        assert sorted(set(numbers)) == wanted
        html = (built.html() / f"{page}.html").read_text(encoding="utf-8")
        for number in wanted:
            assert f"Exercise {number}" in re.sub(r"<[^>]+>|\s+", " ", html)
        # Figures numbered as on the site: "Fig. <chapter>.<k>".
        figures = sorted(pdf_figure_captions(text))
        n_fig = html_figures(built.html(), page)
        assert figures == sorted(f"{n}.{k}" for k in range(1, n_fig + 1))
        # References: exactly the works this chapter cites.
        refs = squash(flat[flat.rindex("references") :])
        for key, work in bib_titles().items():
            if key in cited_keys(page):
                assert work in refs, f"{path.name}: cited {key} not listed"
            else:
                assert work not in refs, f"{path.name}: uncited {key} listed"
        assert n_pages(path) < n_pages(pdfs / "book.pdf")
        assert chapter_titles(ROOT / "_toc.yml")[Path(page).stem] == title
    # Solutions: none for students, every one for instructors.
    solutions = md_count(page, "solution")
    assert solutions > 0
    assert "Solution to Exercise" not in pdf_text(student)
    assert len(re.findall(r"Solution to Exercise", pdf_text(instructor))) == (
        solutions
    )
    for phrase in solution_phrases(page):
        assert phrase not in body_text(student)
        assert phrase in body_text(instructor)
    # First page rendered to PNG so a person can look at it.
    require_tool(shutil.which("pdftoppm") is not None, "pdftoppm")
    preview = pdfs / "preview"
    preview.mkdir(exist_ok=True)
    for path in (student, instructor):
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "60",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(path),
                str(preview / path.stem),
            ],
            check=True,
        )
        assert (preview / f"{path.stem}.png").stat().st_size > 1000


def source_labels() -> set[str]:
    """Every label the pages define: ``(label)=``, ``:name:``, ``:label:``."""
    found = set()
    for page in toc_files():
        text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
        found |= set(re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M))
        found |= set(
            re.findall(r"^:(?:name|label): *([\w-]+)\s*$", text, re.M)
        )
    return found


def test_label_pattern_finds_the_leftovers_seen_in_print():
    labels = {"bn-small-batch", "hessian", "fig-noise"}
    seen = (
        "(Lanczos on Hessian-vector products, hessian) where LayerNorm "
        "trains (bn-small-batch); see https://x.io/a.html#fig-noise"
    )
    assert label_leftovers(seen, labels) == ["bn-small-batch", "hessian"]
    assert label_leftovers("as Chapter 2 showed", labels) == []


def label_leftovers(text: str, labels: set[str]) -> list[str]:
    """Labels printed as words: a hyphenated label anywhere outside an
    address, a page's one-word label where prose would name the page
    ("(..., hessian)", "the next chapter, batchnorm;")."""
    text = re.sub(r"https?://\S+", " ", text)
    found = []
    for label in sorted(labels):
        if "-" in label:
            pattern = rf"(?<![\w/#-]){re.escape(label)}(?![\w-])"
        else:
            pattern = rf"(?:, |chapter |appendix ){re.escape(label)}[);,.]"
        if re.search(pattern, text):
            found.append(label)
    return found


@pytest.mark.book
@pytest.mark.parametrize("page", chapter_pages())
def test_no_handout_prints_a_label(pdfs, page):
    labels = source_labels()
    assert labels
    for path in handout_paths(pdfs, page):
        text = pdf_text(path, layout=False).replace("\u00ad", "")
        text = re.sub(r"-\n", "-", text)
        left = label_leftovers(text, labels)
        assert not left, f"{path.name} prints labels: {left}"
    book = pdf_text(pdfs / "book.pdf", layout=False)
    assert not label_leftovers(book, labels)


@pytest.mark.book
@pytest.mark.parametrize("page", chapter_pages())
def test_japanese_handouts_per_chapter(pdfs, page):
    """The Japanese handouts: a title block in Japanese with the build's
    date and commit, pages numbered from 1, Japanese fonts embedded, and
    the solutions only in the instructor edition (it is longer)."""
    ja = pdfs / "ja"
    student, instructor = handout_paths(ja, page)
    for path in (student, instructor):
        assert path.exists(), path
        first = pdf_text(path, page=1)
        # pdftotext drops the spaces LuaTeX-ja puts around Latin text
        number = rf"第\s*{chapter_number(page)}\s*章"
        assert re.search(number, first), first[:300]
        assert re.search(
            r"\d{4}-\d\d-\d\d\s*にビルド、コミット\s*[0-9a-f]{7,}", first
        ), first[:400]
        for i, page_text in enumerate(page_texts(path), start=1):
            lines = [ln.strip() for ln in page_text.splitlines() if ln.strip()]
            assert lines and lines[-1] == str(i), (path.name, i, lines[-1:])
        fonts = subprocess.run(
            ["pdffonts", str(path)], capture_output=True, text=True
        ).stdout
        assert "IPAexMincho" in fonts and "IPAexGothic" in fonts, fonts
        # Japanese text, not English left untranslated
        text = pdf_text(path, layout=False)
        kana = len(re.findall(r"[\u3040-\u30ff]", text))
        assert kana > 500, f"{path.name}: {kana} kana"
        # A term linked to the glossary prints as the term alone, not
        # followed by "(用語集, address)" each time.
        glossary = re.findall(r"用語集\s*[,、]\s*https?://", text)
        assert not glossary, f"{path.name}: {len(glossary)} glossary addresses"
    assert n_pages(instructor) > n_pages(student)
    assert "解答なし" in pdf_text(student, page=1)
