"""The robustness ledger: every claim of the book rerun under many seed
sets and every variant of its section, without a notebook.

    python -m booktools.ledger [--chapters minibatch,...] [--sections
        noise,...] [--seed-sets 10] [--variants book,longer,...]
        [--jobs 2] [--out benchmarks/results/ledger]

A task is one section of a chapter (``batchlab.experiments.<chapter>.
<section>``) in one variant (``book`` or a name of its
``Config.VARIANTS``) and one seed set (``BATCHLAB_SEED``): the section's
``run``, ``facts`` and ``CLAIMS`` at book scale, exactly as the chapter
runs them. Tasks run in a pool of processes (one thread each, batchlab's
policy); seeds within a task are batched by the sections' own many-model
trainers. A task that fails is recorded (its claims count as not held)
and the ledger goes on; the failures are listed at the end and the exit
status is 1 if any identity failed anywhere or any finding failed in a
seed set of the book or of a variant it claims.

Per chapter it writes ``<out>/<chapter>.json``: for every section the
commit, date, machine, command and a hash of the section's source (so a
test can tell a stale ledger), and for every claim and variant the seed
sets in which it held and the range of its measured values. Running a
subset of sections replaces those sections' rows and keeps the others.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from batchlab import claims, data, experiments
from batchlab.runtime import (
    VARIANTS,
    Scale,
    affinity_cpus,
    cgroup_cpu_limit,
    variants_of,
)
from booktools import stopping

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "ledger"
SEED_SETS = 10
BOOK = "book"


#: What a claim says of itself, not what it checks: its words and the
#: variants its sentence claims (``Claim(id, kind, text, holds, where)``).
WORDING = {"text": 2, "where": 4}


def _tree(module) -> ast.Module:
    """A section module's syntax tree without docstrings, the claims'
    texts or their ``where``."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "Claim"
        ):
            node.keywords = [k for k in node.keywords if k.arg not in WORDING]
            node.args = [
                ast.Constant("") if i in WORDING.values() else a
                for i, a in enumerate(node.args)
            ]
    return tree


def _digest(node: ast.AST) -> str:
    return hashlib.sha256(ast.dump(node).encode()).hexdigest()[:16]


def _is_claims(node: ast.stmt) -> bool:
    targets = (
        node.targets
        if isinstance(node, ast.Assign)
        else [node.target]
        if isinstance(node, ast.AnnAssign)
        else []
    )
    return any(getattr(t, "id", "") == "CLAIMS" for t in targets)


def source_hash(module) -> str:
    """A short hash of what a section module computes: its syntax tree
    without docstrings, comments and its ``CLAIMS`` (each claim has a
    hash of its own, :func:`claim_hash`). A ledger made before the
    experiment, its configuration, variants or facts changed is stale."""
    tree = _tree(module)
    tree.body = [node for node in tree.body if not _is_claims(node)]
    return _digest(tree)


def claim_hash(module, claim_id: str) -> str:
    """A short hash of what a claim checks: its ``Claim(...)`` call in the
    section module without its text and ``where`` (its test, kind and
    measures). A claim reworded or rescoped after its ledger keeps its
    rows (:func:`rescoped` reads the scope from the code); one whose test
    changed needs its section rerun (``VARIANTS=book`` may do, when the
    claim is scoped to the book's configuration)."""
    tree = _tree(module)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "Claim"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == claim_id
        ):
            return _digest(node)
    claims_nodes = [node for node in tree.body if _is_claims(node)]
    return _digest(ast.Module(body=claims_nodes, type_ignores=[]))


def rescoped(record: dict, chapter: str) -> dict:
    """``record`` with each claim's kind, text and ``where`` as the code
    states them now (a finding rescoped after its ledger is judged by its
    new scope); claims the code no longer has are left out."""
    current = {
        claim_id: claim
        for claim_id, (_, _, claim) in claims.registry([chapter]).items()
    }
    rows = {
        claim_id: {
            **row,
            "kind": current[claim_id].kind,
            "text": current[claim_id].text,
            "where": list(current[claim_id].where),
        }
        for claim_id, row in record.get("claims", {}).items()
        if claim_id in current
    }
    return {**record, "claims": rows}


def section_module(chapter: str, section: str):
    """``batchlab.experiments.<chapter>.<section>``."""
    return importlib.import_module(f"batchlab.experiments.{chapter}.{section}")


def variant_names(module) -> list[str]:
    """``book`` and the variants the section declares, in ledger order."""
    declared = getattr(module.Config, "VARIANTS", {}) or {}
    return [BOOK] + [v for v in VARIANTS if v in declared]


