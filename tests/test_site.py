"""The site in a real browser: Debian's Chromium driven by Playwright.

Every page of the built book is loaded from a local server. MathJax,
which the pages take from a CDN, is served from a local npm copy of the
same version; every other request off the machine is refused and
reported. Screenshots land in ``<build>/screenshots``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml
from conftest import (
    ROOT,
    chapter_pages,
    code_pages,
    make,
    require_tool,
    toc_files,
)

from booktools.sourcepages import definitions, module_files, modules_used

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
MATHJAX_VERSION = "3.2.2"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def mathjax(built) -> Path:
    """MathJax's es5 folder, installed once with npm under the build."""
    require_tool(shutil.which("npm") is not None, "npm (for MathJax)")
    prefix = built.build / "node"
    es5 = prefix / "node_modules" / "mathjax" / "es5"
    if not es5.exists():
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--prefix",
                str(prefix),
                f"mathjax@{MATHJAX_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return es5


@pytest.fixture(scope="module")
def server(built):
    site = built.html()
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    require_tool(Path(CHROMIUM).exists(), "Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def binder_url(page_path: str) -> str:
    """The launch address of a page: its executed notebook, on the site's
    branch, opened in JupyterLab (not the MyST source, whose roles
    JupyterLab shows raw)."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]["url"].removeprefix("https://github.com/")
    return (
        f"{cfg['launch_buttons']['binderhub_url']}/v2/gh/{repo}/"
        f"gh-pages?urlpath=lab/tree/_notebooks/{page_path}.ipynb"
    )


#: The widest element that sticks out of the viewport, outside any box
#: that scrolls or clips it (what makes a phone's page scroll sideways).
OVERFLOW_JS = """() => {
  const W = document.documentElement.clientWidth;
  let worst = null;
  for (const e of document.querySelectorAll('.bd-article *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.right <= W + 1) continue;
    let p = e.parentElement, held = false;
    while (p) {
      const o = getComputedStyle(p).overflowX;
      if (['auto', 'scroll', 'hidden', 'clip'].includes(o)
          && p.getBoundingClientRect().right <= W + 1) { held = true; break; }
      p = p.parentElement;
    }
    if (!held && (!worst || r.right > worst.right))
      worst = {right: Math.round(r.right),
               what: e.tagName + '.' + String(e.className).slice(0, 40)};
  }
  return {width: document.documentElement.scrollWidth, W, worst};
}"""


def _open(
    browser,
    server: str,
    mathjax: Path,
    page_path: str,
    width: int = 1280,
    height: int = 900,
):
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: m.type == "error" and problems.append(f"console: {m.text}"),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        url = r.request.url
        if url.startswith(server):
            return r.continue_()
        if url.startswith(MATHJAX_CDN):
            local = mathjax / url[len(MATHJAX_CDN) :].split("?")[
                0
            ].removeprefix("es5/")
            return r.fulfill(path=str(local))
        problems.append(f"external request at load: {url}")
        return r.abort()

    page.route("**/*", route)
    page.goto(urljoin(server, f"{page_path}.html"), wait_until="load")
    if page.locator("script[src*='mathjax']").count():
        page.wait_for_function(
            "window.MathJax && MathJax.startup && MathJax.startup.promise"
        )
        page.evaluate("MathJax.startup.promise")
    return page, problems


def make_pdf_possible() -> bool:
    """Whether this machine has what ``make pdf`` needs."""
    return make("-s", "pdf-check").returncode == 0


@pytest.mark.book
@pytest.mark.parametrize("page_path", toc_files())
def test_page_in_browser(browser, server, mathjax, built, page_path):
    page, problems = _open(browser, server, mathjax, page_path)
    try:
        # Images: loaded, with alt text; figures visible.
        images = page.eval_on_selector_all(
            "main img",
            "els => els.map(e => ({src: e.getAttribute('src'),"
            " alt: e.getAttribute('alt'), w: e.naturalWidth,"
            " shown: e.getBoundingClientRect().width > 0}))",
        )
        for img in images:
            assert img["w"] > 0, f"broken image {img['src']}"
            assert img["alt"], f"image without alt text {img['src']}"
        figures = [i for i in images if "_images/" in (i["src"] or "")]
        assert all(fig["shown"] for fig in figures), "a figure is hidden"
        # Math typeset by MathJax wherever the source has math.
        source = (ROOT / f"{page_path}.md").read_text(encoding="utf-8")
        if "$" in source:
            assert page.locator("mjx-container").count() > 0, (
                "math not typeset"
            )
            assert page.locator("mjx-merror").count() == 0, "MathJax error"
        # Internal links resolve.
        hrefs = page.eval_on_selector_all(
            "a[href]", "els => els.map(e => e.href)"
        )
        pdf_links = []
        for href in sorted(set(hrefs)):
            parsed = urlparse(href)
            if not href.startswith(server) or parsed.path.endswith("/"):
                continue
            if parsed.path.startswith("/pdf/"):
                pdf_links.append(parsed.path.removeprefix("/pdf/"))
                continue
            target = href.split("#")[0]
            resp = page.request.get(target)
            assert resp.ok, f"broken internal link {href}"
        # The PDFs come from `make pdf` (which copies them into the site);
        # without LaTeX here (and not in CI) their links go unchecked.
        if pdf_links and (os.environ.get("CI") or make_pdf_possible()):
            for name in pdf_links:
                assert (built.pdf() / name).exists(), f"no PDF {name}"
        # One search box on a desktop screen (pydata's header bar used to
        # add a second one, alone at the top).
        visible = page.eval_on_selector_all(
            ".search-button-field",
            "els => els.filter(e => e.getClientRects().length > 0"
            " && getComputedStyle(e).visibility !== 'hidden').length",
        )
        assert visible == 1, f"{visible} search boxes at 1280 px"
        # Launch (Binder) and download buttons on pages that run code.
        if page_path in code_pages():
            binder = page.locator("a[href*='mybinder.org']")
            assert binder.count() > 0, "no Binder launch button"
            assert binder.first.get_attribute("href") == binder_url(page_path)
        if (
            page_path in code_pages()
            and page_path.startswith("chapters/")
            and ("notebook-links" in source)
        ):
            nb = page.locator("a.download[href$='.ipynb']")
            assert nb.count() == 1
            resp = page.request.get(
                urljoin(page.url, nb.get_attribute("href"))
            )
            assert resp.ok and b'"outputs"' in resp.body()
        # Chapters link the source of the batchlab modules they import,
        # and the source pages anchor each definition.
        if page_path in chapter_pages():
            expected = modules_used(source)
            links = page.eval_on_selector_all(
                "a.source-link", "els => els.map(e => e.href)"
            )
            assert len(links) == len(expected) > 0
            source_page = page.request.get(links[0]).text()
            module = expected[0]
            code = module_files()[module].read_text(encoding="utf-8")
            for anchor in definitions(code).values():
                assert f'id="{anchor}"' in source_page, (module, anchor)
            handouts = page.eval_on_selector_all(
                "a.handout", "els => els.map(e => e.getAttribute('href'))"
            )
            stem = Path(page_path).stem
            assert sorted(Path(h).name for h in handouts) == [
                f"{stem}-instructor.pdf",
                f"{stem}.pdf",
            ]
        shots = built.build / "screenshots"
        shots.mkdir(exist_ok=True)
        page.screenshot(
            path=str(shots / f"{Path(page_path).stem}.png"), full_page=False
        )
        assert not problems, "\n".join(problems)
        # A phone: loaded at its width (a resize catches the sidebar
        # mid-animation).
        phone, _ = _open(browser, server, mathjax, page_path, 390, 844)
        # No table, formula or figure widens the page beyond the phone:
        # each wide one scrolls in its own box.
        fit = phone.evaluate(OVERFLOW_JS)
        assert fit["width"] <= 390, f"{fit['width']} px wide at 390: {fit}"
        assert fit["worst"] is None, f"sticks out at 390 px: {fit['worst']}"
        phone.screenshot(
            path=str(shots / f"{Path(page_path).stem}-390.png"),
            full_page=False,
        )
        phone.close()
    finally:
        page.close()


def _glossary_terms() -> list[str]:
    text = (ROOT / "chapters/glossary.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|]+?) \|", text, re.M)
    return rows[2:]  # after the header and its rule


def _term_pattern(term: str) -> re.Pattern:
    """A term as the chapters may write it: the parenthesis dropped, each
    word by its stem (centring/centred, normalization/normalizing)."""
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"\(.*?\)", "", term))
    stems = [w[: max(4, len(w) - 3)] for w in words]
    return re.compile(r"\w*[\s-]+".join(map(re.escape, stems)), re.I)


def test_glossary_holds_terms_the_chapters_use():
    """Every term is used by some page other than the glossary, and the
    terms the issue found missing are there."""
    pages = [p for p in toc_files() if p != "chapters/glossary"]
    text = "\n".join((ROOT / f"{p}.md").read_text() for p in pages)
    terms = _glossary_terms()
    assert len(terms) >= 10
    unused = [t for t in terms if not _term_pattern(t).search(text)]
    assert not unused, f"glossary terms no page uses: {unused}"
    assert not _term_pattern("Gauss-Newton matrix").search("Gauss matrix")
