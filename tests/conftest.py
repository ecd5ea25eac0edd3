"""Shared fixtures and helpers: the repository root, a network guard, the
table of contents, the built book (HTML and PDF), and runs that tests
stop with a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# CI builds the real book first and points the tests at it; without this
# variable the tests build a quick-scale book of their own.
BUILD_ENV = "BATCHLAB_BUILD_DIR"


class NetworkBlocked(RuntimeError):
    """Raised when code under test tries to open a network connection."""


@pytest.fixture
def no_network(monkeypatch):
    """Make every attempt to resolve a host or connect raise."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


def toc_files() -> list[str]:
    """Every page of ``_toc.yml``, root first, as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def code_pages() -> list[str]:
    """The pages that run code."""
    return [
        f
        for f in toc_files()
        if "```{code-cell}" in (ROOT / f"{f}.md").read_text()
    ]


def chapter_pages() -> list[str]:
    """The numbered chapters (the three questions)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [
        c["file"]
        for part in toc.get("parts", [])
        if part.get("numbered")
        for c in part["chapters"]
    ]


def make(
    *args: str, check: bool = False, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run ``make`` in the repository with ``args``, capturing its output."""
    return subprocess.run(
        ["make", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def make_var(name: str) -> str:
    """A variable of the Makefile, as ``make print-NAME`` prints it."""
    return make("-s", f"print-{name}", check=True).stdout.strip()


def jupyter_book(
    *args: str, cwd: Path, scale: str = "quick", flags: str = "JBFLAGS"
):
    """Run ``jupyter-book build`` with the Makefile's flags (``JBFLAGS``
    for the book, ``PAGEFLAGS`` for one page)."""
    env = dict(os.environ, BATCHLAB_SCALE=scale)
    exe = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(exe), "build", *args, *make_var(flags).split()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def require_tool(available: bool, what: str) -> None:
    """Skip when a system tool is missing, except in CI, where it fails."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; .ci/run must install it")
    pytest.skip(f"{what} is not installed here")


class BuiltBook:
    """The book's ``_build`` folder, built on first use.

    With ``$BATCHLAB_BUILD_DIR`` set (CI, after ``make book`` and
    ``make pdf``) the real build is checked; otherwise a quick-scale book
    is built once per session into a temporary folder.
    """

    def __init__(self, tmp: Path):
        given = os.environ.get(BUILD_ENV)
        self.given = given is not None
        self.out = Path(given) if given else tmp
        self.build = self.out if self.given else self.out / "_build"

    def _make(self, target: str) -> None:
        done = make(target, f"OUT={self.out}", "SCALE=quick", timeout=1800)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    def html(self) -> Path:
        """The HTML site (``make book``)."""
        site = self.build / "html"
        if not self.given and not site.exists():
            self._make("book")
        assert site.exists(), f"no site at {site}; run make book"
        return site

    def pdf(self) -> Path:
        """The PDFs (``make pdf``): book.pdf and one per chapter."""
        pdf_dir = self.build / "pdf"
        if not self.given and not pdf_dir.exists():
            self._make("pdf")
        assert pdf_dir.exists(), f"no PDFs at {pdf_dir}; run make pdf"
        return pdf_dir


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> BuiltBook:
    """The built book (see :class:`BuiltBook`); only tests marked
    ``book`` may use it (see :func:`pytest_runtest_setup`)."""
    return BuiltBook(tmp_path_factory.mktemp("book"))


def default_interrupt() -> None:
    """In a child: Ctrl-C's signal does what it does in a terminal's
    foreground job, even when the tests run as a background job (whose
    shell ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """A command run in a session of its own (as a terminal runs a
    foreground job), its output in files, for tests that stop it."""

    def __init__(self, args: list[str], cwd: Path, tmp: Path, env=None):
        self.out, self.err = tmp / "stdout.txt", tmp / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=default_interrupt,
            )
        self.seen: list[psutil.Process] = []

    def stdout(self) -> str:
        """What it printed so far."""
        return self.out.read_text()

    def stderr(self) -> str:
        """What it printed to standard error so far."""
        return self.err.read_text()

    def tree(self) -> list:
        """This process and every process below it (psutil), kernels in
        sessions of their own included."""
        me = psutil.Process(self.proc.pid)
        tree = [me, *me.children(recursive=True)]
        self.seen += [p for p in tree if p not in self.seen]
        return tree

    def signal(self, signum: int, group: bool) -> None:
        """Send ``signum`` to its process group (what Ctrl-C in a terminal
        and a CI timeout do) or to the process alone (``kill PID``)."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Its exit status, waiting at most ``timeout`` seconds."""
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Clean up after a failed test: every process seen in its tree,
        orphans included, at once."""
        if self.proc.poll() is None:
            self.tree()
        for proc in self.seen:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.proc.wait()


def running(procs: list) -> list:
    """The processes of ``procs`` still running (not ended, not zombies)."""
    left = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` if it does
    not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout} s")
        time.sleep(0.1)


#: Fixtures that build the book or its PDFs.
BUILDING_FIXTURES = {"built"}


def pytest_runtest_setup(item) -> None:
    """Fail a test that builds the book or its PDFs (through the
    ``built`` fixture, directly or through another fixture) without the
    ``book`` mark: ``-m "not book"`` would otherwise quietly build it."""
    uses = BUILDING_FIXTURES & set(getattr(item, "fixturenames", ()))
    if uses and item.get_closest_marker("book") is None:
        pytest.fail(
            f"{item.nodeid} builds the book (fixture {sorted(uses)}) but "
            "is not marked @pytest.mark.book; the fast suite must build "
            "nothing",
            pytrace=False,
        )
