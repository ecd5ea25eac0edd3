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

Run as ``python -m booktools.execute BUILD_DIR`` from the book's root.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from myst_nb.core.read import read_myst_markdown_notebook

from batchlab.runtime import affinity_cpus, cgroup_cpu_limit

CODE_CELL = "```{code-cell}"


@dataclass(frozen=True)
class Outcome:
    """What executing one page gave: the executed notebook (``None`` on
    failure), the seconds it took and the traceback of a failure."""

    page: str
    notebook: nbformat.NotebookNode | None
    seconds: float
    error: str | None


def code_pages(root: Path) -> list[Path]:
    """The pages of ``_toc.yml`` (under ``root``) that hold code cells."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
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
    """Execute one page in its own kernel, in the page's folder."""
    nb = read_page(path)
    start = time.perf_counter()
    result = single_nb_execution(
        nb, cwd=str(path.parent), timeout=timeout, allow_errors=allow_errors
    )
    seconds = time.perf_counter() - start
    if result.err is not None:
        return Outcome(str(path), None, seconds, result.exc_string)
    return Outcome(str(path), nb, seconds, None)


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
    cache = get_cache(str((build / ".jupyter_cache").resolve()))
    pages = uncached(cache, code_pages(root))
    if not pages:
        print("every page is cached")
        return 0
    timeout, allow_errors = execution_settings(root)
    n = workers(len(pages))
    print(f"executing {len(pages)} pages with {n} processes")
    failed = []
    with ProcessPoolExecutor(max_workers=n) as pool:
        jobs = [
            pool.submit(execute_page, p, timeout, allow_errors)
            for p in _longest_first(pages)
        ]
        for job in as_completed(jobs):
            out = job.result()
            if out.error is not None:
                failed.append(out.page)
                print(f"FAILED {out.page} after {out.seconds:.1f} s:")
                print(out.error)
                continue
            record = cache.add_nb_to_project(out.page)
            cache.cache_notebook_bundle(
                CacheBundleIn(
                    out.notebook,
                    record.uri,
                    data={"execution_seconds": out.seconds},
                ),
                check_validity=False,
                overwrite=True,
            )
            print(f"executed {out.page} in {out.seconds:.1f} s")
    if failed:
        print(f"{len(failed)} pages failed: {', '.join(failed)}")
        return 1
    return 0


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
