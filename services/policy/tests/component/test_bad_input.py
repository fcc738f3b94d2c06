"""Missing, malformed, oversized and hostile input, for every policy RPC.

Each case must be refused with the right status, naming the offending field
(`google.rpc.BadRequest`) or the unmet rule (`google.rpc.PreconditionFailure`);
must leave every program, budget, reservation and cap counter as it was; and
must leave the service serving. Cases run in a table against one policy per
test: each test builds the same small world (`World`) first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from policy_harness import CREDIT, Org, Policy, program

from aisuper.platform.grpc_client import bearer
from aisuper.platform.grpc_errors import bad_request_of, precondition_failures_of
from aisuper.platform.testing import eventually, unique
from aisuper.policy.v1 import policy_pb2 as pb

Metadata = tuple[tuple[str, str], ...]
Code = grpc.StatusCode

SERVICE = pb.DESCRIPTOR.services_by_name["PolicyService"]
#: The programs and ledger RPCs these tables cover (governance has its own tests).
RPCS = frozenset(
    {
        "CreateProgram",
        "UpdateProgram",
        "GetProgram",
        "ListPrograms",
        "CheckEligibility",
        "ReserveSubsidy",
        "SettleSubsidy",
        "ReleaseSubsidy",
        "GetReservation",
        "GetBudget",
        "GetOrganizationUsage",
    }
)
MISSING_PROGRAM = "prg_" + "0" * 26
MISSING_RESERVATION = "rsv_" + "0" * 26
MISSING_ORG = "org_" + "0" * 26
TEN_KIB = 10 * 1024
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_COST = 10**15
HELD_COST = 1_000 * CREDIT


# -- the world every test starts from ------------------------------------------------


@dataclass
class World:
    acme: Org  # holds every reservation below
    globex: Org  # a bystander
    operator: Org
    voucher: pb.Program  # the harness's compute voucher: 30%, capped, 100,000 credits
    broke: pb.Program  # a corpus voucher with no budget at all
    held: pb.Reservation  # acme's open reservation on the voucher
    held_request: pb.ReserveSubsidyRequest  # what made `held`
    settled: pb.Reservation  # acme's, settled
    released: pb.Reservation  # acme's, released

    @property
    def reservations(self) -> list[pb.Reservation]:
        return [self.held, self.settled, self.released]


async def _world(policy: Policy) -> World:
    stub = policy.stub
    voucher = await policy.create(program())
    broke = await policy.create(
        program(
            kind=pb.PROGRAM_KIND_CORPUS_VOUCHER,
            covers=[pb.COST_KIND_DATASET],
            budget=0,
            per_org_cap=0,
            cap_period=pb.CAP_PERIOD_UNSPECIFIED,
        )
    )
    acme = await policy.org("Acme Robotics", country="KE")
    globex = await policy.org("Globex Corporation", country="DE")
    held_request = pb.ReserveSubsidyRequest(
        kind=pb.COST_KIND_COMPUTE, cost=HELD_COST, reference="alloc/held", request_id=unique("rq")
    )
    held = (await stub.ReserveSubsidy(held_request, metadata=acme.auth)).reservation
    settled = await policy.reserve(acme, 100 * CREDIT)
    settled = (
        await stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=settled.id, actual_cost=100 * CREDIT),
            metadata=acme.auth,
        )
    ).reservation
    released = await policy.reserve(acme, 100 * CREDIT)
    released = (
        await stub.ReleaseSubsidy(
            pb.ReleaseSubsidyRequest(reservation_id=released.id), metadata=acme.auth
        )
    ).reservation
    assert held.covered == 300 * CREDIT
    assert settled.settled == 30 * CREDIT
    return World(
        acme=acme,
        globex=globex,
        operator=policy.operator,
        voucher=voucher,
        broke=broke,
        held=held,
        held_request=held_request,
        settled=settled,
        released=released,
    )


async def _snapshot(policy: Policy, world: World) -> dict[str, Message]:
    """Every program, budget, known reservation and org usage, read as the operator."""
    operator = world.operator.auth
    stub = policy.stub
    seen: dict[str, Message] = {}
    listed = await stub.ListPrograms(pb.ListProgramsRequest(page_size=1000), metadata=operator)
    assert not listed.next_page_token
    for found in listed.programs:
        seen[found.id] = found
        seen[f"budget:{found.id}"] = await policy.budget(found.id)
    for reservation in world.reservations:
        got = await stub.GetReservation(
            pb.GetReservationRequest(reservation_id=reservation.id), metadata=operator
        )
        seen[reservation.id] = got.reservation
    for org in (world.acme, world.globex):
        seen[f"usage:{org.id}"] = await stub.GetOrganizationUsage(
            pb.GetOrganizationUsageRequest(org_id=org.id), metadata=operator
        )
    return seen


def _changes(before: dict[str, Message], after: dict[str, Message]) -> list[str]:
    found = [f"added {key}" for key in after if key not in before]
    found += [f"removed {key}" for key in before if key not in after]
    found += [
        f"changed {key}: {after[key]}" for key in after if before.get(key, after[key]) != after[key]
    ]
    return found


async def _still_serving(policy: Policy, world: World) -> None:
    """Reads answer as before, and a valid reserve and release work."""
    got = await policy.stub.GetProgram(
        pb.GetProgramRequest(slug=world.voucher.slug), metadata=world.globex.auth
    )
    assert got.program == world.voucher
    fresh = await policy.reserve(world.globex, 10 * CREDIT)
    assert fresh.covered == 3 * CREDIT
    released = await policy.stub.ReleaseSubsidy(
        pb.ReleaseSubsidyRequest(reservation_id=fresh.id), metadata=world.globex.auth
    )
    assert released.reservation.state == pb.RESERVATION_STATE_RELEASED


# -- cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rpc: str
    request: Callable[[World], Message]
    code: grpc.StatusCode = Code.INVALID_ARGUMENT
    #: BadRequest fields (INVALID_ARGUMENT) or PreconditionFailure subjects
    #: (FAILED_PRECONDITION) the refusal must name, and nothing else; `x` also
    #: matches `x[3]`.
    names: tuple[str, ...] = ()
    #: Whose credential goes with the call (see `_metadata`).
    caller: str = "acme"


CREDENTIALS: dict[str, Metadata] = {
    "none": (),
    "garbage-word": bearer("garbage"),
    "garbage-api-key": bearer("ais_0000000000000000_notakeyatall"),
    "basic-scheme": (("authorization", "Basic dXNlcjpwYXNz"),),
}


def _metadata(world: World, caller: str) -> Metadata:
    if caller in CREDENTIALS:
        return CREDENTIALS[caller]
    keys = {"acme": world.acme, "globex": world.globex, "operator": world.operator}
    return keys[caller].auth


def _fixed(message: Message) -> Callable[[World], Message]:
    return lambda _: message


def _with(value: pb.Program, **fields: Any) -> pb.Program:
    """`value` with `fields` set (a list replaces the repeated field)."""
    for name, field in fields.items():
        if isinstance(field, list):
            del getattr(value, name)[:]
            getattr(value, name).extend(field)
        else:
            setattr(value, name, field)
    return value


def _create(**fields: Any) -> Callable[[World], Message]:
    """A CreateProgramRequest for the harness's program with `fields` set."""
    request_id = str(fields.pop("request_id", ""))

    def build(_: World) -> Message:
        return pb.CreateProgramRequest(program=_with(program(), **fields), request_id=request_id)

    return build


