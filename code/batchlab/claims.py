"""Claims of the text that the build verifies.

A chapter states a finding in prose and then calls :func:`check` on the
numbers behind it. If the finding does not hold, the cell raises
:class:`ClaimFailed`, the notebook fails to execute and so does the build.
Every claim that held is remembered (one chapter runs in one kernel), and
:func:`report` shows them at the end of the chapter as the list "Checked
by this build".
"""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown
from myst_nb import glue

# The claims verified so far in this process, in order.
_verified: list[str] = []


class ClaimFailed(AssertionError):
    """A finding stated in the book does not hold on this run."""


def check(condition: object, message: str) -> None:
    """Verify one claim of the text.

    Args:
        condition: anything with a truth value (a bool, a 0-d tensor or
            numpy bool); it must be true for the claim to hold.
        message: the claim in words, as the reader sees it.

    Returns nothing, so that a claim at the end of a cell prints nothing;
    the claim is remembered for :func:`report`.

    Raises:
        ClaimFailed: ``condition`` is false; the error carries ``message``.
        ValueError: ``message`` is empty.
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
    _remember(message)


def check_all(conditions: Sequence[object], message: str) -> None:
    """Verify a claim that must hold in every case (every seed, say)."""
    if len(conditions) == 0:
        raise ValueError("check_all needs at least one case")
    failed = [i for i, c in enumerate(conditions) if not bool(c)]
    if failed:
        raise ClaimFailed(
            f"claim does not hold on this run (cases {failed} of "
            f"{len(conditions)}): {message}"
        )
    _remember(message)


def _remember(message: str) -> None:
    if message not in _verified:
        _verified.append(message)


def verified() -> list[str]:
    """The claims verified so far in this process, in order."""
    return list(_verified)


def report() -> Markdown:
    """The verified claims as a bulleted list, for the end of a chapter.

    Raises:
        ValueError: no claim was verified (a chapter that runs code must
            check what its text says).
    """
    if not _verified:
        raise ValueError("no claim was checked in this chapter")
    lines = [f"{i}. {_sentence(m)}" for i, m in enumerate(_verified, 1)]
    return Markdown("\n".join(lines))


def _sentence(message: str) -> str:
    text = message.strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def publish(name: str, value: object) -> None:
    """Glue a number (or short text) into the prose under ``name``.

    numpy and torch scalars become plain Python numbers first, so format
    specs such as ``{glue:text}`name:.3f``` work on them. Returns nothing,
    so that a cell ending with it shows no stray value.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if not isinstance(value, bool | int | float | str):
        raise TypeError(
            f"publish takes a number or a string, got {type(value).__name__}"
            " (glue figures with myst_nb.glue)"
        )
    glue(name, value, display=False)