def declared_variants(record: dict, row: dict) -> list[str]:
    """The variants a claim's section declares (a claim whose test
    changed may have been rerun in fewer of them: "not rerun")."""
    try:
        module = section_module(record["chapter"], row["section"])
    except (ImportError, KeyError):
        return []
    return variant_names(module)


def config_for(module, variant: str):
    """The book configuration of a section, or one of its variants."""
    book = module.Config.for_scale(Scale.BOOK)
    return book if variant == BOOK else variants_of(book)[variant]


def _jsonable(value):
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return value if isinstance(value, bool | int | float | str) else str(value)


def run_task(chapter: str, section: str, variant: str, seed_set: int):
    """One section in one variant and seed set, in this process.

    Returns:
        ``dict(chapter, section, variant, seed_set, seconds, error,
        claims)`` where ``claims`` maps each claim id to ``{"held": bool,
        "measured": {fact: value}}``; on an error every claim is
        recorded as not held and ``error`` holds the traceback's end.
    """
    saved = {k: os.environ.get(k) for k in ("BATCHLAB_SEED", "BATCHLAB_SCALE")}
    os.environ["BATCHLAB_SEED"] = str(seed_set)
    os.environ["BATCHLAB_SCALE"] = BOOK
    try:
        return _run_task(chapter, section, variant, seed_set)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_task(chapter: str, section: str, variant: str, seed_set: int):
    module = section_module(chapter, section)
    start = time.perf_counter()
    out = dict(
        chapter=chapter,
        section=section,
        variant=variant,
        seed_set=seed_set,
        error=None,
        claims={},
    )
    try:
        cfg = config_for(module, variant)
        dataset = getattr(cfg, "dataset", None)
        loaded = data.load(dataset) if dataset else None
        facts = module.facts(module.run(cfg, loaded), cfg)
        for claim in claims.claims_of(module):
            held = claim.check(facts)
            measured = {
                k: _jsonable(v) for k, v in claim.measured(facts).items()
            }
            out["claims"][claim.id] = dict(held=held, measured=measured)
    except Exception as err:  # recorded; the ledger goes on
        lines = traceback.format_exception(err)
        out["error"] = "".join(lines[-3:]).strip()[-1500:]
        for claim in claims.claims_of(module):
            out["claims"][claim.id] = dict(held=False, measured={})
    out["seconds"] = time.perf_counter() - start
    return out


def tasks(
    chapters: list[str],
    sections: list[str] | None,
    seed_sets: list[int],
    variants: list[str] | None,
) -> list[tuple[str, str, str, int]]:
    """Every ``(chapter, section, variant, seed set)`` to run, the most
    expensive variants first so that short tasks fill the end."""
    order = {"longer": 0, "wider": 1, "digits": 2, "rate": 3, BOOK: 4}
    found = []
    for chapter in chapters:
        package = importlib.import_module(f"batchlab.experiments.{chapter}")
        for module in claims.sections(package):
            name = module.__name__.rsplit(".", 1)[1]
            if sections and name not in sections:
                continue
            for variant in variant_names(module):
                if variants and variant not in variants:
                    continue
                found += [(chapter, name, variant, s) for s in seed_sets]
    return sorted(found, key=lambda t: (order[t[2]], t[0], t[1], t[3]))


def machine() -> dict:
    """The machine a ledger ran on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(
        cpu=cpu,
        cpus=affinity_cpus(),
        quota=cgroup_cpu_limit(),
        python=platform.python_version(),
        host=platform.node(),
    )


def commit() -> tuple[str, bool]:
    """The current commit and whether the working tree's code differs
    from it; where there is no git repository, ``$BATCHLAB_COMMIT``."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True
            )
        except OSError:  # no git on this machine
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    if not head:  # a copy without git (a lent machine): the caller says
        return os.environ.get("BATCHLAB_COMMIT", "unknown"), False
    return head, bool(git("status", "--porcelain", "--", "code"))