def _update(expected_revision: int = 0, **fields: Any) -> Callable[[World], Message]:
    """An UpdateProgramRequest for the voucher with `fields` changed."""
    program_id = fields.pop("program_id", None)

    def build(world: World) -> Message:
        changed = pb.Program()
        changed.CopyFrom(world.voucher)
        _with(changed, **fields)
        return pb.UpdateProgramRequest(
            program_id=world.voucher.id if program_id is None else program_id,
            program=changed,
            expected_revision=expected_revision,
        )

    return build


def _reserve(**fields: Any) -> Callable[[World], Message]:
    def build(_: World) -> Message:
        values: dict[str, Any] = {
            "kind": pb.COST_KIND_COMPUTE,
            "cost": 10 * CREDIT,
            "reference": unique("alloc"),
            "request_id": unique("rq"),
        }
        values.update(fields)
        return pb.ReserveSubsidyRequest(**values)

    return build


def _on(message: type[Message], target: str, **fields: Any) -> Callable[[World], Message]:
    """A request about one reservation of the world (`target` names it)."""

    def build(world: World) -> Message:
        return message(reservation_id=getattr(world, target).id, **fields)

    return build


BAD_PROGRAM_IDS = {
    "empty": "",
    "no-prefix": "0" * 26,
    "upper-prefix": "PRG_" + "0" * 26,
    "upper-ulid": "prg_" + "A" * 26,
    "too-long": MISSING_PROGRAM + "0",
    "too-short": MISSING_PROGRAM[:-1],
    "sql": "prg_' OR 1=1 --",
    "reservation-id": MISSING_RESERVATION,
    "nul": MISSING_PROGRAM[:-1] + "\x00",
    "newline": MISSING_PROGRAM + "\n",
    "ten-kib": "prg_" + "0" * TEN_KIB,
}
BAD_RESERVATION_IDS = {
    "empty": "",
    "no-prefix": "0" * 26,
    "upper": "RSV_" + "0" * 26,
    "program-id": MISSING_PROGRAM,
    "sql": "rsv_' OR '1'='1",
    "nul": MISSING_RESERVATION[:-1] + "\x00",
    "ten-kib": "rsv_" + "0" * TEN_KIB,
}
BAD_ORG_IDS = {
    "no-prefix": "0" * 26,
    "upper": "ORG_" + "0" * 26,
    "program-id": MISSING_PROGRAM,
    "sql": "org_' OR 1=1 --",
    "too-long": MISSING_ORG + "0",
    "nul": MISSING_ORG[:-1] + "\x00",
}


