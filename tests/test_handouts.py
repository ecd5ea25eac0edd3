"""booktools.handouts: collecting the PDFs, refusing blank pages."""

from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
)

from booktools import handouts


def text_page(writer: PdfWriter, text: str) -> None:
    """Append a page that shows ``text`` in Helvetica."""
    page = writer.add_blank_page(width=300, height=300)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {
            NameObject("/Font"): DictionaryObject(
                {NameObject("/F1"): writer._add_object(font)}
            )
        }
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 40 150 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)


def write_pdf(path: Path, pages: list[str | None]) -> Path:
    """A PDF with one page per item: text, or ``None`` for a blank page."""
    writer = PdfWriter()
    for text in pages:
        if text is None:
            writer.add_blank_page(width=300, height=300)
        else:
            text_page(writer, text)
    writer.add_metadata({"/Title": "The book"})
    with path.open("wb") as fh:
        writer.write(fh)
    return path


@pytest.fixture
def book(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Q\n"
        "    numbered: true\n    chapters:\n      - file: one\n"
        "      - file: two\n  - caption: B\n    chapters:\n"
        "      - file: refs\n"
    )
    (tmp_path / "one.md").write_text("# First chapter\n")
    (tmp_path / "two.md").write_text("---\nx: 1\n---\n# Second's chapter\n")
    (tmp_path / "refs.md").write_text("# References\n")
    latex = tmp_path / "latex"
    latex.mkdir()
    write_pdf(latex / "book.pdf", ["Title", "Text", "More"])
    for stem in ["one", "two"]:
        for suffix in ["", "-instructor"]:
            write_pdf(latex / f"handout-{stem}{suffix}.pdf", ["Page", "Two"])
    return latex, toc


def test_chapter_titles_are_the_numbered_parts(book):
    _, toc = book
    assert handouts.chapter_titles(toc) == {
        "one": "First chapter",
        "two": "Second's chapter",
    }


def test_blank_pages_are_found(tmp_path):
    pdf = write_pdf(tmp_path / "x.pdf", ["Hello", None, "7", "World"])
    # A page holding only its number is as blank as an empty one.
    assert handouts.blank_pages(pdf) == [2, 3]
    assert handouts.blank_pages(write_pdf(tmp_path / "y.pdf", ["A"])) == []


def test_collect_copies_book_and_both_editions(book, tmp_path):
    latex, toc = book
    out = tmp_path / "pdf"
    written = handouts.collect(latex, toc, out)
    assert sorted(p.name for p in written) == [
        "book.pdf",
        "one-instructor.pdf",
        "one.pdf",
        "two-instructor.pdf",
        "two.pdf",
    ]
    meta = PdfReader(str(out / "two-instructor.pdf")).metadata
    assert meta["/Title"] == "Second's chapter (instructor edition)"
    assert PdfReader(str(out / "one.pdf")).metadata["/Title"] == (
        "First chapter (student handout)"
    )
    assert len(PdfReader(str(out / "book.pdf")).pages) == 3


def test_missing_handout_is_reported(book, tmp_path):
    latex, toc = book
    (latex / "handout-two-instructor.pdf").unlink()
    with pytest.raises(ValueError, match="handout-two-instructor.pdf"):
        handouts.collect(latex, toc, tmp_path / "pdf")


def test_blank_page_in_a_handout_fails(book, tmp_path):
    latex, toc = book
    write_pdf(latex / "handout-one.pdf", ["Page", None, "Refs"])
    with pytest.raises(ValueError, match=r"blank pages: \[2\]"):
        handouts.collect(latex, toc, tmp_path / "pdf")


def test_main_explains_errors_without_a_trace(book, tmp_path, capsys):
    latex, toc = book
    (latex / "book.pdf").unlink()
    assert handouts.main([str(latex), str(toc), str(tmp_path / "o")]) == 1
    assert "no " in capsys.readouterr().err
    assert handouts.main([]) == 2