def summarize(results: list[dict]) -> dict:
    """Per chapter, section and claim: the seed sets in which each claim
    held in each variant, and the range of its measured values."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for r in results:
        for claim_id, got in r["claims"].items():
            cell = table[r["chapter"]][claim_id].setdefault(
                r["variant"],
                dict(held=[], failed=[], errors=[], measured={}),
            )
            (cell["held"] if got["held"] else cell["failed"]).append(
                r["seed_set"]
            )
            if r["error"]:
                cell["errors"].append(r["error"])
            for k, v in got["measured"].items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    lo, hi = cell["measured"].get(k, (v, v))
                    cell["measured"][k] = (min(lo, v), max(hi, v))
    out = {}
    for chapter, rows in table.items():
        package = importlib.import_module(f"batchlab.experiments.{chapter}")
        listed = {c.id: (s, c) for s, c in claims.chapter_claims(package)}
        out[chapter] = {}
        for claim_id, cells in rows.items():
            section, claim = listed[claim_id]
            for cell in cells.values():
                cell["held"].sort()
                cell["failed"].sort()
                cell["errors"] = sorted(set(cell["errors"]))[:3]
            out[chapter][claim_id] = dict(
                section=section.__name__.rsplit(".", 1)[1],
                kind=claim.kind,
                text=claim.text,
                where=list(claim.where),
                variants=dict(cells),
            )
    return out


def broken(record: dict) -> list[str]:
    """The claims of a chapter's ledger that failed where they must hold:
    an identity in any seed set of any variant, a finding in any seed set
    of the book or of a variant in its ``where``."""
    found = []
    for claim_id, row in record["claims"].items():
        must = (
            list(row["variants"])
            if row["kind"] == "identity"
            else [BOOK, *row["where"]]
        )
        for variant in must:
            cell = row["variants"].get(variant)
            if cell is None:
                found.append(f"{claim_id} [{variant}]: not in the ledger")
            elif cell["failed"]:
                found.append(
                    f"{claim_id} [{variant}]: failed in seed sets "
                    f"{cell['failed']}"
                )
    return found


def write(
    out: Path, results: list[dict], command: str, seconds: float
) -> list[Path]:
    """Merge ``results`` into ``out/<chapter>.json``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    head, dirty = commit()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = summarize(results)
    written = []
    for chapter, rows in summary.items():
        path = out / f"{chapter}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        record = dict(
            kind="ledger",
            chapter=chapter,
            sections=old.get("sections", {}),
            claims=old.get("claims", {}),
        )
        mine = [r for r in results if r["chapter"] == chapter]
        for section in sorted({r["section"] for r in mine}):
            done = [r for r in mine if r["section"] == section]
            module = section_module(chapter, section)
            before = record["sections"].get(section, {})
            same = before.get("source_hash") == source_hash(module)
            by_variant: dict = defaultdict(float)
            if same:  # variants not rerun keep their time
                by_variant.update(before.get("cpu_seconds", {}))
            for variant in {r["variant"] for r in done}:
                by_variant[variant] = 0.0
            for r in done:
                by_variant[r["variant"]] += r["seconds"]
            record["sections"][section] = dict(
                commit=head,
                dirty=dirty,
                date=now,
                command=command,
                wall_seconds=round(seconds, 1),
                machine=machine(),
                source_hash=source_hash(module),
                seed_sets=sorted({r["seed_set"] for r in done}),
                cpu_seconds={k: round(v, 1) for k, v in by_variant.items()},
            )
            for claim_id, row in rows.items():
                if row["section"] != section:
                    continue
                row["claim_hash"] = claim_hash(module, claim_id)
                old_row = record["claims"].get(claim_id)
                if (
                    same
                    and old_row
                    and old_row.get("claim_hash") == row["claim_hash"]
                ):  # variants not rerun keep their cells
                    row["variants"] = {
                        **old_row["variants"],
                        **row["variants"],
                    }
            stale = [
                k
                for k, row in record["claims"].items()
                if row["section"] == section
            ]
            for k in stale:
                del record["claims"][k]
        record["claims"].update(rows)
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


PARTIAL = ".unfinished.jsonl"


def _key(task: tuple) -> str:
    chapter, section, variant, seed_set = task
    module = section_module(chapter, section)
    return f"{chapter}/{section}/{variant}/{seed_set}/{source_hash(module)}"


def finished(partial: Path, todo: list[tuple]) -> dict[str, dict]:
    """Results of an interrupted ledger run kept in ``partial`` that match
    a task of ``todo`` and its section's current source, by task key."""
    if not partial.exists():
        return {}
    wanted = {_key(t) for t in todo}
    kept = {}
    for line in partial.read_text().splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if result.get("key") in wanted:
            kept[result["key"]] = result
    return kept


