import shutil

import pytest
from conftest import ROOT, jupyter_book

from booktools import sphinxext


def test_colab_url_points_at_the_pages_branch():
    url = sphinxext.colab_url(
        "https://github.com/owner/repo.git", "chapters/hessian"
    )
    assert url == (
        "https://colab.research.google.com/github/owner/repo/"
        "blob/gh-pages/_notebooks/chapters/hessian.ipynb"
    )
    with pytest.raises(ValueError, match="OWNER/REPO"):
        sphinxext.colab_url("https://gitlab.com/owner/repo", "x")


def test_dedupe_keeps_the_first_of_equal_scripts_in_place():
    from sphinx.builders.html._assets import _JavaScript

    scripts = [
        _JavaScript(None, body="a=1", priority=500),
        _JavaScript("x.js", priority=500),
        _JavaScript("", body="a=1", priority=800),
        _JavaScript(None, body="b=2", priority=500),
    ]
    original = scripts
    context = {"script_files": scripts}
    sphinxext.dedupe_scripts(None, "p", "t", context, None)
    assert context["script_files"] is original
    assert [s.attributes.get("body") for s in original] == ["a=1", None, "b=2"]


def test_ja_role_and_notebook_links_in_a_tiny_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book)
    shutil.copy(ROOT / "references.bib", book)
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (book / "page.md").write_text(
        "# A page\n\n```{notebook-links}\n```\n\nTerm: {ja}`学習率`.\n"
    )
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    html = (book / "_build" / "html" / "page.html").read_text()
    assert '<span lang="ja">学習率</span>' in html
    assert 'href="_notebooks/page.ipynb"' in html
    assert "colab.research.google.com/github/" in html
    (book / "page.md").write_text("# A page\n\nBad: {ja}`$x$`.\n")
    done = jupyter_book(str(book), cwd=tmp_path)
    assert done.returncode != 0
    assert "plain Japanese text" in done.stdout + done.stderr