def _program_cases() -> list[Case]:
    over_8_kib = " || ".join(["org.verified"] * 520)
    assert len(over_8_kib.encode()) > 8192
    cases = [
        Case("no-program", "CreateProgram", _fixed(pb.CreateProgramRequest()), names=("program",)),
        Case(
            "cel-syntax",
            "CreateProgram",
            _create(eligibility='org.country == "KE" &&'),
            names=("program.eligibility",),
        ),
        Case(
            "cel-type",
            "CreateProgram",
            _create(eligibility="org.country + 1 == 2"),
            names=("program.eligibility",),
        ),
        Case(
            "cel-unknown-field",
            "CreateProgram",
            _create(eligibility='org.countr == "KE"'),
            names=("program.eligibility",),
        ),
        Case(
            "cel-unknown-variable",
            "CreateProgram",
            _create(eligibility="user.admin"),
            names=("program.eligibility",),
        ),
        Case(
            "cel-not-bool",
            "CreateProgram",
            _create(eligibility="org.age_days"),
            names=("program.eligibility",),
        ),
        Case(
            "cel-nested",
            "CreateProgram",
            _create(eligibility="(" * 1000 + "true" + ")" * 1000),
            names=("program.eligibility",),
        ),
        Case(
            "cel-over-8-kib",
            "CreateProgram",
            _create(eligibility=over_8_kib),
            names=("program.eligibility",),
        ),
        Case(
            "share-10001", "CreateProgram", _create(share_bps=10_001), names=("program.share_bps",)
        ),
        Case(
            "share-negative", "CreateProgram", _create(share_bps=-1), names=("program.share_bps",)
        ),
        Case("budget-negative", "CreateProgram", _create(budget=-1), names=("program.budget",)),
        Case(
            "budget-int64-min",
            "CreateProgram",
            _create(budget=INT64_MIN),
            names=("program.budget",),
        ),
        Case(
            "budget-int64-max",
            "CreateProgram",
            _create(budget=INT64_MAX),
            names=("program.budget",),
        ),
        Case(
            "cap-negative", "CreateProgram", _create(per_org_cap=-1), names=("program.per_org_cap",)
        ),
        Case(
            "cap-int64-max",
            "CreateProgram",
            _create(per_org_cap=INT64_MAX),
            names=("program.per_org_cap",),
        ),
        Case(
            "cap-without-period",
            "CreateProgram",
            _create(cap_period=pb.CAP_PERIOD_UNSPECIFIED),
            names=("program.cap_period",),
        ),
        Case(
            "cap-period-99", "CreateProgram", _create(cap_period=99), names=("program.cap_period",)
        ),
        Case(
            "covers-not-the-kind",
            "CreateProgram",
            _create(covers=[pb.COST_KIND_DATASET]),
            names=("program.covers",),
        ),
        Case(
            "covers-unspecified",
            "CreateProgram",
            _create(covers=[pb.COST_KIND_UNSPECIFIED]),
            names=("program.covers",),
        ),
        Case(
            "covers-twice",
            "CreateProgram",
            _create(covers=[pb.COST_KIND_COMPUTE, pb.COST_KIND_COMPUTE]),
            names=("program.covers",),
        ),
        Case(
            "referral-paying",
            "CreateProgram",
            _create(kind=pb.PROGRAM_KIND_FINANCING_REFERRAL, covers=[], per_org_cap=0),
            names=("program.budget",),
        ),
        Case("kind-missing", "CreateProgram", _create(kind=0), names=("program.kind",)),
        Case("kind-99", "CreateProgram", _create(kind=99), names=("program.kind",)),
        Case("title-missing", "CreateProgram", _create(title=""), names=("program.title",)),
        Case("title-newline", "CreateProgram", _create(title="a\nb"), names=("program.title",)),
        Case("slug-missing", "CreateProgram", _create(slug=""), names=("program.slug",)),
        Case("slug-upper", "CreateProgram", _create(slug="Upper"), names=("program.slug",)),
        Case("slug-space", "CreateProgram", _create(slug="a b"), names=("program.slug",)),
        Case("slug-nul", "CreateProgram", _create(slug="a\x00b"), names=("program.slug",)),
        Case("slug-101", "CreateProgram", _create(slug="a" * 101), names=("program.slug",)),
        Case(
            "description-nul",
            "CreateProgram",
            _create(description="a\x00b"),
            names=("program.description",),
        ),
        Case(
            "stack-order-negative",
            "CreateProgram",
            _create(stack_order=-1),
            names=("program.stack_order",),
        ),
        Case(
            "request-id-bad",
            "CreateProgram",
            _create(request_id="a b"),
            names=("request_id",),
        ),
        Case(
            "duplicate-slug",
            "CreateProgram",
            lambda world: pb.CreateProgramRequest(program=program(slug=world.voucher.slug)),
            code=Code.ALREADY_EXISTS,
        ),
        Case("not-operator", "CreateProgram", _create(), code=Code.PERMISSION_DENIED),
        Case("no-credential", "CreateProgram", _create(), code=Code.UNAUTHENTICATED, caller="none"),
        Case(
            "garbage-credential",
            "CreateProgram",
            _create(),
            code=Code.UNAUTHENTICATED,
            caller="garbage-api-key",
        ),
        # UpdateProgram
        Case(
            "update-budget-below-used",
            "UpdateProgram",
            _update(budget=CREDIT),
            code=Code.FAILED_PRECONDITION,
            names=("program.budget",),
        ),
        Case(
            "update-budget-zero",
            "UpdateProgram",
            _update(budget=0),
            code=Code.FAILED_PRECONDITION,
            names=("program.budget",),
        ),
        Case("update-stale-revision", "UpdateProgram", _update(7, title="X"), code=Code.ABORTED),
        Case(
            "update-negative-revision", "UpdateProgram", _update(-1), names=("expected_revision",)
        ),
        Case(
            "update-bad-cel",
            "UpdateProgram",
            _update(eligibility="org.countr"),
            names=("program.eligibility",),
        ),
        Case(
            "update-share", "UpdateProgram", _update(share_bps=10_001), names=("program.share_bps",)
        ),
        Case(
            "update-covers",
            "UpdateProgram",
            _update(covers=[pb.COST_KIND_MODEL_TOKENS]),
            names=("program.covers",),
        ),
        Case(
            "update-budget-negative", "UpdateProgram", _update(budget=-1), names=("program.budget",)
        ),
        Case(
            "update-no-program",
            "UpdateProgram",
            lambda world: pb.UpdateProgramRequest(program_id=world.voucher.id),
            names=("program",),
        ),
        Case(
            "update-unknown",
            "UpdateProgram",
            _update(program_id=MISSING_PROGRAM),
            code=Code.NOT_FOUND,
        ),
        Case(
            "update-not-operator", "UpdateProgram", _update(title="X"), code=Code.PERMISSION_DENIED
        ),
        Case(
            "update-no-credential",
            "UpdateProgram",
            _update(title="X"),
            code=Code.UNAUTHENTICATED,
            caller="none",
        ),
        # GetProgram, ListPrograms, GetBudget
        Case("get-program-nothing", "GetProgram", _fixed(pb.GetProgramRequest())),
        Case(
            "get-program-unknown",
            "GetProgram",
            _fixed(pb.GetProgramRequest(program_id=MISSING_PROGRAM)),
            code=Code.NOT_FOUND,
        ),
        Case(
            "get-program-unknown-slug",
            "GetProgram",
            _fixed(pb.GetProgramRequest(slug="no-such-program")),
            code=Code.NOT_FOUND,
        ),
        Case(
            "get-program-bad-slug",
            "GetProgram",
            _fixed(pb.GetProgramRequest(slug="No Such")),
            names=("slug",),
        ),
        Case(
            "list-page-size",
            "ListPrograms",
            _fixed(pb.ListProgramsRequest(page_size=1001)),
            names=("page_size",),
        ),
        Case(
            "list-page-size-negative",
            "ListPrograms",
            _fixed(pb.ListProgramsRequest(page_size=-1)),
            names=("page_size",),
        ),
        Case(
            "list-kind-99", "ListPrograms", _fixed(pb.ListProgramsRequest(kind=99)), names=("kind",)
        ),
        Case(
            "list-page-token",
            "ListPrograms",
            _fixed(pb.ListProgramsRequest(page_token="!!!")),
            names=("page_token",),
        ),
        Case(
            "list-page-token-long",
            "ListPrograms",
            _fixed(pb.ListProgramsRequest(page_token="a" * 513)),
            names=("page_token",),
        ),
        Case(
            "budget-unknown",
            "GetBudget",
            _fixed(pb.GetBudgetRequest(program_id=MISSING_PROGRAM)),
            code=Code.NOT_FOUND,
        ),
    ]
    for label, bad in BAD_PROGRAM_IDS.items():
        cases += [
            Case(
                f"update-id-{label}",
                "UpdateProgram",
                _update(program_id=bad),
                names=("program_id",),
            ),
            Case(
                f"get-program-id-{label}",
                "GetProgram",
                _fixed(pb.GetProgramRequest(program_id=bad)),
                names=("program_id",),
            ),
            Case(
                f"budget-id-{label}",
                "GetBudget",
                _fixed(pb.GetBudgetRequest(program_id=bad)),
                names=("program_id",),
            ),
        ]
    return cases


