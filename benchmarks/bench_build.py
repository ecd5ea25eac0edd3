"""Cold build times of the whole book: quietly, and beside two busy
processes (each spinning on one core), each into a fresh folder.

    python benchmarks/bench_build.py [--scale book]

Prints the wall time of each `make book` and the ratio loaded / quiet; a
fair share of two cores between the build and two busy loops would give
about 2. Also prints the slowest page of each build as measured by the
executor (booktools.execute records it in the cache). One run each: a
busy machine moves these numbers, read them as an illustration.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import tempfile
import time
from pathlib import Path

from booktools.execute import measurements

ROOT = Path(__file__).resolve().parents[1]


def spin(stop) -> None:
    """Burn one core until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        x += 1


def cold_build(scale: str, busy: int) -> tuple[float, dict]:
    """Seconds of one `make book` into an empty folder beside ``busy``
    spinning processes, and the executor's per-page measurements."""
    stop = mp.Event()
    hogs = [mp.Process(target=spin, args=(stop,)) for _ in range(busy)]
    for h in hogs:
        h.start()
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            done = subprocess.run(
                ["make", "book", f"OUT={out}", f"SCALE={scale}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
            pages = measurements(Path(out) / "_build" / ".jupyter_cache")
    finally:
        stop.set()
        for h in hogs:
            h.join()
    return seconds, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="book")
    args = parser.parse_args()
    results = {}
    for label, busy in (("quiet", 0), ("two busy processes", 2)):
        seconds, pages = cold_build(args.scale, busy)
        results[label] = seconds
        slowest = max(pages.items(), key=lambda kv: kv[1]["seconds"])
        print(
            f"{label:>20}: make book {seconds:6.1f} s; slowest page "
            f"{slowest[0]} {slowest[1]['seconds']:.1f} s",
            flush=True,
        )
        for name, m in sorted(pages.items()):
            print(
                f"{'':>22}{name:<12} {m['seconds']:6.1f} s "
                f"{m['peak_mb']:6.0f} MB"
            )
    ratio = results["two busy processes"] / results["quiet"]
    print(f"loaded / quiet: {ratio:.2f}")


if __name__ == "__main__":
    main()
