"""The subsidy ledger against a plain model of it (Hypothesis, stateful).

Each example drives the real `PolicyApi` (store, domain, idempotency and
outbox included) on a fresh SQLite database through reserves, replays,
settles, releases, expiries and budget changes, and after every step
compares the database with a few dictionaries: per program budget +
reserved + spent == total, no balance below zero, every org's cap usage
within its cap and equal to the model's, every transfer balanced, every
account's balance the sum of its entries, every reservation in the model's
state.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)
from sqlmodel import col

from aisuper.platform.auth import OPERATOR, Principal, set_principal
from aisuper.platform.db import Database
from aisuper.platform.errors import DomainError, FailedPrecondition, ResourceExhausted
from aisuper.platform.events.outbox import Outbox
from aisuper.platform.ids import new_id
from aisuper.platform.migrations import migrate
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import events, store
from aisuper_policy.__main__ import MIGRATIONS
from aisuper_policy.api import PolicyApi

T = TypeVar("T")
BPS = 10_000
TTL_S = 600
OPERATOR_PRINCIPAL = Principal(org_id="", subject="operator", roles=frozenset({OPERATOR}))
_TEMPLATE: Path | None = None


def migrated_template() -> Path:
    """A migrated, empty policy database, made once and copied for each example."""
    global _TEMPLATE
    if _TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="policy-model-")) / "template.db"

        async def make() -> None:
            db = Database(f"sqlite+aiosqlite:///{path}")
            try:
                await migrate(db, MIGRATIONS)
            finally:
                await db.dispose()

        # In a thread of its own: callers may already be inside an event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, make()).result()
        _TEMPLATE = path
    return _TEMPLATE


# -- the model ------------------------------------------------------------------


@dataclass
class ModelProgram:
    id: str
    share_bps: int
    per_org_cap: int
    stackable: bool
    stack_order: int
    total: int
    budget: int
    reserved: int = 0
    spent: int = 0


@dataclass
class ModelReservation:
    id: str
    org_id: str
    cost: int
    legs: dict[str, int]
    state: int = pb.RESERVATION_STATE_RESERVED
    settled: dict[str, int] = field(default_factory=dict)


program_specs = st.fixed_dictionaries(
    {
        "share_bps": st.sampled_from([0, 1, 2_500, 3_333, 5_000, 9_999, 10_000]),
        "per_org_cap": st.sampled_from([0, 0, 1, 7, 40, 150]),
        "budget": st.integers(min_value=0, max_value=300),
        "stackable": st.booleans(),
        "stack_order": st.integers(min_value=0, max_value=2),
    }
)


def stack_order(spec: dict[str, Any], n: int) -> int:
    """Drawn, but never tied: ties fall to the (random) ids, and examples must replay."""
    return int(spec["stack_order"]) * 2 + n


class LedgerMachine(RuleBasedStateMachine):
    """Two programs, three organisations, one COMPUTE cost kind: all eligible."""

    reservations = Bundle("reservations")
    closed = Bundle("closed")
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.workdir = Path(tempfile.mkdtemp(prefix="policy-model-"))
        path = self.workdir / "policy.db"
        shutil.copy(migrated_template(), path)
        self.db = Database(f"sqlite+aiosqlite:///{path}")
        self.api = PolicyApi(
            db=self.db, outbox=Outbox(events.CATALOG), reservation_ttl_s=float(TTL_S)
        )
        self.programs: dict[str, ModelProgram] = {}
        self.orgs: list[str] = []
        #: What each (program, org) holds now: reserved plus settled, capped or not.
        self.cap_used: dict[tuple[str, str], int] = {}
        self.model: dict[str, ModelReservation] = {}
        self.requests_of: dict[str, pb.ReserveSubsidyRequest] = {}

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        async def as_operator() -> T:
            set_principal(OPERATOR_PRINCIPAL)
            return await call()

        coroutine: Coroutine[Any, Any, T] = as_operator()
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.run_until_complete(self.db.dispose())
        self.loop.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- set-up -----------------------------------------------------------------

    @initialize(first=program_specs, second=program_specs)
    def create_world(self, first: dict[str, Any], second: dict[str, Any]) -> None:
        for n, spec in enumerate((first, second)):
            request = pb.CreateProgramRequest(
                program=pb.Program(
                    kind=pb.PROGRAM_KIND_COMPUTE_VOUCHER,
                    slug=f"program-{n}",
                    title=f"Program {n}",
                    covers=[pb.COST_KIND_COMPUTE],
                    cap_period=pb.CAP_PERIOD_PROGRAM,
                    **{**spec, "stack_order": stack_order(spec, n)},
                )
            )
            created = self.run(
                lambda request=request: self.api.CreateProgram(request, None)  # type: ignore[misc]
            ).program
            self.programs[created.id] = ModelProgram(
                id=created.id,
                share_bps=spec["share_bps"],
                per_org_cap=spec["per_org_cap"],
                stackable=spec["stackable"],
                stack_order=stack_order(spec, n),
                total=spec["budget"],
                budget=spec["budget"],
            )

        async def add_orgs() -> None:
            async with self.db.write() as session:
                for _ in range(3):
                    org_id = new_id("org")
                    session.add(
                        store.OrganizationRow(
                            org_id=org_id,
                            kind=1,
                            country="KE",
                            incubator_member=False,
                            employee_count=5,
                            registered_at=datetime.now(UTC),
                        )
                    )
                    self.orgs.append(org_id)

        self.run(add_orgs)

    # -- the model's arithmetic, written from the contract --------------------------

    def expected_legs(self, org_id: str, cost: int) -> dict[str, int]:
        legs: dict[str, int] = {}
        left = cost
        for program in sorted(self.programs.values(), key=lambda p: (p.stack_order, p.id)):
            if legs and not program.stackable:
                continue
            amount = min(cost * program.share_bps // BPS, program.budget, left)
            if program.per_org_cap:
                used = self.cap_used.get((program.id, org_id), 0)
                amount = min(amount, program.per_org_cap - used)
            if amount <= 0:
                continue
            legs[program.id] = amount
            left -= amount
            if not program.stackable or left == 0:
                break
        return legs

    def close_in_model(self, reservation: ModelReservation, actual_cost: int, state: int) -> None:
        for program_id, amount in reservation.legs.items():
            program = self.programs[program_id]
            settled = min(amount, amount * actual_cost // reservation.cost)
            back = amount - settled
            reservation.settled[program_id] = settled
            program.reserved -= amount
            program.spent += settled
            program.budget += back
            self.cap_used[(program_id, reservation.org_id)] -= back
        reservation.state = state

    def refused(self, call: Callable[[], Awaitable[object]], kind: type[DomainError]) -> None:
        with pytest.raises(kind):
            self.run(call)

    # -- rules --------------------------------------------------------------------

    @rule(
        targets=(reservations, requests),
        org=st.integers(min_value=0, max_value=2),
        cost=st.integers(min_value=1, max_value=150),
    )
    def reserve(self, org: int, cost: int) -> Any:
        org_id = self.orgs[org]
        request = pb.ReserveSubsidyRequest(
            org_id=org_id,
            kind=pb.COST_KIND_COMPUTE,
            cost=cost,
            reference=new_id("alloc"),
            request_id=new_id("rq"),
        )
        expected = self.expected_legs(org_id, cost)
        if not expected:
            self.refused(lambda: self.api.ReserveSubsidy(request, None), ResourceExhausted)
            return multiple()
        got = self.run(lambda: self.api.ReserveSubsidy(request, None)).reservation
        assert {leg.program_id: leg.amount for leg in got.legs} == expected
        assert got.covered == sum(expected.values())
        assert got.state == pb.RESERVATION_STATE_RESERVED
        for program_id, amount in expected.items():
            program = self.programs[program_id]
            program.budget -= amount
            program.reserved += amount
            key = (program_id, org_id)
            self.cap_used[key] = self.cap_used.get(key, 0) + amount
        self.model[got.id] = ModelReservation(got.id, org_id, cost, expected)
        self.requests_of[got.id] = request
        return got.id

    @rule(reservation_id=requests)
    def replay(self, reservation_id: str) -> None:
        """The same request_id answers the same reservation, whatever happened since."""
        request = self.requests_of[reservation_id]
        got = self.run(lambda: self.api.ReserveSubsidy(request, None)).reservation
        assert got.id == reservation_id

    @rule(
        target=closed,
        reservation_id=consumes(reservations),
        share=st.sampled_from([0, 1, 3, 5, 9, 10]),
    )
    def settle(self, reservation_id: str, share: int) -> str:
        reservation = self.model[reservation_id]
        actual = reservation.cost * share // 10
        got = self.run(
            lambda: self.api.SettleSubsidy(
                pb.SettleSubsidyRequest(reservation_id=reservation_id, actual_cost=actual), None
            )
        ).reservation
        self.close_in_model(reservation, actual, pb.RESERVATION_STATE_SETTLED)
        assert got.state == pb.RESERVATION_STATE_SETTLED
        assert {leg.program_id: leg.settled for leg in got.legs} == reservation.settled
        assert got.settled == sum(reservation.settled.values())
        return reservation_id

    @rule(reservation_id=reservations)
    def settle_above_the_cost(self, reservation_id: str) -> None:
        cost = self.model[reservation_id].cost
        self.refused(
            lambda: self.api.SettleSubsidy(
                pb.SettleSubsidyRequest(reservation_id=reservation_id, actual_cost=cost + 1), None
            ),
            FailedPrecondition,
        )

    @rule(target=closed, reservation_id=consumes(reservations))
    def release(self, reservation_id: str) -> str:
        got = self.run(
            lambda: self.api.ReleaseSubsidy(
                pb.ReleaseSubsidyRequest(reservation_id=reservation_id), None
            )
        ).reservation
        self.close_in_model(self.model[reservation_id], 0, pb.RESERVATION_STATE_RELEASED)
        assert got.state == pb.RESERVATION_STATE_RELEASED
        assert got.settled == 0
        return reservation_id

    @rule(target=closed, reservation_id=consumes(reservations))
    def expire(self, reservation_id: str) -> str:
        later = datetime.now(UTC) + timedelta(seconds=TTL_S + 1)
        assert self.run(lambda: self.api.expire(reservation_id, later)) is True
        self.close_in_model(self.model[reservation_id], 0, pb.RESERVATION_STATE_EXPIRED)
        return reservation_id

    @rule(reservation_id=reservations)
    def expire_too_early(self, reservation_id: str) -> None:
        assert self.run(lambda: self.api.expire(reservation_id, datetime.now(UTC))) is False

    @rule(reservation_id=closed, action=st.sampled_from(["settle", "release", "expire"]))
    def close_again(self, reservation_id: str, action: str) -> None:
        if action == "expire":
            later = datetime.now(UTC) + timedelta(seconds=TTL_S + 1)
            assert self.run(lambda: self.api.expire(reservation_id, later)) is False
        elif action == "settle":
            self.refused(
                lambda: self.api.SettleSubsidy(
                    pb.SettleSubsidyRequest(reservation_id=reservation_id, actual_cost=0), None
                ),
                FailedPrecondition,
            )
        else:
            self.refused(
                lambda: self.api.ReleaseSubsidy(
                    pb.ReleaseSubsidyRequest(reservation_id=reservation_id), None
                ),
                FailedPrecondition,
            )

    @rule(which=st.integers(min_value=0, max_value=1), delta=st.integers(-200, 200))
    def change_budget(self, which: int, delta: int) -> None:
        program = list(self.programs.values())[which]

        async def update() -> pb.Program:
            current = (
                await self.api.GetProgram(pb.GetProgramRequest(program_id=program.id), None)
            ).program
            changed = pb.Program()
            changed.CopyFrom(current)
            changed.budget = current.budget + delta
            updated = await self.api.UpdateProgram(
                pb.UpdateProgramRequest(program_id=program.id, program=changed), None
            )
            return updated.program

        if program.total + delta < 0:
            return  # refused by validation before the ledger, over gRPC
        if program.budget + delta < 0:
            self.refused(update, FailedPrecondition)
            return
        assert self.run(update).budget == program.total + delta
        program.total += delta
        program.budget += delta

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def the_ledger_matches_the_model(self) -> None:
        if not self.programs:
            return

        async def read() -> dict[str, list[Any]]:
            async with self.db.read() as session:
                queries = {
                    "accounts": sa.select(
                        col(store.Account.program_id),
                        col(store.Account.kind),
                        col(store.Account.balance),
                    ),
                    "unbalanced": sa.select(col(store.Entry.transfer_id))
                    .group_by(col(store.Entry.transfer_id))
                    .having(sa.func.sum(store.Entry.amount) != 0),
                    "by_account": sa.select(
                        col(store.Entry.account_id),
                        sa.func.sum(store.Entry.amount),
                    ).group_by(col(store.Entry.account_id)),
                    "caps": sa.select(
                        col(store.CapUsage.program_id),
                        col(store.CapUsage.org_id),
                        col(store.CapUsage.used),
                    ),
                    "reservations": sa.select(
                        col(store.ReservationRow.id),
                        col(store.ReservationRow.state),
                        col(store.ReservationRow.settled),
                    ),
                }
                return {
                    name: list((await session.execute(query)).all())
                    for name, query in queries.items()
                }

        found = self.run(read)
        balances = {(program_id, kind): balance for program_id, kind, balance in found["accounts"]}
        for program in self.programs.values():
            assert balances[(program.id, store.FUNDING)] == -program.total
            assert balances[(program.id, store.BUDGET)] == program.budget
            assert balances[(program.id, store.RESERVED)] == program.reserved
            assert balances[(program.id, store.SPENT)] == program.spent
            assert program.budget + program.reserved + program.spent == program.total
            assert min(program.budget, program.reserved, program.spent) >= 0
        assert found["unbalanced"] == []
        sums = dict(found["by_account"])
        for program_id, kind in balances:
            assert sums.get(store.account_id(program_id, kind), 0) == balances[(program_id, kind)]
        # The model counts what each org holds of every program; the service must keep
        # that count for a capped program (and may keep it for the others too).
        caps = {(program_id, org_id): used for program_id, org_id, used in found["caps"]}
        for (program_id, org_id), used in caps.items():
            assert used == self.cap_used.get((program_id, org_id), 0)
            cap = self.programs[program_id].per_org_cap
            assert 0 <= used <= (cap or used)
        for (program_id, org_id), used in self.cap_used.items():
            if used and self.programs[program_id].per_org_cap:
                assert (program_id, org_id) in caps
        states = {rid: (state, settled) for rid, state, settled in found["reservations"]}
        assert states == {r.id: (r.state, sum(r.settled.values())) for r in self.model.values()}


LedgerMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Hypothesis may shrink a failure for up to five minutes: let it finish and report.
TestLedgerModel = pytest.mark.timeout(900)(LedgerMachine.TestCase)


# -- cap changes on a program with open reservations (found while modelling) ----


class Ledger:
    """The real PolicyApi on its own SQLite file, called as an operator."""

    def __init__(self, path: Path) -> None:
        shutil.copy(migrated_template(), path)
        self.db = Database(f"sqlite+aiosqlite:///{path}")
        self.api = PolicyApi(db=self.db, outbox=Outbox(events.CATALOG), reservation_ttl_s=60.0)

    async def org(self) -> str:
        org_id = new_id("org")
        async with self.db.write() as session:
            session.add(
                store.OrganizationRow(
                    org_id=org_id,
                    kind=1,
                    country="KE",
                    incubator_member=False,
                    employee_count=5,
                    registered_at=datetime.now(UTC),
                )
            )
        return org_id

    async def program(self, per_org_cap: int) -> pb.Program:
        set_principal(OPERATOR_PRINCIPAL)
        return (
            await self.api.CreateProgram(
                pb.CreateProgramRequest(
                    program=pb.Program(
                        kind=pb.PROGRAM_KIND_COMPUTE_VOUCHER,
                        slug=new_id("p").replace("_", "-"),
                        title="Voucher",
                        covers=[pb.COST_KIND_COMPUTE],
                        share_bps=BPS,
                        per_org_cap=per_org_cap,
                        cap_period=pb.CAP_PERIOD_PROGRAM,
                        budget=1_000,
                    )
                ),
                None,
            )
        ).program

    async def set_cap(self, program: pb.Program, cap: int) -> None:
        set_principal(OPERATOR_PRINCIPAL)
        changed = pb.Program()
        changed.CopyFrom(program)
        changed.per_org_cap = cap
        await self.api.UpdateProgram(
            pb.UpdateProgramRequest(program_id=program.id, program=changed), None
        )

    async def reserve(self, org_id: str, cost: int) -> pb.Reservation:
        set_principal(OPERATOR_PRINCIPAL)
        return (
            await self.api.ReserveSubsidy(
                pb.ReserveSubsidyRequest(
                    org_id=org_id,
                    kind=pb.COST_KIND_COMPUTE,
                    cost=cost,
                    reference="alloc",
                    request_id=new_id("rq"),
                ),
                None,
            )
        ).reservation

    async def release(self, reservation_id: str) -> pb.Reservation:
        set_principal(OPERATOR_PRINCIPAL)
        return (
            await self.api.ReleaseSubsidy(
                pb.ReleaseSubsidyRequest(reservation_id=reservation_id), None
            )
        ).reservation

    async def used(self, org_id: str) -> int:
        set_principal(OPERATOR_PRINCIPAL)
        usage = await self.api.GetOrganizationUsage(
            pb.GetOrganizationUsageRequest(org_id=org_id), None
        )
        return sum(u.used for u in usage.usage)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    found = Ledger(tmp_path / "policy.db")
    yield found
    await found.db.dispose()


async def test_a_reservation_made_before_a_cap_was_added_can_still_be_released(
    ledger: Ledger,
) -> None:
    org_id = await ledger.org()
    program = await ledger.program(per_org_cap=0)
    reservation = await ledger.reserve(org_id, 100)
    await ledger.set_cap(program, 500)
    released = await ledger.release(reservation.id)
    assert released.state == pb.RESERVATION_STATE_RELEASED


async def test_releasing_after_a_cap_was_lifted_gives_the_cap_back(ledger: Ledger) -> None:
    org_id = await ledger.org()
    program = await ledger.program(per_org_cap=100)
    reservation = await ledger.reserve(org_id, 60)
    await ledger.set_cap(program, 0)
    await ledger.release(reservation.id)
    await ledger.set_cap(program, 100)
    again = await ledger.reserve(org_id, 60)
    assert again.covered == 60
    assert await ledger.used(org_id) == 60


async def test_a_cap_cannot_go_below_what_an_org_already_uses(ledger: Ledger) -> None:
    org_id = await ledger.org()
    program = await ledger.program(per_org_cap=100)
    await ledger.reserve(org_id, 80)
    with pytest.raises(FailedPrecondition):
        await ledger.set_cap(program, 50)
