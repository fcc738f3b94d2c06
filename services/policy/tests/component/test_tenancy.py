"""Tenancy and roles in policy: another organisation's eligibility, usage and
reservations answer exactly like missing ones and stay as they were; only the
operator acts for another organisation or writes programs; anonymous callers
get nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status
from policy_harness import CREDIT, Metadata, Org, Policy, program

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer
from aisuper.platform.grpc_errors import bad_request_of
from aisuper.platform.testing import unique
from aisuper.policy.v1 import policy_pb2 as pb

Code = grpc.StatusCode
MISSING_ORG = "org_" + "0" * 26
MISSING_RESERVATION = "rsv_" + "0" * 26


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def _status_of(error: grpc.aio.AioRpcError) -> tuple[Any, ...]:
    """Everything a caller can observe of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return (
        error.code(),
        error.details(),
        status.SerializeToString(deterministic=True) if status else None,
        bad_request_of(error),
    )


@dataclass
class World:
    a: Org
    b: Org
    operator: Org
    voucher: pb.Program
    held: pb.Reservation  # A's, open


async def _world(policy: Policy) -> World:
    voucher = await policy.create(program())
    a = await policy.org("Org A", country="KE")
    b = await policy.org("Org B", country="BR")
    held = await policy.reserve(a, 1_000 * CREDIT)
    return World(a=a, b=b, operator=policy.operator, voucher=voucher, held=held)


async def _state(policy: Policy, world: World) -> list[Message]:
    """A's reservation, A's usage and the voucher's budget, as the operator reads them."""
    operator = world.operator.auth
    held = await policy.stub.GetReservation(
        pb.GetReservationRequest(reservation_id=world.held.id), metadata=operator
    )
    usage = await policy.stub.GetOrganizationUsage(
        pb.GetOrganizationUsageRequest(org_id=world.a.id), metadata=operator
    )
    programs = await policy.stub.ListPrograms(pb.ListProgramsRequest(), metadata=operator)
    return [held, usage, programs, await policy.budget(world.voucher.id)]


async def test_another_orgs_reservation_answers_like_a_missing_one(policy: Policy) -> None:
    world = await _world(policy)
    before = await _state(policy, world)
    stub, b = policy.stub, world.b.auth
    calls: list[Callable[[str], Awaitable[Any]]] = [
        lambda rid: stub.GetReservation(pb.GetReservationRequest(reservation_id=rid), metadata=b),
        lambda rid: stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=rid, actual_cost=1), metadata=b
        ),
        lambda rid: stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=rid, actual_cost=10**15), metadata=b
        ),
        lambda rid: stub.ReleaseSubsidy(pb.ReleaseSubsidyRequest(reservation_id=rid), metadata=b),
    ]
    for call in calls:
        foreign = await _error(call(world.held.id))
        missing = await _error(call(MISSING_RESERVATION))
        assert foreign.code() == Code.NOT_FOUND
        assert _status_of(foreign) == _status_of(missing)
    assert await _state(policy, world) == before
    # A still sees and closes its own.
    got = await policy.stub.GetReservation(
        pb.GetReservationRequest(reservation_id=world.held.id), metadata=world.a.auth
    )
    assert got.reservation == world.held
    settled = await policy.stub.SettleSubsidy(
        pb.SettleSubsidyRequest(reservation_id=world.held.id, actual_cost=CREDIT),
        metadata=world.a.auth,
    )
    assert settled.reservation.state == pb.RESERVATION_STATE_SETTLED


