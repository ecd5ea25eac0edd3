"""The chapter survey (benchmarks/bench_chapters.py) behind the reproducing
page's full-scale figures: it must run exactly the cells the book runs,
and record a failed claim without stopping."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

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
