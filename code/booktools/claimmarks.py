"""Claim markers in the prose and the list "Checked by this build".

* ``{claim}`mb-noise-law``` marks the sentence a claim checks: a small
  numbered tick (``✓3``) that links to the claim's entry in the list and
  shows its text on hover. It needs nothing from the notebook, only the
  claim registry (:func:`batchlab.claims.registry`), so it renders the
  same in a translated paragraph.
* ``{checked-claims} minibatch`` lists every claim of a chapter package
  in order, each with its kind, its text and its row of the robustness
  ledger (``benchmarks/results/ledger/<chapter>.json``, made by
  :mod:`booktools.ledger`).
* The build fails (a warning under ``-W``) on a marker whose id is no
  claim, a marker of another chapter's claim, and a claim of a listed
  chapter that no sentence of the page marks.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from batchlab import claims as claimlib
from batchlab.runtime import VARIANTS
from booktools import ledger

logger = logging.getLogger(__name__)
TICK = "\u2713"


@lru_cache(maxsize=1)
def _registry() -> dict[str, tuple]:
    return claimlib.registry()


def number(claim_id: str) -> int:
    """The claim's position in its chapter's list (from 1)."""
    chapter = _registry()[claim_id][0]
    ids = [k for k, v in _registry().items() if v[0] == chapter]
    return ids.index(claim_id) + 1


def target_id(claim_id: str) -> str:
    """The HTML id (and LaTeX label) of a claim's entry in the list."""
    return f"claim-{claim_id}"


def claim_role(
    name, rawtext, text, lineno, inliner, options=None, content=None
):
    """``{claim}`id```: the marker of a checked sentence."""
    claim_id = text.strip()
    found = _registry().get(claim_id)
    if found is None:
        msg = inliner.reporter.error(
            f"no claim {claim_id!r}: a marker needs a claim of "
            "batchlab.experiments with that id",
            line=lineno,
        )
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    env = inliner.document.settings.env
    marks = env.temp_data.setdefault("claim_marks", set())
    marks.add(claim_id)
    env.claim_marks = getattr(env, "claim_marks", {})
    env.claim_marks.setdefault(env.docname, set()).add(claim_id)
    ref = nodes.reference(
        "",
        f"{TICK}{number(claim_id)}",
        refid=target_id(claim_id),
        reftitle=f"Checked: {found[2].text}",
        classes=["claim-marker"],
    )
    return [nodes.superscript("", "", ref)], []


def _yes(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    held, total = len(cell["held"]), len(cell["held"]) + len(cell["failed"])
    return "yes" if held == total else f"no ({held} of {total})"


def ledger_row(claim_id: str, record: dict | None) -> str:
    """A claim's row of the ledger in words: ``"held in 10 of 10 seed
    sets; longer yes; wider no (6 of 10), not claimed; rate yes; digits
    n/a"``."""
    row = (record or {}).get("claims", {}).get(claim_id)
    if row is None:
        return "not yet in the ledger"
    cells = row["variants"]
    book = cells.get(ledger.BOOK)
    if book is None:
        return "not yet in the ledger"
    held = len(book["held"])
    total = held + len(book["failed"])
    parts = [f"held in {held} of {total} seed sets"]
    expected = VARIANTS if row["kind"] == "identity" else row["where"]
    for variant in VARIANTS:
        if variant not in cells:
            parts.append(f"{variant} n/a")
            continue
        text = f"{variant} {_yes(cells[variant])}"
        if variant not in expected and text.endswith(")"):
            text += ", not claimed"
        parts.append(text)
    return "; ".join(parts)


def read_ledger(chapter: str, folder: Path = ledger.OUT) -> dict | None:
    """A chapter's ledger record, or ``None`` when there is none yet."""
    path = folder / f"{chapter}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def made_on(record: dict | None) -> str:
    """When and on which commit the ledger was made (short, for print)."""
    if not record or not record.get("sections"):
        return "no ledger has been recorded for this chapter yet"
    runs = record["sections"].values()
    commits = sorted({r["commit"][:7] for r in runs})
    dates = sorted({r["date"][:10] for r in runs})
    sets = max(len(r["seed_sets"]) for r in runs)
    return (
        f"recorded on {', '.join(dates)} at commit {', '.join(commits)}, "
        f"{sets} seed sets"
    )


class CheckedClaims(SphinxDirective):
    """``{checked-claims} chapter``: the chapter's claims with their
    ledger rows, as a numbered list whose entries the markers link to."""

    required_arguments = 1
    option_spec = {"class": directives.class_option}

    def run(self) -> list[nodes.Node]:
        chapter = self.arguments[0]
        listed = [(k, v[2]) for k, v in _registry().items() if v[0] == chapter]
        if not listed:
            raise self.error(f"no claims for chapter {chapter!r}")
        env = self.env
        env.claim_lists = getattr(env, "claim_lists", {})
        env.claim_lists[env.docname] = chapter
        record = read_ledger(chapter)
        intro = nodes.paragraph()
        self.set_source_info(intro)
        intro += nodes.Text(
            "The robustness ledger reran every claim under many seed sets "
            f"and the chapter's variants ({made_on(record)}); each entry "
            "gives its row."
        )
        items = nodes.enumerated_list(enumtype="arabic", classes=["claims"])
        for claim_id, claim in listed:
            item = nodes.list_item()
            para = nodes.paragraph()
            self.set_source_info(para)
            para += nodes.target("", "", ids=[target_id(claim_id)])
            para += nodes.strong("", claim.kind.capitalize() + ".")
            para += nodes.Text(" " + _sentence(claim.text) + " ")
            para += nodes.emphasis(
                "", f"Ledger: {ledger_row(claim_id, record)}."
            )
            item += para
            items += item
        return [intro, items]


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def check_marks(app: Sphinx, env) -> None:
    """Every claim of a listed chapter is marked on its page, and every
    marker on a page belongs to the chapter the page lists."""
    marks = getattr(env, "claim_marks", {})
    lists = getattr(env, "claim_lists", {})
    for docname, ids in marks.items():
        chapter = lists.get(docname)
        wrong = sorted(i for i in ids if _registry()[i][0] != chapter)
        if wrong:
            logger.warning(
                f"claim markers {wrong} belong to another chapter than the "
                f"one this page lists ({chapter})",
                location=docname,
            )
    for docname, chapter in lists.items():
        due = [k for k, v in _registry().items() if v[0] == chapter]
        unmarked = [k for k in due if k not in marks.get(docname, set())]
        if unmarked:
            logger.warning(
                f"claims checked but marked by no sentence: {unmarked}; "
                "mark the sentence each checks with {claim}`id`",
                location=docname,
            )


def purge(app: Sphinx, env, docname: str) -> None:
    """Forget a page's markers and list before it is read again."""
    getattr(env, "claim_marks", {}).pop(docname, None)
    getattr(env, "claim_lists", {}).pop(docname, None)


def merge(app: Sphinx, env, docnames, other) -> None:
    """Merge what parallel readers found."""
    for name in ("claim_marks", "claim_lists"):
        mine = getattr(env, name, {})
        for docname in docnames:
            if docname in getattr(other, name, {}):
                mine[docname] = getattr(other, name)[docname]
        setattr(env, name, mine)


def setup(app: Sphinx) -> None:
    """Register the role, the directive and the consistency check."""
    app.add_role("claim", claim_role)
    app.add_directive("checked-claims", CheckedClaims)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-check-consistency", check_marks)