async def test_another_orgs_eligibility_usage_and_subsidy_answer_like_a_missing_org(
    policy: Policy,
) -> None:
    world = await _world(policy)
    before = await _state(policy, world)
    stub, b = policy.stub, world.b.auth

    def reserve(org_id: str) -> Awaitable[Any]:
        return stub.ReserveSubsidy(
            pb.ReserveSubsidyRequest(
                org_id=org_id,
                kind=pb.COST_KIND_COMPUTE,
                cost=10 * CREDIT,
                reference="alloc-1",
                request_id=unique("rq"),
            ),
            metadata=b,
        )

    calls: list[Callable[[str], Awaitable[Any]]] = [
        lambda org_id: stub.CheckEligibility(pb.CheckEligibilityRequest(org_id=org_id), metadata=b),
        lambda org_id: stub.GetOrganizationUsage(
            pb.GetOrganizationUsageRequest(org_id=org_id), metadata=b
        ),
        reserve,
    ]
    for call in calls:
        foreign = await _error(call(world.a.id))
        missing = await _error(call(MISSING_ORG))
        assert foreign.code() == Code.NOT_FOUND
        assert _status_of(foreign) == _status_of(missing)
    assert await _state(policy, world) == before
    # B's own: with its id spelled out or left empty, the same answer.
    for org_id in ("", world.b.id):
        checked = await stub.CheckEligibility(pb.CheckEligibilityRequest(org_id=org_id), metadata=b)
        assert checked.organization.org_id == world.b.id
        assert checked.organization.region == "americas"
        usage = await stub.GetOrganizationUsage(
            pb.GetOrganizationUsageRequest(org_id=org_id), metadata=b
        )
        assert list(usage.usage) == []


async def test_the_operator_acts_for_any_organisation(policy: Policy) -> None:
    world = await _world(policy)
    stub, operator = policy.stub, world.operator.auth
    checked = await stub.CheckEligibility(
        pb.CheckEligibilityRequest(org_id=world.a.id), metadata=operator
    )
    assert checked.organization.org_id == world.a.id
    assert checked.organization.country == "KE"
    [voucher] = [p for p in checked.programs if p.program.id == world.voucher.id]
    assert voucher.eligible
    assert voucher.cap_remaining == world.voucher.per_org_cap - world.held.covered

    usage = await stub.GetOrganizationUsage(
        pb.GetOrganizationUsageRequest(org_id=world.a.id), metadata=operator
    )
    assert [(u.program_id, u.used) for u in usage.usage] == [(world.voucher.id, world.held.covered)]

    made = (
        await stub.ReserveSubsidy(
            pb.ReserveSubsidyRequest(
                org_id=world.a.id,
                kind=pb.COST_KIND_COMPUTE,
                cost=100 * CREDIT,
                reference="alloc-op",
                request_id=unique("rq"),
            ),
            metadata=operator,
        )
    ).reservation
    assert made.org_id == world.a.id
    assert made.covered == 30 * CREDIT
    # A sees what the operator reserved for it; B does not.
    got = await stub.GetReservation(
        pb.GetReservationRequest(reservation_id=made.id), metadata=world.a.auth
    )
    assert got.reservation == made
    hidden = await _error(
        stub.GetReservation(pb.GetReservationRequest(reservation_id=made.id), metadata=world.b.auth)
    )
    assert hidden.code() == Code.NOT_FOUND

    seen = await stub.GetReservation(
        pb.GetReservationRequest(reservation_id=world.held.id), metadata=operator
    )
    assert seen.reservation == world.held
    settled = await stub.SettleSubsidy(
        pb.SettleSubsidyRequest(reservation_id=world.held.id, actual_cost=500 * CREDIT),
        metadata=operator,
    )
    assert settled.reservation.settled == 150 * CREDIT
    released = await stub.ReleaseSubsidy(
        pb.ReleaseSubsidyRequest(reservation_id=made.id), metadata=operator
    )
    assert released.reservation.state == pb.RESERVATION_STATE_RELEASED

    # What A used of its cap is what the operator's calls left: 150 settled.
    usage = await stub.GetOrganizationUsage(pb.GetOrganizationUsageRequest(), metadata=world.a.auth)
    assert [u.used for u in usage.usage] == [150 * CREDIT]
    budget = await policy.budget(world.voucher.id)
    assert (budget.reserved, budget.spent) == (0, 150 * CREDIT)
    # And B's usage is untouched by all of it.
    other = await stub.GetOrganizationUsage(
        pb.GetOrganizationUsageRequest(org_id=world.b.id), metadata=operator
    )
    assert list(other.usage) == []


