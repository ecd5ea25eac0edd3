"""The chapter survey (benchmarks/bench_chapters.py) behind the reproducing
page's full-scale figures: it must run exactly the cells the book runs,
record a failed claim without stopping, and stop at once on Ctrl-C or
SIGTERM, keeping the records of the chapters that finished."""

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import psutil
import pytest
from conftest import Run, running, wait_for

from booktools.myst import code_cells

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "bench_chapters", ROOT / "benchmarks" / "bench_chapters.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize(
    "page", sorted((ROOT / "chapters").glob("*.md")), ids=lambda p: p.stem
)
def test_code_cells_match_jupytext(page):
    text = page.read_text()
    notebook = jupytext.reads(text, fmt="md:myst")
    expected = [
        c.source.strip("\n") for c in notebook.cells if c.cell_type == "code"
    ]
    assert code_cells(text) == expected


PAGE = """# A test page

```{code-cell} ipython3
:tags: [hide-input]
from batchlab import claims
claims.check(1 > 2, "one exceeds two")
```

Prose.

```{code-cell} ipython3
---
tags: [remove-cell]
---
claims.check(2 > 1, "two exceeds one")
reached = 1
```

````{code-cell} ipython3
claims.publish("reached", reached)
````
"""


def survey(*args):
    script = ROOT / "benchmarks" / "bench_chapters.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True
    )


def test_survey_records_failed_claims_and_goes_on(tmp_path):
    (tmp_path / "page.md").write_text(PAGE)
    out = tmp_path / "out"
    done = survey(
        "--scale",
        "quick",
        "--chapters",
        "page",
        "--source",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "page.json").read_text())
    assert record["claims_failed"] == [
        "claim does not hold on this run: one exceeds two"
    ]
    assert record["claims_held"] == 1
    assert record["errors"] == []
    assert len(record["cell_seconds"]) == 3
    assert record["scale"] == "quick" and record["device"] == "cpu"
    line = "page: claim does not hold on this run: one exceeds two"
    assert line in done.stdout


def test_survey_takes_a_relative_output_folder(tmp_path, monkeypatch):
    (tmp_path / "page.md").write_text(PAGE)
    monkeypatch.chdir(tmp_path)
    done = survey(
        "--scale",
        "quick",
        "--chapters",
        "page",
        "--source",
        ".",
        "--out",
        "out",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "survey.json").is_file()


def test_survey_names_a_missing_chapter(tmp_path):
    done = survey("--chapters", "nosuch", "--out", str(tmp_path))
    assert done.returncode != 0 and "no chapter named nosuch" in done.stderr


def code_page(code: str) -> str:
    return f"# A page\n\n```{{code-cell}} ipython3\n{code}\n```\n"


@pytest.fixture
def survey_run(tmp_path):
    """A survey of two chapters started, once the quick one finished and
    the slow one sleeps in its cell; the run and its output folder."""
    (tmp_path / "quick.md").write_text(code_page("x = 1"))
    sleep = "open('started', 'w').close()\nimport time; time.sleep(99)"
    (tmp_path / "slow.md").write_text(code_page(sleep))
    out = tmp_path / "out"
    script = ROOT / "benchmarks" / "bench_chapters.py"
    args = ["--scale", "quick", "--chapters", "quick,slow", "--jobs", "2"]
    args += ["--source", str(tmp_path), "--out", str(out)]
    run = Run([sys.executable, str(script), *args], tmp_path, tmp_path)
    try:
        wait_for((out / "quick.json").is_file, 120, "the quick chapter")
        wait_for((tmp_path / "started").is_file, 120, "the slow chapter")
        # the survey and the slow chapter, the quick one's process ended
        wait_for(lambda: len(run.tree()) == 2, 60, "the quick one's end")
        yield run, out
    finally:
        run.kill()


@pytest.mark.parametrize(
    "signum, group",
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "kill-pid"],
)
def test_a_stopped_survey_leaves_nothing_and_keeps_finished(
    survey_run, signum, group
):
    run, out = survey_run
    tree = run.tree()
    run.signal(signum, group)
    assert run.wait(timeout=10) == 128 + signum
    assert running(tree) == []
    assert run.stderr().splitlines() == [
        f"interrupted by {signal.Signals(signum).name}: stopped the survey "
        f"of slow; the records of the chapters that finished (quick) are "
        f"kept in {out}"
    ]
    assert json.loads((out / "quick.json").read_text())["errors"] == []
    assert sorted(p.name for p in out.iterdir()) == ["quick.json"]


def test_a_killed_survey_leaves_no_chapter_running(survey_run):
    run, out = survey_run
    tree = run.tree()
    run.signal(signal.SIGKILL, group=False)
    wait_for(lambda: running(tree) == [], 10, "every process ended")
    assert sorted(p.name for p in out.iterdir()) == ["quick.json"]


def processes_naming(folder: Path) -> list[psutil.Process]:
    """Every process whose command line names ``folder``."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(folder) in " ".join(p.info["cmdline"] or [])
    ]


def test_no_chapter_starts_after_a_stop(tmp_path):
    # One chapter at a time: when the first is stopped its thread would
    # go on to the next chapter, unless a stop bars new processes.
    sleep = "open('started', 'w').close()\nimport time; time.sleep(99)"
    for name in ("one", "two", "three"):
        (tmp_path / f"{name}.md").write_text(code_page(sleep))
    script = ROOT / "benchmarks" / "bench_chapters.py"
    args = ["--scale", "quick", "--chapters", "one,two,three", "--jobs", "1"]
    args += ["--source", str(tmp_path), "--out", str(tmp_path / "out")]
    run = Run([sys.executable, str(script), *args], tmp_path, tmp_path)
    try:
        wait_for((tmp_path / "started").is_file, 120, "the first chapter")
        run.signal(signal.SIGTERM, group=False)
        assert run.wait(timeout=10) == 143
        time.sleep(1)  # time enough to start the next chapter, if allowed
        assert running(processes_naming(tmp_path)) == []
    finally:
        run.kill()
        for proc in processes_naming(tmp_path):
            proc.kill()
