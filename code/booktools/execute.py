"""Execute the book's pages in parallel into jupyter-cache, before Sphinx.

Jupyter Book 1 reads pages one after another, so with ``execute_notebooks:
cache`` it executes the chapters serially. This module fills the same
cache first, running the pages that are not yet cached in a pool of
processes (one per CPU this process may use: its affinity mask and cgroup
quota, see :mod:`batchlab.runtime`). Sphinx then finds every page cached
("Using cached notebook") and only renders.

A page is read exactly as myst-nb reads it (its MyST reader), so the
cache key, a hash of the code cells and the kernel, is the one myst-nb
looks up. A page that fails is not cached; its traceback is printed and
the command exits with status 1, naming it.

After every cell the peak resident memory of the page's kernel (Linux's
``VmHWM``) is read; it is stored with the execution time in the cache
record (:func:`measurements` reads them back). Pages that
report on the build (:data:`REPORT_PAGES`) run after all others, and
again whenever another page ran, so that they show this build's figures.

Ctrl-C or SIGTERM stops the run within seconds (:mod:`booktools.stopping`):
the workers, and every kernel they started, shut down through its kernel
manager, then whatever is left is killed. Only the coordinating process
writes the cache, one finished page at a time, so a stopped page is never
cached; the pages that finished are, and the next run executes only the
rest. The exit status is then 130 (SIGINT) or 143 (SIGTERM).

Run as ``python -m booktools.execute BUILD_DIR`` from the book's root.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from jupyter_client.manager import AsyncKernelManager
from myst_nb.core.read import read_myst_markdown_notebook

from batchlab.runtime import affinity_cpus, cgroup_cpu_limit
from booktools import stopping

CODE_CELL = "```{code-cell}"
# Pages (paths without suffix, from the book's root) that read the
# measurements of the others.
REPORT_PAGES = ("chapters/reproducing",)
# The cache folder, for report pages (set while pages execute here).
CACHE_VAR = "BOOKTOOLS_CACHE"
# In a worker: each running kernel's manager, with the event loop it runs
# on (see TrackedKernelManager).
_kernels: dict[AsyncKernelManager, asyncio.AbstractEventLoop] = {}


@dataclass(frozen=True)
class Outcome:
    """What executing one page gave: the executed notebook (``None`` on
    failure), the seconds it took and the traceback of a failure."""

    page: str
    notebook: nbformat.NotebookNode | None
    seconds: float
    error: str | None
    peak_mb: float = float("nan")


def code_pages(root: Path) -> list[Path]:
    """The pages of ``_toc.yml`` (under ``root``) that hold code cells."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    entries = list(toc.get("chapters", []))
    for part in toc.get("parts", []):
        entries += part.get("chapters", [])
    files = [toc["root"]] + [e["file"] for e in entries if "file" in e]
    pages = [root / f"{f}.md" for f in files]
    missing = [p for p in pages if not p.exists()]
    if missing:
        raise FileNotFoundError(f"_toc.yml names missing pages: {missing}")
    return [p for p in pages if CODE_CELL in p.read_text()]


def read_page(path: Path) -> nbformat.NotebookNode:
    """The page as the notebook myst-nb executes."""
    return read_myst_markdown_notebook(path.read_text(), path=path)


def execution_settings(root: Path) -> tuple[int, bool]:
    """The cell timeout and ``allow_errors`` of ``_config.yml``."""
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    execute = cfg.get("execute", {})
    return int(execute.get("timeout", 30)), bool(
        execute.get("allow_errors", False)
    )


def workers(pages: int) -> int:
    """Processes to run: the CPUs this process may use, at most one per
    page. Each kernel then runs single-threaded (batchlab's policy)."""
    quota = cgroup_cpu_limit()
    cpus = affinity_cpus() if quota is None else min(affinity_cpus(), quota)
    return max(1, min(pages, int(cpus)))


def execute_page(path: Path, timeout: int, allow_errors: bool) -> Outcome:
    """Execute one page in its own kernel, in the page's folder.

    The notebook runs in a thread of its own: nbclient then sets no signal
    handlers (only the main thread may), so those of
    :func:`booktools.stopping.worker_init` stay in force, and SIGTERM shuts
    the kernel down instead of failing the page and going on."""
    return _in_thread(_execute_page, path, timeout, allow_errors)


