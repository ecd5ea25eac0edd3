import numpy as np
import pytest
import torch
from batchlab import claims


def test_true_claim_returns_its_message():
    assert claims.check(1 < 2, "one is less than two") == (
        "one is less than two"
    )


@pytest.mark.parametrize(
    "falsy", [False, 0, np.bool_(False), torch.tensor(False)]
)
def test_false_claim_fails_with_its_message(falsy):
    with pytest.raises(claims.ClaimFailed, match="the sky is green"):
        claims.check(falsy, "the sky is green")


def test_claim_failure_is_an_assertion_error():
    assert issubclass(claims.ClaimFailed, AssertionError)


def test_empty_message_is_rejected():
    with pytest.raises(ValueError, match="message"):
        claims.check(True, "  ")


def test_multi_element_tensor_is_rejected():
    with pytest.raises(ValueError, match=r"\.all\(\)"):
        claims.check(torch.tensor([True, True]), "ambiguous")


def test_check_all_names_the_failing_cases():
    assert claims.check_all([True, True], "all good") == "all good"
    with pytest.raises(claims.ClaimFailed, match=r"cases \[1\] of 3"):
        claims.check_all([True, False, True], "every seed agrees")
    with pytest.raises(ValueError):
        claims.check_all([], "nothing")


def test_publish_turns_scalars_into_plain_numbers(monkeypatch):
    seen = {}
    import myst_nb

    monkeypatch.setattr(
        myst_nb, "glue", lambda n, v, display: seen.update({n: (v, display)})
    )
    assert claims.publish("a", np.float64(1.5)) == 1.5
    assert type(seen["a"][0]) is float and seen["a"][1] is False
    assert claims.publish("b", torch.tensor(3)) == 3
    with pytest.raises(TypeError, match="number or a string"):
        claims.publish("c", np.ones(2))
