"""The papers' claim checks are a registry: each paper module registers its check beside the
strategy name it judges, and the report looks them up (issue 23 item 5)."""

import pytest

from cl_compress.report import claim_base, claims


def test_builtin_checks_are_registered_in_report_order():
    assert [c.strategy for c in claim_base.registered()] == ["packnet", "ada_qpacknet", "lrpet", "cacl"]
    for c in claim_base.registered():
        assert c.check.__module__ == f"cl_compress.report.papers.{c.strategy}"
        assert claims.check(c.strategy) is c.check
    with pytest.raises(KeyError, match="no claim check registered for 'nope'"):
        claims.check("nope")


def test_a_new_check_joins_the_report_and_a_second_one_for_a_name_is_refused(monkeypatch):
    monkeypatch.setattr(claim_base, "CHECKS", dict(claim_base.CHECKS))
    monkeypatch.setattr(claims, "CHECKS", claim_base.CHECKS)

    @claim_base.register_claim("mine", label="Mine", rule=lambda th: "always", order=9)
    def mine(groups, th=claim_base.THRESHOLDS):
        return claim_base.Claim("Mine (2026)", "a claim", "not measured", "no runs")

    assert claims.claims({})[-1].paper == "Mine (2026)"
    assert "| Mine | always |" in claims.thresholds_markdown()
    assert "| Mine (2026) | a claim | **not measured** | no runs |" in claims.claims_markdown({})
    with pytest.raises(ValueError, match="already registered"):
        claim_base.register_claim("mine", label="x", rule=lambda th: "", order=0)(lambda g, th: None)
