"""The ledger under concurrent calls: no budget below zero, no org over its cap, one
winner per reservation, one reservation per request_id.

On SQLite the single writer serialises every transaction; on PostgreSQL
(`AISUPER_TEST_POSTGRES_URL`) these are real races between row locks.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable

import grpc
from policy_harness import CREDIT, Org, Policy, program

from aisuper.policy.v1 import policy_pb2 as pb

ON_POSTGRES = bool(os.environ.get("AISUPER_TEST_POSTGRES_URL"))

#: A reserve of COST at 30% asks for SUBSIDY.
COST = 10 * CREDIT
SUBSIDY = 3 * CREDIT
OK = "OK"


async def outcome(call: Awaitable[object]) -> tuple[str, object]:
    """("OK", response) or (status code name, details): never raises an RPC error."""
    try:
        return OK, await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, error.details()


def assert_balanced(budget: pb.Budget) -> None:
    assert min(budget.available, budget.reserved, budget.spent) >= 0, budget
    assert budget.available + budget.reserved + budget.spent == budget.total, budget


class BudgetWatcher:
    """Reads a program's budget over and over while something else runs."""

    def __init__(self, policy: Policy, program_id: str) -> None:
        self._policy = policy
        self._program_id = program_id
        self._done = asyncio.Event()
        self.seen: list[pb.Budget] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while not self._done.is_set():
            self.seen.append(await self._policy.budget(self._program_id))

    async def __aenter__(self) -> BudgetWatcher:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._done.set()
        assert self._task is not None
        await self._task


async def orgs(policy: Policy, count: int) -> list[Org]:
    return list(await asyncio.gather(*(policy.org(f"Org {n}") for n in range(count))))


async def test_200_concurrent_reserves_fill_a_budget_of_50_exactly(policy: Policy) -> None:
    voucher = await policy.create(program(budget=50 * SUBSIDY, per_org_cap=0, cap_period=0))
    callers = await orgs(policy, 4)

    async with BudgetWatcher(policy, voucher.id) as watcher:
        results = await asyncio.gather(
            *(
                outcome(policy.reserve(callers[n % len(callers)], COST, request_id=f"burst-{n}"))
                for n in range(200)
            )
        )

    codes = Counter(code for code, _ in results)
    assert codes == {OK: 50, "RESOURCE_EXHAUSTED": 150}, codes
    reservations = [r for code, r in results if code == OK]
    assert all(isinstance(r, pb.Reservation) for r in reservations)
    assert len({r.id for r in reservations if isinstance(r, pb.Reservation)}) == 50
    assert {r.covered for r in reservations if isinstance(r, pb.Reservation)} == {SUBSIDY}

    budget = await policy.budget(voucher.id)
    assert (budget.available, budget.reserved, budget.spent) == (0, 50 * SUBSIDY, 0)
    assert_balanced(budget)
    assert len(watcher.seen) > 1, "the budget should have been read during the burst"
    for seen in watcher.seen:
        assert_balanced(seen)
        assert seen.total == 50 * SUBSIDY
        assert seen.reserved <= 50 * SUBSIDY


async def test_one_org_never_passes_its_cap_under_100_concurrent_reserves(
    policy: Policy,
) -> None:
    voucher = await policy.create(
        program(budget=10_000 * SUBSIDY, per_org_cap=10 * SUBSIDY, cap_period=pb.CAP_PERIOD_MONTH)
    )
    acme = await policy.org()

    results = await asyncio.gather(
        *(outcome(policy.reserve(acme, COST, request_id=f"cap-{n}")) for n in range(100))
    )

    codes = Counter(code for code, _ in results)
    assert codes == {OK: 10, "RESOURCE_EXHAUSTED": 90}, codes
    usage = (
        await policy.stub.GetOrganizationUsage(pb.GetOrganizationUsageRequest(), metadata=acme.auth)
    ).usage
    assert [(u.program_id, u.cap, u.used) for u in usage] == [
        (voucher.id, 10 * SUBSIDY, 10 * SUBSIDY)
    ]
    budget = await policy.budget(voucher.id)
    assert (budget.reserved, budget.available) == (10 * SUBSIDY, 9_990 * SUBSIDY)
    assert_balanced(budget)


