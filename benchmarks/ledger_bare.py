"""Run the robustness ledger on a machine without the book's notebook
packages (a lent GPU machine has PyTorch and the scientific stack, but no
myst-nb or IPython): the ledger never renders, so ``myst_nb.glue`` and
``IPython.display.Markdown`` are replaced by stand-ins that do nothing,
as ``bench_chapters.py`` does for glue. Arguments are the ledger's::

    PYTHONPATH=code python benchmarks/ledger_bare.py --jobs 16
"""

from __future__ import annotations

import sys
import types


def _stand_ins() -> None:
    """Install do-nothing ``myst_nb`` and ``IPython.display`` modules
    where the real ones are missing."""
    try:
        import myst_nb  # noqa: F401
    except ImportError:
        glue = types.ModuleType("myst_nb")
        glue.glue = lambda name, value, display=True: None
        sys.modules["myst_nb"] = glue
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython = types.ModuleType("IPython")
        display = types.ModuleType("IPython.display")
        display.Markdown = str
        ipython.display = display
        sys.modules.update({"IPython": ipython, "IPython.display": display})


if __name__ == "__main__":
    _stand_ins()
    from booktools import ledger

    sys.exit(ledger.main(sys.argv[1:]))
