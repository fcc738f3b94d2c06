"""Programs, eligibility and the two-phase subsidy flow, end to end over gRPC."""

from __future__ import annotations

from policy_harness import CREDIT, Policy, program

from aisuper.policy.v1 import policy_pb2 as pb


async def test_reserve_settle_and_release_move_the_budget(policy: Policy) -> None:
    voucher = await policy.create(program())
    acme = await policy.org()
    reservation = await policy.reserve(acme, 1_000 * CREDIT)
    assert reservation.covered == 300 * CREDIT  # 30%
    assert [leg.program_id for leg in reservation.legs] == [voucher.id]
    budget = await policy.budget(voucher.id)
    assert budget.reserved == 300 * CREDIT
    assert budget.available == 100_000 * CREDIT - 300 * CREDIT

    settled = (
        await policy.stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=reservation.id, actual_cost=500 * CREDIT),
            metadata=acme.auth,
        )
    ).reservation
    assert settled.state == pb.RESERVATION_STATE_SETTLED
    assert settled.settled == 150 * CREDIT
    budget = await policy.budget(voucher.id)
    assert (budget.reserved, budget.spent) == (0, 150 * CREDIT)
    assert budget.available + budget.spent == budget.total

    second = await policy.reserve(acme, 100 * CREDIT)
    released = (
        await policy.stub.ReleaseSubsidy(
            pb.ReleaseSubsidyRequest(reservation_id=second.id), metadata=acme.auth
        )
    ).reservation
    assert released.state == pb.RESERVATION_STATE_RELEASED
    assert (await policy.budget(voucher.id)).available == 100_000 * CREDIT - 150 * CREDIT


async def test_eligibility_is_a_typed_cel_rule_over_the_organisation(policy: Policy) -> None:
    south = await policy.create(
        program(eligibility='org.country in ["KE", "NG", "BR"] && org.age_days < 365')
    )
    nairobi = await policy.org("Nairobi AI", country="KE")
    berlin = await policy.org("Berlin AI", country="DE")
    for org, expected in ((nairobi, True), (berlin, False)):
        checked = await policy.stub.CheckEligibility(
            pb.CheckEligibilityRequest(), metadata=org.auth
        )
        [found] = [p for p in checked.programs if p.program.id == south.id]
        assert found.eligible is expected, found.reason
    facts = (
        await policy.stub.CheckEligibility(pb.CheckEligibilityRequest(), metadata=nairobi.auth)
    ).organization
    assert facts.region == "africa"
    assert facts.kind == "startup"
