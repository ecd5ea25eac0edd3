"""Helpers behind the executable textbook *Minibatches, curvature and
BatchNorm*.

Two layers (see ``shared/DESIGN.md``): chapter-agnostic methods in the
modules of this package (``data``, ``models``, ``train``, ``ensemble``,
``noise``, ``hessian``, ``lanczos``, ``landscape``, ``normalize``,
``batchnorm``, ``claims``, ``stats``, ``plots``, ``runtime``), and one
package per chapter in :mod:`batchlab.experiments`, a module per section,
each one experiment behind one contract (``Config``, ``run``, ``facts``,
``CLAIMS``).

Importing the package applies the thread policy of
:func:`batchlab.runtime.apply_threads`, so chapters, tests and benchmarks
all run with the threads this machine can really give them, and switches
off TF32 on GPUs (:func:`batchlab.runtime.apply_precision`).
"""

from . import runtime

__version__ = "0.3.0"  # the third edition; tests check pyproject agrees

runtime.apply_threads()
runtime.apply_precision()
