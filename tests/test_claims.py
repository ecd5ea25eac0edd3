import numpy as np
import pytest
import torch

from batchlab import claims


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.setattr(claims, "_verified", [])


def test_true_claim_prints_nothing_and_is_remembered():
    assert claims.check(1 < 2, "one is less than two") is None
    claims.check(2 < 3, "two is less than three")
    claims.check(1 < 2, "one is less than two")  # once in the list
    assert claims.verified() == [
        "one is less than two",
        "two is less than three",
    ]


def test_failed_claim_is_not_in_the_report():
    with pytest.raises(claims.ClaimFailed):
        claims.check(False, "never")
    with pytest.raises(ValueError, match="no claim"):
        claims.report()
    claims.check_all([True], "every seed agrees")
    assert "never" not in claims.verified()


def test_report_lists_the_claims_as_sentences():
    claims.check(True, "the loss falls")
    claims.check(True, "Noise grows.")
    md = claims.report().data
    assert md.splitlines() == ["1. The loss falls.", "2. Noise grows."]


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
    assert claims.check_all([True, True], "all good") is None
    with pytest.raises(claims.ClaimFailed, match=r"cases \[1\] of 3"):
        claims.check_all([True, False, True], "every seed agrees")
    with pytest.raises(ValueError):
        claims.check_all([], "nothing")


def test_publish_turns_scalars_into_plain_numbers(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        claims, "glue", lambda n, v, display: seen.update({n: (v, display)})
    )
    assert claims.publish("a", np.float64(1.5)) is None  # no stray output
    assert seen["a"] == (1.5, False) and type(seen["a"][0]) is float
    claims.publish("b", torch.tensor(3))
    assert seen["b"][0] == 3 and type(seen["b"][0]) is int
    with pytest.raises(TypeError, match="number or a string"):
        claims.publish("c", np.ones(2))