def _ledger_cases() -> list[Case]:
    cases = [
        Case("cost-zero", "ReserveSubsidy", _reserve(cost=0), names=("cost",)),
        Case("cost-negative", "ReserveSubsidy", _reserve(cost=-1), names=("cost",)),
        Case("cost-int64-min", "ReserveSubsidy", _reserve(cost=INT64_MIN), names=("cost",)),
        Case("cost-over-max", "ReserveSubsidy", _reserve(cost=MAX_COST + 1), names=("cost",)),
        Case("cost-int64-max", "ReserveSubsidy", _reserve(cost=INT64_MAX), names=("cost",)),
        Case("reserve-kind-missing", "ReserveSubsidy", _reserve(kind=0), names=("kind",)),
        Case("reserve-kind-99", "ReserveSubsidy", _reserve(kind=99), names=("kind",)),
        Case("reserve-kind-negative", "ReserveSubsidy", _reserve(kind=-1), names=("kind",)),
        Case(
            "request-id-missing", "ReserveSubsidy", _reserve(request_id=""), names=("request_id",)
        ),
        Case(
            "request-id-space", "ReserveSubsidy", _reserve(request_id="a b"), names=("request_id",)
        ),
        Case(
            "request-id-129",
            "ReserveSubsidy",
            _reserve(request_id="r" * 129),
            names=("request_id",),
        ),
        Case("reference-missing", "ReserveSubsidy", _reserve(reference=""), names=("reference",)),
        Case("reference-space", "ReserveSubsidy", _reserve(reference="a b"), names=("reference",)),
        Case("reference-nul", "ReserveSubsidy", _reserve(reference="a\x00"), names=("reference",)),
        Case(
            "reference-newline", "ReserveSubsidy", _reserve(reference="a\n"), names=("reference",)
        ),
        Case("reference-quote", "ReserveSubsidy", _reserve(reference="a'--"), names=("reference",)),
        Case(
            "reference-201", "ReserveSubsidy", _reserve(reference="r" * 201), names=("reference",)
        ),
        Case("ttl-zero", "ReserveSubsidy", _reserve(ttl=Duration()), names=("ttl",)),
        Case(
            "ttl-half-second",
            "ReserveSubsidy",
            _reserve(ttl=Duration(nanos=500_000_000)),
            names=("ttl",),
        ),
        Case("ttl-negative", "ReserveSubsidy", _reserve(ttl=Duration(seconds=-60)), names=("ttl",)),
        Case(
            "ttl-over-31-days",
            "ReserveSubsidy",
            _reserve(ttl=Duration(seconds=31 * 86400 + 1)),
            names=("ttl",),
        ),
        Case(
            "no-eligible-program",
            "ReserveSubsidy",
            _reserve(kind=pb.COST_KIND_MODEL_TOKENS),
            code=Code.FAILED_PRECONDITION,
            names=("kind",),
        ),
        Case(
            "budget-exhausted",
            "ReserveSubsidy",
            _reserve(kind=pb.COST_KIND_DATASET),
            code=Code.RESOURCE_EXHAUSTED,
        ),
        Case(
            "request-id-reused",
            "ReserveSubsidy",
            lambda world: pb.ReserveSubsidyRequest(
                kind=pb.COST_KIND_COMPUTE,
                cost=HELD_COST + 1,
                reference=world.held_request.reference,
                request_id=world.held_request.request_id,
            ),
            names=("request_id",),
        ),
        Case(
            "request-id-reused-other-reference",
            "ReserveSubsidy",
            lambda world: pb.ReserveSubsidyRequest(
                kind=pb.COST_KIND_COMPUTE,
                cost=HELD_COST,
                reference="alloc/other",
                request_id=world.held_request.request_id,
            ),
            names=("request_id",),
        ),
        Case(
            "reserve-unknown-org",
            "ReserveSubsidy",
            _reserve(org_id=MISSING_ORG),
            code=Code.NOT_FOUND,
        ),
        Case(
            "reserve-no-credential",
            "ReserveSubsidy",
            _reserve(),
            code=Code.UNAUTHENTICATED,
            caller="none",
        ),
        # SettleSubsidy and ReleaseSubsidy
        Case(
            "settle-above-cost",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "held", actual_cost=HELD_COST + 1),
            code=Code.FAILED_PRECONDITION,
            names=("actual_cost",),
        ),
        Case(
            "settle-max-cost",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "held", actual_cost=MAX_COST),
            code=Code.FAILED_PRECONDITION,
            names=("actual_cost",),
        ),
        Case(
            "settle-negative",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "held", actual_cost=-1),
            names=("actual_cost",),
        ),
        Case(
            "settle-over-max",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "held", actual_cost=MAX_COST + 1),
            names=("actual_cost",),
        ),
        Case(
            "settle-twice",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "settled", actual_cost=CREDIT),
            code=Code.FAILED_PRECONDITION,
            names=("reservation.state",),
        ),
        Case(
            "settle-after-release",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "released", actual_cost=CREDIT),
            code=Code.FAILED_PRECONDITION,
            names=("reservation.state",),
        ),
        Case(
            "release-twice",
            "ReleaseSubsidy",
            _on(pb.ReleaseSubsidyRequest, "released"),
            code=Code.FAILED_PRECONDITION,
            names=("reservation.state",),
        ),
        Case(
            "release-after-settle",
            "ReleaseSubsidy",
            _on(pb.ReleaseSubsidyRequest, "settled"),
            code=Code.FAILED_PRECONDITION,
            names=("reservation.state",),
        ),
        Case(
            "settle-unknown",
            "SettleSubsidy",
            _fixed(pb.SettleSubsidyRequest(reservation_id=MISSING_RESERVATION)),
            code=Code.NOT_FOUND,
        ),
        Case(
            "release-unknown",
            "ReleaseSubsidy",
            _fixed(pb.ReleaseSubsidyRequest(reservation_id=MISSING_RESERVATION)),
            code=Code.NOT_FOUND,
        ),
        Case(
            "get-reservation-unknown",
            "GetReservation",
            _fixed(pb.GetReservationRequest(reservation_id=MISSING_RESERVATION)),
            code=Code.NOT_FOUND,
        ),
        Case(
            "settle-no-credential",
            "SettleSubsidy",
            _on(pb.SettleSubsidyRequest, "held"),
            code=Code.UNAUTHENTICATED,
            caller="none",
        ),
        Case(
            "release-no-credential",
            "ReleaseSubsidy",
            _on(pb.ReleaseSubsidyRequest, "held"),
            code=Code.UNAUTHENTICATED,
            caller="none",
        ),
        # The organisation-scoped reads
        Case(
            "eligibility-unknown-org",
            "CheckEligibility",
            _fixed(pb.CheckEligibilityRequest(org_id=MISSING_ORG)),
            code=Code.NOT_FOUND,
        ),
        Case(
            "usage-unknown-org",
            "GetOrganizationUsage",
            _fixed(pb.GetOrganizationUsageRequest(org_id=MISSING_ORG)),
            code=Code.NOT_FOUND,
        ),
    ]
    for label, bad in BAD_RESERVATION_IDS.items():
        cases += [
            Case(
                f"settle-id-{label}",
                "SettleSubsidy",
                _fixed(pb.SettleSubsidyRequest(reservation_id=bad)),
                names=("reservation_id",),
            ),
            Case(
                f"release-id-{label}",
                "ReleaseSubsidy",
                _fixed(pb.ReleaseSubsidyRequest(reservation_id=bad)),
                names=("reservation_id",),
            ),
            Case(
                f"get-reservation-id-{label}",
                "GetReservation",
                _fixed(pb.GetReservationRequest(reservation_id=bad)),
                names=("reservation_id",),
            ),
        ]
    for label, bad in BAD_ORG_IDS.items():
        cases += [
            Case(
                f"eligibility-org-{label}",
                "CheckEligibility",
                _fixed(pb.CheckEligibilityRequest(org_id=bad)),
                names=("org_id",),
            ),
            Case(
                f"reserve-org-{label}",
                "ReserveSubsidy",
                _reserve(org_id=bad),
                names=("org_id",),
            ),
            Case(
                f"usage-org-{label}",
                "GetOrganizationUsage",
                _fixed(pb.GetOrganizationUsageRequest(org_id=bad)),
                names=("org_id",),
            ),
        ]
    return cases