def run(
    todo: list[tuple[str, str, str, int]], jobs: int, partial: Path
) -> list[dict]:
    """Run every task in a pool of ``jobs`` processes, with progress.

    Each finished result is appended to ``partial`` at once, so Ctrl-C or
    SIGTERM (:mod:`booktools.stopping`) loses only the tasks running; a
    later run with the same sections takes the finished ones from there.
    """
    kept = finished(partial, todo)
    results = list(kept.values())
    left = [t for t in todo if _key(t) not in kept]
    partial.parent.mkdir(parents=True, exist_ok=True)

    def describe() -> str:
        return (
            f"{len(results)} of {len(todo)} ledger tasks finished and are "
            f"kept in {partial}; run the same command again to go on"
        )

    if kept:
        print(f"ledger: {len(kept)} finished tasks taken from {partial}")
    with (
        stopping.stop_on_signals(describe) as stop,
        ProcessPoolExecutor(
            max_workers=jobs, initializer=stopping.worker_init
        ) as pool,
        tqdm(total=len(todo), initial=len(kept), unit="task") as bar,
    ):
        futures = {pool.submit(run_task, *t): t for t in left}
        for future in as_completed(futures):
            r = dict(future.result(), key=_key(futures[future]))
            with stop.deferred():  # a result is kept whole or not at all
                with partial.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
                results.append(r)
            bar.set_postfix_str(
                f"{r['section']}/{r['variant']}/{r['seed_set']}"
            )
            bar.update()
    return results


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", help="comma-separated; default all")
    parser.add_argument("--sections", help="comma-separated; default all")
    parser.add_argument("--variants", help="comma-separated; default all")
    parser.add_argument("--seed-sets", type=int, default=SEED_SETS)
    parser.add_argument("--first-seed-set", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=affinity_cpus())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    chapters = _names(args.chapters) or list(experiments.CHAPTERS)
    unknown = set(chapters) - set(experiments.CHAPTERS)
    if unknown:
        parser.error(
            f"unknown chapters {sorted(unknown)}; "
            f"known: {', '.join(experiments.CHAPTERS)}"
        )
    if args.seed_sets < 1 or args.jobs < 1:
        parser.error("--seed-sets and --jobs must be at least 1")
    seed_sets = list(
        range(args.first_seed_set, args.first_seed_set + args.seed_sets)
    )
    todo = tasks(
        chapters, _names(args.sections), seed_sets, _names(args.variants)
    )
    if not todo:
        parser.error("nothing to run: no section or variant matched")
    command = "python -m booktools.ledger " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    start = time.perf_counter()
    print(f"ledger: {len(todo)} tasks with {args.jobs} processes")
    partial = args.out / PARTIAL
    results = run(todo, args.jobs, partial)
    seconds = time.perf_counter() - start
    paths = write(args.out, results, command.strip(), seconds)
    partial.unlink(missing_ok=True)
    errors = sorted(
        {
            f"{r['section']}/{r['variant']}: {r['error']}"
            for r in results
            if r["error"]
        }
    )
    problems = []
    for path in paths:  # judged by the scopes the code states now
        record = json.loads(path.read_text())
        problems += broken(rescoped(record, record["chapter"]))
    print(
        f"ledger: {len(todo)} tasks in {seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths)
    )
    for e in errors:
        print(f"ERROR {e}")
    for p in problems:
        print(f"BROKEN {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())


def table(record: dict) -> pd.DataFrame:
    """A chapter's ledger as a table for people: one row per claim (its
    number in the chapter, id and kind), one column per variant with the
    seed sets in which it held (``10/10``; ``n/a`` where the section has
    no such variant; ``(not claimed)`` after a finding's failure in a
    variant it does not claim)."""
    rows = []
    for claim_id, row in record["claims"].items():
        expected = VARIANTS if row["kind"] == "identity" else row["where"]
        out = {"claim": claim_id, "kind": row["kind"]}
        for variant in (BOOK, *VARIANTS):
            cell = row["variants"].get(variant)
            if cell is None:
                out[variant] = (
                    "not rerun"
                    if variant in declared_variants(record, row)
                    else "n/a"
                )
                continue
            held = len(cell["held"])
            total = held + len(cell["failed"])
            text = f"{held}/{total}"
            if held < total and variant != BOOK and variant not in expected:
                text += " (not claimed)"
            out[variant] = text
        rows.append(out)
    return pd.DataFrame(rows)


def cost(record: dict) -> dict[str, float]:
    """Seconds of CPU the chapter's ledger took, summed over its
    sections, per variant and in all (``"all"``)."""
    totals: dict[str, float] = defaultdict(float)
    for section in record["sections"].values():
        for variant, seconds in section["cpu_seconds"].items():
            totals[variant] += seconds
            totals["all"] += seconds
    return dict(totals)
