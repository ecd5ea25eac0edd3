"""booktools.ledger: the runner on a toy chapter, and the recorded ledger
against the book's claims (complete, fresh, nothing broken)."""

import dataclasses
import json
import os
import sys
import types
import typing

import pandas as pd
import pytest
from conftest import default_interrupt

from batchlab import claims, experiments, runtime
from batchlab.claims import Claim
from booktools import claimmarks, ledger


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    steps: int = 10
    VARIANTS: typing.ClassVar = {"longer": runtime.Longer("steps")}

    @classmethod
    def for_scale(cls, scale):
        return cls()


def toy_run(cfg, data):
    assert data is None  # the config names no data set
    return pd.DataFrame(dict(steps=[cfg.steps], set=[runtime.seed_set()]))


def toy_facts(frame, cfg):
    return dict(steps=int(frame.steps[0]), set=int(frame.set[0]))


TOY_CLAIMS = [
    Claim(
        "toy-law",
        "identity",
        "steps are positive",
        lambda f: f["steps"] > 0,
        measure=("steps",),
    ),
    # fails in the longer variant (steps 30), which it does not claim
    Claim(
        "toy-short", "finding", "the run is short", lambda f: f["steps"] < 20
    ),
    # fails in seed set 2 of the book itself: a broken finding
    Claim(
        "toy-lucky",
        "finding",
        "not seed set two",
        lambda f: f["set"] != 2,
        where=("longer",),
    ),
]


@pytest.fixture
def toy_chapter(monkeypatch):
    package = types.ModuleType("batchlab.experiments.toy")
    package.SECTIONS = ("sec",)
    section = types.ModuleType("batchlab.experiments.toy.sec")
    section.Config, section.run, section.facts = ToyConfig, toy_run, toy_facts
    section.CLAIMS = TOY_CLAIMS
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setitem(sys.modules, section.__name__, section)
    monkeypatch.setattr(package, "sec", section, raising=False)
    monkeypatch.setattr(ledger, "source_hash", lambda module: "toyhash")
    monkeypatch.setattr(ledger, "claim_hash", lambda module, claim: claim)
    return package


def test_a_rerun_of_some_variants_keeps_the_others(
    toy_chapter, tmp_path, monkeypatch
):
    """Rerunning the book's configuration after a claim's test changed
    replaces that claim's rows; the other claims keep their variants."""
    monkeypatch.setattr(experiments, "CHAPTERS", ("toy",))
    everything = ledger.run(
        ledger.tasks(["toy"], None, [0, 1], None), 1, tmp_path / "a"
    )
    ledger.write(tmp_path, everything, "all", 1.0)
    monkeypatch.setattr(
        ledger,
        "claim_hash",
        lambda module, claim: claim + ("-new" if claim == "toy-law" else ""),
    )
    book = ledger.run(
        ledger.tasks(["toy"], None, [0, 1], ["book"]), 1, tmp_path / "b"
    )
    [path] = ledger.write(tmp_path, book, "book", 1.0)
    rows = json.loads(path.read_text())["claims"]
    assert set(rows["toy-short"]["variants"]) == {"book", "longer"}
    assert set(rows["toy-law"]["variants"]) == {"book"}
    assert rows["toy-law"]["claim_hash"] == "toy-law-new"
    # a changed experiment drops every variant not rerun
    monkeypatch.setattr(ledger, "source_hash", lambda module: "changed")
    [path] = ledger.write(tmp_path, book, "book", 1.0)
    rows = json.loads(path.read_text())["claims"]
    assert set(rows["toy-short"]["variants"]) == {"book"}