def _callers(cases: list[Case]) -> list[Case]:
    """Program writes go as the operator unless the case says otherwise."""
    operator_rpcs = {"CreateProgram", "UpdateProgram"}
    denied = {"not-operator", "update-not-operator"}
    return [
        Case(c.id, c.rpc, c.request, c.code, c.names, "operator")
        if c.rpc in operator_rpcs and c.caller == "acme" and c.id not in denied
        else c
        for c in cases
    ]


PROGRAM_CASES = _callers(_program_cases())
LEDGER_CASES = _ledger_cases()


def _named(names: tuple[str, ...], found: list[str]) -> bool:
    def matches(name: str, field: str) -> bool:
        return field == name or field.startswith((f"{name}[", f"{name}."))

    return all(any(matches(n, f) for f in found) for n in names) and all(
        any(matches(n, f) for n in names) for f in found
    )


async def _run(policy: Policy, world: World, cases: list[Case]) -> list[str]:
    """Each case's refusal checked; the problems found, one line a case."""
    problems: list[str] = []
    for case in cases:
        call = getattr(policy.stub, case.rpc)
        try:
            await call(case.request(world), metadata=_metadata(world, case.caller))
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code != case.code:
                problems.append(
                    f"{case.id}: {code.name} {error.details()}, expected {case.code.name}"
                )
                continue
            if code == Code.INVALID_ARGUMENT:
                found = list(bad_request_of(error))
                if not found or (case.names and not _named(case.names, found)):
                    problems.append(f"{case.id}: names {found}, expected {list(case.names)}")
            elif code == Code.FAILED_PRECONDITION:
                found = list(precondition_failures_of(error))
                if not _named(case.names, found):
                    problems.append(f"{case.id}: names {found}, expected {list(case.names)}")
            if len(error.details() or "") > 2_000:
                problems.append(f"{case.id}: a {len(error.details() or '')}-char message")
        else:
            problems.append(f"{case.id}: accepted")
    return problems


