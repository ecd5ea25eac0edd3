"""Helpers behind the executable textbook *Minibatches, curvature and
BatchNorm*.

Two layers (see ``shared/DESIGN.md``): chapter-agnostic methods in the
modules of this package (``data``, ``models``, ``train``, ``ensemble``,
``noise``, ``hessian``, ``lanczos``, ``landscape``, ``normalize``,
``batchnorm``, ``claims``, ``plots``, ``runtime``), and one module of
configuration and experiments per chapter in :mod:`batchlab.experiments`.

Importing the package applies the thread policy of
:func:`batchlab.runtime.apply_threads`, so chapters, tests and benchmarks
all run with the threads this machine can really give them.
"""

from . import runtime

__version__ = "0.2.0"

runtime.apply_threads()
