"""Stop a run of worker processes on Ctrl-C, SIGTERM or a closed terminal:
leave nothing running and keep what finished.

A long run here (the executor, the chapter survey, the ledger) is one
coordinating process with workers below it, and the workers may start
processes of their own (Jupyter kernels) in sessions of their own. Left to
the defaults, Ctrl-C reaches the coordinator and the workers but never a
kernel, a worker goes on to its next task, and SIGTERM to the coordinator
leaves its workers running, re-parented to init. This module makes such a
run stoppable in two halves.

In the coordinating process, :func:`stop_on_signals` installs handlers for
SIGINT, SIGTERM and SIGHUP (a closed terminal). On any of them it ignores
further signals, prints one line (``interrupted by SIGINT: ...``, the rest
from the runner's ``describe``), terminates every process below it
(:func:`terminate_descendants`) and exits at once with 128 + the signal's
number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP. It skips any
clean-up that could block (a pool's ``__exit__`` waits for its workers).
Work the runner must not leave half done, such as writing a finished
result, goes in :meth:`Stopper.deferred`: a signal that arrives inside it
is acted on at its end.

In each worker, :func:`worker_init` (a pool's ``initializer``, or the first
call of a worker script) ignores SIGINT and SIGHUP, since Ctrl-C and a
closed terminal reach the whole foreground process group and the
coordinator decides. On SIGTERM the worker runs the callbacks registered
with :func:`on_stop` (shutting its kernels down through their managers,
say), kills what is left below it and exits with 143. It also asks Linux
to send it SIGTERM if the coordinator dies, even by SIGKILL.

How a runner uses it (:mod:`booktools.execute`,
``benchmarks/bench_chapters.py``; the ledger the same way)::

    from booktools import stopping

    def describe() -> str:  # what a stop interrupts, and what is kept
        return "stopped 2 runs; the 5 finished ones are kept in results/"

    with stopping.stop_on_signals(describe) as stop:
        with ProcessPoolExecutor(2, initializer=stopping.worker_init) as pool:
            for job in as_completed([pool.submit(task, x) for x in xs]):
                result = job.result()
                with stop.deferred():  # never stopped half-way through
                    save(result)

Work that a worker returns is only ever saved by the coordinator, inside
``deferred``, so a stopped task is never saved as if it had finished. A
runner whose threads start the worker processes themselves (the survey
runs one ``subprocess`` per chapter from a thread pool) starts each inside
``stop.spawning()``, so that no process starts after a stop began.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import psutil

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Linux prctl(2) options: re-parent orphaned descendants to this process;
# send this process a signal when its parent dies.
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# In a worker: what to run before it exits on SIGTERM (see on_stop).
_on_stop: list[Callable[[], None]] = []


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by ``signum``: 128 + its number,
    as a shell reports a process that the signal ended (130, 143)."""
    return 128 + int(signum)


def terminate_descendants(grace: float = 3.0) -> list[psutil.Process]:
    """End every process below this one: SIGTERM to the children, then,
    after at most ``grace`` seconds, SIGKILL to whatever of the whole tree
    is still running, including processes of other sessions (kernels) and
    orphans re-parented to this process. Returns the processes found."""
    me = psutil.Process()
    found = _descendants(me)
    children = me.children()
    _send(children, signal.SIGTERM)
    psutil.wait_procs(children, timeout=grace)
    # A worker that ended may have left orphans: they are ours again
    # (a subreaper), or at least in the list taken before.
    found += [p for p in _descendants(me) if p not in found]
    left = [p for p in found if _running(p)]
    _send(left, signal.SIGKILL)
    psutil.wait_procs(left, timeout=grace)
    return found


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(procs: list[psutil.Process], signum: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(signum)
        except psutil.Error:
            pass  # ended meanwhile


class Stopper:
    """What :func:`stop_on_signals` yields: stops the run on a signal,
    except inside :meth:`deferred`."""

    def __init__(self, describe: Callable[[], str], grace: float) -> None:
        self._describe = describe
        self._grace = grace
        self._depth = 0
        self._pending: int | None = None
        self._spawn = threading.RLock()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Act on a signal that arrives inside this block at its end, so
        that the block (saving a result, say) is never cut short."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending is not None:
            self.stop(self._pending)

    @contextmanager
    def spawning(self) -> Iterator[None]:
        """Start processes inside this block when other threads start them
        while the main thread may be stopping the run: a stop waits for
        the block to end, and no block begins once a stop has, so no
        process starts after the stop looked for them."""
        with self._spawn:
            yield

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler: stop now, or at the end of ``deferred``."""
        if self._depth > 0:
            self._pending = signum
        else:
            self.stop(signum)

    def stop(self, signum: int) -> None:
        """Print one line, end every process below this one and exit with
        :func:`exit_status` of ``signum``. Does not return."""
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            what = self._describe()
        except Exception as err:  # stopping must not fail on a message
            what = f"(could not say what: {err!r})"
        name = signal.Signals(signum).name
        print(f"interrupted by {name}: {what}", file=sys.stderr, flush=True)
        self._spawn.acquire()  # for good: no process starts from now on
        terminate_descendants(self._grace)
        sys.stdout.flush()
        os._exit(exit_status(signum))


@contextmanager
def stop_on_signals(
    describe: Callable[[], str], grace: float = 3.0
) -> Iterator[Stopper]:
    """Inside this block, SIGINT, SIGTERM and SIGHUP stop the run and every
    process below it (see the module's docstring); outside, the handlers
    that were there before apply again. A signal this process was started
    to ignore (SIGINT in a shell's background job, SIGHUP under nohup)
    stays ignored.

    Args:
        describe: called once on a signal; returns what was interrupted and
            what is kept, for the one line printed to standard error.
        grace: seconds the workers get to end after SIGTERM before the
            whole tree below this process is killed.

    Yields:
        The :class:`Stopper`, whose ``deferred()`` protects critical work.
    """
    stopper = Stopper(describe, grace)
    if threading.current_thread() is not threading.main_thread():
        yield stopper  # signal handlers can only be set in the main thread
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig, handler in before.items():
        if handler is not signal.SIG_IGN:  # a background job's stays
            signal.signal(sig, stopper.handle)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield stopper
    finally:
        _prctl(_PR_SET_CHILD_SUBREAPER, 0)
        for sig, handler in before.items():
            signal.signal(sig, handler)


def worker_init() -> None:
    """Set up a worker process of a stoppable run: ignore SIGINT and SIGHUP
    (the coordinator decides), and on SIGTERM, or when the coordinator dies,
    run the :func:`on_stop` callbacks, kill what is left below this
    process and exit with 143."""
    _on_stop.clear()  # a forked worker starts with none of its parent's
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def on_stop(callback: Callable[[], None]) -> None:
    """In a worker (see :func:`worker_init`): run ``callback`` when the
    worker is stopped, before what remains below it is killed. A callback
    should return within a second or two; its errors are ignored."""
    if callback not in _on_stop:
        _on_stop.append(callback)


def _stop_worker(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for callback in _on_stop:
        try:
            callback()
        except Exception:
            pass  # killing what is left below is the fallback
    terminate_descendants(grace=1.0)
    os._exit(exit_status(signum))


def _prctl(option: int, value: int) -> None:
    """Linux's prctl(2); does nothing where it is missing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass
