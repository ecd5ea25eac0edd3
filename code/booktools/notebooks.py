"""Each chapter as a plain Jupyter notebook, with its outputs.

After an HTML build, every page that runs code becomes
``_notebooks/<page>.ipynb`` in the site: the page's cells with the
outputs of this build's execution (from jupyter-cache), and Markdown
that Jupyter, Colab and GitHub render as they are, with no MyST left:

* glued values (``{glue:text}`key:.2f```) become their text;
* citations become author-year text, "(Cho, 2020)", and the works the
  chapter cites are listed in a last cell;
* cross-references become links to the book's site ("Fig. 1.2",
  "Chapter 2", a section's title), with the numbers the site shows;
* admonitions become block quotes, exercises numbered block quotes and
  solutions folded ``<details>``; a glued figure is shown by the cell
  that made it (its saved output, and its ``glue`` call no longer hides
  it when rerun), its caption stays in the text; a numbered table keeps
  its number and caption; ``literalinclude`` becomes the included code;
* claim markers become "✓3" linking to the claim on the site, and
  numbers of the ledger (``{ledger}``) their text;
  ``{ja}``, ``{web}`` (kept) and ``{print}`` (dropped) lose their role.

A first code cell installs the book's package and its pinned
requirements where ``batchlab`` is missing (Colab, a fresh Jupyter), so
the notebook runs top to bottom there; it does nothing in the book's own
environment or Binder's. The same notebook replaces the theme's download
(``_sources``), and ``binder/`` in the site lets Binder open it on the
site's branch (:func:`point_binder_at_notebooks`).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from myst_nb.core.read import read_myst_markdown_notebook
from myst_nb.core.variables import format_plain_text
from pybtex.plugin import find_plugin
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

from booktools import latex, sourcepages

logger = logging.getLogger(__name__)
NOTEBOOK_DIR = "_notebooks"
TICK = "\u2713"
#: Requirements a reader's kernel does not need (build and test tools).
NOT_FOR_READERS = {"pytest", "ruff", "playwright", "check-jsonschema"}
#: A role left in Markdown: ``{name}`text```.
ROLE = re.compile(r"\{([A-Za-z][\w:+-]*)\}(`+)(.+?)\2", re.S)
ROLE_OR_CODE = re.compile(ROLE.pattern + r"|(`+)[^`].*?\4", re.S)
FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\{([\w:-]+)\}[ \t]*(.*)$")
FIGURE_MIMES = ("image/svg+xml", "image/png", "text/plain")
ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "hint": "Hint",
    "seealso": "See also",
}


class Context:
    """What converting one page needs from the build: the environment,
    the page, its glue data and the book's address."""

    def __init__(self, app: Sphinx, docname: str, glue: dict) -> None:
        self.env = app.env
        self.config = app.config
        self.docname = docname
        self.glue = glue
        self.base = (app.config.html_baseurl or "").rstrip("/")
        self.srcdir = Path(self.env.doc2path(docname)).parent
        self.cited: list[str] = []
        self.figures: set[str] = set()

    def url(self, docname: str, anchor: str = "") -> str:
        page = f"{docname}.html" + (f"#{anchor}" if anchor else "")
        return f"{self.base}/{page}" if self.base else page


# --- roles -----------------------------------------------------------------


def _glue_text(ctx: Context, text: str) -> str:
    key, _, spec = text.partition(":")
    if "::" in text:  # another page's glue: page.md::key:spec
        _, _, rest = text.partition("::")
        key, _, spec = rest.partition(":")
    data = ctx.glue.get(key)
    if data is None or "text/plain" not in data.get("data", data):
        raise ValueError(f"{ctx.docname}: no glued value {key!r}")
    plain = data.get("data", data)["text/plain"]
    return format_plain_text(plain, spec or "")


def _labels(ctx: Context) -> dict:
    return ctx.env.get_domain("std")


def _cite_label(ctx: Context, key: str) -> str:
    domain = ctx.env.get_domain("cite")
    for citation in domain.citations:
        if citation.key == key:
            if key not in ctx.cited:
                ctx.cited.append(key)
            return str(citation.formatted_entry.label)
    raise ValueError(f"{ctx.docname}: no reference {key!r}")


def _cite(ctx: Context, role: str, text: str) -> str:
    labels = [_cite_label(ctx, k.strip()) for k in text.split(",")]
    if role.startswith("cite:t"):
        return "; ".join(
            "{} ({})".format(*label.rsplit(", ", 1)) for label in labels
        )
    return "(" + "; ".join(labels) + ")"


