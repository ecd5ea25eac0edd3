"""Back matter lettered as appendices, the same on the site and in print.

Sphinx numbers only the pages of a numbered toctree; the back matter
(the pages after the numbered chapters) was unnumbered on the site, so
the appendix's figures read "Fig. 2" like chapter 2's, while LaTeX
numbered the same pages as chapters 4 to 7 ("Fig. 4.2"). Here every
unnumbered page after the numbered chapters gets a letter, in the order
of the table of contents: on the site its sections read "A", "A.1" and
its figures, tables and exercises "A.2"; in print :mod:`booktools.latex`
starts LaTeX's ``\\appendix`` there, so the chapters read "Appendix A"
and the figures "A.2" as well.

:func:`chapter_name` names a page the way the printed cross-references
do: "Chapter 2", "Appendix A", or nothing for an unnumbered page.
"""

from __future__ import annotations

import string

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx


def toc_order(env) -> list[str]:
    """Every page reachable from the root's toctrees, in reading order."""
    order: list[str] = []

    def walk(docname: str) -> None:
        for child in env.toctree_includes.get(docname, []):
            if child not in order:
                order.append(child)
                walk(child)

    walk(env.config.root_doc)
    return order


def _top(env, docname: str):
    return env.toc_secnumbers.get(docname, {}).get("")


def back_matter(env) -> list[str]:
    """The unnumbered pages after the last numbered chapter (or already
    lettered ones), in reading order."""
    order = toc_order(env)
    numbered = [
        i
        for i, doc in enumerate(order)
        if _top(env, doc) and isinstance(_top(env, doc)[0], int)
    ]
    if not numbered:
        return []
    return [
        doc
        for doc in order[numbered[-1] + 1 :]
        if not _top(env, doc) or isinstance(_top(env, doc)[0], str)
    ]


def letter(k: int) -> str:
    """0 -> "A", 25 -> "Z"; more appendices than letters is an error."""
    if not 0 <= k < len(string.ascii_uppercase):
        raise ValueError(f"no appendix letter for back-matter page {k + 1}")
    return string.ascii_uppercase[k]


def _number_sections(toc: nodes.Node, prefix: tuple) -> dict:
    """Section numbers of a page's local toc (Sphinx's own scheme, with
    ``prefix`` in front); sets ``secnumber`` on the toc's references so
    navigation shows them too."""
    numbers: dict[str, tuple] = {}

    def walk(node: nodes.Node, base: tuple) -> None:
        k = 0
        for item in node.children:
            if not isinstance(item, nodes.list_item):
                continue
            para = item[0] if item.children else None
            if isinstance(para, addnodes.compact_paragraph) and para.children:
                ref = para[0]
                if isinstance(ref, nodes.reference):
                    number = base if not numbers else (*base, k + 1)
                    if numbers:
                        k += 1
                    ref["secnumber"] = number
                    numbers[ref["anchorname"]] = number
                    for sub in item.children[1:]:
                        if isinstance(sub, nodes.bullet_list):
                            walk(sub, number)

    lists = [toc] if isinstance(toc, nodes.bullet_list) else toc.children
    for child in lists:
        if isinstance(child, nodes.bullet_list):
            walk(child, prefix)
    return numbers


def letter_back_matter(app: Sphinx, env) -> list[str]:
    """Give every back-matter page a letter: its sections and its
    numbered figures, tables and exercises (``env-get-updated``, after
    Sphinx has numbered the chapters)."""
    pages = back_matter(env)
    for k, docname in enumerate(pages):
        mark = letter(k)
        toc = env.tocs.get(docname)
        if toc is not None:
            numbers = _number_sections(toc, (mark,))
            if numbers:
                env.toc_secnumbers[docname] = numbers
        for kinds in env.toc_fignumbers.get(docname, {}).values():
            # Sphinx counts the figures of unnumbered pages together:
            # renumber them from 1 within the page.
            if any(n and isinstance(n[0], str) for n in kinds.values()):
                continue  # lettered by an earlier pass
            ordered = sorted((n, i) for i, n in kinds.items() if n)
            for j, (_, ident) in enumerate(ordered, start=1):
                kinds[ident] = (mark, j)
    return pages


def chapter_name(env, docname: str) -> str:
    """ "Chapter 2", "Appendix A", or "" for an unnumbered page."""
    top = _top(env, docname)
    if not top or docname == env.config.root_doc:
        return ""
    if isinstance(top[0], str):
        return f"Appendix {top[0]}"
    return f"Chapter {top[0]}"


def setup(app: Sphinx) -> None:
    """Connect the lettering after Sphinx's own numbering."""
    app.connect("env-get-updated", letter_back_matter, priority=850)
