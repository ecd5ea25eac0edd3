"""The source of ``batchlab`` in the site, and which of it a page uses.

* Every module of the package becomes an HTML page of its own,
  ``_source/<module path>.html``: the code highlighted, each function
  and class with an anchor (``noise.html#noise_stats``), and a link to
  the file in the repository. ``_source/index.html`` lists them.
* :func:`modules_used` reads a chapter's code cells and names the
  ``batchlab`` modules they import, so each chapter can link to the code
  of the methods and experiments it runs (see ``notebook-links``).

Nothing here is hand-kept: a new module gets its page and a new import
its link on the next build.
"""

from __future__ import annotations

import ast
import importlib.util
from html import escape
from pathlib import Path

from sphinx.application import Sphinx

from .myst import code_cells

PACKAGE = "batchlab"
SOURCE_DIR = "_source"


def package_root(package: str = PACKAGE) -> Path:
    """The folder of an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def module_files(package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package
    (``__init__`` files without code left out)."""
    root = package_root(package)
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            if not path.read_text(encoding="utf-8").strip():
                continue
            parts = parts[:-1]
        found[".".join((package, *parts))] = path
    return found


def _cells_code(markdown: str) -> str:
    """The code cells of a MyST notebook, magics and shell lines dropped."""
    return "\n".join(
        line
        for cell in code_cells(markdown)
        for line in cell.splitlines()
        if not line.lstrip().startswith(("%", "!"))  # magics, shell escapes
    )


def imported_modules(
    tree: ast.AST, known: dict[str, Path], here: str = ""
) -> set[str]:
    """The modules of ``known`` that a syntax tree imports; ``here`` is
    the importing module's dotted name, for relative imports."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                is_package = known.get(here, Path()).name == "__init__.py"
                base = here.split(".")
                base = base[: len(base) - node.level + is_package]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                name = f"{module}.{alias.name}"
                if name in known:
                    used.add(name)  # a submodule
                elif module in known:
                    used.add(module)  # a name defined in the module
    return used


def modules_used(markdown: str, package: str = PACKAGE) -> list[str]:
    """The package's modules that a MyST notebook's code cells import,
    directly or through the modules they import, in the order of
    :func:`module_files`.

    ``from batchlab import noise``, ``from batchlab.experiments import
    minibatch as exp``, ``import batchlab.noise`` and ``from
    batchlab.runtime import pick`` all count.
    """
    try:
        tree = ast.parse(_cells_code(markdown))
    except SyntaxError as err:
        raise ValueError(f"a code cell does not parse: {err}") from err
    known = module_files(package)
    used: set[str] = set()
    todo = imported_modules(tree, known)
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        code = known[name].read_text(encoding="utf-8")
        todo |= imported_modules(ast.parse(code), known, name) - used
    return [name for name in known if name in used]


def source_page(name: str) -> str:
    """The page name of a module's source: ``_source/batchlab/noise``."""
    return f"{SOURCE_DIR}/{name.replace('.', '/')}"


def definitions(code: str) -> dict[int, str]:
    """1-based line -> anchor (``f``, ``Class``, ``Class.method``) for the
    module's top-level functions and classes and their methods."""
    anchors = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            anchors[_first_line(node)] = node.name
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    anchors[_first_line(item)] = f"{node.name}.{item.name}"
    return anchors


def _first_line(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def highlighted(app: Sphinx, code: str) -> str:
    """Highlighted HTML of the code, with an anchor at each definition."""
    html = app.builder.highlighter.highlight_block(
        code, "python", linenos=False
    )
    head, sep, body = html.partition("<pre>")
    lines = body.split("\n")
    # Pygments opens the block with an empty <span></span> on line 1.
    for line, anchor in definitions(code).items():
        if 0 < line <= len(lines):
            lines[line - 1] = (
                f'<span class="source-def" id="{escape(anchor)}"></span>'
                + lines[line - 1]
            )
    return head + sep + "\n".join(lines)


def _repo_blob(app: Sphinx, path: Path) -> str | None:
    repo = app.config.html_theme_options.get("repository_url", "")
    branch = app.config.html_theme_options.get("repository_branch") or "main"
    try:
        relative = path.resolve().relative_to(Path(app.srcdir).resolve())
    except ValueError:
        return None
    return f"{repo.rstrip('/')}/blob/{branch}/{relative.as_posix()}"


def collect_pages(app: Sphinx):
    """``html-collect-pages``: one page per module, and an index."""
    if app.builder.format != "html" or app.builder.name == "singlehtml":
        return
    files = module_files()
    rows = []
    for name, path in files.items():
        code = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(code)) or ""
        summary = doc.strip().split("\n\n")[0].replace("\n", " ")
        page = source_page(name)
        up = "../" * page.count("/")
        rows.append(
            f'<li><a href="{name.replace(".", "/")}.html">'
            f"<code>{name}</code></a> &mdash; {escape(summary)}</li>"
        )
        blob = _repo_blob(app, path)
        link = (
            f' &middot; <a href="{escape(blob)}">in the repository</a>'
            if blob
            else ""
        )
        defs = ", ".join(
            f'<a href="#{escape(a)}"><code>{escape(a)}</code></a>'
            for a in definitions(code).values()
        )
        body = (
            f"<h1>Source of <code>{name}</code></h1>"
            f'<p><a href="{up}{SOURCE_DIR}/index.html">All modules</a>'
            f"{link}</p>"
            + (f"<p>Defined here: {defs}.</p>" if defs else "")
            + highlighted(app, code)
        )
        yield page, {"title": f"Source of {name}", "body": body}, "page.html"
    index = (
        "<h1>Source of batchlab</h1><p>The code the chapters run: the "
        "methods (<code>batchlab.*</code>) and each chapter's experiments "
        "(<code>batchlab.experiments.*</code>).</p><ul>"
        + "".join(rows)
        + "</ul>"
    )
    yield (
        f"{SOURCE_DIR}/index",
        {"title": "Source of batchlab", "body": index},
        "page.html",
    )


def setup(app: Sphinx) -> None:
    """Connect the source pages (called by ``booktools.sphinxext``)."""
    app.connect("html-collect-pages", collect_pages)