def _xref(ctx: Context, role: str, text: str) -> str:
    explicit = re.match(r"^(.*?)\s*<([^<>]+)>$", text, re.S)
    title, target = explicit.groups() if explicit else (None, text)
    target = target.strip()
    std = _labels(ctx)
    if role == "doc":
        docname = str(Path(ctx.docname).parent / target).lstrip("./")
        docname = re.sub(r"^(\./)+", "", docname)
        shown = title or ctx.env.titles[docname].astext()
        return f"[{shown}]({ctx.url(docname)})"
    where = std.anonlabels.get(target.lower())
    if where is None:
        raise ValueError(f"{ctx.docname}: no label {target!r}")
    docname, labelid = where
    if role == "numref":
        number = _number_text(ctx, docname, labelid)
        shown = title.replace("{number}", number) if title else number
    elif title:
        shown = title
    else:
        label = std.labels.get(target.lower())
        shown = label[2] if label and label[2] else target
    return f"[{shown}]({ctx.url(docname, labelid)})"


def _number_text(ctx: Context, docname: str, labelid: str) -> str:
    for figtype, numbers in ctx.env.toc_fignumbers.get(docname, {}).items():
        if labelid in numbers:
            prefix = {"figure": "Fig. %s", "table": "Table %s"}.get(
                figtype, ctx.config.numfig_format.get(figtype, "%s")
            )
            return prefix % ".".join(map(str, numbers[labelid]))
    number = ctx.env.toc_secnumbers.get(docname, {}).get("#" + labelid)
    if number:
        return "Section " + ".".join(map(str, number))
    raise ValueError(f"{ctx.docname}: {labelid!r} has no number")


def _claim(ctx: Context, text: str) -> str:
    from booktools import claimmarks

    claim_id = text.strip()
    docname = ctx.docname
    return f"[{TICK}{claimmarks.number(claim_id)}]" + (
        f"({ctx.url(docname, claimmarks.target_id(claim_id))})"
    )


def convert_role(ctx: Context, role: str, text: str) -> str:
    """The plain Markdown of one MyST role."""
    if role == "glue:text":
        return _glue_text(ctx, text)
    if role in ("glue", "glue:any"):
        return _glue_text(ctx, text.split(":")[0])
    if role.startswith("cite"):
        return _cite(ctx, role, text)
    if role in ("ref", "numref", "doc"):
        return _xref(ctx, role, text)
    if role == "claim":
        return _claim(ctx, text)
    if role == "ledger":
        from booktools import claimmarks

        return claimmarks.ledger_number(text)[0]
    if role == "math":
        return f"${text}$"
    if role in ("ja", "web", "sub", "sup", "abbr", "term"):
        return text
    if role == "print":
        return ""
    raise ValueError(f"{ctx.docname}: no plain form for the role {role!r}")


def convert_roles(ctx: Context, text: str) -> str:
    """Every role of ``text`` replaced by its plain Markdown (code spans,
    which may show a role as an example, kept as they are)."""

    def one(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)  # a code span
        return convert_role(ctx, match.group(1), match.group(3))

    return ROLE_OR_CODE.sub(one, text)


# --- links -----------------------------------------------------------------

LINK = re.compile(r"\]\((?!https?:|mailto:|attachment:|data:)([^)\s]+)\)")


def convert_links(ctx: Context, text: str) -> str:
    """Relative links (to a page, a module's source) as site addresses."""

    def fix(match: re.Match) -> str:
        target = match.group(1)
        path, _, anchor = target.partition("#")
        if not path:
            return f"]({ctx.url(ctx.docname, anchor)})"
        resolved = (ctx.srcdir / path).resolve()
        if resolved.suffix == ".py":
            module = _module_of(resolved)
            if module:
                page = sourcepages.source_page(module)
                return f"]({ctx.url(page, anchor)})"
        if resolved.suffix in (".md", ".ipynb"):
            root = Path(ctx.env.srcdir).resolve()
            docname = resolved.relative_to(root).with_suffix("").as_posix()
            return f"]({ctx.url(docname, anchor)})"
        return match.group(0)

    return LINK.sub(fix, text)


def _module_of(path: Path) -> str:
    for name, file in sourcepages.module_files().items():
        if file.resolve() == path:
            return name
    return ""


# --- directives ------------------------------------------------------------


def _split_options(body: list[str]) -> tuple[dict, list[str]]:
    options: dict[str, str] = {}
    i = 0
    while i < len(body) and re.match(r"^\s*:[\w-]+:", body[i]):
        key, _, value = body[i].strip()[1:].partition(":")
        options[key] = value.strip()
        i += 1
    return options, body[i:]


