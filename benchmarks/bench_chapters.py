"""Run the chapters as plain scripts at a given scale, time every cell and
list every claim that does not hold: the survey behind the full-scale
figures of the reproducing page and the README.

    python benchmarks/bench_chapters.py [--scale full] [--jobs 2]
        [--chapters minibatch,normalization,batchnorm,eigenvalues] [--out DIR]

This is a survey, not a build. The build (``make book``) stops at the
first claim that fails; here a failed claim is recorded and the chapter
goes on, so one run shows all of them. Each chapter runs in a fresh
process (``--jobs`` at a time) with ``runtime.device()`` choosing the
device as the book does: a GPU at full scale when PyTorch sees one.

It needs only the book's scientific packages, IPython, psutil and the
``code/`` folder importable (installed by the venv; elsewhere
``PYTHONPATH=code``): code cells are read from the MyST source
(:func:`booktools.myst.code_cells`), and where myst-nb is not installed (a
bare GPU machine) ``glue`` does nothing, since nothing is rendered. Per
chapter it writes ``DIR/<chapter>.json`` (cell seconds, failed claims,
peak memory), then ``DIR/survey.json`` with all of them, the machine and
the wall time, and prints a table. The surveys quoted in the book are kept
in ``benchmarks/results/``.

Ctrl-C or SIGTERM stops the survey within seconds, every chapter process
included (:mod:`booktools.stopping`), with exit status 130 or 143. The
records of the chapters that finished are kept; a stopped chapter writes
none (each record is written whole, or not at all).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from booktools import stopping

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("minibatch", "normalization", "batchnorm", "eigenvalues")


def _glue_stub() -> types.ModuleType:
    """A ``myst_nb`` whose ``glue`` does nothing: nothing is rendered."""
    module = types.ModuleType("myst_nb")
    module.glue = lambda name, value, display=True: None
    return module


def run_one(
    name: str,
    out: Path,
    source: Path = ROOT / "chapters",
    keep_going: bool = False,
) -> dict:
    """Execute one chapter of ``source`` in this process; record and
    return its survey."""
    try:
        import myst_nb  # noqa: F401
    except ImportError:
        sys.modules["myst_nb"] = _glue_stub()
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    from batchlab import claims, runtime
    from booktools.myst import code_cells

    failed: list[str] = []

    def survey(check):
        def wrapped(*args):
            try:
                check(*args)
            except claims.ClaimFailed as err:
                failed.append(str(err))

        return wrapped

    claims.check = survey(claims.check)
    claims.check_all = survey(claims.check_all)
    claims.verify = survey(claims.verify)

    os.chdir(source)
    shell = InteractiveShell.instance()
    cells = code_cells((source / f"{name}.md").read_text())
    seconds, errors = [], []
    start = time.perf_counter()
    for i, source in enumerate(cells):
        t = time.perf_counter()
        result = shell.run_cell(source, silent=True)
        seconds.append(round(time.perf_counter() - t, 2))
        if not result.success:
            err = result.error_in_exec or result.error_before_exec
            errors.append(
                f"cell {i}: {type(err).__name__}: {err}" + _where(err)
            )
            if not keep_going:
                break
    record = dict(
        chapter=name,
        scale=runtime.current_scale().value,
        device=str(runtime.device()),
        gpu=(
            torch.cuda.get_device_name()
            if runtime.device().type == "cuda"
            else ""
        ),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        seconds=round(time.perf_counter() - start, 1),
        cell_seconds=seconds,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        peak_gpu_mb=(
            torch.cuda.max_memory_allocated() // 2**20
            if torch.cuda.is_available()
            else 0
        ),
        claims_held=len(claims.verified()),
        claims_failed=failed,
        errors=errors,
    )
    write_whole(out / f"{name}.json", json.dumps(record, indent=1))
    return record


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so that a
    stopped run leaves the old file or the new one, never half of it."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def _where(err: BaseException) -> str:
    """The innermost frames of ``err`` inside this repository."""
    frames = [
        f"{Path(f.filename).name}:{f.lineno} {f.name}"
        for f in traceback.extract_tb(err.__traceback__)
        if str(ROOT) in f.filename or f.filename.startswith("<ipython")
    ]
    return (
        (" [at " + " <- ".join(reversed(frames[-4:])) + "]") if frames else ""
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _summary(args, argv: list[str], records: list[dict], wall: float):
    """The survey's record: the machine, the command and every chapter."""
    return dict(
        scale=args.scale,
        seed_set=int(os.environ.get("BATCHLAB_SEED", "0") or 0),
        jobs=args.jobs,
        wall_seconds=round(wall, 1),
        date=time.strftime("%Y-%m-%d"),
        cpus=os.cpu_count(),
        cpu_model=_cpu_model(),
        command=" ".join(["python", "benchmarks/bench_chapters.py", *argv]),
        chapters=records,
    )


