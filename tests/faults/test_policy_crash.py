"""SIGKILL policy in the middle of a burst of reserves, restart it, retry every call.

Each reserve commits whole or not at all, and its answer is stored with it: a
retry with the same request_id after the restart gets the reservation that
was committed before the crash, or makes one now. The budget ends exactly
spent on exactly 50 reservations, whatever the crash cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from identity_harness import Identity
from policy_harness import CREDIT, Org, program
from policy_process import PolicyProcess, spawn_policy
from sqlmodel import col

from aisuper.platform.db import Database
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.testing import BrokerUnderTest, DatabaseFactory, eventually
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper.policy.v1 import policy_pb2_grpc
from aisuper_policy import store

pytestmark = pytest.mark.slow

COST = 10 * CREDIT
SUBSIDY = 3 * CREDIT  # 30% of COST
ROOM = 50
CALLS = 200
KILL_AFTER = 20
EXHAUSTED = "RESOURCE_EXHAUSTED"


def request(org: Org, n: int) -> pb.ReserveSubsidyRequest:
    """The n-th call, the same every time it is sent."""
    return pb.ReserveSubsidyRequest(
        kind=pb.COST_KIND_COMPUTE, cost=COST, reference=f"alloc-{n}", request_id=f"crash-{n}"
    )


async def test_sigkill_mid_burst_then_retries_spend_the_budget_exactly_once(
    broker: BrokerUnderTest,
    make_database: DatabaseFactory,
    identity: Identity,
    tmp_path: Path,
) -> None:
    database_url = await make_database("policy")
    spawned: list[PolicyProcess] = []

    def start(name: str) -> PolicyProcess:
        proc = spawn_policy(
            bootstrap=broker.bootstrap,
            idempotence=broker.idempotence,
            database_url=database_url,
            identity_target=identity.address,
            workdir=tmp_path,
            name=name,
        )
        spawned.append(proc)
        return proc

    try:
        await _crash_and_retry(start, identity, database_url)
    finally:
        for proc in spawned:
            proc.kill()


async def _crash_and_retry(
    start: Callable[[str], PolicyProcess], identity: Identity, database_url: str
) -> None:
    operator = bearer(identity.operator_key)
    first: PolicyProcess = start("policy-1")
    await first.wait_serving()

    # -- a program with room for exactly ROOM reservations, and four organisations
    async with channel(first.address, tracing=False) as chan:
        stub = policy_pb2_grpc.PolicyServiceStub(chan)
        voucher = (
            await stub.CreateProgram(
                pb.CreateProgramRequest(
                    program=program(budget=ROOM * SUBSIDY, per_org_cap=0, cap_period=0)
                ),
                metadata=operator,
                timeout=30,
            )
        ).program
        orgs = []
        for n in range(4):
            registered = await identity.register(f"Crash {n}", admin_email=f"a{n}@crash.test")
            orgs.append(Org(id=registered.organization.id, key=registered.api_key_secret))
        for org in orgs:
            await _wait_known(stub, org)

        # -- the burst, and SIGKILL once KILL_AFTER reserves have succeeded
        before: dict[int, str] = {}
        first_codes: Counter[str] = Counter()

        async def send(n: int) -> None:
            org = orgs[n % len(orgs)]
            try:
                response = await stub.ReserveSubsidy(request(org, n), metadata=org.auth, timeout=30)
            except grpc.aio.AioRpcError as error:
                first_codes[error.code().name] += 1
                return
            first_codes["OK"] += 1
            before[n] = response.reservation.id
            if len(before) >= KILL_AFTER and first.process.poll() is None:
                first.kill()

        await asyncio.gather(*(send(n) for n in range(CALLS)))
    assert first.process.poll() is not None, f"the burst ended before the kill: {first_codes}"
    assert KILL_AFTER <= len(before) < ROOM, first_codes
    assert first_codes["INTERNAL"] == 0, first_codes
    assert first_codes["ABORTED"] == 0, first_codes

    # -- restart on the same database, retry every call until it has an answer
    second: PolicyProcess = start("policy-2")
    await second.wait_serving()
    async with channel(second.address, tracing=False) as chan:
        stub = policy_pb2_grpc.PolicyServiceStub(chan)
        after: dict[int, str | None] = {}
        retried: Counter[str] = Counter()

        async def retry(n: int) -> None:
            org = orgs[n % len(orgs)]
            while True:
                try:
                    response = await stub.ReserveSubsidy(
                        request(org, n), metadata=org.auth, timeout=30
                    )
                except grpc.aio.AioRpcError as error:
                    retried[error.code().name] += 1
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        after[n] = None
                        return
                    if error.code() in (
                        grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.ABORTED,
                        grpc.StatusCode.INVALID_ARGUMENT,
                    ):
                        pytest.fail(f"call {n} answered {error.code().name}: {error.details()}")
                    await asyncio.sleep(0.05)  # back off: UNAVAILABLE or a deadline
                    continue
                after[n] = response.reservation.id
                return

        async with asyncio.timeout(120):
            await asyncio.gather(*(retry(n) for n in range(CALLS)))

        budget = (
            await stub.GetBudget(
                pb.GetBudgetRequest(program_id=voucher.id), metadata=operator, timeout=30
            )
        ).budget

    granted = {n: rid for n, rid in after.items() if rid is not None}
    assert len(granted) == ROOM, retried
    assert len(set(granted.values())) == ROOM
    for n, reservation_id in before.items():
        assert after[n] == reservation_id, f"call {n} got two different reservations"
    assert (budget.available, budget.reserved, budget.spent) == (0, ROOM * SUBSIDY, 0)
    assert budget.total == ROOM * SUBSIDY

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = (
                await session.execute(
                    sa.select(col(store.ReservationRow.id), col(store.ReservationRow.reference))
                )
            ).all()
            unbalanced = (
                await session.execute(
                    sa.select(col(store.Entry.transfer_id))
                    .group_by(col(store.Entry.transfer_id))
                    .having(sa.func.sum(store.Entry.amount) != 0)
                )
            ).all()
            balances: dict[str, int] = dict(
                (
                    await session.execute(
                        sa.select(col(store.Account.kind), col(store.Account.balance))
                    )
                ).all()
            )
            by_account: dict[str, int] = dict(
                (
                    await session.execute(
                        sa.select(
                            col(store.Account.kind),
                            sa.func.sum(store.Entry.amount),
                        )
                        .join(store.Account, col(store.Account.id) == col(store.Entry.account_id))
                        .group_by(col(store.Account.kind))
                    )
                ).all()
            )
    finally:
        await db.dispose()
    assert {rid for rid, _ in rows} == set(granted.values())
    assert sorted(reference for _, reference in rows) == sorted(f"alloc-{n}" for n in granted)
    assert unbalanced == []
    assert balances == {
        store.FUNDING: -ROOM * SUBSIDY,
        store.BUDGET: 0,
        store.RESERVED: ROOM * SUBSIDY,
        store.SPENT: 0,
    }
    assert {kind: balances[kind] for kind in by_account} == by_account
    assert second.terminate() == 0


async def _wait_known(stub: policy_pb2_grpc.PolicyServiceStub, org: Org) -> None:
    async def known() -> bool:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.CheckEligibility(pb.CheckEligibilityRequest(), metadata=org.auth, timeout=5)
            return True
        return False

    await eventually(known, within_s=30, every_s=0.05)
