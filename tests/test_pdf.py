"""The printed book: the whole-book PDF and one handout per chapter."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, chapter_pages, make, require_tool, toc_files
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
]


def pdf_tools() -> bool:
    done = make("-s", "pdf-check")
    return done.returncode == 0


@pytest.fixture(scope="module")
def pdfs(built) -> Path:
    require_tool(pdf_tools(), "LaTeX for make pdf (see README)")
    return built.pdf()


def pdf_text(path: Path) -> str:
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def page_title(page: str) -> str:
    text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
    return re.search(r"^# (.+)$", text, re.M).group(1).strip()


def loose(text: str) -> str:
    """Lower case, one space, straight quotes: LaTeX sets curly ones."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", text).lower()


def n_images(path: Path) -> int:
    out = subprocess.run(
        ["pdfimages", "-list", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = out.stdout.splitlines()[2:]
    return sum(1 for r in rows if r.split()[2] == "image")


def html_figures(site: Path, page: str) -> int:
    html = (site / f"{page}.html").read_text(encoding="utf-8")
    return len(re.findall(r'<img[^>]+src="[^"]*_images/', html))


def test_missing_latex_is_explained_without_a_trace():
    done = make("-s", "pdf-check", "PDF_TOOLS=no-such-latex")
    assert done.returncode != 0
    assert "no-such-latex" in done.stdout
    assert "apt-get install" in done.stdout
    assert "texlive-fonts-extra" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_book_pdf_has_every_page_and_no_leaks(pdfs):
    book = pdfs / "book.pdf"
    text = loose(pdf_text(book))
    for page in toc_files():
        assert loose(page_title(page)) in text, page
    assert "??" not in text, "unresolved reference in the PDF"
    for pattern in LEAKED_MARKUP:
        assert not re.search(pattern, text), f"raw markup {pattern} leaked"
    pages = len(PdfReader(str(book)).pages)
    assert 20 <= pages <= 200


def test_every_html_figure_is_in_the_pdf(pdfs, built):
    site = built.html()
    expected = sum(html_figures(site, p) for p in toc_files())
    assert expected > 0
    assert n_images(pdfs / "book.pdf") >= expected


@pytest.mark.parametrize("page", chapter_pages())
def test_handout_per_chapter(pdfs, built, page):
    handout = pdfs / f"{Path(page).stem}.pdf"
    assert handout.exists()
    text = loose(pdf_text(handout))
    title = page_title(page)
    assert loose(title) in text
    others = [page_title(p) for p in chapter_pages() if p != page]
    for other in others:  # titles of other chapters appear only as links
        assert text.count(loose(other)) <= 2
    assert "bibliography" in text or "references" in text
    assert n_images(handout) >= html_figures(built.html(), page)
    n = len(PdfReader(str(handout)).pages)
    assert 3 <= n < len(PdfReader(str(pdfs / "book.pdf")).pages)
    assert chapter_titles(ROOT / "_toc.yml")[Path(page).stem] == title
    # First page rendered to PNG so a person can look at it.
    require_tool(shutil.which("pdftoppm") is not None, "pdftoppm")
    preview = pdfs / "preview"
    preview.mkdir(exist_ok=True)
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
            str(handout),
            str(preview / Path(page).stem),
        ],
        check=True,
    )
    assert (preview / f"{Path(page).stem}.png").stat().st_size > 1000
