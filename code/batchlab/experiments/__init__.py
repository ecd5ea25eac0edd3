"""Per-chapter experiments: each module holds one chapter's frozen
configuration (``Config.for_scale``) and the experiment functions too
long for a cell. They build on the chapter-agnostic methods of
:mod:`batchlab` and return tidy ``pandas`` frames or small dataclasses.

* :mod:`.minibatch` -- chapter 1, minibatch or single-example SGD;
* :mod:`.normalization` -- chapter 2, normalization and the Hessian;
* :mod:`.batchnorm` -- chapter 3, per-batch normalization;
* :mod:`.eigenvalues` -- the appendix on finding the top eigenvalue.
"""