def launch(name: str, args, stop: stopping.Stopper) -> dict:
    """Run chapter ``name`` in a fresh process (``--run-one``), started
    inside ``stop.spawning()`` so that none starts after a stop began;
    returns its record."""
    env = dict(os.environ, BATCHLAB_SCALE=args.scale, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "code"), env.get("PYTHONPATH")) if p
    )
    cmd = [sys.executable, __file__, "--run-one", name]
    cmd += ["--out", str(args.out), "--source", str(args.source)]
    cmd += ["--keep-going"] if args.keep_going else []
    with stop.spawning():
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    _, stderr = proc.communicate()
    path = args.out / f"{name}.json"
    if proc.returncode != 0 or not path.is_file():
        sys.exit(f"{name} did not run:\n{stderr.decode()[-3000:]}")
    record = json.loads(path.read_text())
    print(
        json.dumps({k: record[k] for k in ("chapter", "seconds")}),
        flush=True,
    )
    return record


def _print_table(records: list[dict], args, wall: float) -> None:
    first = records[0]
    print(
        f"scale {args.scale}, device {first['device']} {first['gpu']}, "
        f"torch {first['torch']}, {args.jobs} at a time: {wall:.0f} s wall"
    )
    print(
        "| chapter | seconds | peak RSS (MB) | peak GPU (MB) | claims held "
        "| claims failed |"
    )
    print("|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['chapter']} | {r['seconds']:.0f} | {r['peak_rss_mb']} "
            f"| {r['peak_gpu_mb']} | {r['claims_held']} "
            f"| {len(r['claims_failed'])} |"
        )
    for r in records:
        for line in r["claims_failed"] + r["errors"]:
            print(f"{r['chapter']}: {line}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full")
    parser.add_argument("--chapters", default=",".join(CHAPTERS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "_build" / "survey"))
    parser.add_argument(
        "--source",
        default=str(ROOT / "chapters"),
        help="folder of the MyST pages (default chapters/)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="after a cell fails, run the next ones too",
    )
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = _parser()
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    args.out = Path(args.out).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.source = Path(args.source).resolve()
    if args.run_one:
        stopping.worker_init()  # the survey's main process decides
        run_one(args.run_one, args.out, args.source, args.keep_going)
        return
    names = args.chapters.split(",")
    unknown = [n for n in names if not (args.source / f"{n}.md").is_file()]
    if unknown:
        parser.error(f"no chapter named {', '.join(unknown)} in {args.source}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    finished: list[str] = []

    def describe() -> str:
        left = ", ".join(n for n in names if n not in finished)
        if not finished:
            return f"stopped the survey of {left}; no chapter had finished"
        return (
            f"stopped the survey of {left}; the records of the chapters "
            f"that finished ({', '.join(finished)}) are kept in {args.out}"
        )

    def survey_one(name: str) -> dict:
        record = launch(name, args, stop)
        finished.append(name)
        return record

    start = time.perf_counter()
    with stopping.stop_on_signals(describe) as stop:
        with ThreadPoolExecutor(args.jobs) as pool:
            records = list(pool.map(survey_one, names))
        wall = time.perf_counter() - start
        summary = _summary(args, argv, records, wall)
        with stop.deferred():
            text = json.dumps(summary, indent=1)
            write_whole(args.out / "survey.json", text)
    _print_table(records, args, wall)


if __name__ == "__main__":
    main()