def test_the_runner_records_every_claim_variant_and_seed_set(
    toy_chapter, tmp_path, monkeypatch
):
    monkeypatch.setattr(experiments, "CHAPTERS", ("toy",))
    todo = ledger.tasks(["toy"], None, [0, 1, 2], None)
    assert len(todo) == 6 and todo[0][2] == "longer"
    partial = tmp_path / ledger.PARTIAL
    results = ledger.run(todo, jobs=2, partial=partial)
    assert len(partial.read_text().splitlines()) == 6
    # a second run takes every finished task from the partial file
    assert sorted(r["key"] for r in ledger.run(todo, 2, partial)) == sorted(
        r["key"] for r in results
    )
    assert len(partial.read_text().splitlines()) == 6
    [path] = ledger.write(tmp_path, results, "test", 1.0)
    record = json.loads(path.read_text())
    rows = record["claims"]
    assert rows["toy-law"]["variants"]["book"]["held"] == [0, 1, 2]
    assert rows["toy-law"]["variants"]["longer"]["measured"] == {
        "steps": [30, 30]
    }
    assert rows["toy-short"]["variants"]["longer"]["failed"] == [0, 1, 2]
    assert rows["toy-lucky"]["variants"]["book"]["failed"] == [2]
    assert record["sections"]["sec"]["seed_sets"] == [0, 1, 2]
    assert ledger.broken(record) == [
        "toy-lucky [book]: failed in seed sets [2]",
        "toy-lucky [longer]: failed in seed sets [2]",
    ]
    row = claimmarks.ledger_row("toy-short", record)
    assert row.startswith("3/3 seed sets \u00b7 longer 0/3 (not claimed)")
    assert row.endswith("digits n/a")
    lucky = claimmarks.ledger_row("toy-lucky", record)
    assert "longer 2/3 \u00b7" in lucky  # claimed: no "(not claimed)"
    law = claimmarks.ledger_row("toy-law", record, "ja")
    assert law.startswith("3/3 シード集合・長い学習 \u2713")


def test_a_failing_section_is_recorded_and_the_ledger_goes_on(
    toy_chapter, monkeypatch
):
    def broken_run(cfg, data):
        raise RuntimeError("diverged")

    monkeypatch.setattr(toy_chapter.sec, "run", broken_run)
    out = ledger.run_task("toy", "sec", "book", 0)
    assert "diverged" in out["error"]
    assert all(not c["held"] for c in out["claims"].values())


def test_an_identity_must_hold_in_every_variant():
    record = dict(
        claims={
            "x-law": dict(
                kind="identity",
                where=[],
                variants={
                    "book": dict(held=[0], failed=[]),
                    "wider": dict(held=[], failed=[0]),
                },
            )
        }
    )
    assert ledger.broken(record) == ["x-law [wider]: failed in seed sets [0]"]


# --------------------------------------------------------------------------
# The recorded ledger of the book


def recorded(chapter):
    record = claimmarks.read_ledger(chapter)
    assert record is not None, (
        f"no ledger for {chapter}: run make ledger CHAPTERS={chapter}"
    )
    return record


@pytest.mark.parametrize("chapter", experiments.CHAPTERS)
def test_every_claim_has_a_ledger_row_from_ten_seed_sets(chapter):
    record = recorded(chapter)
    for _, module, claim in (
        v for v in claims.registry().values() if v[0] == chapter
    ):
        row = record["claims"].get(claim.id)
        assert row is not None, f"{claim.id} is not in the ledger"
        # every variant for an identity; for a finding, the book and the
        # variants its sentence claims (a finding restated after the
        # ledger may have been rerun in the book's setting only, and its
        # row then says "not rerun")
        must = (
            ledger.variant_names(module)
            if claim.kind == "identity"
            else [ledger.BOOK, *claim.where]
        )
        for variant in must:
            cell = row["variants"].get(variant)
            assert cell is not None, f"{claim.id}: no {variant} row"
            assert len(cell["held"]) + len(cell["failed"]) >= 10


@pytest.mark.parametrize("chapter", experiments.CHAPTERS)
def test_the_ledger_is_fresh_for_every_section(chapter):
    record = recorded(chapter)
    package = sys.modules[f"batchlab.experiments.{chapter}"]
    for module in claims.sections(package):
        name = module.__name__.rsplit(".", 1)[1]
        made = record["sections"].get(name)
        assert made is not None, f"{chapter}.{name} is not in the ledger"
        assert made["source_hash"] == ledger.source_hash(module), (
            f"{chapter}.{name} changed since its ledger was made: run "
            f"make ledger CHAPTERS={chapter} SECTIONS={name}"
        )
    for claim_id, row in record["claims"].items():
        module = ledger.section_module(chapter, row["section"])
        assert row.get("claim_hash") == ledger.claim_hash(module, claim_id), (
            f"{claim_id}'s test changed since its ledger was made: run "
            f"make ledger CHAPTERS={chapter} SECTIONS={row['section']}"
        )


