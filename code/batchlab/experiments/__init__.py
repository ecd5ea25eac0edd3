"""Per-chapter experiments: a package per chapter, a module per section.

Each section module is one experiment behind one contract
(``shared/DESIGN.md``): a frozen ``Config`` with ``for_scale`` and its
``VARIANTS`` (:func:`batchlab.runtime.variants_of`), ``run(cfg, data)``
returning a tidy frame, ``facts(frame, cfg)`` reducing it to the numbers
the prose glues, and ``CLAIMS`` (:class:`batchlab.claims.Claim`) over
those facts. A chapter package lists its sections in ``SECTIONS``.

* :mod:`.minibatch` -- chapter 1, minibatch or single-example SGD;
* :mod:`.normalization` -- chapter 2, does normalizing the inputs equalize
  the Hessian's eigenvalues;
* :mod:`.batchnorm` -- chapter 3, per-batch normalization;
* :mod:`.eigenvalues` -- the appendix on finding the top eigenvalue.
"""

#: The chapter packages, in the book's order; the ledger and the claim
#: registry (:func:`batchlab.claims.registry`) walk these.
CHAPTERS = ("minibatch", "normalization", "batchnorm", "eigenvalues")