def _quote(text: str) -> str:
    return "\n".join(("> " + line).rstrip() for line in text.splitlines())


def convert_directive(
    ctx: Context, name: str, arg: str, body: list[str]
) -> str:
    """The plain Markdown of one MyST directive (its body converted)."""
    options, rest = _split_options(body)
    inner = convert_markdown(ctx, "\n".join(rest)).strip()
    if name in ("admonition", *ADMONITIONS):
        title = convert_roles(ctx, arg) if arg else ADMONITIONS[name]
        return _quote(f"**{title}**\n\n{inner}")
    if name == "exercise":
        number = _number_text(ctx, ctx.docname, options.get("label", ""))
        return _quote(f"**{number}**\n\n{inner}")
    if name == "solution":
        number = _number_text(ctx, ctx.docname, arg.strip())
        return (
            f"<details><summary>Solution to {number}</summary>"
            f"\n\n{inner}\n\n</details>"
        )
    if name == "glue:figure":
        return _figure(ctx, arg.strip(), options, inner)
    if name == "literalinclude":
        return _include(ctx, arg.strip(), options)
    if name in ("math",):
        return f"$$\n{inner}\n$$"
    if name == "only":
        return inner if "html" in arg else ""
    if name in ("table", "list-table"):
        caption = convert_roles(ctx, arg)
        label = options.get("name", "")
        number = _number_text(ctx, ctx.docname, label) if label else ""
        head = f"**{number}.** {caption}".strip() if number else caption
        return f"{head}\n\n{inner}" if head else inner
    if name == "checked-claims":
        return _claims_list(ctx, arg.strip())
    if name == "notebook-links":
        title = ctx.env.titles[ctx.docname].astext()
        return (
            f"*The executed notebook of [{title}]({ctx.url(ctx.docname)}), "
            "a chapter of the book; run the first code cell first.*"
        )
    if name in ("tabularcolumns", "bibliography", "handout-links"):
        return ""
    raise ValueError(f"{ctx.docname}: no plain form for {{{name}}}")


def _figure(ctx: Context, key: str, options: dict, caption: str) -> str:
    """A glued figure's caption; the figure itself is an output of the
    cell that made it (:func:`show_glued_figures`)."""
    if key not in ctx.glue:
        raise ValueError(f"{ctx.docname}: no glued figure {key!r}")
    ctx.figures.add(key)
    label = options.get("name", "")
    number = _number_text(ctx, ctx.docname, label) if label else "Figure"
    return f"**{number}** (above). {caption}"


def show_glued_figures(cell, keys: set[str]) -> None:
    """A code cell that glues a figure of ``keys`` without showing it
    shows it: the call displays it when rerun, and the saved output
    holds this build's figure (Jupyter, Colab and GitHub show it)."""
    shown = []
    for output in cell.get("outputs", []):
        meta = output.get("metadata", {}).get("scrapbook", {})
        if meta.get("name") in keys:
            prefix = meta.get("mime_prefix", "")
            data = {
                k.removeprefix(prefix): v
                for k, v in output.get("data", {}).items()
                if k.removeprefix(prefix) in FIGURE_MIMES
            }
            shown.append(nbformat.v4.new_output("display_data", data=data))
            cell.source = re.sub(
                r"(glue\(\s*['\"]"
                + re.escape(meta["name"])
                + r"['\"]\s*,\s*[^,()]+?)\s*,\s*display\s*=\s*False\s*\)",
                r"\1)",
                cell.source,
            )
    cell.outputs = [
        o
        for o in cell.get("outputs", [])
        if "scrapbook" not in o.get("metadata", {})
    ] + shown


def _include(ctx: Context, arg: str, options: dict) -> str:
    path = (ctx.srcdir / arg).resolve()
    lines = path.read_text(encoding="utf-8").splitlines()
    obj = options.get("pyobject")
    if obj:
        tags = ModuleAnalyzer.for_file(str(path), "").find_tags()
        if obj not in tags:
            raise ValueError(f"{ctx.docname}: no {obj} in {arg}")
        _, start, end = tags[obj]
        lines = lines[start - 1 : end - 1]
    code = "\n".join(lines).rstrip()
    return f"```python\n{code}\n```"


def _claims_list(ctx: Context, chapter: str) -> str:
    from batchlab import claims as claimlib
    from booktools import claimmarks

    record = claimmarks.read_ledger(chapter)
    items = []
    for k, (claim_id, (owner, _, claim)) in enumerate(
        (i, v) for i, v in claimlib.registry().items() if v[0] == chapter
    ):
        del owner
        row = claimmarks.ledger_row(claim_id, record)
        items.append(
            f"{k + 1}. **{claim.kind.capitalize()}.** "
            f"{claimmarks._sentence(claim.text)} *Ledger: {row}.*"
        )
    return "\n".join(items)


