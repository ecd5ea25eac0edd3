"""Claims of the text that the build verifies.

Every sentence of a chapter about what the data show is checked by a
:class:`Claim`: an id (``mb-flat-fixed``), a kind, the claim in words and
a predicate over the facts of one experiment (the dict its section's
``facts`` returns). The section module lists them as ``CLAIMS``; the
chapter verifies a section in one line::

    claims.verify(section, section.facts(frame, cfg))

which checks every claim, glues every fact into the prose
(``{glue:text}`name```) and raises :class:`ClaimFailed`, naming every
claim that failed with its measured values, so the notebook and the build
fail. The prose marks each checked sentence with ``{claim}`id``` (see
:mod:`booktools.sphinxext`), and the chapter's "Checked by this build"
lists them with their rows of the robustness ledger
(:mod:`booktools.ledger`).

Two kinds:

* ``identity`` -- mathematics (an exact law, a derivation checked in
  float64); it must hold in every seed set and every variant.
* ``finding`` -- a fact about the phenomenon on the book's setting; it
  must hold in every seed set, and in the variants it names in ``where``
  (its sentence says so; the ledger shows the others).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType

from IPython.display import Markdown
from myst_nb import glue

from . import experiments
from .runtime import VARIANTS, Scale, current_scale

KINDS = ("identity", "finding")
ID_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)+")

# The claims verified in this process, in order, and the facts glued;
# the claims of chapters not yet on the contract, in words.
_verified: list[str] = []
_messages: list[str] = []
_glued: dict[str, str] = {}


class ClaimFailed(AssertionError):
    """A finding stated in the book does not hold on this run."""


@dataclass(frozen=True)
class Claim:
    """One claim of the text, checked over an experiment's facts.

    Attributes:
        id: lowercase words joined by hyphens, starting with the
            chapter's prefix (``mb-``, ``nz-``, ``bn-``, ``ev-``); unique
            in the book; the prose marks its sentence with it.
        kind: ``"identity"`` or ``"finding"``.
        text: the claim in words, as the reader sees it in the list.
        holds: a predicate over the facts dict.
        where: the variants (:data:`batchlab.runtime.VARIANTS`) in which
            a finding is also expected to hold; an identity holds in all.
        measure: facts that show how well it held (the ledger records
            their range over seed sets).
        quick: also checked at quick scale (the test suite's), whose
            experiments are too small for most findings.
    """

    id: str
    kind: str
    text: str
    holds: Callable[[Mapping], object]
    where: tuple[str, ...] = ()
    measure: tuple[str, ...] = ()
    quick: bool = False

    def __post_init__(self) -> None:
        if not ID_PATTERN.fullmatch(self.id):
            raise ValueError(
                f"claim id {self.id!r} must be lowercase words joined by "
                "hyphens, such as 'mb-flat-fixed'"
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"claim {self.id}: kind must be one of {KINDS}, got "
                f"{self.kind!r}"
            )
        if not self.text.strip():
            raise ValueError(f"claim {self.id} needs its text in words")
        if isinstance(self.where, str) or isinstance(self.measure, str):
            raise ValueError(
                f"claim {self.id}: where and measure are tuples of names"
            )
        unknown = set(self.where) - set(VARIANTS)
        if unknown:
            raise ValueError(
                f"claim {self.id}: unknown variants {sorted(unknown)}; "
                f"use {VARIANTS}"
            )
        if self.kind == "identity" and self.where:
            raise ValueError(
                f"claim {self.id} is an identity, which holds in every "
                "variant: leave where empty"
            )

    @property
    def expected(self) -> tuple[str, ...]:
        """The variants in which the claim must hold."""
        return VARIANTS if self.kind == "identity" else self.where

    def check(self, facts: Mapping) -> bool:
        """Whether the claim holds on ``facts``.

        Raises:
            KeyError: the predicate needs a fact that ``facts`` lacks (the
                message names the claim and the fact).
            ValueError: the predicate gave a tensor or array of several
                values instead of one truth value.
        """
        try:
            result = self.holds(facts)
        except KeyError as err:
            raise KeyError(
                f"claim {self.id} needs the fact {err.args[0]!r}, which "
                "the section's facts do not have"
            ) from None
        size = getattr(result, "size", 1)
        size = size() if callable(size) else size
        if getattr(result, "numel", None) is not None:
            size = result.numel()
        if size != 1:
            raise ValueError(
                f"claim {self.id} must give one truth value, got {size} "
                "(reduce with .all() or .any())"
            )
        return bool(result)

    def measured(self, facts: Mapping) -> dict[str, object]:
        """The facts of :attr:`measure` (for messages and the ledger)."""
        return {m: facts[m] for m in self.measure if m in facts}


def _scalar(name: str, value: object) -> object:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if not isinstance(value, bool | int | float | str):
        raise TypeError(
            f"fact {name!r} must be a number, a truth value or a short "
            f"text, got {type(value).__name__}"
        )
    return value


def claims_of(section: ModuleType) -> list[Claim]:
    """The ``CLAIMS`` list of a section module (empty if it has none).

    Raises:
        ValueError: ``CLAIMS`` holds something that is not a :class:`Claim`.
    """
    found = list(getattr(section, "CLAIMS", []))
    bad = [c for c in found if not isinstance(c, Claim)]
    if bad:
        raise ValueError(f"{section.__name__}.CLAIMS holds non-claims: {bad}")
    return found


def applies(claim: Claim, scale: Scale | str | None = None) -> bool:
    """Whether ``claim`` is checked at ``scale`` (the current one when
    omitted): every claim at book and full scale, at quick scale only
    those marked ``quick``."""
    scale = current_scale() if scale is None else Scale(scale)
    return claim.quick or scale is not Scale.QUICK


def evaluate(
    section: ModuleType, facts: Mapping, scale: Scale | str | None = None
) -> dict[str, bool]:
    """Each applicable claim of ``section``, by id, and whether it held."""
    return {
        c.id: c.check(facts) for c in claims_of(section) if applies(c, scale)
    }


def verify(section: ModuleType, facts: Mapping) -> None:
    """Glue every fact and check every claim of one section.

    Args:
        section: the section module (``CLAIMS``, ``facts``, ``run``).
        facts: what its ``facts`` returned: names to numbers, truth values
            or short texts.

    Returns nothing, so that the cell shows nothing; the claims are
    remembered for :func:`report`.

    Raises:
        ClaimFailed: one or more claims do not hold; the message lists
            each with its measured values.
        ValueError: a fact name was already glued by another section of
            this chapter, or the section has no claims.
    """
    claims = claims_of(section)
    if not claims:
        raise ValueError(f"{section.__name__} has no CLAIMS to verify")
    for name, value in facts.items():
        owner = _glued.get(name)
        if owner is not None and owner != section.__name__:
            raise ValueError(
                f"fact {name!r} of {section.__name__} was already glued by "
                f"{owner}; rename one of them"
            )
        glue(name, _scalar(name, value), display=False)
        _glued[name] = section.__name__
    results = evaluate(section, facts)
    failed = [c for c in claims if results.get(c.id) is False]
    if failed:
        lines = [
            f"  {c.id}: {c.text} (measured: {c.measured(facts)})"
            for c in failed
        ]
        raise ClaimFailed(
            f"{len(failed)} claims of {section.__name__} do not hold on "
            "this run:\n" + "\n".join(lines)
        )
    for claim_id in results:
        if claim_id not in _verified:
            _verified.append(claim_id)


def verified() -> list[str]:
    """The claims verified so far in this process, in order: ids, then
    the claims in words of chapters not yet on the contract."""
    return list(_verified) + list(_messages)


def sections(chapter: ModuleType) -> list[ModuleType]:
    """The section modules of a chapter package, in the order of its
    ``SECTIONS`` tuple.

    Raises:
        ValueError: the package has no ``SECTIONS``.
    """
    names = getattr(chapter, "SECTIONS", None)
    if not names:
        raise ValueError(
            f"{chapter.__name__} must list its section modules in SECTIONS"
        )
    return [
        importlib.import_module(f"{chapter.__name__}.{name}") for name in names
    ]


def chapter_claims(chapter: ModuleType) -> list[tuple[ModuleType, Claim]]:
    """Every claim of a chapter package, with its section, in order."""
    return [(s, c) for s in sections(chapter) for c in claims_of(s)]


def registry(chapters: Iterable[str] | None = None) -> dict[str, tuple]:
    """Every claim of the book by id: ``id -> (chapter, section, claim)``.

    Args:
        chapters: package names under :mod:`batchlab.experiments`;
            ``batchlab.experiments.CHAPTERS`` when omitted.

    Raises:
        ValueError: two claims share an id.
    """
    found: dict[str, tuple] = {}
    for name in chapters or experiments.CHAPTERS:
        package = importlib.import_module(f"{experiments.__name__}.{name}")
        for section, claim in chapter_claims(package):
            if claim.id in found:
                other = found[claim.id][1].__name__
                raise ValueError(
                    f"claim id {claim.id} is used by {other} and "
                    f"{section.__name__}"
                )
            found[claim.id] = (name, section, claim)
    return found


def report(chapter: ModuleType | None = None) -> Markdown:
    """One sentence for the end of a chapter: how many of its claims this
    build checked. The list itself, with the ledger, is the page's
    ``{checked-claims}`` directive.

    Raises:
        ValueError: a section of the chapter was not verified in this
            process, so the list would show claims this build skipped.
    """
    if chapter is None:
        return _old_report()
    listed = chapter_claims(chapter)
    due = [c for _, c in listed if applies(c)]
    missing = [c.id for c in due if c.id not in _verified]
    if missing:
        raise ValueError(
            f"claims of {chapter.__name__} were not verified in this "
            f"build: {missing}; call claims.verify for every section"
        )
    if len(due) == len(listed):
        text = (
            f"This build checked all {len(listed)} claims listed below, "
            "and every one held."
        )
    else:
        text = (
            f"This build checked {len(due)} of the {len(listed)} claims "
            "listed below, and every one held; the others need the book's "
            "scale."
        )
    return Markdown(text)


# --------------------------------------------------------------------------
# The chapters of the second edition, until they move to the contract.


def check(condition: object, message: str) -> None:
    """Verify one claim given in words (chapters not yet on the
    experiment contract).

    Raises:
        ClaimFailed: ``condition`` is false.
        ValueError: ``message`` is empty, or ``condition`` is a tensor of
            several values.
    """
    if not message or not message.strip():
        raise ValueError("a claim needs a message that states it in words")
    if hasattr(condition, "numel") and condition.numel() != 1:
        raise ValueError(
            "claim condition must be a single truth value, got a tensor "
            f"of {condition.numel()} elements; reduce it with .all()"
        )
    if not bool(condition):
        raise ClaimFailed(f"claim does not hold on this run: {message}")
    if message not in _messages:
        _messages.append(message)


def check_all(conditions, message: str) -> None:
    """Verify a claim that must hold in every case (every seed, say)."""
    if len(conditions) == 0:
        raise ValueError("check_all needs at least one case")
    failed = [i for i, c in enumerate(conditions) if not bool(c)]
    if failed:
        raise ClaimFailed(
            f"claim does not hold on this run (cases {failed} of "
            f"{len(conditions)}): {message}"
        )
    if message not in _messages:
        _messages.append(message)


def _old_report() -> Markdown:
    if not _messages:
        raise ValueError("no claim was checked in this chapter")
    lines = []
    for i, m in enumerate(_messages, 1):
        text = m.strip()
        text = text[0].upper() + text[1:]
        lines.append(f"{i}. {text if text.endswith('.') else text + '.'}")
    return Markdown("\n".join(lines))


def publish(name: str, value: object) -> None:
    """Glue a number (or short text) into the prose under ``name``.

    numpy and torch scalars become plain Python numbers first, so format
    specs such as ``{glue:text}`name:.3f``` work on them.
    """
    try:
        value = _scalar(name, value)
    except TypeError:
        raise TypeError(
            f"publish takes a number or a string, got {type(value).__name__}"
            " (glue figures with myst_nb.glue)"
        ) from None
    glue(name, value, display=False)
