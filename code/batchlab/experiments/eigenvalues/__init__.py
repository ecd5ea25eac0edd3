"""Appendix, finding the top eigenvalue: one module per section, each
one experiment behind the contract of ``shared/DESIGN.md``.

* :mod:`.race` -- power iteration against Lanczos on a network's Hessian
  from the same starts, and where their stopping rules stop;
* :mod:`.gaps` -- the same race on diagonal matrices with a chosen ratio
  of the two largest eigenvalues.
"""

SECTIONS = ("race", "gaps")
