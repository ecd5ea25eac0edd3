"""Chapter 3, why normalize per batch, and is that not noisy: one module
per section, each one experiment behind the contract of
``shared/DESIGN.md`` (``Config``, ``run``, ``facts``, ``CLAIMS``).

``SECTIONS`` lists the section modules in the order of the page.
"""

SECTIONS = (
    "work",
    "escape",
    "wholedata",
    "jumps",
    "spread",
    "running",
    "modes",
    "rate",
    "edge",
    "epsilon",
    "smallbatch",
    "pairs",
    "conv",
    "hessian",
)
