"""The rules of programs and the arithmetic of subsidies, without I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aisuper.platform.errors import FailedPrecondition, InvalidArgument
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import domain
from aisuper_policy.domain import Leg, Offer, coverage, settled_share

CREDIT = 1_000_000
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _program(program_id: str = "prg_a", **fields: Any) -> pb.Program:
    values: dict[str, Any] = {
        "id": program_id,
        "kind": pb.PROGRAM_KIND_COMPUTE_VOUCHER,
        "slug": program_id.replace("_", "-"),
        "title": "Voucher",
        "covers": [pb.COST_KIND_COMPUTE],
        "share_bps": 3_000,
        "budget": 100_000 * CREDIT,
    }
    values.update(fields)
    return pb.Program(**values)


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _offer(
    program_id: str = "prg_a",
    *,
    budget_left: int = 10**15,
    cap_left: int | None = None,
    **fields: Any,
) -> Offer:
    return Offer(_program(program_id, **fields), budget_left, cap_left)


# -- coverage --------------------------------------------------------------------------


def test_coverage_pays_the_share_floored() -> None:
    assert coverage(1_000 * CREDIT, [_offer()]) == [Leg("prg_a", 300 * CREDIT)]
    # 30% of 7 is 2.1: floored to 2, never rounded up.
    assert coverage(7, [_offer()]) == [Leg("prg_a", 2)]
    assert coverage(3, [_offer()]) == []  # 0.9 floors to nothing: no leg of 0
    assert coverage(10, [_offer(share_bps=10_000)]) == [Leg("prg_a", 10)]
    assert coverage(10**15, [_offer(share_bps=1)]) == [Leg("prg_a", 10**11)]


@pytest.mark.parametrize(
    ("budget_left", "cap_left", "cost", "expected"),
    [
        (50, None, 1_000, 50),  # the budget limits
        (10**15, 40, 1_000, 40),  # the cap limits
        (20, 40, 1_000, 20),  # the smaller of the two
        (10**15, 10**15, 1_000, 300),  # the share limits
        (10**15, 0, 1_000, None),  # the cap is used up: no leg
        (0, None, 1_000, None),  # the budget is used up: no leg
        (-5, -5, 1_000, None),  # never a negative leg
    ],
)
def test_coverage_never_exceeds_budget_cap_or_share(
    budget_left: int, cap_left: int | None, cost: int, expected: int | None
) -> None:
    legs = coverage(cost, [_offer(budget_left=budget_left, cap_left=cap_left)])
    assert legs == ([] if expected is None else [Leg("prg_a", expected)])


def test_coverage_never_exceeds_the_cost() -> None:
    offers = [
        _offer("prg_a", share_bps=10_000, stackable=True),
        _offer("prg_b", share_bps=10_000, stackable=True),
        _offer("prg_c", share_bps=5_000, stackable=True),
    ]
    legs = coverage(1_000, offers)
    assert legs == [Leg("prg_a", 1_000)]
    assert coverage(1_000, offers[1:]) == [Leg("prg_b", 1_000)]


def test_a_program_that_does_not_stack_pays_alone() -> None:
    offers = [
        _offer("prg_a", share_bps=3_000, stackable=False),
        _offer("prg_b", share_bps=5_000, stackable=True),
    ]
    assert coverage(1_000, offers) == [Leg("prg_a", 300)]
    # A later program that does not stack never joins a stack already paying.
    offers = [
        _offer("prg_a", share_bps=3_000, stackable=True),
        _offer("prg_b", share_bps=5_000, stackable=False),
        _offer("prg_c", share_bps=1_000, stackable=True),
    ]
    assert coverage(1_000, offers) == [Leg("prg_a", 300), Leg("prg_c", 100)]


def test_stackable_programs_add_up_in_order_until_the_cost_is_covered() -> None:
    offers = [
        _offer("prg_a", share_bps=5_000, stackable=True),
        _offer("prg_b", share_bps=3_000, stackable=True),
        _offer("prg_c", share_bps=4_000, stackable=True),  # only 200 of the cost is left
        _offer("prg_d", share_bps=4_000, stackable=True),  # nothing is left
    ]
    legs = coverage(1_000, offers)
    assert legs == [Leg("prg_a", 500), Leg("prg_b", 300), Leg("prg_c", 200)]
    assert sum(leg.amount for leg in legs) == 1_000


@pytest.mark.parametrize(
    "skipped",
    [
        _offer("prg_a", share_bps=0),
        _offer("prg_a", budget_left=0),
        _offer("prg_a", cap_left=0),
        _offer("prg_a", share_bps=0, stackable=True),
    ],
    ids=["zero-share", "no-budget", "no-cap", "zero-share-stackable"],
)
def test_a_program_that_would_pay_nothing_is_skipped(skipped: Offer) -> None:
    following = _offer("prg_b", share_bps=2_000, stackable=False)
    assert coverage(1_000, [skipped, following]) == [Leg("prg_b", 200)]


def test_coverage_of_nothing_is_nothing() -> None:
    assert coverage(1_000, []) == []
    assert coverage(0, [_offer()]) == []


def test_coverage_is_exact_on_huge_amounts() -> None:
    # Floats would lose this: 10**15 * 3333 / 10_000 is not exact in a double.
    cost = 10**15 - 1
    legs = coverage(cost, [_offer(share_bps=3_333, budget_left=10**18)])
    assert legs == [Leg("prg_a", cost * 3_333 // 10_000)]
    assert all(type(leg.amount) is int for leg in legs)


def test_coverage_is_all_ints_and_bounded_everywhere() -> None:
    shares = [0, 1, 2_500, 3_333, 9_999, 10_000]
    for cost in [1, 2, 3, 7, 99, 1_000, 12_345_678, 10**15]:
        for first in shares:
            for second in shares:
                for stack in (True, False):
                    offers = [
                        _offer("prg_a", share_bps=first, stackable=stack, budget_left=cost // 3),
                        _offer("prg_b", share_bps=second, stackable=True, cap_left=cost // 2),
                    ]
                    legs = coverage(cost, offers)
                    total = sum(leg.amount for leg in legs)
                    assert 0 <= total <= cost
                    assert all(type(leg.amount) is int and leg.amount > 0 for leg in legs)
                    limits = {"prg_a": (first, cost // 3), "prg_b": (second, cost // 2)}
                    for leg in legs:
                        share, limit = limits[leg.program_id]
                        assert leg.amount <= cost * share // 10_000
                        assert leg.amount <= limit


def test_pay_order_is_stack_order_then_id() -> None:
    programs = [
        _program("prg_c", stack_order=1),
        _program("prg_b", stack_order=5),
        _program("prg_a", stack_order=5),
        _program("prg_d", stack_order=0),
    ]
    assert [p.id for p in domain.pay_order(programs)] == ["prg_d", "prg_c", "prg_a", "prg_b"]


# -- settling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "cost", "actual", "expected"),
    [
        (300, 1_000, 1_000, 300),  # the whole cost: the whole leg
        (300, 1_000, 500, 150),  # half the cost: half the leg
        (300, 1_000, 0, 0),
        (300, 1_000, 1, 0),  # 0.3: floored
        (1, 3, 2, 0),  # 0.67: floored
        (2, 3, 2, 1),
        (300, 1_000, 5_000, 300),  # never above the leg, even if asked
        (300, 0, 0, 0),  # cost 0: no division by zero
        (10**15, 10**15, 10**15 - 1, 10**15 - 1),
    ],
)
def test_settled_share_is_proportional_floored_and_bounded(
    amount: int, cost: int, actual: int, expected: int
) -> None:
    got = settled_share(amount, cost, actual)
    assert got == expected
    assert type(got) is int


# -- periods and windows -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "when", "expected"),
    [
        (pb.CAP_PERIOD_MONTH, datetime(2026, 11, 30, 23, 59, tzinfo=UTC), "2026-11"),
        (pb.CAP_PERIOD_MONTH, datetime(2026, 1, 1, tzinfo=UTC), "2026-01"),
        (pb.CAP_PERIOD_MONTH, datetime(987, 3, 1, tzinfo=UTC), "0987-03"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 11, 15, tzinfo=UTC), "2026-Q4"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 10, 1, tzinfo=UTC), "2026-Q4"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 9, 30, tzinfo=UTC), "2026-Q3"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 4, 1, tzinfo=UTC), "2026-Q2"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 3, 31, tzinfo=UTC), "2026-Q1"),
        (pb.CAP_PERIOD_QUARTER, datetime(2026, 1, 1, tzinfo=UTC), "2026-Q1"),
        (pb.CAP_PERIOD_YEAR, datetime(2026, 12, 31, tzinfo=UTC), "2026"),
        (pb.CAP_PERIOD_PROGRAM, datetime(2026, 11, 15, tzinfo=UTC), "program"),
        (pb.CAP_PERIOD_UNSPECIFIED, datetime(2026, 11, 15, tzinfo=UTC), "program"),
    ],
)
def test_period_of_names_the_cap_window(period: int, when: datetime, expected: str) -> None:
    assert domain.period_of(_program(cap_period=period), when) == expected


def test_every_period_fits_its_column() -> None:
    for period in pb.CapPeriod.values():
        assert len(domain.period_of(_program(cap_period=period), NOW)) <= 20


def test_is_active_within_the_window_only() -> None:
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    windowed = _program(valid_from=_stamp(start), valid_until=_stamp(end))
    assert domain.is_active(windowed, NOW)
    assert domain.is_active(windowed, start)  # from is inclusive
    assert not domain.is_active(windowed, end)  # until is exclusive
    assert not domain.is_active(windowed, start - timedelta(microseconds=1))
    assert not domain.is_active(windowed, end + timedelta(days=365))
    assert domain.is_active(_program(), NOW)  # no window: always
    assert domain.is_active(_program(valid_from=_stamp(start)), NOW + timedelta(days=10_000))
    assert not domain.is_active(_program(valid_from=_stamp(end)), NOW)
    assert domain.is_active(_program(valid_until=_stamp(end)), datetime(1970, 1, 2, tzinfo=UTC))
    assert not domain.is_active(_program(valid_until=_stamp(start)), NOW)


# -- checking programs ------------------------------------------------------------------------


def _violations(program: pb.Program) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as error:
        domain.check_program(program)
    return {v.field: v.description for v in error.value.violations}


def test_a_valid_program_passes() -> None:
    domain.check_program(_program())
    domain.check_program(
        _program(
            kind=pb.PROGRAM_KIND_GRANT,
            covers=[pb.COST_KIND_COMPUTE, pb.COST_KIND_MODEL_TOKENS, pb.COST_KIND_DATASET],
            per_org_cap=5,
            cap_period=pb.CAP_PERIOD_YEAR,
            valid_from=_stamp(NOW),
            valid_until=_stamp(NOW + timedelta(seconds=1)),
        )
    )
    domain.check_program(
        _program(kind=pb.PROGRAM_KIND_FINANCING_REFERRAL, covers=[], share_bps=0, budget=0)
    )


@pytest.mark.parametrize(
    ("kind", "covers", "bad"),
    [
        (pb.PROGRAM_KIND_COMPUTE_VOUCHER, [pb.COST_KIND_DATASET], [0]),
        (pb.PROGRAM_KIND_MODEL_VOUCHER, [pb.COST_KIND_MODEL_TOKENS, pb.COST_KIND_COMPUTE], [1]),
        (pb.PROGRAM_KIND_CORPUS_VOUCHER, [pb.COST_KIND_COMPUTE, pb.COST_KIND_MODEL_TOKENS], [0, 1]),
        (pb.PROGRAM_KIND_OPEN_DATA_ACCESS, [pb.COST_KIND_MODEL_TOKENS], [0]),
    ],
)
def test_covers_must_fit_the_kind(kind: int, covers: list[int], bad: list[int]) -> None:
    found = _violations(_program(kind=kind, covers=covers))
    assert set(found) == {f"program.covers[{index}]" for index in bad}


def test_a_paying_program_must_name_what_it_pays_for() -> None:
    assert set(_violations(_program(covers=[]))) == {"program.covers"}


@pytest.mark.parametrize(
    "fields",
    [{"budget": 1}, {"share_bps": 1}, {"per_org_cap": 1, "cap_period": pb.CAP_PERIOD_MONTH}],
    ids=["budget", "share", "cap"],
)
def test_a_referral_pays_nothing(fields: dict[str, Any]) -> None:
    values: dict[str, Any] = {"covers": [], "share_bps": 0, "budget": 0, **fields}
    program = _program(kind=pb.PROGRAM_KIND_FINANCING_REFERRAL, **values)
    assert set(_violations(program)) == {"program.budget"}


def test_a_referral_covers_nothing() -> None:
    program = _program(
        kind=pb.PROGRAM_KIND_FINANCING_REFERRAL,
        covers=[pb.COST_KIND_COMPUTE],
        share_bps=0,
        budget=0,
    )
    assert set(_violations(program)) == {"program.covers[0]"}


def test_a_cap_needs_its_period() -> None:
    assert set(_violations(_program(per_org_cap=5))) == {"program.cap_period"}


@pytest.mark.parametrize("gap", [timedelta(0), timedelta(seconds=-1), timedelta(days=-400)])
def test_valid_until_must_follow_valid_from(gap: timedelta) -> None:
    program = _program(valid_from=_stamp(NOW), valid_until=_stamp(NOW + gap))
    assert set(_violations(program)) == {"program.valid_until"}


def test_a_slug_is_required() -> None:
    assert set(_violations(_program(slug=""))) == {"program.slug"}


def test_every_violation_is_reported_at_once() -> None:
    program = _program(
        kind=pb.PROGRAM_KIND_FINANCING_REFERRAL,
        slug="",
        covers=[pb.COST_KIND_COMPUTE, pb.COST_KIND_DATASET],
        share_bps=100,
        per_org_cap=5,
        valid_from=_stamp(NOW),
        valid_until=_stamp(NOW - timedelta(days=1)),
    )
    found = _violations(program)
    assert set(found) == {
        "program.covers[0]",
        "program.covers[1]",
        "program.budget",
        "program.cap_period",
        "program.valid_until",
        "program.slug",
    }
    assert all(found.values())


# -- reservations ----------------------------------------------------------------------------


def test_check_open_passes_a_reserved_reservation() -> None:
    domain.check_open(pb.RESERVATION_STATE_RESERVED)


@pytest.mark.parametrize(
    ("state", "word"),
    [
        (pb.RESERVATION_STATE_SETTLED, "settled"),
        (pb.RESERVATION_STATE_RELEASED, "released"),
        (pb.RESERVATION_STATE_EXPIRED, "expired"),
    ],
)
def test_check_open_refuses_a_closed_reservation(state: int, word: str) -> None:
    with pytest.raises(FailedPrecondition) as error:
        domain.check_open(state)
    [violation] = error.value.violations
    assert (violation.type, violation.subject) == ("STATE", "reservation.state")
    assert word in violation.description


def test_check_actual_cost_allows_up_to_the_reserved_cost() -> None:
    domain.check_actual_cost(0, 1_000)
    domain.check_actual_cost(1_000, 1_000)
    with pytest.raises(FailedPrecondition) as error:
        domain.check_actual_cost(1_001, 1_000)
    [violation] = error.value.violations
    assert (violation.type, violation.subject) == ("SETTLE_ABOVE_RESERVED", "actual_cost")
    assert "1001" in violation.description
    assert "1000" in violation.description


# -- eligibility -------------------------------------------------------------------------------


def _always(_: pb.OrganizationFacts) -> bool:
    return True


def _never(_: pb.OrganizationFacts) -> bool:
    return False


def _raising(_: pb.OrganizationFacts) -> bool:
    raise RuntimeError("divide by zero " + "x" * 1_000)


FACTS = pb.OrganizationFacts(org_id="org_a", country="KE", verified=True)


@pytest.mark.parametrize(
    ("program", "facts", "admits", "eligible", "reason"),
    [
        (_program(), FACTS, _always, True, "eligible"),
        (_program(), pb.OrganizationFacts(suspended=True), _always, False, "suspended"),
        (
            _program(valid_from=_stamp(NOW + timedelta(days=1))),
            FACTS,
            _always,
            False,
            "not running",
        ),
        (
            _program(valid_until=_stamp(NOW - timedelta(days=1))),
            FACTS,
            _always,
            False,
            "not running",
        ),
        (_program(), FACTS, _never, False, "does not admit"),
        (_program(), FACTS, _raising, False, "failed: divide by zero"),
        # Suspension decides before anything else, even a failing rule.
        (_program(), pb.OrganizationFacts(suspended=True), _raising, False, "suspended"),
    ],
    ids=["eligible", "suspended", "not-yet", "ended", "rule-false", "rule-raises", "first"],
)
def test_eligible_reason_says_why(
    program: pb.Program,
    facts: pb.OrganizationFacts,
    admits: Callable[[pb.OrganizationFacts], bool],
    eligible: bool,
    reason: str,
) -> None:
    got, why = domain.eligible_reason(program, facts, NOW, admits)
    assert got is eligible
    assert reason in why
    assert len(why) < 300  # a raising rule's message is clipped


@pytest.mark.parametrize(
    ("country", "region"),
    [
        ("KE", "africa"),
        ("NG", "africa"),
        ("BR", "americas"),
        ("US", "americas"),
        ("CN", "asia"),
        ("DE", "europe"),
        ("AU", "oceania"),
        ("ke", "africa"),
        ("", ""),
        ("XX", ""),
        ("ZZ", ""),
        ("KEN", ""),
    ],
)
def test_region_of(country: str, region: str) -> None:
    assert domain.region_of(country) == region
