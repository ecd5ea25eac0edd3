"""Per-chapter handouts cut from the book's PDF.

Jupyter Book's single-page LaTeX builds turn every section into a part
with its own page, so a handout built that way is twice as long as the
chapter in the book. Instead we build the book once and cut it: each
handout is a chapter's pages followed by the book's references, found
through the PDF outline (bookmarks) that LaTeX writes.

Run as ``python -m booktools.handouts BOOK_PDF TOC_YML OUT_DIR``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

REFERENCES_TITLE = "References"


@dataclass(frozen=True)
class Span:
    """A bookmarked stretch of the PDF: pages ``[start, end)``, 0-based."""

    title: str
    start: int
    end: int


def _normalize(title: str) -> str:
    return re.sub(r"\s+", " ", title.replace("\u2019", "'")).strip().lower()


def outline_spans(reader: PdfReader) -> list[Span]:
    """Parts and chapters (outline levels 0 and 1) with their page spans.

    A span ends where the next part or chapter begins, the last at the
    end of the document.
    """
    marks: list[tuple[str, int]] = []

    def walk(items, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                if depth < 1:
                    walk(item, depth + 1)
            else:
                page = reader.get_destination_page_number(item)
                marks.append((item.title, page))

    walk(reader.outline, 0)
    if not marks:
        raise ValueError("the PDF has no outline; was it built by LaTeX?")
    pages = sorted({page for _, page in marks}) + [len(reader.pages)]
    return [
        Span(title, start, next(p for p in pages if p > start))
        for title, start in marks
    ]


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


def write_handouts(book: Path, toc: Path, out_dir: Path) -> list[Path]:
    """Write ``out_dir/<chapter>.pdf`` for each numbered chapter.

    Raises:
        ValueError: a chapter or the references are missing from the PDF
            outline (the book and the table of contents disagree).
    """
    reader = PdfReader(str(book))
    spans = {_normalize(s.title): s for s in outline_spans(reader)}
    refs = spans.get(_normalize(REFERENCES_TITLE))
    if refs is None:
        raise ValueError(f"no '{REFERENCES_TITLE}' chapter in {book}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, title in chapter_titles(toc).items():
        span = spans.get(_normalize(title))
        if span is None:
            raise ValueError(f"chapter {title!r} is not in {book}'s outline")
        writer = PdfWriter()
        for page in [
            *range(span.start, span.end),
            *range(refs.start, len(reader.pages)),
        ]:
            writer.add_page(reader.pages[page])
        writer.add_metadata({"/Title": title})
        target = out_dir / f"{stem}.pdf"
        with target.open("wb") as fh:
            writer.write(fh)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m booktools.handouts BOOK_PDF TOC_YML OUT_DIR")
        return 2
    for path in write_handouts(Path(argv[0]), Path(argv[1]), Path(argv[2])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
