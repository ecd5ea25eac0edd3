"""booktools.claimmarks: markers link to the list, the build refuses a
marker without a claim and a claim without a marker, and every chapter
page marks each of its claims."""

import re
import shutil

import pytest
from conftest import ROOT, jupyter_book, toc_files

from batchlab import claims, experiments
from booktools import claimmarks, ledger

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


RECORD = {
    "claims": {
        "xx-a": {
            "variants": {
                "book": {
                    "held": [0, 1, 2],
                    "failed": [3],
                    "measured": {
                        "share": [0.174, 0.214],
                        "gap": [-1.68, -1.18],
                    },
                },
            }
        }
    }
}


@pytest.mark.parametrize(
    "spec, language, expected",
    [
        ("xx-a book share .0%", "en", "17% to 21%"),
        ("xx-a book share .0%", "ja", "17% から 21%"),
        ("xx-a book -gap .0%", "en", "118% to 168%"),  # negated, in order
        (
            "xx-a book share .1f",
            "en",
            "0.2",
        ),  # one value when they round alike
        ("xx-a book held", "en", "3"),
        ("xx-a book sets", "en", "4"),
    ],
)
def test_ledger_values_are_the_recorded_range_or_count(
    spec, language, expected
):
    assert claimmarks.ledger_value(spec, RECORD, language) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("xx-a book", "expected 'claim variant"),
        ("xx-b book share", "claim 'xx-b' is not in the ledger"),
        ("xx-a digits share", "no 'digits' row"),
        ("xx-a book spread .2f", "measures ['gap', 'share'], not 'spread'"),
        ("xx-a book share .2q", "format '.2q'"),
        ("xx-a book held .0f", "a count takes no format"),
    ],
)
def test_a_ledger_value_the_ledger_lacks_is_an_error(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        claimmarks.ledger_value(spec, RECORD)


def test_a_ledger_number_reads_the_ledger_of_the_claims_chapter():
    chapter = experiments.CHAPTERS[-1]
    record = claimmarks.read_ledger(chapter)
    claim_id = next(iter(record["claims"]))
    value, path = claimmarks.ledger_number(f"{claim_id} book sets")
    assert path == ledger.OUT / f"{chapter}.json"
    assert value == claimmarks.ledger_value(f"{claim_id} book sets", record)
    with pytest.raises(ValueError, match="no claim 'zz-none'"):
        claimmarks.ledger_number("zz-none book held")


def test_the_ledger_role_writes_the_ledgers_numbers_and_refuses_others(
    tmp_path,
):
    chapter = experiments.CHAPTERS[0]
    record = claimmarks.read_ledger(chapter)
    claim_id, row = next(iter(record["claims"].items()))
    cell = row["variants"]["book"]
    measure = sorted(cell["measured"])[0]
    lo, hi = sorted(cell["measured"][measure])
    expected = claimmarks.ledger_value(
        f"{claim_id} book {measure} .6f", record
    )
    assert expected in (f"{lo:.6f}", f"{lo:.6f} to {hi:.6f}")
    body = (
        all_marked(chapter)
        + f" Range: {{ledger}}`{claim_id} book {measure} .6f`;"
        + f" held in {{ledger}}`{claim_id} book held` of"
        + f" {{ledger}}`{claim_id} book sets`."
        + f"\n\n```{{checked-claims}} {chapter}\n```\n"
    )
    book = tiny_book(tmp_path, body)
    done = jupyter_book(".", cwd=book)
    assert done.returncode == 0, done.stdout[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    held = len(cell["held"])
    total = held + len(cell["failed"])
    assert f"Range: {expected}; held in {held} of {total}." in html
    (book / "page.md").write_text(
        "# Page\n\n" + body.replace(f"book {measure}", "book no_such_measure")
    )
    done = jupyter_book(".", cwd=book)
    assert done.returncode != 0
    assert "not 'no_such_measure'" in done.stdout + done.stderr
