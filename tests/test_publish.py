"""The publishing workflow: valid for GitHub Actions, and every command it
runs exists here."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def test_workflow_matches_the_github_actions_schema():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def workflow_runs() -> list[str]:
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["build-and-deploy"]["steps"]
    return [s["run"] for s in steps if "run" in s]


def test_workflow_builds_on_push_to_main_and_deploys_the_site():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads on:
    assert triggers["push"]["branches"] == ["main"]
    steps = wf["jobs"]["build-and-deploy"]["steps"]
    deploy = [s for s in steps if "actions-gh-pages" in s.get("uses", "")]
    assert deploy and deploy[0]["with"]["publish_dir"] == "_build/html"


def test_every_make_target_of_the_workflow_exists():
    targets = set()
    for run in workflow_runs():
        targets |= set(re.findall(r"\bmake (?:-s )?([\w-]+)", run))
    assert {"book", "pdf"} <= targets
    for target in targets:
        done = subprocess.run(
            ["make", "-n", target], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, f"make {target}: {done.stderr}"


def test_workflow_installs_the_pinned_torch_and_the_pdf_packages():
    runs = "\n".join(workflow_runs())
    pins = (ROOT / "requirements.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", pins, re.M).group(1)
    assert f"torch=={torch_pin}" in runs
    assert "print-PDF_DEBS" in runs
