"""Which thread count serves the book's chapters: run every chapter as a
script with 1 and with 2 threads, on a quiet machine and beside a
competing busy loop of two processes, and print the wall times.

    python benchmarks/bench_threads.py [--scale book] [--chapters a,b]

Each run is a fresh process (``ipython`` on the chapter converted by
jupytext), started in ``chapters/`` with ``BATCHLAB_THREADS`` set; the
busy loop is two Python processes spinning for the length of the run.
Times are seconds of wall clock, one run each: read them as an
illustration of the ratios, not as exact figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def spin(stop) -> None:
    """Burn one core until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        x += 1


def run_chapter(script: Path, threads: int, scale: str) -> tuple[float, int]:
    """Wall seconds and peak resident memory (MB) of one chapter run."""
    env = dict(os.environ, BATCHLAB_THREADS=str(threads))
    env["BATCHLAB_SCALE"] = scale
    cmd = ["/usr/bin/time", "-f", "%M", str(BIN / "ipython"), str(script)]
    start = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT / "chapters", env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb // 1024


def measure(chapters: list[str], scale: str) -> pd.DataFrame:
    """One row per chapter, threads and load."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name in chapters:
            script = Path(tmp) / f"{name}.py"
            subprocess.run(
                [
                    str(BIN / "jupytext"),
                    "--to",
                    "py:percent",
                    "-q",
                    "-o",
                    str(script),
                    str(ROOT / "chapters" / f"{name}.md"),
                ],
                check=True,
            )
            scripts[name] = script
        for load in ("quiet", "two busy processes"):
            stop = mp.Event()
            hogs = []
            if load != "quiet":
                hogs = [mp.Process(target=spin, args=(stop,)) for _ in "ab"]
                for h in hogs:
                    h.start()
            try:
                for name, script in scripts.items():
                    for threads in (1, 2):
                        seconds, mb = run_chapter(script, threads, scale)
                        rows.append(
                            dict(
                                chapter=name,
                                load=load,
                                threads=threads,
                                seconds=seconds,
                                peak_mb=mb,
                            )
                        )
                        print(rows[-1], flush=True)
            finally:
                stop.set()
                for h in hogs:
                    h.join()
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="book")
    parser.add_argument(
        "--chapters", default="minibatch,normalization,batchnorm"
    )
    args = parser.parse_args()
    frame = measure(args.chapters.split(","), args.scale)
    table = frame.pivot_table(
        index="chapter", columns=["load", "threads"], values="seconds"
    )
    print(table.round(1).to_string())
    print(frame.groupby("chapter")["peak_mb"].max().to_string())


if __name__ == "__main__":
    main()
