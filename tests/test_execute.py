"""booktools.execute: pages run in parallel into the cache that myst-nb
reads, failures are named, time and memory are recorded, and a stopped
run leaves nothing running and caches only the pages that finished."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Run, jupyter_book, running, wait_for

from booktools import execute

HEADER = (
    "---\njupytext:\n  text_representation:\n    format_name: myst\n"
    "kernelspec:\n  display_name: Python 3\n  language: python\n"
    "  name: python3\n---\n\n"
)


def tiny_book(tmp_path: Path, pages: dict[str, str]) -> Path:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    names = list(pages)
    toc = f"format: jb-book\nroot: chapters/{names[0]}\n"
    if len(names) > 1:
        toc += "chapters:\n" + "".join(
            f"  - file: chapters/{n}\n" for n in names[1:]
        )
    (book / "_toc.yml").write_text(toc)
    for name, body in pages.items():
        # a page without code is plain Markdown, as in the book
        header = HEADER if "code-cell" in body else ""
        text = header + f"# Page {name}\n\n" + body
        (book / "chapters" / f"{name}.md").write_text(text)
    return book


def cell(code: str) -> str:
    return f"```{{code-cell}} ipython3\n{code}\n```\n"


@pytest.fixture
def in_book(monkeypatch):
    def enter(book: Path) -> Path:
        monkeypatch.chdir(book)
        monkeypatch.delenv(execute.CACHE_VAR, raising=False)
        return book

    return enter


@pytest.mark.book
def test_pages_run_into_the_cache_sphinx_reads(tmp_path, in_book):
    book = in_book(
        tiny_book(
            tmp_path,
            {
                "a": "Text only.\n",
                "b": cell("x = list(range(10 ** 6))\nprint(len(x))"),
                "c": cell("print('c')"),
            },
        )
    )
    build = book / "_build"
    assert execute.code_pages(book) == [
        book / "chapters/b.md",
        book / "chapters/c.md",
    ]
    assert execute.run(book, build) == 0
    found = execute.measurements(build / ".jupyter_cache")
    assert set(found) == {"b", "c"}
    # the kernel holding a list of a million ints peaks above 30 MB
    assert found["b"]["peak_mb"] > 30 and found["b"]["seconds"] > 0
    assert execute.run(book, build) == 0  # nothing left to run
    done = jupyter_book(".", cwd=book)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert log.count("Using cached notebook") == 2
    assert "Executing notebook" not in log


@pytest.mark.book
def test_a_build_into_a_folder_inside_the_book_succeeds(tmp_path, in_book):
    # `make book OUT=out`: out/_build, cached notebooks included, lies in
    # the sources and must not be read as pages (warnings fail the build)
    book = in_book(tiny_book(tmp_path, {"a": "Text.\n", "b": cell("1")}))
    assert execute.run(book, book / "out/_build") == 0
    done = jupyter_book(".", "--path-output", "out", cwd=book)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Using cached notebook" in log
    assert (book / "out/_build/html/chapters/b.html").is_file()


@pytest.mark.book
def test_a_failing_page_is_named_and_not_cached(tmp_path, in_book, capsys):
    book = in_book(
        tiny_book(tmp_path, {"ok": cell("1"), "bad": cell("1 / 0")})
    )
    assert execute.run(book, book / "_build") == 1
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out and "bad.md" in out
    assert set(execute.measurements(book / "_build/.jupyter_cache")) == {"ok"}


@pytest.mark.book
def test_report_pages_run_last_and_again_after_any_page(tmp_path, in_book):
    report = cell(
        "from booktools.execute import measurement_table\n"
        "print(measurement_table().to_dict('records'))"
    )
    book = in_book(
        tiny_book(tmp_path, {"work": cell("print(1)"), "reproducing": report})
    )
    build = book / "_build"
    assert execute.run(book, build) == 0
    first = execute.measurements(build / ".jupyter_cache")["reproducing"]
    # the report saw the other page's measurement
    nb = execute.get_cache(str(build / ".jupyter_cache"))
    records = nb.list_cache_records()
    rep = next(r for r in records if r.uri.endswith("reproducing.md"))
    outputs = nb.get_cache_bundle(rep.pk).nb.cells[0].outputs
    assert "'page': 'work'" in outputs[0]["text"]
    # a changed page runs again, and so does the report
    page = book / "chapters/work.md"
    page.write_text(page.read_text().replace("print(1)", "print(2)"))
    assert execute.run(book, build) == 0
    second = execute.measurements(build / ".jupyter_cache")["reproducing"]
    assert second != first


# A page that sleeps as long as $STUB_SLEEP says: long enough to be
# stopped half-way, or not at all (the code, hence the cache key, is the
# same either way).
SLEEPER = cell(
    "import os, time\ntime.sleep(float(os.environ.get('STUB_SLEEP', '0')))"
)
QUICK = cell("print('quick')")


def executor(book: Path, tmp: Path, sleep: float) -> Run:
    """``python -m booktools.execute _build`` on ``book``, started."""
    # connection files of kernels go to TMPDIR (jupyter_client)
    env = dict(os.environ, STUB_SLEEP=str(sleep), TMPDIR=str(tmp))
    env.pop(execute.CACHE_VAR, None)
    args = [sys.executable, "-m", "booktools.execute", "_build"]
    return Run(args, book, tmp, env=env)


def connection_files(folder: Path) -> list[Path]:
    """Kernel connection files left in ``folder``."""
    return [f for f in folder.glob("*.json") if "shell_port" in f.read_text()]


def kernels(run: Run) -> list:
    return [
        p for p in run.tree() if "ipykernel_launcher" in " ".join(p.cmdline())
    ]


@pytest.mark.parametrize(
    "signum, group",
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "kill-pid"],
)
def test_a_stopped_run_ends_its_kernels_and_caches_only_finished_pages(
    tmp_path, signum, group
):
    book = tiny_book(tmp_path, {"quick": QUICK, "slow": SLEEPER})
    (tmp_path / "first").mkdir()
    run = executor(book, tmp_path / "first", sleep=120)
    try:
        wait_for(lambda: "quick.md in" in run.stdout(), 120, "quick cached")
        wait_for(lambda: kernels(run), 60, "the sleeping page's kernel")
        tree = run.tree()
        run.signal(signum, group)
        assert run.wait(timeout=10) == 128 + signum
    finally:
        run.kill()
    assert running(tree) == []
    # the kernel was shut down through its manager, which removed its file
    assert connection_files(tmp_path / "first") == []
    assert run.stderr().splitlines()[-1] == (
        f"interrupted by {signal.Signals(signum).name}: stopped executing "
        "slow; the page that finished is kept in the cache, and the next "
        "build executes only the rest"
    )
    cached = execute.measurements(book / "_build/.jupyter_cache")
    assert set(cached) == {"quick"}
    # the next run executes the stopped page alone
    (tmp_path / "again").mkdir()
    again = executor(book, tmp_path / "again", sleep=0)
    assert again.wait(timeout=120) == 0, again.stderr()[-3000:]
    assert "executing 1 pages" in again.stdout()
    assert "slow.md in" in again.stdout()
    assert "quick.md in" not in again.stdout()


def test_stop_message_names_what_was_stopped_and_what_is_kept():
    left = ["/b/chapters/hessian.md", "/b/chapters/batchnorm.md"]
    message = execute.stop_message(left, ["a", "b"])
    assert message.startswith("stopped executing hessian, batchnorm; the 2")
    assert execute.stop_message(left, []).endswith("no page had finished")


def test_workers_never_exceed_pages_or_cpus(monkeypatch):
    monkeypatch.setattr(execute, "affinity_cpus", lambda: 2)
    monkeypatch.setattr(execute, "cgroup_cpu_limit", lambda: None)
    assert execute.workers(5) == 2
    assert execute.workers(1) == 1
    monkeypatch.setattr(execute, "cgroup_cpu_limit", lambda: 1.5)
    assert execute.workers(5) == 1


def test_measurement_table_is_none_outside_a_build(monkeypatch):
    monkeypatch.delenv(execute.CACHE_VAR, raising=False)
    assert execute.measurement_table() is None


def test_toc_naming_a_missing_page_is_an_error(tmp_path):
    book = tiny_book(tmp_path, {"a": "x\n"})
    (book / "_toc.yml").write_text("format: jb-book\nroot: chapters/zz\n")
    with pytest.raises(FileNotFoundError, match="zz"):
        execute.code_pages(book)


def test_command_line_usage(capsys):
    assert execute.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_book_uses_this_executor():
    makefile = (ROOT / "Makefile").read_text()
    book_rule = makefile[makefile.index("\nbook:") :].split("\n\n")[0]
    assert book_rule.startswith("\nbook: execute")
    execute_rule = makefile[makefile.index("\nexecute:") :].split("\n\n")[0]
    assert "booktools.execute" in execute_rule
    pdf_rule = makefile[makefile.index("\npdf:") :].split("\n\n")[0]
    assert "booktools.execute" in pdf_rule