def _execute_page(path: Path, timeout: int, allow_errors: bool) -> Outcome:
    nb = read_page(path)
    peaks = [float("nan")]

    def watch(**_) -> None:  # after each cell: the kernel is our child
        peaks.append(max(map(peak_memory_mb, child_pids()), default=peaks[-1]))

    start = time.perf_counter()
    result = single_nb_execution(
        nb,
        cwd=str(path.parent),
        timeout=timeout,
        allow_errors=allow_errors,
        on_cell_complete=watch,
        kernel_manager_class=TrackedKernelManager,
    )
    seconds = time.perf_counter() - start
    peak_mb = max(peaks[1:], default=float("nan"))
    if result.err is not None:
        return Outcome(str(path), None, seconds, result.exc_string, peak_mb)
    return Outcome(str(path), nb, seconds, None, peak_mb)


def _in_thread(function: Callable[..., Outcome], *args) -> Outcome:
    """``function(*args)``, run in a new thread while this one waits (and
    stays free to handle signals); its exception is raised here."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = function(*args)
        except BaseException as err:  # handed to the waiting thread
            box["error"] = err

    thread = threading.Thread(target=target, name="page")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class TrackedKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, recorded with its event loop while its
    kernel runs, so that a stopped worker can shut the kernel down
    through it (:func:`shutdown_kernels`)."""

    async def start_kernel(self, **kwargs) -> None:
        """Start the kernel and record this manager while it runs."""
        _kernels[self] = asyncio.get_running_loop()
        await super().start_kernel(**kwargs)

    async def cleanup_resources(self, restart: bool = False) -> None:
        """Clean up as usual, and forget this manager unless restarting."""
        try:
            await super().cleanup_resources(restart=restart)
        finally:
            if not restart:
                _kernels.pop(self, None)


def shutdown_kernels(wait: float = 2.0) -> None:
    """Shut every kernel of this worker down through its manager, at once
    (no polite request), waiting at most ``wait`` seconds for each; run on
    the kernel's own event loop, which keeps turning in its thread."""
    for km, loop in list(_kernels.items()):
        try:
            future = asyncio.run_coroutine_threadsafe(
                km.shutdown_kernel(now=True), loop
            )
            future.result(timeout=wait)
        except Exception:
            pass  # stopping.terminate_descendants kills what is left


def _worker_init() -> None:
    """A pool worker: stoppable, and shutting its kernels down on SIGTERM."""
    stopping.worker_init()
    stopping.on_stop(shutdown_kernels)


def child_pids() -> list[int]:
    """Processes whose parent is this one (Linux ``/proc``)."""
    me = os.getpid()
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == me:
            found.append(int(stat.parent.name))
    return found