async def test_program_refusals(policy: Policy) -> None:
    world = await _world(policy)
    before = await _snapshot(policy, world)
    problems = await _run(policy, world, PROGRAM_CASES)
    assert not problems, "\n".join(problems)
    assert _changes(before, await _snapshot(policy, world)) == []
    await _still_serving(policy, world)


async def test_ledger_refusals(policy: Policy) -> None:
    world = await _world(policy)
    before = await _snapshot(policy, world)
    problems = await _run(policy, world, LEDGER_CASES)
    assert not problems, "\n".join(problems)
    assert _changes(before, await _snapshot(policy, world)) == []
    await _still_serving(policy, world)


def test_the_tables_cover_every_program_and_ledger_rpc() -> None:
    covered = {case.rpc for case in PROGRAM_CASES + LEDGER_CASES}
    assert covered == RPCS
    assert {method.name for method in SERVICE.methods} >= RPCS
    ids = [case.id for case in PROGRAM_CASES + LEDGER_CASES]
    assert len(ids) == len(set(ids))


# -- what the tables cannot say ------------------------------------------------------


async def test_the_same_request_id_and_parameters_replay_the_reservation(policy: Policy) -> None:
    world = await _world(policy)
    before = await _snapshot(policy, world)
    for _ in range(3):
        again = await policy.stub.ReserveSubsidy(world.held_request, metadata=world.acme.auth)
        assert again.reservation == world.held
    # The budget and the cap moved once, for the first call only.
    assert _changes(before, await _snapshot(policy, world)) == []
    budget = await policy.budget(world.voucher.id)
    assert budget.reserved == world.held.covered
    # The same key from another organisation is another reservation.
    other = await policy.stub.ReserveSubsidy(world.held_request, metadata=world.globex.auth)
    assert other.reservation.id != world.held.id
    assert other.reservation.org_id == world.globex.id
    assert (await policy.budget(world.voucher.id)).reserved == 2 * world.held.covered


