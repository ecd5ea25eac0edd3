"""Claims of the text that the build verifies.

A chapter states a finding in prose and then calls :func:`check` on the
numbers behind it. If the finding does not hold, the cell raises
:class:`ClaimFailed`, the notebook fails to execute and so does the build.
"""

from __future__ import annotations

from collections.abc import Sequence


class ClaimFailed(AssertionError):
    """A finding stated in the book does not hold on this run."""


def check(condition: object, message: str) -> str:
    """Verify one claim of the text.

    Args:
        condition: anything with a truth value (a bool, a 0-d tensor or
            numpy bool); it must be true for the claim to hold.
        message: the claim in words, as the reader sees it.

    Returns:
        ``message``, so that a chapter may print what it verified.

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
    return message


def check_all(conditions: Sequence[object], message: str) -> str:
    """Verify a claim that must hold in every case (every seed, say)."""
    if len(conditions) == 0:
        raise ValueError("check_all needs at least one case")
    failed = [i for i, c in enumerate(conditions) if not bool(c)]
    if failed:
        raise ClaimFailed(
            f"claim does not hold on this run (cases {failed} of "
            f"{len(conditions)}): {message}"
        )
    return message


def publish(name: str, value: object) -> object:
    """Glue a number (or short text) into the prose under ``name``.

    numpy and torch scalars become plain Python numbers first, so format
    specs such as ``{glue:text}`name:.3f``` work on them. Returns the value.
    """
    from myst_nb import glue

    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if not isinstance(value, bool | int | float | str):
        raise TypeError(
            f"publish takes a number or a string, got {type(value).__name__}"
            " (glue figures with myst_nb.glue)"
        )
    glue(name, value, display=False)
    return value