def peak_memory_mb(pid: int) -> float:
    """Peak resident memory of a process in MB (``VmHWM``), NaN if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def uncached(cache, pages: list[Path]) -> list[Path]:
    """The pages whose current code has no executed copy in ``cache``."""
    todo = []
    for page in pages:
        try:
            cache.match_cache_notebook(read_page(page))
        except KeyError:
            todo.append(page)
    return todo


def run(root: Path, build: Path) -> int:
    """Execute every uncached code page of the book at ``root`` into the
    cache of ``build`` (``_build``); returns the exit status."""
    cache_dir = (build / ".jupyter_cache").resolve()
    cache = get_cache(str(cache_dir))
    os.environ[CACHE_VAR] = str(cache_dir)  # for the report pages
    pages = code_pages(root)
    reports = [p for p in pages if _is_report(root, p)]
    todo = uncached(cache, [p for p in pages if p not in reports])
    late = reports if todo else uncached(cache, reports)
    if not todo and not late:
        print("every page is cached")
        return 0
    timeout, allow_errors = execution_settings(root)
    failed = []
    for batch in (_longest_first(todo), late):
        if batch:
            failed += _execute(cache, batch, timeout, allow_errors)
    if failed:
        print(f"{len(failed)} pages failed: {', '.join(failed)}")
        return 1
    return 0


def _is_report(root: Path, page: Path) -> bool:
    return page.relative_to(root).with_suffix("").as_posix() in REPORT_PAGES


def _execute(cache, pages: list[Path], timeout: int, allow_errors: bool):
    """Run ``pages`` in a pool, cache each success; the failed pages.
    SIGINT or SIGTERM stops the pool and exits (see the module)."""
    n = workers(len(pages))
    print(f"executing {len(pages)} pages with {n} processes", flush=True)
    failed: list[str] = []
    finished: list[str] = []
    left = [str(p) for p in pages]

    def describe() -> str:
        return stop_message(left, finished)

    with (
        stopping.stop_on_signals(describe) as stop,
        ProcessPoolExecutor(max_workers=n, initializer=_worker_init) as pool,
    ):
        jobs = {
            pool.submit(execute_page, p, timeout, allow_errors): p
            for p in pages
        }
        for job in as_completed(jobs):
            out = _outcome(job, jobs[job])
            with stop.deferred():  # a page is cached whole or not at all
                if out.error is None:
                    _cache(cache, out)
                    finished.append(out.page)
                else:
                    failed.append(out.page)
                left.remove(out.page)
            _report(out)
    return failed


def stop_message(left: list[str], finished: list[str]) -> str:
    """What a stop interrupts (the pages ``left``) and what it keeps (the
    ``finished`` pages, cached), for :mod:`booktools.stopping`."""
    names = ", ".join(Path(p).stem for p in left) or "nothing"
    if not finished:
        return f"stopped executing {names}; no page had finished"
    pages = "page that finished is"
    if len(finished) > 1:
        pages = f"{len(finished)} pages that finished are"
    return (
        f"stopped executing {names}; the {pages} kept in the cache, and "
        "the next build executes only the rest"
    )


def _outcome(job: Future, page: Path) -> Outcome:
    """The job's outcome; an exception (a kernel that died, say) is a
    failure of its page."""
    try:
        return job.result()
    except Exception:
        return Outcome(str(page), None, float("nan"), traceback.format_exc())


def _cache(cache, out: Outcome) -> None:
    record = cache.add_nb_to_project(out.page)
    data = {"execution_seconds": out.seconds, "peak_mb": out.peak_mb}
    cache.cache_notebook_bundle(
        CacheBundleIn(out.notebook, record.uri, data=data),
        check_validity=False,
        overwrite=True,
    )


def _report(out: Outcome) -> None:
    if out.error is not None:
        print(f"FAILED {out.page} after {out.seconds:.1f} s:")
        print(out.error, flush=True)
    else:
        print(
            f"executed {out.page} in {out.seconds:.1f} s, "
            f"peak {out.peak_mb:.0f} MB",
            flush=True,
        )


def measurements(cache_dir: str | Path) -> dict[str, dict]:
    """Seconds and peak memory (MB) of each page's latest execution in the
    cache at ``cache_dir``, keyed by the page's file name without suffix.
    Pages executed by myst-nb itself have no memory figure (NaN)."""
    latest: dict[str, tuple] = {}
    for record in get_cache(str(cache_dir)).list_cache_records():
        name = Path(record.uri).stem
        if name not in latest or record.created > latest[name][0]:
            latest[name] = (record.created, record.data or {})
    return {
        name: {
            "seconds": data.get("execution_seconds", float("nan")),
            "peak_mb": data.get("peak_mb", float("nan")),
        }
        for name, (_, data) in latest.items()
    }


def measurement_table() -> pd.DataFrame | None:
    """This build's measurements of every page but the report pages, as a
    table (page, seconds, peak memory in MB), or ``None`` when the page
    asking was not executed by :func:`run` (in JupyterLab, say)."""
    cache_dir = os.environ.get(CACHE_VAR)
    if not cache_dir:
        return None
    reports = {Path(r).name for r in REPORT_PAGES}
    rows = [
        {
            "page": name,
            "seconds": m["seconds"],
            "peak memory (MB)": m["peak_mb"],
        }
        for name, m in sorted(measurements(cache_dir).items())
        if name not in reports
    ]
    return pd.DataFrame(rows) if rows else None


def _longest_first(pages: list[Path]) -> list[Path]:
    # More code, longer run, as a rule: start those first so that the
    # short pages fill the gaps at the end.
    return sorted(pages, key=lambda p: -p.read_text().count(CODE_CELL))


def main(argv: list[str]) -> int:
    """Command line: ``python -m booktools.execute BUILD_DIR``."""
    if len(argv) != 1:
        print("usage: python -m booktools.execute BUILD_DIR", file=sys.stderr)
        return 2
    return run(Path(os.getcwd()), Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
