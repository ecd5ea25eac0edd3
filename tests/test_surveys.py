"""booktools.surveys: the recorded surveys the reproducing page shows."""

import json

import pytest
from conftest import ROOT

from booktools import surveys


def chapter(name, seconds, failed=(), errors=(), device="cpu", gpu=""):
    return dict(
        chapter=name,
        device=device,
        gpu=gpu,
        seconds=seconds,
        claims_failed=list(failed),
        errors=list(errors),
    )


def record(chapters, **extra):
    return dict(
        scale="full",
        jobs=2,
        wall_seconds=12.5,
        date="2026-11-28",
        cpus=2,
        command="python benchmarks/bench_chapters.py",
        chapters=chapters,
        **extra,
    )


def test_table_rows_columns_and_counts(tmp_path):
    (tmp_path / "a-cpu.json").write_text(
        json.dumps(
            record(
                [
                    chapter("minibatch", 10.0),
                    chapter("hessian", 5.0, ["x holds"]),
                ]
            )
        )
    )
    (tmp_path / "b-gpu.json").write_text(
        json.dumps(
            record(
                [
                    chapter(
                        "minibatch", 7.0, device="cuda", gpu="NVIDIA H200"
                    ),
                    chapter(
                        "hessian",
                        4.0,
                        errors=["cell 3: boom"],
                        device="cuda",
                        gpu="NVIDIA H200",
                    ),
                ],
                seed_set=1,
                note="before the fix",
            )
        )
    )
    (tmp_path / "README.md").write_text("not a record")
    t = surveys.table(tmp_path)
    assert list(t["record"]) == ["a-cpu", "b-gpu"]
    assert list(t["failed"]) == [1, 1]
    assert list(t["seed set"]) == [0, 1]
    assert list(t["minibatch"]) == [10.0, 7.0]
    assert list(t["all"]) == [12.5, 12.5]
    assert list(t["device"]) == ["cpu", "cuda (NVIDIA H200)"]
    assert surveys.failures(tmp_path) == [
        "a-cpu, hessian: x holds",
        "b-gpu, hessian: cell 3: boom",
    ]
    assert surveys.notes(tmp_path) == {"b-gpu": "before the fix"}


def test_bad_records_are_named(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not a survey"):
        surveys.table(tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"scale": "full"}))
    with pytest.raises(ValueError, match="broken.json .*missing"):
        surveys.table(tmp_path)
    (tmp_path / "broken.json").unlink()
    with pytest.raises(ValueError, match="no recorded survey"):
        surveys.table(tmp_path)


def test_the_books_records_are_readable():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    t = surveys.table(folder)
    assert (t["date"].str.len() == 10).all() and len(t) >= 1


def test_headline_reads_the_pages_figures_from_the_records():
    folder = ROOT / "benchmarks" / "results"
    got = surveys.headline(folder)
    t = surveys.table(folder).set_index("record")
    assert set(surveys.HEADLINE) < set(got)
    for name, (record, column) in surveys.HEADLINE.items():
        assert got[name] == t.loc[record, column]
    gpu, cpu = t.loc["full-h200-gpu"], t.loc["full-h200-cpu"]
    others = ["hessian", "batchnorm", "eigenvalues"]  # that record's
    assert got["gpu_slower_but_minibatch"] == bool(
        gpu["all"] > 0.9 * cpu["all"]
        and gpu["minibatch"] < cpu["minibatch"]
        and all(gpu[c] > cpu[c] for c in others)
    )


def test_headline_sees_a_gpu_that_was_faster(tmp_path):
    def run(name, mb, other, wall, device):
        made = record(
            [
                chapter("minibatch", mb, device=device),
                chapter("hessian", other, device=device),
            ]
        )
        made["wall_seconds"] = wall
        (tmp_path / f"{name}.json").write_text(json.dumps(made))

    for name in ("full-2cpu", "full-h200-cpu"):
        run(name, 10.0, 10.0, 20.0, "cpu")
    run("full-h200-gpu", 5.0, 12.0, 19.0, "cuda")
    assert surveys.headline(tmp_path)["gpu_slower_but_minibatch"]
    run("full-h200-gpu", 5.0, 8.0, 19.0, "cuda")  # hessian faster too
    assert not surveys.headline(tmp_path)["gpu_slower_but_minibatch"]


def test_notes_markdown_lists_notes_then_failures(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            record([chapter("minibatch", 1.0, ["x holds"])], note="made here")
        )
    )
    assert surveys.notes_markdown(tmp_path) == (
        "* **a.** made here\n* Failed in a, minibatch: x holds"
    )
