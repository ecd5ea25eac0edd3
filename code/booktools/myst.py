"""Reading MyST notebooks without Jupyter: their code cells as text.

Used where a page's code is needed but no notebook machinery is, or
should be, around: the source links of the site
(:mod:`booktools.sourcepages`) and the chapter survey
(``benchmarks/bench_chapters.py``), which also runs on a bare GPU
machine. Depends on the standard library only.
"""

from __future__ import annotations

import re

# A code cell: its fence of three or more backticks, and the same fence
# closing it (so a cell may hold a shorter fence).
_FENCE = re.compile(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
_OPTION = re.compile(r"^:[\w-]+:")


def code_cells(markdown: str) -> list[str]:
    """The sources of the ``{code-cell}`` blocks of a MyST page, in order,
    without their options (``:tags:`` lines or a ``---`` YAML block)."""
    cells = []
    for match in _FENCE.finditer(markdown):
        lines = match.group(2).splitlines()
        if lines and lines[0].strip() == "---":
            lines = lines[lines.index("---", 1) + 1 :]
        else:
            while lines and _OPTION.match(lines[0]):
                lines = lines[1:]
        cells.append("\n".join(lines).strip("\n"))
    return cells
