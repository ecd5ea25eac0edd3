"""batchlab.claims: claims with ids and kinds, checked over a section's
facts; every fact glued; failures name every broken claim."""

import types

import numpy as np
import pytest
import torch

from batchlab import claims
from batchlab.claims import Claim


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.setattr(claims, "_verified", [])
    monkeypatch.setattr(claims, "_messages", [])
    monkeypatch.setattr(claims, "_glued", {})


@pytest.fixture
def glued(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        claims, "glue", lambda n, v, display: seen.update({n: (v, display)})
    )
    return seen


def section(name, *found):
    return types.SimpleNamespace(__name__=f"pkg.{name}", CLAIMS=list(found))


BIG = Claim("xx-big", "finding", "a is big", lambda f: f["a"] > 1, ("longer",))
LAW = Claim("xx-law", "identity", "b is zero", lambda f: f["b"] == 0)


def test_claim_ids_kinds_and_variants_are_validated():
    with pytest.raises(ValueError, match="lowercase words"):
        Claim("Big", "finding", "t", bool)
    with pytest.raises(ValueError, match="kind"):
        Claim("xx-a", "hunch", "t", bool)
    with pytest.raises(ValueError, match="unknown variants"):
        Claim("xx-a", "finding", "t", bool, where=("taller",))
    with pytest.raises(ValueError, match="tuples"):
        Claim("xx-a", "finding", "t", bool, where="longer")
    with pytest.raises(ValueError, match="every variant"):
        Claim("xx-a", "identity", "t", bool, where=("longer",))
    with pytest.raises(ValueError, match="text"):
        Claim("xx-a", "finding", "  ", bool)
    assert LAW.expected == ("longer", "wider", "rate", "digits")
    assert BIG.expected == ("longer",)


def test_verify_glues_every_fact_and_remembers_the_claims(glued):
    sec = section("one", BIG, LAW)
    facts = dict(a=np.float64(2.5), b=torch.tensor(0), note="text")
    assert claims.verify(sec, facts) is None  # a cell shows nothing
    assert glued == {
        "a": (2.5, False),
        "b": (0, False),
        "note": ("text", False),
    }
    assert type(glued["a"][0]) is float and type(glued["b"][0]) is int
    assert claims.verified() == ["xx-big", "xx-law"]


def test_verify_names_every_failed_claim_with_its_values(glued):
    big = Claim(
        "xx-big", "finding", "a is big", lambda f: f["a"] > 1, measure=("a",)
    )
    sec = section("one", big, LAW)
    with pytest.raises(claims.ClaimFailed) as err:
        claims.verify(sec, dict(a=0.5, b=3))
    text = str(err.value)
    assert "2 claims" in text and "xx-big" in text and "xx-law" in text
    assert "'a': 0.5" in text
    assert claims.verified() == []


def test_a_missing_fact_is_named(glued):
    with pytest.raises(KeyError, match="xx-big needs the fact 'a'"):
        claims.verify(section("one", BIG), dict(b=0))


def test_a_fact_glued_twice_by_two_sections_is_refused(glued):
    claims.verify(section("one", LAW), dict(b=0))
    claims.verify(section("one", LAW), dict(b=0))  # rerunning a cell is fine
    with pytest.raises(ValueError, match="already glued"):
        claims.verify(section("two", LAW), dict(b=0))


def test_facts_must_be_scalars(glued):
    with pytest.raises(TypeError, match="fact 'v'"):
        claims.verify(section("one", LAW), dict(b=0, v=np.ones(3)))


def test_an_array_valued_predicate_is_refused():
    bad = Claim("xx-bad", "finding", "t", lambda f: np.array([True, True]))
    with pytest.raises(ValueError, match="one truth value"):
        bad.check({})
    one = Claim("xx-one", "finding", "t", lambda f: torch.tensor([True]))
    assert one.check({}) is True


def test_quick_scale_checks_only_quick_claims(glued, monkeypatch):
    monkeypatch.setenv("BATCHLAB_SCALE", "quick")
    quick = Claim(
        "xx-q", "identity", "b is zero", lambda f: f["b"] == 0, quick=True
    )
    claims.verify(section("one", BIG, quick), dict(a=0.0, b=0))  # BIG skipped
    assert claims.verified() == ["xx-q"]
    monkeypatch.setenv("BATCHLAB_SCALE", "book")
    with pytest.raises(claims.ClaimFailed, match="xx-big"):
        claims.verify(section("one", BIG, quick), dict(a=0.0, b=0))


def test_report_refuses_a_chapter_with_unverified_sections(glued):
    one, two = section("one", BIG), section("two", LAW)
    chapter = types.SimpleNamespace(__name__="pkg", SECTIONS=("one", "two"))
    modules = {"pkg.one": one, "pkg.two": two}
    real = claims.importlib.import_module
    claims.importlib.import_module = modules.__getitem__
    try:
        claims.verify(one, dict(a=2))
        with pytest.raises(ValueError, match=r"xx-law"):
            claims.report(chapter)
        claims.verify(two, dict(b=0))
        assert "all 2 claims" in claims.report(chapter).data
    finally:
        claims.importlib.import_module = real


def test_the_book_registry_has_unique_well_formed_ids():
    found = claims.registry()
    assert found, "no chapter is on the experiment contract"
    for claim_id, (chapter, module, claim) in found.items():
        assert claim.id == claim_id
        assert module.__name__.startswith(f"batchlab.experiments.{chapter}.")


# The second edition's claims in words, until every chapter has moved.


def test_old_claims_in_words_are_listed_in_order():
    claims.check(True, "the loss falls")
    claims.check(True, "Noise grows.")
    claims.check(True, "the loss falls")
    assert claims.report().data.splitlines() == [
        "1. The loss falls.",
        "2. Noise grows.",
    ]
    with pytest.raises(claims.ClaimFailed, match="the sky is green"):
        claims.check(torch.tensor(False), "the sky is green")
    with pytest.raises(ValueError, match=r"\.all\(\)"):
        claims.check(torch.tensor([True, True]), "ambiguous")
    with pytest.raises(claims.ClaimFailed, match=r"cases \[1\] of 3"):
        claims.check_all([True, False, True], "every seed agrees")


def test_publish_turns_scalars_into_plain_numbers(glued):
    assert claims.publish("a", np.float64(1.5)) is None
    assert glued["a"] == (1.5, False) and type(glued["a"][0]) is float
    with pytest.raises(TypeError, match="number or a string"):
        claims.publish("c", np.ones(2))
