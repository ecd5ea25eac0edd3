"""Chapter 1, minibatch or single-example SGD: one module per section,
each one experiment behind the contract of ``shared/DESIGN.md``
(``Config``, ``run``, ``facts``, ``CLAIMS``).

``SECTIONS`` lists the section modules in the order of the page:

* :mod:`.noise` -- the variance law and the noise scale along a run;
* :mod:`.steps` -- equal steps: the saturation batch size per rate;
* :mod:`.fixed` -- the fair test at two fixed rates;
* :mod:`.grid` -- every batch size on a grid of rates: the tuned arm, a
  rate shared from B = 16 to the full batch, eta/B held fixed, and the
  edge of stability;
* :mod:`.counter` -- a rate too large for single examples.

The fair test's machinery is shared by its sections (``_fair``: runs
trained to one loss and their measures; ``_chain`` and ``_gridfacts``:
the statistics, paired by seed).
"""

from . import counter, fixed, grid, noise, steps  # noqa: F401

SECTIONS = ("noise", "steps", "fixed", "grid", "counter")
