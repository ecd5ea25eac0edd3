"""Chapter 1, minibatch or single-example SGD: one module per section,
each one experiment behind the contract of ``shared/DESIGN.md``
(``Config``, ``run``, ``facts``, ``CLAIMS``).

``SECTIONS`` lists the section modules in the order of the page. The
sections not yet moved onto the contract live in ``_legacy`` and are
re-exported here, so the page's ``exp.`` calls keep working meanwhile.
"""

from ._legacy import *  # noqa: F403

SECTIONS = ("noise", "steps", "fixed", "grid", "counter")
