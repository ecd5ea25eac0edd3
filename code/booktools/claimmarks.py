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
* ``{ledger}`bn-edge-signal digits edge_share_hi .0%``` writes a number
  the ledger recorded, so that the prose never types one: the range of a
  claim's measure over the seed sets of one variant ("17% to 21%"; a
  leading ``-`` negates the measure), or with ``held`` or ``sets`` in
  place of the measure, in how many seed sets the claim held or ran.
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
from booktools import i18n, ledger

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
        reftitle=words(env.config.language)["checked"].format(
            text=found[2].text, number=number(claim_id)
        ),
        classes=["claim-marker"],
    )
    return [nodes.superscript("", "", ref)], []


#: The words of the list and the ledger rows, in each edition's language
#: (these lines change with every ledger, so they are made here in the
#: page's language instead of going through the catalogues).
WORDS = {
    "en": dict(
        intro=(
            "The robustness ledger reran every claim under {sets} seed sets "
            "and each variant of its experiment ({made}). After each claim, "
            "its row: the seed sets of the book's configuration in which it "
            "held, then each variant (\u2713: held in every seed set; n/a: "
            "the experiment has no such variant; not rerun: the claim was "
            "restated after that variant ran, and its sentence claims the "
            "book's setting only)."
        ),
        made="recorded on {date}, latest at commit {commit}",
        none="no ledger has been recorded for this chapter yet",
        sets="{held}/{total} seed sets",
        not_claimed="not claimed",
        na="n/a",
        not_run="not rerun",
        ledger="Ledger",
        kinds=dict(identity="Identity", finding="Finding"),
        variants=dict(
            longer="longer", wider="wider", rate="rate", digits="digits"
        ),
        missing="not yet in the ledger",
        sep=" \u00b7 ",
        checked="Checked: {text}",
        range="{lo} to {hi}",
    ),
    "ja": dict(
        intro=(
            "頑健性台帳は、すべての主張を {sets} 組のシード集合と"
            "実験の各変種で再実行した（{made}）。各主張の後にその行を"
            "示す。本書の設定で主張が成り立ったシード集合の数、続いて"
            "各変種（\u2713: すべてのシード集合で成立、n/a: その実験に"
            "はその変種がない、未再実行: その変種の実行後に主張を改めたため"
            "本書の設定でのみ主張する）。"
        ),
        made="{date} 記録、最新のコミット {commit}",
        none="この章の台帳はまだ記録されていない",
        sets="{held}/{total} シード集合",
        not_claimed="主張せず",
        na="n/a",
        not_run="未再実行",
        ledger="台帳",
        kinds=dict(identity="恒等式", finding="知見"),
        variants=dict(
            longer="長い学習",
            wider="幅広",
            rate="別の学習率",
            digits="手書き数字",
        ),
        missing="まだ台帳にない",
        sep="・",
        checked="このビルドが確認した主張 {number}",
        range="{lo} から {hi}",
    ),
}


def words(language: str | None) -> dict:
    """The list's words in ``language`` (English for any other)."""
    return i18n.in_language(WORDS, language)


def _cell(cell: dict, w: dict) -> tuple[str, bool]:
    held, total = len(cell["held"]), len(cell["held"]) + len(cell["failed"])
    if held == total:
        return TICK, True
    return f"{held}/{total}", False


def ledger_row(
    claim_id: str, record: dict | None, language: str | None = "en"
) -> str:
    """A claim's row of the ledger: ``"10/10 seed sets · longer ✓ · wider
    6/10 (not claimed) · rate ✓ · digits n/a"``."""
    w = words(language)
    row = (record or {}).get("claims", {}).get(claim_id)
    book = row["variants"].get(ledger.BOOK) if row else None
    if book is None:
        return w["missing"]
    held = len(book["held"])
    parts = [w["sets"].format(held=held, total=held + len(book["failed"]))]
    expected = VARIANTS if row["kind"] == "identity" else row["where"]
    for variant in VARIANTS:
        name = w["variants"][variant]
        cell = row["variants"].get(variant)
        if cell is None:
            missing = variant in ledger.declared_variants(record, row)
            parts.append(f"{name} {w['not_run'] if missing else w['na']}")
            continue
        text, ok = _cell(cell, w)
        if not ok and variant not in expected:
            text += f" ({w['not_claimed']})"
        parts.append(f"{name} {text}")
    return w["sep"].join(parts)


