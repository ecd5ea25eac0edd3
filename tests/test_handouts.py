from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import Fit

from booktools import handouts


def make_book(path: Path, marks: list[tuple[str, int, int]], pages: int):
    """A blank PDF with outline entries (title, page, depth)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    parents = {}
    for title, page, depth in marks:
        parent = parents.get(depth - 1)
        parents[depth] = writer.add_outline_item(
            title=title, page_number=page, parent=parent, fit=Fit.fit()
        )
    with path.open("wb") as fh:
        writer.write(fh)


@pytest.fixture
def book(tmp_path):
    pdf = tmp_path / "book.pdf"
    make_book(
        pdf,
        [
            ("Part I", 1, 0),
            ("First chapter", 2, 1),
            ("A section", 3, 2),
            ("Second’s chapter", 5, 1),
            ("Back matter", 7, 0),
            ("References", 8, 1),
        ],
        pages=10,
    )
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Q\n"
        "    numbered: true\n    chapters:\n      - file: one\n"
        "      - file: two\n  - caption: B\n    chapters:\n"
        "      - file: refs\n"
    )
    (tmp_path / "one.md").write_text("# First chapter\n")
    (tmp_path / "two.md").write_text("# Second's chapter\n")
    (tmp_path / "refs.md").write_text("# References\n")
    return pdf, toc


def test_spans_end_where_the_next_part_or_chapter_starts(book):
    from pypdf import PdfReader

    spans = handouts.outline_spans(PdfReader(str(book[0])))
    by = {s.title: (s.start, s.end) for s in spans}
    assert by == {
        "Part I": (1, 2),
        "First chapter": (2, 5),
        "Second’s chapter": (5, 7),
        "Back matter": (7, 8),
        "References": (8, 10),
    }


def test_handouts_are_chapter_pages_plus_references(book, tmp_path):
    from pypdf import PdfReader

    pdf, toc = book
    written = handouts.write_handouts(pdf, toc, tmp_path / "out")
    assert [p.name for p in written] == ["one.pdf", "two.pdf"]
    assert len(PdfReader(str(written[0])).pages) == 3 + 2
    assert len(PdfReader(str(written[1])).pages) == 2 + 2


def test_missing_chapter_is_reported(book, tmp_path):
    pdf, toc = book
    (tmp_path / "two.md").write_text("# Not in the book\n")
    with pytest.raises(ValueError, match="Not in the book"):
        handouts.write_handouts(pdf, toc, tmp_path / "out")
