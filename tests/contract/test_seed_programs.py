"""Contract tests of the seed support programs (``aisuper_cli/seed/programs.yaml``): every entry
is a valid ``aisuper.policy.v1.Program`` that policy's CreateProgram accepts (field rules,
eligibility expression, the kind's rules), and the published Shanghai figures are there as
published."""

from __future__ import annotations

from importlib import resources
from typing import Any

import protovalidate
import pytest
import yaml
from google.protobuf.json_format import ParseDict

from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_cli.program_seeding import load_programs
from aisuper_policy.domain import check_program
from aisuper_policy.eligibility import compile_eligibility

TEXT = resources.files("aisuper_cli").joinpath("seed/programs.yaml").read_text(encoding="utf-8")
ENTRIES: list[dict[str, Any]] = yaml.safe_load(TEXT)["programs"]
SLUGS = [entry["slug"] for entry in ENTRIES]
#: ¥1 = 1 credit = 1,000,000 micro-credits.
YUAN = 1_000_000
MILLION_YUAN = 1_000_000 * YUAN


def program(entry: dict[str, Any]) -> pb.Program:
    return ParseDict(entry, pb.Program())


def by_slug(slug: str) -> pb.Program:
    assert slug in SLUGS, f"no program {slug!r}"
    return program(ENTRIES[SLUGS.index(slug)])


def facts(**values: Any) -> pb.OrganizationFacts:
    base: dict[str, Any] = {
        "org_id": "org_" + "0" * 26,
        "kind": "startup",
        "country": "CN",
        "region": "asia",
        "verified": True,
        "age_days": 100,
        "employee_count": 10,
    }
    base.update(values)
    return pb.OrganizationFacts(**base)


def test_exactly_eighteen_programs_with_unique_slugs() -> None:
    assert len(ENTRIES) == 18
    assert len(set(SLUGS)) == len(SLUGS)


@pytest.mark.parametrize("entry", ENTRIES, ids=SLUGS)
def test_entry_is_a_program_create_program_accepts(entry: dict[str, Any]) -> None:
    parsed = program(entry)
    assert parsed.slug == entry["slug"]
    for output_only in ("id", "revision", "create_time", "update_time"):
        assert output_only not in entry, f"{output_only} is output only"
    protovalidate.validate(
        pb.CreateProgramRequest(program=parsed, request_id=f"seed-{parsed.slug}")
    )
    compile_eligibility(parsed.eligibility)
    check_program(parsed)
    assert parsed.title
    assert parsed.description


def test_the_cli_loads_the_same_programs() -> None:
    loaded = load_programs()
    assert loaded.slugs == SLUGS
    assert list(loaded.programs) == [program(entry) for entry in ENTRIES]


def test_every_entry_has_a_source_comment() -> None:
    lines = TEXT.splitlines()
    for slug in SLUGS:
        index = lines.index(f"  - slug: {slug}")
        assert lines[index - 1].lstrip().startswith("#"), f"{slug} has no comment saying where from"


def test_shanghai_compute_voucher() -> None:
    voucher = by_slug("shanghai-compute-voucher")
    assert voucher.kind == pb.PROGRAM_KIND_COMPUTE_VOUCHER
    assert list(voucher.covers) == [pb.COST_KIND_COMPUTE]
    assert voucher.budget == 600 * MILLION_YUAN == 600_000_000 * 1_000_000
    assert voucher.share_bps == 3000
    assert voucher.stackable


def test_shanghai_compute_voucher_top_up_for_early_small_firms() -> None:
    top_up = by_slug("shanghai-compute-voucher-startup-top-up")
    base = by_slug("shanghai-compute-voucher")
    assert top_up.kind == pb.PROGRAM_KIND_COMPUTE_VOUCHER
    assert list(top_up.covers) == [pb.COST_KIND_COMPUTE]
    assert top_up.share_bps == 10000  # up to 100% in all
    assert top_up.stackable
    assert top_up.stack_order > base.stack_order  # pays the rest after the 30%
    assert "age_days" in top_up.eligibility
    assert "employee_count" in top_up.eligibility
    assert top_up.cap_period != pb.CAP_PERIOD_UNSPECIFIED or top_up.HasField("valid_until")
    rule = compile_eligibility(top_up.eligibility)
    assert rule.admits(facts())
    assert not rule.admits(facts(age_days=400))
    assert not rule.admits(facts(employee_count=5000))


def test_shanghai_model_voucher() -> None:
    voucher = by_slug("shanghai-model-voucher")
    assert voucher.kind == pb.PROGRAM_KIND_MODEL_VOUCHER
    assert list(voucher.covers) == [pb.COST_KIND_MODEL_TOKENS]
    assert voucher.budget == 300 * MILLION_YUAN
    assert voucher.share_bps == 5000
    assert voucher.per_org_cap == 5 * MILLION_YUAN
    assert voucher.cap_period != pb.CAP_PERIOD_UNSPECIFIED


def test_shanghai_corpus_voucher() -> None:
    voucher = by_slug("shanghai-corpus-voucher")
    assert voucher.kind == pb.PROGRAM_KIND_CORPUS_VOUCHER
    assert list(voucher.covers) == [pb.COST_KIND_DATASET]
    assert voucher.budget == 100 * MILLION_YUAN
    assert voucher.share_bps == 3000
    assert voucher.per_org_cap == 5 * MILLION_YUAN
    assert voucher.cap_period != pb.CAP_PERIOD_UNSPECIFIED


def test_global_south_partner_program_names_its_countries() -> None:
    partner = by_slug("global-south-partner-program")
    assert "org.country in [" in partner.eligibility
    rule = compile_eligibility(partner.eligibility)
    assert rule.admits(facts(country="KE", region="africa"))
    assert rule.admits(facts(country="BR", region="americas", kind="research"))
    assert not rule.admits(facts(country="DE", region="europe"))
    assert not rule.admits(facts(country="US", region="americas"))


def test_financing_referrals_pay_nothing() -> None:
    referrals = [p for p in map(program, ENTRIES) if p.kind == pb.PROGRAM_KIND_FINANCING_REFERRAL]
    assert referrals
    for referral in referrals:
        assert (referral.budget, referral.share_bps, referral.per_org_cap) == (0, 0, 0)
        assert not referral.covers


def test_some_program_admits_any_organisation() -> None:
    anyone = facts(kind="enterprise", country="DE", region="europe", verified=False)
    assert any(compile_eligibility(p.eligibility).admits(anyone) for p in map(program, ENTRIES))