def ledger_value(
    spec: str, record: dict | None, language: str | None = "en"
) -> str:
    """What ``{ledger}`spec``` writes (see the module's docstring):
    ``spec`` is ``"claim variant what [format]"``, ``what`` a measure of
    the claim (``-name`` negated), ``held`` or ``sets``; ``format`` a
    format specification for the measure (``.2f``, ``.0%``).

    Raises:
        ValueError: ``spec`` is malformed, or names a claim, variant or
            measure the ledger does not have.
    """
    parts = spec.split()
    if len(parts) not in (3, 4):
        raise ValueError(
            f"{spec!r}: expected 'claim variant measure [format]' or "
            "'claim variant held|sets'"
        )
    claim_id, variant, what = parts[:3]
    fmt = parts[3] if len(parts) == 4 else "g"
    row = (record or {}).get("claims", {}).get(claim_id)
    if row is None:
        raise ValueError(f"{spec!r}: claim {claim_id!r} is not in the ledger")
    cell = row["variants"].get(variant)
    if cell is None:
        raise ValueError(
            f"{spec!r}: the ledger has no {variant!r} row for {claim_id} "
            f"(it has {sorted(row['variants'])})"
        )
    if what in ("held", "sets"):
        if len(parts) == 4:
            raise ValueError(f"{spec!r}: a count takes no format")
        held = len(cell["held"])
        return str(held if what == "held" else held + len(cell["failed"]))
    sign, name = (-1, what[1:]) if what.startswith("-") else (1, what)
    values = cell["measured"].get(name)
    if values is None:
        raise ValueError(
            f"{spec!r}: {claim_id} measures {sorted(cell['measured'])}, "
            f"not {name!r}"
        )
    lo, hi = sorted(sign * v for v in values)
    try:
        lo_text, hi_text = format(lo, fmt), format(hi, fmt)
    except ValueError as e:
        raise ValueError(f"{spec!r}: format {fmt!r}: {e}") from None
    if lo_text == hi_text:
        return lo_text
    return words(language)["range"].format(lo=lo_text, hi=hi_text)


def ledger_number(spec: str, language: str | None = "en") -> tuple[str, Path]:
    """:func:`ledger_value` of ``spec`` from the ledger of the chapter
    whose claim it names, with that ledger's path.

    Raises:
        ValueError: ``spec`` names no claim, or as for :func:`ledger_value`.
    """
    claim_id = spec.split()[0] if spec.split() else ""
    found = _registry().get(claim_id)
    if found is None:
        raise ValueError(f"{spec!r}: no claim {claim_id!r}")
    path = ledger.OUT / f"{found[0]}.json"
    return ledger_value(spec, read_ledger(found[0]), language), path


def ledger_role(
    name, rawtext, text, lineno, inliner, options=None, content=None
):
    """``{ledger}`claim variant what [format]```: a number of the ledger
    (:func:`ledger_number`); the page is read again when the ledger
    changes."""
    env = inliner.document.settings.env
    try:
        value, path = ledger_number(text, env.config.language)
        if path.exists():
            env.note_dependency(str(path))
    except ValueError as e:
        msg = inliner.reporter.error(str(e), line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.Text(value)], []


def read_ledger(chapter: str, folder: Path = ledger.OUT) -> dict | None:
    """A chapter's ledger record, or ``None`` when there is none yet."""
    path = folder / f"{chapter}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return ledger.rescoped(record, chapter)


def made_on(record: dict | None, language: str | None = "en") -> str:
    """When and on which commit the ledger was made (the latest section's
    run), in ``language``."""
    w = words(language)
    if not record or not record.get("sections"):
        return w["none"]
    latest = max(record["sections"].values(), key=lambda r: r["date"])
    return w["made"].format(
        date=latest["date"][:10], commit=latest["commit"][:7]
    )


def seed_sets(record: dict | None) -> int:
    """The most seed sets any section of the record ran."""
    runs = (record or {}).get("sections", {}).values()
    return max((len(r["seed_sets"]) for r in runs), default=0)


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
        if record is not None:  # read again when the ledger changes
            self.env.note_dependency(str(ledger.OUT / f"{chapter}.json"))
        language = self.config.language
        w = words(language)
        intro = nodes.paragraph(classes=["ledger-intro"], translatable=False)
        intro += nodes.Text(
            w["intro"].format(
                sets=seed_sets(record), made=made_on(record, language)
            )
        )
        items = nodes.enumerated_list(enumtype="arabic", classes=["claims"])
        for claim_id, claim in listed:
            item = nodes.list_item()
            text = nodes.paragraph(
                f"**{claim.kind.capitalize()}.** {_sentence(claim.text)}"
            )
            self.set_source_info(text)
            text += nodes.target("", "", ids=[target_id(claim_id)])
            text += nodes.strong("", w["kinds"][claim.kind] + ".")
            text += nodes.Text(" " + _sentence(claim.text))
            row = nodes.paragraph(classes=["ledger-row"], translatable=False)
            row += nodes.emphasis(
                "", f"{w['ledger']}: {ledger_row(claim_id, record, language)}"
            )
            item += [text, row]
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
    app.add_role("ledger", ledger_role)
    app.add_directive("checked-claims", CheckedClaims)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-check-consistency", check_marks)


def overview(chapters=None) -> list[tuple[str, object]]:
    """Per chapter (``batchlab.experiments.CHAPTERS`` by default), a line
    saying when its ledger was made and what it cost, and its table
    (:func:`booktools.ledger.table`), for the reproducing page."""
    from batchlab import experiments

    out = []
    for chapter in chapters or experiments.CHAPTERS:
        record = read_ledger(chapter)
        if record is None:
            out.append((f"**{chapter}**: {WORDS['en']['none']}", None))
            continue
        minutes = ledger.cost(record)["all"] / 60
        line = f"**{chapter}**: {made_on(record)}, {minutes:.0f} CPU minutes"
        out.append((line, ledger.table(record)))
    return out
