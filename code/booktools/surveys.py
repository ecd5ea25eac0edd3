"""Recorded chapter surveys for the reproducing page.

``benchmarks/bench_chapters.py`` runs every chapter as a script and
writes a ``survey.json``: the machine, the device, the seconds of each
chapter and every claim that did not hold. Runs the book build cannot
repeat (on a GPU, at full scale, on another machine) are kept in
``benchmarks/results/`` and shown by the reproducing page as what they
are: records of a past run, with the command and date that made them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

#: Keys every recorded survey must have.
REQUIRED = (
    "scale",
    "jobs",
    "wall_seconds",
    "date",
    "cpus",
    "command",
    "chapters",
)
_CHAPTER_KEYS = ("chapter", "device", "seconds", "claims_failed", "errors")


def read(path: Path | str) -> dict:
    """One recorded survey, checked for the keys the page reads.

    Raises:
        ValueError: not JSON, or a key is missing (the file is named).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name} is not a survey: {err}") from None
    missing = [k for k in REQUIRED if k not in record]
    for chapter in record.get("chapters", []):
        missing += [k for k in _CHAPTER_KEYS if k not in chapter]
    if missing or not record.get("chapters"):
        raise ValueError(
            f"{path.name} is not a survey of bench_chapters.py: missing "
            f"{sorted(set(missing)) or ['chapters']}"
        )
    return record


def _device(record: dict) -> str:
    devices = sorted({c["device"] for c in record["chapters"]})
    gpus = sorted({c.get("gpu") for c in record["chapters"]} - {"", None})
    return ", ".join(devices) + (f" ({', '.join(gpus)})" if gpus else "")


def records(folder: Path | str) -> list[tuple[str, dict]]:
    """``(name, survey)`` for every ``*.json`` in ``folder``, by name.

    Raises:
        ValueError: there is none, or one is not a survey.
    """
    found = [(p.stem, read(p)) for p in sorted(Path(folder).glob("*.json"))]
    if not found:
        raise ValueError(f"no recorded survey (*.json) in {folder}")
    return found


def table(folder: Path | str) -> pd.DataFrame:
    """One row per recorded survey in ``folder`` (``*.json``, by name):
    its date, CPUs, device (with the GPU's name), seed set, chapters run
    at once, the seconds of each chapter and of the whole run, and how
    many claims failed (or cells broke)."""
    rows = []
    for name, record in records(folder):
        row = {
            "record": name,
            "date": record["date"],
            "CPUs": record["cpus"],
            "device": _device(record),
            "seed set": record.get("seed_set", 0),
            "at once": record["jobs"],
        }
        for chapter in record["chapters"]:
            row[chapter["chapter"]] = chapter["seconds"]
        row["all"] = record["wall_seconds"]
        row["failed"] = sum(
            len(c["claims_failed"]) + len(c["errors"])
            for c in record["chapters"]
        )
        rows.append(row)
    return pd.DataFrame(rows)


def failures(folder: Path | str) -> list[str]:
    """``record, chapter: message`` for every failed claim or broken
    cell of the recorded surveys."""
    return [
        f"{name}, {chapter['chapter']}: {message}"
        for name, record in records(folder)
        for chapter in record["chapters"]
        for message in chapter["claims_failed"] + chapter["errors"]
    ]


def notes(folder: Path | str) -> dict[str, str]:
    """The ``note`` of each record that has one, by record name."""
    return {
        name: record["note"]
        for name, record in records(folder)
        if record.get("note")
    }


#: The figures of the recorded full-scale runs that the reproducing page
#: states: glue name -> (record, column of :func:`table`).
HEADLINE = {
    "full_cpu2_wall": ("full-2cpu", "all"),
    "full_cpu2_failed": ("full-2cpu", "failed"),
    "full_gpu_wall": ("full-h200-gpu", "all"),
    "full_h200cpu_wall": ("full-h200-cpu", "all"),
    "full_gpu_mb": ("full-h200-gpu", "minibatch"),
    "full_h200cpu_mb": ("full-h200-cpu", "minibatch"),
    "full_gpu_failed": ("full-h200-gpu", "failed"),
}


def headline(folder: Path | str) -> dict[str, float]:
    """:data:`HEADLINE`'s figures, read from the records in ``folder``,
    and ``gpu_slower_but_minibatch``: whether the GPU record took at
    least 90 % of the CPU record's time on the same machine, faster for
    the minibatch chapter and slower for every other chapter."""
    by_name = table(folder).set_index("record")
    out = {n: by_name.loc[r, c] for n, (r, c) in HEADLINE.items()}
    gpu, cpu = by_name.loc["full-h200-gpu"], by_name.loc["full-h200-cpu"]
    gpu_record = dict(records(folder))["full-h200-gpu"]
    others = [
        c["chapter"]
        for c in gpu_record["chapters"]
        if c["chapter"] != "minibatch"
    ]
    out["gpu_slower_but_minibatch"] = bool(
        gpu["all"] > 0.9 * cpu["all"]
        and gpu["minibatch"] < cpu["minibatch"]
        and (gpu[others] > cpu[others]).all()
    )
    return out


def notes_markdown(folder: Path | str) -> str:
    """The records' notes and failures as a Markdown list."""
    lines = [f"* **{name}.** {note}" for name, note in notes(folder).items()]
    lines += [f"* Failed in {line}" for line in failures(folder)]
    return "\n".join(lines)
