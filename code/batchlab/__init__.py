"""Helpers behind the executable textbook *Minibatches, curvature and
BatchNorm*.

Each module owns one concern (see ``shared/DESIGN.md``): ``data``,
``models``, ``train``, ``noise``, ``curvature``, ``normalize``,
``batchnorm``, ``claims``, ``plots`` and ``scale``.
"""

__version__ = "0.1.0"