async def test_settle_release_settle_of_one_reservation_has_exactly_one_winner(
    policy: Policy,
) -> None:
    voucher = await policy.create(program(budget=1_000 * SUBSIDY))
    acme = await policy.org()
    reservations = [await policy.reserve(acme, COST) for _ in range(10)]

    def settle(reservation_id: str) -> Awaitable[object]:
        return policy.stub.SettleSubsidy(
            pb.SettleSubsidyRequest(reservation_id=reservation_id, actual_cost=COST // 2),
            metadata=acme.auth,
        )

    def release(reservation_id: str) -> Awaitable[object]:
        return policy.stub.ReleaseSubsidy(
            pb.ReleaseSubsidyRequest(reservation_id=reservation_id), metadata=acme.auth
        )

    rounds = await asyncio.gather(
        *(
            asyncio.gather(outcome(settle(r.id)), outcome(release(r.id)), outcome(settle(r.id)))
            for r in reservations
        )
    )

    spent = 0
    for reservation, results in zip(reservations, rounds, strict=True):
        codes = Counter(code for code, _ in results)
        assert codes == {OK: 1, "FAILED_PRECONDITION": 2}, (reservation.id, codes)
        [(winner, response)] = [(n, r) for n, (code, r) in enumerate(results) if code == OK]
        closed = response.reservation  # type: ignore[attr-defined]
        stored = (
            await policy.stub.GetReservation(
                pb.GetReservationRequest(reservation_id=reservation.id), metadata=acme.auth
            )
        ).reservation
        assert stored == closed
        if winner == 1:
            assert stored.state == pb.RESERVATION_STATE_RELEASED
        else:
            assert stored.state == pb.RESERVATION_STATE_SETTLED
            assert stored.settled == SUBSIDY // 2
            spent += stored.settled

    budget = await policy.budget(voucher.id)
    assert (budget.reserved, budget.spent) == (0, spent)
    assert_balanced(budget)
    usage = (
        await policy.stub.GetOrganizationUsage(pb.GetOrganizationUsageRequest(), metadata=acme.auth)
    ).usage
    assert [u.used for u in usage] == [spent]


async def test_concurrent_calls_with_one_request_id_make_one_reservation(policy: Policy) -> None:
    voucher = await policy.create(program(budget=1_000 * SUBSIDY))
    acme = await policy.org()

    results = await asyncio.gather(
        *(
            outcome(policy.reserve(acme, COST, request_id="same-key", reference="alloc-1"))
            for _ in range(30)
        )
    )

    assert Counter(code for code, _ in results) == {OK: 30}
    assert len({r.id for _, r in results if isinstance(r, pb.Reservation)}) == 1
    budget = await policy.budget(voucher.id)
    assert budget.reserved == SUBSIDY
    assert_balanced(budget)


async def test_reserves_and_releases_at_once_all_succeed(policy: Policy) -> None:
    voucher = await policy.create(program(budget=10_000 * SUBSIDY))
    callers = await orgs(policy, 4)
    held = [
        await policy.reserve(callers[n % len(callers)], COST, request_id=f"held-{n}")
        for n in range(20)
    ]

    async def release(n: int) -> tuple[str, object]:
        return await outcome(
            policy.stub.ReleaseSubsidy(
                pb.ReleaseSubsidyRequest(reservation_id=held[n].id),
                metadata=callers[n % len(callers)].auth,
            )
        )

    results = await asyncio.gather(
        *(release(n) for n in range(20)),
        *(
            outcome(policy.reserve(callers[n % len(callers)], COST, request_id=f"new-{n}"))
            for n in range(20)
        ),
    )

    codes = Counter(code for code, _ in results)
    assert codes == {OK: 40}, codes
    budget = await policy.budget(voucher.id)
    assert budget.reserved == 20 * SUBSIDY
    assert_balanced(budget)