async def test_only_the_operator_writes_programs(policy: Policy) -> None:
    world = await _world(policy)
    developer = await policy.identity.stub.CreateApiKey(
        identity_pb2.CreateApiKeyRequest(
            org_id=world.a.id, name=unique("key"), role=identity_pb2.ROLE_DEVELOPER
        ),
        metadata=world.a.auth,
    )
    before = await _state(policy, world)
    changed = pb.Program()
    changed.CopyFrom(world.voucher)
    changed.share_bps = 10_000
    changed.budget = 10**18
    for caller in (world.a.auth, world.b.auth, bearer(developer.secret)):
        created = await _error(
            policy.stub.CreateProgram(pb.CreateProgramRequest(program=program()), metadata=caller)
        )
        assert created.code() == Code.PERMISSION_DENIED
        updated = await _error(
            policy.stub.UpdateProgram(
                pb.UpdateProgramRequest(program_id=world.voucher.id, program=changed),
                metadata=caller,
            )
        )
        assert updated.code() == Code.PERMISSION_DENIED
    assert await _state(policy, world) == before
    # Every org reads programs, though.
    for caller in (world.a.auth, world.b.auth, bearer(developer.secret)):
        got = await policy.stub.GetProgram(
            pb.GetProgramRequest(program_id=world.voucher.id), metadata=caller
        )
        assert got.program == world.voucher
        budget = await policy.stub.GetBudget(
            pb.GetBudgetRequest(program_id=world.voucher.id), metadata=caller
        )
        assert budget.budget.total == world.voucher.budget


CREDENTIALS: dict[str, Metadata] = {
    "none": (),
    "garbage-word": bearer("garbage"),
    "garbage-api-key": bearer("ais_0000000000000000_notakeyatall"),
    "garbage-jwt": bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"),
    "basic-scheme": (("authorization", "Basic dXNlcjpwYXNz"),),
    "empty-bearer": (("authorization", "Bearer "),),
}


def _valid_requests(world: World) -> dict[str, Message]:
    """A request each RPC would accept from the operator."""
    return {
        "CreateProgram": pb.CreateProgramRequest(program=program()),
        "UpdateProgram": pb.UpdateProgramRequest(program_id=world.voucher.id, program=program()),
        "GetProgram": pb.GetProgramRequest(program_id=world.voucher.id),
        "ListPrograms": pb.ListProgramsRequest(),
        "CheckEligibility": pb.CheckEligibilityRequest(org_id=world.a.id),
        "ReserveSubsidy": pb.ReserveSubsidyRequest(
            org_id=world.a.id,
            kind=pb.COST_KIND_COMPUTE,
            cost=CREDIT,
            reference="alloc-anon",
            request_id=unique("rq"),
        ),
        "SettleSubsidy": pb.SettleSubsidyRequest(reservation_id=world.held.id, actual_cost=1),
        "ReleaseSubsidy": pb.ReleaseSubsidyRequest(reservation_id=world.held.id),
        "GetReservation": pb.GetReservationRequest(reservation_id=world.held.id),
        "GetBudget": pb.GetBudgetRequest(program_id=world.voucher.id),
        "GetOrganizationUsage": pb.GetOrganizationUsageRequest(org_id=world.a.id),
    }


async def test_anonymous_callers_are_unauthenticated_everywhere(policy: Policy) -> None:
    world = await _world(policy)
    before = await _state(policy, world)
    requests = _valid_requests(world)
    service = pb.DESCRIPTOR.services_by_name["PolicyService"]
    assert {method.name for method in service.methods} >= set(requests)
    problems: list[str] = []
    for rpc, request in requests.items():
        for label, metadata in CREDENTIALS.items():
            try:
                await getattr(policy.stub, rpc)(request, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                if error.code() != Code.UNAUTHENTICATED:
                    problems.append(f"{rpc} {label}: {error.code().name} {error.details()}")
            else:
                problems.append(f"{rpc} {label}: answered")
    assert not problems, "\n".join(problems)
    assert await _state(policy, world) == before
    # The same requests from the operator go through (the request is not what was refused).
    operator = world.operator.auth
    for rpc in ("GetProgram", "ListPrograms", "CheckEligibility", "GetReservation", "GetBudget"):
        await getattr(policy.stub, rpc)(requests[rpc], metadata=operator)