async def test_budget_refusal_leaves_it_unchanged_and_a_fitting_one_works(policy: Policy) -> None:
    world = await _world(policy)
    budget = await policy.budget(world.voucher.id)
    used = budget.reserved + budget.spent
    assert used == 330 * CREDIT
    for refused in (used - 1, 0):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await policy.stub.UpdateProgram(
                _update(budget=refused)(world), metadata=world.operator.auth
            )
        assert error.value.code() == Code.FAILED_PRECONDITION
        assert list(precondition_failures_of(error.value)) == ["program.budget"]
        assert await policy.budget(world.voucher.id) == budget
    # Exactly what is used is fine: nothing is left to reserve.
    updated = await policy.stub.UpdateProgram(
        _update(1, budget=used)(world), metadata=world.operator.auth
    )
    assert updated.program.revision == 2
    after = await policy.budget(world.voucher.id)
    assert (after.total, after.available, after.reserved) == (used, 0, budget.reserved)
    with pytest.raises(grpc.aio.AioRpcError) as exhausted:
        await policy.reserve(world.globex, 10 * CREDIT)
    assert exhausted.value.code() == Code.RESOURCE_EXHAUSTED
    # A stale revision is refused even when the change itself would be fine.
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await policy.stub.UpdateProgram(
            _update(1, budget=used * 10)(world), metadata=world.operator.auth
        )
    assert stale.value.code() == Code.ABORTED
    assert await policy.budget(world.voucher.id) == after


async def test_a_cap_cannot_go_below_what_an_organisation_used(policy: Policy) -> None:
    world = await _world(policy)
    before = await _snapshot(policy, world)
    # acme holds 300 credits and spent 30 of the 1,000-credit monthly cap.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await policy.stub.UpdateProgram(
            _update(per_org_cap=100 * CREDIT)(world), metadata=world.operator.auth
        )
    assert error.value.code() == Code.FAILED_PRECONDITION
    assert list(precondition_failures_of(error.value)) == ["program.per_org_cap"]
    assert _changes(before, await _snapshot(policy, world)) == []


