"""Collect the book and the chapter handouts from the LaTeX build.

The LaTeX builder writes, next to ``book.tex``, two documents per
numbered chapter (see :mod:`booktools.latex`): ``handout-<chapter>.tex``
(student handout, no solutions) and ``handout-<chapter>-instructor.tex``
(with solutions). This step copies their PDFs to the output folder as
``book.pdf``, ``<chapter>.pdf`` and ``<chapter>-instructor.pdf``, sets
each file's title, and refuses a PDF with a blank page.

Run as ``python -m booktools.handouts LATEX_DIR TOC_YML OUT_DIR``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

EDITIONS = {"": "student handout", "-instructor": "instructor edition"}


def chapter_titles(toc_path: Path) -> dict[str, str]:
    """Title (first ``# `` heading) of every page in the numbered parts of
    ``_toc.yml``, keyed by the page's file stem."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    root = toc_path.parent
    titles = {}
    for part in toc.get("parts", []):
        if not part.get("numbered"):
            continue
        for entry in part["chapters"]:
            text = (root / f"{entry['file']}.md").read_text(encoding="utf-8")
            heading = re.search(r"^# (.+)$", text, re.M)
            if heading is None:
                raise ValueError(f"{entry['file']}.md has no '# ' title")
            titles[Path(entry["file"]).stem] = heading.group(1).strip()
    return titles


def is_blank(page) -> bool:
    """No text and no image or drawing on the page (page numbers count
    as text, so a numbered empty page is caught by its lack of anything
    else: it has at most a number)."""
    text = (page.extract_text() or "").strip()
    resources = page.get("/Resources") or {}
    xobjects = resources.get("/XObject") or {}
    return not xobjects and (text == "" or text.isdigit())


def blank_pages(path: Path) -> list[int]:
    """1-based numbers of the blank pages of a PDF."""
    reader = PdfReader(str(path))
    return [i + 1 for i, page in enumerate(reader.pages) if is_blank(page)]


def copy_pdf(source: Path, target: Path, title: str) -> Path:
    """Copy ``source`` to ``target`` with ``title`` in its metadata.

    Raises:
        ValueError: the PDF has a blank page.
    """
    blank = blank_pages(source)
    if blank:
        raise ValueError(f"{source} has blank pages: {blank}")
    writer = PdfWriter(clone_from=str(source))
    writer.add_metadata({"/Title": title})
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        writer.write(fh)
    return target


def collect(latex_dir: Path, toc: Path, out_dir: Path) -> list[Path]:
    """Copy ``book.pdf`` and both editions of each chapter's handout.

    Raises:
        ValueError: a handout is missing (the LaTeX build and the table
            of contents disagree) or has a blank page.
    """
    written = []
    book = latex_dir / "book.pdf"
    if not book.exists():
        raise ValueError(f"no {book}; did the LaTeX build run?")
    meta = PdfReader(str(book)).metadata or {}
    book_title = str(meta.get("/Title") or "Book")
    written.append(copy_pdf(book, out_dir / "book.pdf", book_title))
    for stem, title in chapter_titles(toc).items():
        for suffix, edition in EDITIONS.items():
            source = latex_dir / f"handout-{stem}{suffix}.pdf"
            if not source.exists():
                raise ValueError(
                    f"no handout {source.name} for {stem!r} in {latex_dir}"
                )
            written.append(
                copy_pdf(
                    source,
                    out_dir / f"{stem}{suffix}.pdf",
                    f"{title} ({edition})",
                )
            )
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m booktools.handouts LATEX_DIR TOC_YML OUT_DIR")
        return 2
    try:
        paths = collect(Path(argv[0]), Path(argv[1]), Path(argv[2]))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