def convert_markdown(ctx: Context, text: str) -> str:
    """A Markdown cell's MyST as plain Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if opened:
            indent, fence, name, arg = opened.groups()
            end = i + 1
            close = re.compile(
                rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$"
            )
            while end < len(lines) and not close.match(lines[end]):
                end += 1
            body = lines[i + 1 : end]
            out.append(convert_directive(ctx, name, arg, body))
            i = end + 1
            continue
        if re.match(r"^\([\w-]+\)=\s*$", line) or line.startswith("%"):
            i += 1  # a label or a comment
            continue
        out.append(line)
        i += 1
    joined = "\n".join(out)
    return convert_links(ctx, convert_roles(ctx, joined))


# --- the notebook ----------------------------------------------------------


def install_cell(requirements: Path, package_url: str) -> str:
    """The first code cell: the book's package and the pinned versions of
    what the chapters import, where ``batchlab`` is not installed."""
    pins, torch = [], "torch"
    text = requirements.read_text("utf-8") if requirements.exists() else ""
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if "==" not in line or line.startswith("-"):
            continue
        name = line.split("==")[0].strip().lower()
        if name in NOT_FOR_READERS:
            continue
        if name == "torch":
            torch = line.split("+")[0]
            continue
        pins.append(line)
    listed = "\n".join(f'        "{p}",' for p in pins)
    return f"""# The book's package and the versions it was built with, where
# they are missing (Colab, a fresh Jupyter). In the book's own
# environment and in Binder, batchlab is installed: this does nothing.
import importlib.util

if importlib.util.find_spec("batchlab") is None:
    pins = [
{listed}
        "{package_url}",
    ]
    if importlib.util.find_spec("torch") is None:  # Colab has its own
        pins.append("{torch}")
    %pip install --quiet {{" ".join(pins)}}
"""


def package_url(repository: str, commit: str) -> str:
    """pip's address of the book's package at the build's commit."""
    repo = repository.rstrip("/").removesuffix(".git")
    ref = (
        commit
        if commit and "+" not in commit and commit != "unknown"
        else ("main")
    )
    return f"batchlab @ git+{repo}.git@{ref}"


def executed(app: Sphinx, source: Path) -> nbformat.NotebookNode:
    """The page as a notebook with this build's outputs (jupyter-cache)."""
    nb = read_myst_markdown_notebook(
        source.read_text(encoding="utf-8"), path=source
    )
    # Where myst-nb put it (its default when the book names none).
    settings = getattr(app.env, "mystnb_config", None)
    cache_dir = str(
        getattr(settings, "execution_cache_path", "")
        or app.config.nb_execution_cache_path
        or Path(app.outdir).parent / ".jupyter_cache"
    )
    try:
        _, merged = get_cache(cache_dir).merge_match_into_notebook(nb)
    except KeyError as err:
        raise ValueError(
            f"{source} has no executed copy in {cache_dir}"
        ) from err
    return merged


def glue_data(nb: nbformat.NotebookNode) -> dict:
    """Glued values of an executed notebook: key -> MIME bundle."""
    found = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook", {})
            if "name" in meta:
                prefix = meta.get("mime_prefix", "")
                found[meta["name"]] = {
                    key.removeprefix(prefix): value
                    for key, value in output.get("data", {}).items()
                }
    return found


def reference_cell(ctx: Context) -> str | None:
    """The works the page cites, as the site's list formats them."""
    if not ctx.cited:
        return None
    backend = find_plugin("pybtex.backends", "markdown")()
    domain = ctx.env.get_domain("cite")
    entries = {}
    for citation in domain.citations:
        if citation.key in ctx.cited and citation.key not in entries:
            entry = citation.formatted_entry
            text = " ".join(entry.text.render(backend).split("\n"))
            entries[citation.key] = f"- **{entry.label}.** {text}"
    ordered = sorted(entries.values())
    return "## Works cited\n\n" + "\n".join(ordered)


