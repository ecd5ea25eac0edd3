"""booktools.claimmarks: markers link to the list, the build refuses a
marker without a claim and a claim without a marker, and every chapter
page marks each of its claims."""

import re
import shutil

import pytest
from conftest import ROOT, jupyter_book, toc_files

from batchlab import claims, experiments
from booktools import claimmarks

MARKER = re.compile(r"\{claim\}`([^`]+)`")


def chapter_pages() -> dict[str, str]:
    """Chapter package -> the page that lists its claims."""
    found = {}
    for page in toc_files():
        text = (ROOT / f"{page}.md").read_text()
        for chapter in re.findall(r"```\{checked-claims\} (\w+)", text):
            assert chapter not in found, f"{chapter} is listed twice"
            found[chapter] = page
    return found


def test_every_chapter_lists_its_claims_on_one_page():
    assert set(chapter_pages()) == set(experiments.CHAPTERS)


@pytest.mark.parametrize("chapter", experiments.CHAPTERS)
def test_every_claim_is_marked_on_its_page_and_no_marker_dangles(chapter):
    page = chapter_pages()[chapter]
    text = (ROOT / f"{page}.md").read_text()
    marked = set(MARKER.findall(text))
    mine = {k for k, v in claims.registry().items() if v[0] == chapter}
    assert mine - marked == set(), "claims no sentence marks"
    assert marked - mine == set(), "markers of no claim of this chapter"


def tiny_book(tmp_path, body: str):
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (book / "page.md").write_text("# Page\n\n" + body)
    return book


def all_marked(chapter: str) -> str:
    ids = [k for k, v in claims.registry().items() if v[0] == chapter]
    return " ".join(f"Sentence {{claim}}`{i}`." for i in ids)


def test_markers_link_to_the_list_with_ledger_rows(tmp_path):
    chapter = experiments.CHAPTERS[0]
    first = next(k for k, v in claims.registry().items() if v[0] == chapter)
    book = tiny_book(
        tmp_path,
        all_marked(chapter) + f"\n\n```{{checked-claims}} {chapter}\n```\n",
    )
    done = jupyter_book(".", cwd=book)
    assert done.returncode == 0, done.stdout[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    assert f'href="#claim-{first}"' in html and f'id="claim-{first}"' in html
    assert "\u27131</a></sup>" in html
    row = claimmarks.ledger_row(first, claimmarks.read_ledger(chapter))
    assert "seed sets" in row and row in html


@pytest.mark.parametrize(
    "body, message",
    [
        ("A {claim}`xx-no-such-claim`.", "no claim 'xx-no-such-claim'"),
        ("```{checked-claims} CHAPTER\n```\n", "marked by no sentence"),
    ],
)
def test_the_build_refuses_unmatched_markers_and_claims(
    tmp_path, body, message
):
    body = body.replace("CHAPTER", experiments.CHAPTERS[0])
    done = jupyter_book(".", cwd=tiny_book(tmp_path, body))
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_overview_gives_each_chapter_its_line_and_table():
    from batchlab import experiments

    shown = claimmarks.overview()
    assert len(shown) == len(experiments.CHAPTERS)
    for chapter, (line, table) in zip(experiments.CHAPTERS, shown):
        assert line.startswith(f"**{chapter}**: ")
        assert "CPU minutes" in line
        record = claimmarks.read_ledger(chapter)
        assert list(table["claim"]) == list(record["claims"])
