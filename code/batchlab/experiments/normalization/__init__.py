"""Chapter 2, does normalizing the inputs equalize the Hessian's
eigenvalues: one module per section, each one experiment behind the
contract of ``shared/DESIGN.md`` (``Config``, ``run``, ``facts``,
``CLAIMS``), in the order of the page.

* :mod:`.linear` -- the linear-regression Hessian after each input
  normalization, on MNIST-1D, the handwritten digits and a synthetic set;
* :mod:`.correlation` -- where zero mean and unit variance are enough;
* :mod:`.descent` -- gradient descent's steps against the condition number;
* :mod:`.logistic` -- binary logistic regression's Hessian along training;
* :mod:`.network` -- an MLP's whole Hessian spectrum under each input;
* :mod:`.layers` -- standardizing every hidden layer, each network at its
  own best rate;
* :mod:`.factors` -- K-FAC's factors of each layer's curvature, their
  error, and the step against the largest curvature at matched loss.
"""

SECTIONS = (
    "linear",
    "correlation",
    "descent",
    "logistic",
    "network",
    "layers",
    "factors",
)

#: The name each normalization, data set and control has in the page's
#: tables and figures (the sections' frames keep their short codes).
SHOWN = {
    "center": "centred",
    "centre": "centred",
    "standardize": "standardized",
    "pca": "whitened (PCA)",
    "zca": "whitened",
    "none": "plain",
    "shifted mean": "shifted",
    "mnist1d": "MNIST-1D",
    "synthetic": "correlated synthetic",
}
#: The factors section's networks, as the page names them.
NETWORK = {"same function": "control", "matched": "trained standardized"}