def plain_notebook(app: Sphinx, docname: str) -> nbformat.NotebookNode:
    """The executed page ``docname`` as a plain Jupyter notebook."""
    source = Path(app.env.doc2path(docname))
    nb = executed(app, source)
    ctx = Context(app, docname, glue_data(nb))
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = convert_markdown(ctx, cell.source).strip()
            if text:
                cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = convert_markdown(
                    ctx, data["text/markdown"]
                )
        cells.append(cell)
    for cell in cells:
        if cell.cell_type == "code":
            show_glued_figures(cell, ctx.figures)
    _, commit = latex.build_stamp(Path(app.srcdir))
    repo = app.config.html_theme_options.get("repository_url", "")
    requirements = Path(app.srcdir) / "requirements.txt"
    first = nbformat.v4.new_code_cell(
        install_cell(requirements, package_url(repo, commit))
    )
    first.metadata["tags"] = ["install"]
    refs = reference_cell(ctx)
    if refs:
        cells.append(nbformat.v4.new_markdown_cell(refs))
    nb.cells = [first, *cells]
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nbformat.validate(nb)
    return nb


def code_docs(app: Sphinx) -> list[str]:
    """Pages of the build that hold code cells."""
    found = []
    for docname in sorted(app.env.found_docs):
        path = Path(app.env.doc2path(docname))
        if path.suffix == ".md" and "```{code-cell}" in path.read_text(
            encoding="utf-8"
        ):
            found.append(docname)
    return found


def write_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: ``_notebooks/<page>.ipynb`` for every page
    that runs code. A page that cannot be converted fails the build (a
    warning, an error under ``-W``)."""
    if exception is not None or app.builder.format != "html":
        return
    for docname in code_docs(app):
        try:
            nb = plain_notebook(app, docname)
        except (ValueError, KeyError) as err:
            logger.warning(f"notebook of {docname}: {err}", location=docname)
            continue
        # The site's download link, and the theme's download button
        # (which copied myst-nb's notebook without outputs to _sources).
        for folder in (NOTEBOOK_DIR, "_sources"):
            target = Path(app.outdir) / folder / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    write_binder_environment(app)


# --- Binder on the site's branch -------------------------------------------

PAGES_BRANCH = "gh-pages"
BINDER_POST_BUILD = """#!/usr/bin/env bash
# Binder on the site's branch: the executed notebooks under _notebooks/
# run at the book's scale.
set -euo pipefail
mkdir -p "${HOME}/.ipython/profile_default/startup"
echo 'import os; os.environ.setdefault("BATCHLAB_SCALE", "book")' \\
  > "${HOME}/.ipython/profile_default/startup/00-batchlab.py"
"""


def write_binder_environment(app: Sphinx) -> None:
    """``binder/`` in the site: the site's branch (``gh-pages``) is what
    Binder opens, so the executed notebooks run there. The environment
    is the repository's ``binder/`` pins plus the book's package at the
    build's commit (the branch holds no source to install)."""
    source = Path(app.srcdir) / "binder"
    if not (source / "requirements.txt").exists():
        return
    target = Path(app.outdir) / "binder"
    target.mkdir(parents=True, exist_ok=True)
    _, commit = latex.build_stamp(Path(app.srcdir))
    repo = app.config.html_theme_options.get("repository_url", "")
    pins = (source / "requirements.txt").read_text(encoding="utf-8")
    (target / "requirements.txt").write_text(
        pins.rstrip("\n") + "\n" + package_url(repo, commit) + "\n",
        encoding="utf-8",
    )
    runtime = source / "runtime.txt"
    if runtime.exists():
        (target / "runtime.txt").write_text(runtime.read_text())
    post = target / "postBuild"
    post.write_text(BINDER_POST_BUILD, encoding="utf-8")
    post.chmod(0o755)


def binder_url(binderhub: str, repository: str, docname: str) -> str:
    """Binder's address of a page's executed notebook on the site's
    branch, opened in JupyterLab."""
    repo = repository.rstrip("/").removesuffix(".git")
    owner_repo = repo.removeprefix("https://github.com/")
    return (
        f"{binderhub.rstrip('/')}/v2/gh/{owner_repo}/{PAGES_BRANCH}"
        f"?urlpath=lab/tree/{NOTEBOOK_DIR}/{docname}.ipynb"
    )


def point_binder_at_notebooks(app, pagename, templatename, context, doctree):
    """The theme's launch button opened the MyST source on ``main``,
    where JupyterLab shows raw roles; it opens the executed notebook on
    the site's branch instead (``html-page-context``, after the theme)."""
    launch = app.config.html_theme_options.get("launch_buttons", {})
    binderhub = launch.get("binderhub_url", "")
    repo = app.config.html_theme_options.get("repository_url", "")
    if not binderhub or not repo:
        return
    for group in context.get("header_buttons", []):
        for item in group.get("buttons", []) or []:
            if isinstance(item, dict) and item.get("text") == "Binder":
                item["url"] = binder_url(binderhub, repo, pagename)
