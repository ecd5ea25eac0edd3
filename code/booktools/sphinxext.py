"""A small Sphinx extension: every chapter offers its executed notebook.

* The ``notebook-links`` directive renders, in HTML only, a link to the
  chapter's executed ``.ipynb`` (outputs included) and an "Open in Colab"
  link to the same file on the published site's branch.
* The ``ja`` role marks Japanese text: ``<span lang="ja">`` in HTML and
  the IPAex font (``\\cjkfont``, defined in ``_config.yml``) in LaTeX,
  whose main font has no Japanese glyphs.
* Each page's script list is deduplicated: sphinx-thebe registers its
  configuration script once per source-reading pass, and Jupyter Book's
  build reads twice, so pages declared ``THEBE_JS_URL`` twice and the
  browser raised a SyntaxError.
* After an HTML build, the executed notebooks that myst-nb wrote to
  ``_build/jupyter_execute`` are copied to ``_notebooks/`` in the site.

The repository URL comes from the theme options Jupyter Book fills from
``repository.url`` in ``_config.yml``, so it stays in one place.
"""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from booktools import bibstyle, latex

NOTEBOOK_DIR = "_notebooks"
PAGES_BRANCH = "gh-pages"


def colab_url(repository_url: str, docname: str) -> str:
    """Colab's address for the executed notebook on the site's branch."""
    repo = repository_url.rstrip("/").removesuffix(".git")
    prefix = "https://github.com/"
    if not repo.startswith(prefix) or repo.count("/") != 4:
        raise ValueError(
            "repository.url in _config.yml must look like "
            f"https://github.com/OWNER/REPO, got {repository_url!r}"
        )
    return (
        "https://colab.research.google.com/github/"
        f"{repo[len(prefix) :]}/blob/{PAGES_BRANCH}/{NOTEBOOK_DIR}/"
        f"{docname}.ipynb"
    )


class NotebookLinks(SphinxDirective):
    """``{notebook-links}``: download and Colab links for this page."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        docname = self.env.docname
        depth = docname.count("/")
        href = "../" * depth + f"{NOTEBOOK_DIR}/{docname}.ipynb"
        repo = self.config.html_theme_options.get("repository_url", "")
        colab = colab_url(repo, docname)
        name = Path(docname).name
        html = (
            '<p class="notebook-links">'
            f'<a class="reference download" href="{href}" download>'
            f"Download this chapter as a notebook ({name}.ipynb, with "
            "outputs)</a> &middot; "
            f'<a class="reference external" href="{colab}">Open it in '
            "Colab</a> (there, run <code>%pip install "
            f"mnist1d==0.0.2.post1 git+{repo}</code> first)</p>"
        )
        return [nodes.raw("", html, format="html")]


def ja_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{ja}`...```: Japanese text, typeset in a Japanese font."""
    if any(c in text for c in "\\{}$&#%^_~"):
        msg = inliner.reporter.error(
            f"the ja role takes plain Japanese text, got {text!r}",
            line=lineno,
        )
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    html = nodes.raw(
        "", f'<span lang="ja">{escape(text)}</span>', format="html"
    )
    latex = nodes.raw("", f"{{\\cjkfont {text}}}", format="latex")
    return [html, latex], []


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated entries (same file and attributes, such as an inline
    body, whatever their priority) from a page's scripts."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        key = (
            str(getattr(js, "filename", js) or ""),  # None and "" alike
            repr(sorted(attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: it is the builder's own list


def copy_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """Copy executed notebooks next to the HTML pages."""
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.outdir).parent / "jupyter_execute"
    target = Path(app.outdir) / NOTEBOOK_DIR
    for nb in source.rglob("*.ipynb"):
        dest = target / nb.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nb, dest)


def setup(app: Sphinx) -> dict:
    bibstyle.register()
    latex.setup(app)
    app.add_directive("notebook-links", NotebookLinks)
    app.add_role("ja", ja_role)
    # Late, after handlers that add page-specific scripts (MathJax).
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("build-finished", copy_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
