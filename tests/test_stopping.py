"""booktools.stopping: Ctrl-C, SIGTERM, a closed terminal (SIGHUP) or a
killed coordinator stop a pool of workers and every process they started,
kernels in sessions of their own included, and work inside ``deferred``
is never cut short."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import Run, running, wait_for

from booktools import stopping

# A coordinator with two workers, each of which starts a stand-in for a
# Jupyter kernel: a process in a session of its own that ignores SIGTERM.
# With the argument "stubborn" the first task ignores SIGTERM too, as a
# worker does while nbclient holds its signals; with "ignore-sigint" the
# coordinator starts with SIGINT ignored, as a shell's background job.
POOL = """
import signal, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from booktools import stopping

KERNEL = (
    "import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
)

def task(i):
    if i == 0 and sys.argv[1:] == ["stubborn"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c", KERNEL], start_new_session=True)
    time.sleep(60)

if __name__ == "__main__":
    if "ignore-sigint" in sys.argv:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does
    with stopping.stop_on_signals(lambda: "stopped 4 tasks") as stop:
        with ProcessPoolExecutor(2, initializer=stopping.worker_init) as pool:
            for job in [pool.submit(task, i) for i in range(4)]:
                job.result()
"""

# A coordinator that a signal reaches while it saves a result.
SAVING = """
import sys, time
from pathlib import Path
from booktools import stopping

with stopping.stop_on_signals(lambda: "stopped after saving") as stop:
    with stop.deferred():
        print("saving", flush=True)
        time.sleep(1.5)
        Path(sys.argv[1]).write_text("whole")
    print("after saving", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def start_pool(tmp_path):
    """Start the pool above (``stubborn`` or not); returns the run once
    both workers and both kernels are up."""
    runs = []

    def start(*args: str) -> Run:
        script = tmp_path / "pool.py"
        script.write_text(POOL)
        run = Run([sys.executable, str(script), *args], tmp_path, tmp_path)
        runs.append(run)
        wait_for(lambda: len(run.tree()) == 5, 60, "two workers and kernels")
        return run

    yield start
    for run in runs:
        run.kill()


@pytest.mark.parametrize(
    "signum, group",
    [
        (signal.SIGINT, True),
        (signal.SIGTERM, True),
        (signal.SIGTERM, False),
        (signal.SIGHUP, True),
    ],
    ids=["ctrl-c", "sigterm-to-group", "kill-pid", "closed-terminal"],
)
def test_a_signal_stops_workers_and_kernels(start_pool, signum, group):
    pool_run = start_pool("stubborn")
    tree = pool_run.tree()
    pool_run.signal(signum, group)
    assert pool_run.wait(timeout=10) == 128 + signum
    assert running(tree) == []
    name = signal.Signals(signum).name
    lines = pool_run.stderr().splitlines()
    assert lines == [f"interrupted by {name}: stopped 4 tasks"]


def test_a_killed_coordinator_leaves_no_worker(start_pool):
    pool_run = start_pool()
    tree = pool_run.tree()
    pool_run.signal(signal.SIGKILL, group=False)
    pool_run.wait(timeout=10)
    # each worker hears of its parent's death, and ends its kernel
    wait_for(lambda: running(tree) == [], 10, "every process ended")


def test_a_background_job_keeps_ignoring_ctrl_c(start_pool):
    # a shell starts a background job with SIGINT ignored: Ctrl-C in the
    # terminal is not for it
    pool_run = start_pool("ignore-sigint")
    pool_run.signal(signal.SIGINT, group=True)
    with pytest.raises(subprocess.TimeoutExpired):
        pool_run.wait(timeout=2)
    tree = pool_run.tree()
    pool_run.signal(signal.SIGTERM, group=False)
    assert pool_run.wait(timeout=10) == 143
    assert running(tree) == []


def test_a_signal_waits_for_deferred_work(tmp_path):
    script, saved = tmp_path / "saving.py", tmp_path / "saved.txt"
    script.write_text(SAVING)
    run = Run([sys.executable, str(script), str(saved)], tmp_path, tmp_path)
    try:
        wait_for(lambda: "saving" in run.stdout(), 60, "saving")
        run.signal(signal.SIGTERM, group=False)
        assert run.wait(timeout=10) == 143
    finally:
        run.kill()
    assert saved.read_text() == "whole"
    assert "after saving" not in run.stdout()
    assert "interrupted by SIGTERM: stopped after saving" in run.stderr()


def test_handlers_are_restored_after_the_block():
    before = [signal.getsignal(s) for s in stopping.SIGNALS]
    with stopping.stop_on_signals(lambda: "nothing"):
        inside = [signal.getsignal(s) for s in stopping.SIGNALS]
    assert inside != before
    assert [signal.getsignal(s) for s in stopping.SIGNALS] == before


def test_exit_status_is_what_a_shell_reports():
    assert stopping.exit_status(signal.SIGINT) == 130
    assert stopping.exit_status(signal.SIGTERM) == 143
