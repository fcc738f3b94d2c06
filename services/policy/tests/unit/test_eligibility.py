"""Eligibility rules: CEL over `org`, refused when they cannot be a bool rule."""

from __future__ import annotations

import re
import time

import pytest

from aisuper.platform.errors import InvalidArgument
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy.eligibility import compile_eligibility

POSITION = re.compile(r"\b1:\d+\b")


def _refusal(source: str) -> str:
    """The description the refusal gives for `program.eligibility`."""
    with pytest.raises(InvalidArgument) as error:
        compile_eligibility(source)
    [violation] = error.value.violations
    assert violation.field == "program.eligibility"
    assert violation.description
    assert len(violation.description) <= 500
    return violation.description


def _facts(**fields: object) -> pb.OrganizationFacts:
    return pb.OrganizationFacts(org_id="org_" + "0" * 26, **fields)  # type: ignore[arg-type]


# -- refused ---------------------------------------------------------------------------


def test_a_syntax_error_is_refused_with_its_line_and_column() -> None:
    description = _refusal('org.country == "KE" &&')
    assert "1:23" in description, description
    assert "yntax" in description
    assert "ERROR" not in description
    assert "INVALID_ARGUMENT" not in description


def test_an_unknown_field_is_refused() -> None:
    description = _refusal('org.countr == "KE"')
    assert "countr" in description
    assert POSITION.search(description), description


def test_a_type_error_is_refused() -> None:
    description = _refusal("org.country + 1")
    assert "overload" in description or "type" in description, description
    assert POSITION.search(description), description


@pytest.mark.parametrize(
    ("source", "type_name"),
    [
        ("org.age_days", "int"),
        ("org.country", "string"),
        ("org", "message"),
        ("[org.verified]", "list"),
        ("1.5", "double"),
    ],
)
def test_a_rule_that_is_not_a_bool_is_refused(source: str, type_name: str) -> None:
    description = _refusal(source)
    assert "bool" in description
    if type_name != "message":
        assert type_name in description, description


@pytest.mark.parametrize("source", ["user.x == 1", "users.size() > 0", 'request.auth == "x"'])
def test_an_unknown_variable_is_refused(source: str) -> None:
    description = _refusal(source)
    assert "undeclared" in description or "reference" in description, description


def test_a_nul_byte_in_the_expression_is_refused() -> None:
    _refusal("org.verified\x00")
    _refusal("org.verified\x00 || true")
    _refusal("\x00")


def test_a_huge_expression_is_refused_quickly() -> None:
    """100 KiB: 12 times what the proto admits, but the function must not choke on it."""
    sources = [
        " || ".join(['org.country == "KE"'] * 5_200),  # valid CEL, over 100 KiB
        'org.country == "' + "a" * 100 * 1024 + '"',
        "(" * 100 * 1024,
        "org.verified &&" * 7_000,
    ]
    for source in sources:
        assert len(source.encode()) >= 100 * 1024
        started = time.monotonic()
        _refusal(source)
        assert time.monotonic() - started < 2.0


def test_a_large_valid_expression_compiles_quickly() -> None:
    # Just under CEL's own size limit: accepted, and not slow.
    countries = ",".join(['"KE"'] * 2_000)  # 10 KiB
    started = time.monotonic()
    rule = compile_eligibility(f"org.country in [{countries}]")
    assert time.monotonic() - started < 2.0
    assert rule.admits(_facts(country="KE"))
    assert not rule.admits(_facts(country="DE"))


@pytest.mark.parametrize("depth", [33, 1_000, 10_000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    started = time.monotonic()
    description = _refusal("(" * depth + "org.verified" + ")" * depth)
    assert "recursion" in description or "nest" in description, description
    assert time.monotonic() - started < 2.0


def test_deep_calls_are_refused_not_a_crash() -> None:
    source = "size(" * 10_000 + "org.country" + ")" * 10_000 + " > 0"
    _refusal(source)


# -- accepted -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["", " ", "\n\t  \n"])
def test_an_empty_rule_admits_everyone(source: str) -> None:
    rule = compile_eligibility(source)
    assert rule.expression is None
    assert rule.admits(_facts())
    assert rule.admits(_facts(country="DE", suspended=True))


def test_country_lists() -> None:
    rule = compile_eligibility('org.country in ["KE", "NG", "BR"]')
    assert rule.admits(_facts(country="KE"))
    assert rule.admits(_facts(country="BR"))
    assert not rule.admits(_facts(country="DE"))
    assert not rule.admits(_facts(country=""))
    assert not rule.admits(_facts(country="ke"))  # exact codes
    excluded = compile_eligibility('!(org.country in ["CN", "RU"])')
    assert excluded.admits(_facts(country="KE"))
    assert not excluded.admits(_facts(country="CN"))


@pytest.mark.parametrize(
    ("verified", "age_days", "admitted"),
    [(True, 0, True), (True, 364, True), (True, 365, False), (False, 10, False)],
)
def test_verified_and_young(verified: bool, age_days: int, admitted: bool) -> None:
    rule = compile_eligibility("org.verified && org.age_days < 365")
    assert rule.admits(_facts(verified=verified, age_days=age_days)) is admitted


def test_kind_and_region() -> None:
    startup = compile_eligibility('org.kind == "startup"')
    assert startup.admits(_facts(kind="startup"))
    assert not startup.admits(_facts(kind="enterprise"))
    africa = compile_eligibility('org.region == "africa"')
    assert africa.admits(_facts(region="africa"))
    assert not africa.admits(_facts(region="europe"))


def test_every_fact_is_visible() -> None:
    rule = compile_eligibility(
        'org.org_id.startsWith("org_") && org.kind == "research" && org.country == "KE"'
        ' && org.region == "africa" && org.incubator_member && org.verified'
        " && !org.suspended && org.age_days >= 3 * 365 && org.employee_count <= 50"
    )
    facts = _facts(
        kind="research",
        country="KE",
        region="africa",
        incubator_member=True,
        verified=True,
        age_days=3 * 365,
        employee_count=50,
    )
    assert rule.admits(facts)
    facts.employee_count = 51
    assert not rule.admits(facts)


def test_the_compiled_rule_keeps_its_source_and_is_reused() -> None:
    rule = compile_eligibility("org.verified")
    assert rule.source == "org.verified"
    for verified in [True, False] * 50:
        assert rule.admits(_facts(verified=verified)) is verified


def test_a_string_literal_may_hold_any_character() -> None:
    # A NUL inside a literal is just a character of the string, not a way to cut the rule.
    rule = compile_eligibility('org.country == "K\x00E"')
    assert not rule.admits(_facts(country="KE"))


def test_another_field_name_can_be_used() -> None:
    with pytest.raises(InvalidArgument) as error:
        compile_eligibility("org.nope", field="rule")
    assert [v.field for v in error.value.violations] == ["rule"]


# -- evaluation errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "org.employee_count / org.age_days > 1",  # a new organisation: age_days is 0
        "org.employee_count % org.age_days == 0",
        "[1, 2][org.age_days + 5] == 1",
        "int(org.country) > 0",
    ],
)
def test_a_rule_that_fails_at_evaluation_does_not_admit(source: str) -> None:
    rule = compile_eligibility(source)
    facts = _facts(country="KE", employee_count=5, age_days=0)
    try:
        admitted = rule.admits(facts)
    except Exception:  # raising is fine: eligible_reason reports "the rule failed"
        return
    assert admitted is False