async def test_a_rule_that_fails_when_evaluated_admits_no_one(policy: Policy) -> None:
    failing = await policy.create(
        program(
            kind=pb.PROGRAM_KIND_MODEL_VOUCHER,
            covers=[pb.COST_KIND_MODEL_TOKENS],
            eligibility="org.employee_count / org.age_days > 1",
        )
    )
    acme = await policy.org("Acme Robotics")
    checked = await policy.stub.CheckEligibility(pb.CheckEligibilityRequest(), metadata=acme.auth)
    [found] = [p for p in checked.programs if p.program.id == failing.id]
    assert checked.organization.age_days == 0
    assert not found.eligible
    assert "failed" in found.reason
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await policy.reserve(acme, 10 * CREDIT, kind=pb.COST_KIND_MODEL_TOKENS)
    assert error.value.code() == Code.FAILED_PRECONDITION
    assert (await policy.budget(failing.id)).reserved == 0


async def test_a_reservation_with_a_short_ttl_expires_by_itself(policy: Policy) -> None:
    world = await _world(policy)
    before = await policy.budget(world.voucher.id)
    usage_before = await policy.stub.GetOrganizationUsage(
        pb.GetOrganizationUsageRequest(), metadata=world.globex.auth
    )
    short = await policy.reserve(world.globex, 100 * CREDIT, ttl=Duration(seconds=1))
    assert short.state == pb.RESERVATION_STATE_RESERVED
    assert short.expire_time.ToDatetime() - short.create_time.ToDatetime() == timedelta(seconds=1)
    assert (await policy.budget(world.voucher.id)).available == before.available - short.covered

    async def expired() -> pb.Reservation | None:
        got = await policy.stub.GetReservation(
            pb.GetReservationRequest(reservation_id=short.id), metadata=world.globex.auth
        )
        found = got.reservation
        return found if found.state == pb.RESERVATION_STATE_EXPIRED else None

    # The sweep runs every expiry_sweep_interval_s (5 s by default).
    done = await eventually(expired, within_s=policy.settings.expiry_sweep_interval_s * 3 + 5)
    assert done.settled == 0
    assert done.HasField("close_time")
    assert await policy.budget(world.voucher.id) == before
    usage = await policy.stub.GetOrganizationUsage(
        pb.GetOrganizationUsageRequest(), metadata=world.globex.auth
    )
    assert [u.used for u in usage.usage] == [0] * len(usage.usage)
    assert sum(u.used for u in usage_before.usage) == 0
    # An expired reservation is closed like any other.
    for call in (
        policy.stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=short.id, actual_cost=1),
            metadata=world.globex.auth,
        ),
        policy.stub.ReleaseSubsidy(
            pb.ReleaseSubsidyRequest(reservation_id=short.id), metadata=world.globex.auth
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == Code.FAILED_PRECONDITION
        assert "expired" in precondition_failures_of(error.value)["reservation.state"]
    # The held one, with the default ttl, is still open.
    held = await policy.stub.GetReservation(
        pb.GetReservationRequest(reservation_id=world.held.id), metadata=world.acme.auth
    )
    assert held.reservation.state == pb.RESERVATION_STATE_RESERVED


# -- bytes that are no request at all --------------------------------------------------


async def test_undecodable_request_bodies_are_invalid_argument(policy: Policy) -> None:
    world = await _world(policy)
    before = await _snapshot(policy, world)
    valid = pb.ReserveSubsidyRequest(
        kind=pb.COST_KIND_COMPUTE, cost=CREDIT, reference="XREFX", request_id="rq-1"
    ).SerializeToString()
    bodies = {
        "ff-ff-ff": b"\xff\xff\xff",
        "truncated-length": b"\x0a\xff\xff\xff\xff\x0f",
        "length-past-end": b"\x0a\x10abc",
        "bad-wire-type": b"\x0f",
        "field-zero": b"\x00\x01",
    }
    problems: list[str] = []
    async with grpc.aio.insecure_channel(policy.address) as raw:
        for method in SERVICE.methods:
            if method.name not in RPCS:
                continue
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = raw.unary_unary(
                f"/{SERVICE.full_name}/{method.name}",
                request_serializer=None,
                response_deserializer=None,
            )
            cases = dict(bodies)
            if method.name == "ReserveSubsidy":
                cases["bad-utf8"] = valid.replace(b"XREFX", b"X\xff\xfeFX")
            for label, body in cases.items():
                for caller in ("acme", "operator"):
                    try:
                        await call(body, metadata=_metadata(world, caller))
                    except grpc.aio.AioRpcError as error:
                        if error.code() != Code.INVALID_ARGUMENT or "not a valid message" not in (
                            error.details() or ""
                        ):
                            problems.append(
                                f"{method.name} {label} {caller}: "
                                f"{error.code().name} {error.details()}"
                            )
                    else:
                        problems.append(f"{method.name} {label} {caller}: accepted")
    assert not problems, "\n".join(problems)
    assert _changes(before, await _snapshot(policy, world)) == []
    await _still_serving(policy, world)
