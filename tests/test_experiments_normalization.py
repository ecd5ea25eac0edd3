import numpy as np
import torch

from batchlab.experiments import normalization as nexp


def test_gd_on_quadratic_follows_condition_number():
    H = torch.diag(torch.tensor([1.0, 0.01], dtype=torch.float64))
    steps = nexp.gd_steps_on_quadratic(H, lr=1.0, tol=1e-3)
    bound = np.ceil(np.log(1e3) / -np.log(1 - 0.01))
    assert 0.5 * bound <= steps <= bound
    assert (
        nexp.gd_steps_on_quadratic(H, lr=2.1, tol=1e-3, max_steps=500) == 500
    )
    assert nexp.gd_steps_on_quadratic(torch.eye(3), lr=1.0) == 1
