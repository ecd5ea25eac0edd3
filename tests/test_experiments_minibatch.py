import pytest

from batchlab import data
from batchlab.experiments import minibatch as exp


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(num_samples=600).subset(256, 100)


def test_sweep_config_rules_and_sweep_rows(small):
    cfg = exp.SweepConfig((40, 8, 10), (4, 256), 2, 0.05, 16, 1, 5)
    assert cfg.lr("fixed", 256) == 0.05
    assert cfg.lr("linear", 32) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="rule"):
        cfg.lr("sqrt", 4)
    rows, nets = exp.batch_size_sweep(cfg, small)
    assert len(rows) == 2 * 2 * 2 * 2 == len(nets)
    r = next(r for r in rows if r["budget"] == "epochs" and r["B"] == 4)
    assert r["steps"] == 64 and r["grad_evals"] == 256