@pytest.mark.parametrize("chapter", experiments.CHAPTERS)
def test_no_claim_failed_where_it_must_hold(chapter):
    assert ledger.broken(recorded(chapter)) == []


def test_a_stale_partial_result_is_not_reused(
    toy_chapter, tmp_path, monkeypatch
):
    todo = ledger.tasks(["toy"], None, [0], ["book"])
    partial = tmp_path / ledger.PARTIAL
    ledger.run(todo, 1, partial)
    assert len(ledger.finished(partial, todo)) == 1
    monkeypatch.setattr(ledger, "source_hash", lambda module: "changed")
    assert ledger.finished(partial, todo) == {}
    partial.write_text(partial.read_text() + '{"cut by a ki')
    monkeypatch.setattr(ledger, "source_hash", lambda module: "toyhash")
    assert len(ledger.finished(partial, todo)) == 1


def test_ctrl_c_stops_the_ledger_and_keeps_what_finished(tmp_path):
    import signal
    import subprocess
    import time

    import psutil

    cmd = [
        sys.executable,
        "-m",
        "booktools.ledger",
        # a section that finishes at once and one that takes a while,
        # so that a result is kept soon and others are still running
        "--chapters",
        "batchnorm",
        "--sections",
        "spread,conv",
        "--variants",
        "book",
        "--seed-sets",
        "6",
        "--jobs",
        "2",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=default_interrupt,
    )
    partial = tmp_path / ledger.PARTIAL
    deadline = time.time() + 300
    while time.time() < deadline and not (
        partial.exists() and partial.read_text().strip()
    ):
        time.sleep(0.2)
    below = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130, out[-2000:]
    assert "interrupted by SIGINT" in out and "kept in" in out
    assert not any(p.is_running() and p.status() != "zombie" for p in below)
    assert partial.read_text().strip()
    assert not list(tmp_path.glob("*.json"))  # no incomplete record


def test_rewording_or_rescoping_a_claim_keeps_its_ledger_fresh(tmp_path):
    """The hash covers what a section computes and checks, not a claim's
    words or scope; :func:`ledger.rescoped` then judges by the new scope."""
    import importlib.util

    source = '''"""A toy section."""
from batchlab.claims import Claim


def facts(frame, cfg):
    """Facts."""
    return {"x": 1.0}


CLAIMS = [
    Claim(
        "toy-x", "finding", "x is one", lambda f: f["x"] == 1,
        where=("longer",),
    )
]
'''

    def digest(text, name):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return ledger.source_hash(module), ledger.claim_hash(module, "toy-x")

    base = digest(source, "a")
    reworded = (
        source.replace("x is one", "x equals one")
        .replace('("longer",)', '("longer", "wider")')
        .replace('"""Facts."""', '"""Other words."""  # and a comment')
    )
    assert digest(reworded, "b") == base
    # a claim's new test makes its own rows stale, not the section's
    retested = digest(source.replace('f["x"] == 1', 'f["x"] > 0'), "c")
    assert retested[0] == base[0] and retested[1] != base[1]
    # a new experiment or fact makes the whole section stale
    assert digest(source.replace("1.0", "2.0"), "d")[0] != base[0]
    record = {
        "claims": {
            "mb-b1-rate": {
                "kind": "finding",
                "where": [],
                "text": "old",
                "variants": {},
            },
            "gone-claim": {
                "kind": "finding",
                "where": [],
                "text": "x",
                "variants": {},
            },
        }
    }
    now = ledger.rescoped(record, "minibatch")
    assert list(now["claims"]) == ["mb-b1-rate"]
    row = now["claims"]["mb-b1-rate"]
    claim = claims.registry(["minibatch"])["mb-b1-rate"][2]
    assert row["text"] == claim.text and row["where"] == list(claim.where)
