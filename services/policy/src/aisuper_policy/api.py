"""PolicyService over gRPC: translates protos to store, ledger and domain calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.identity.v1 import events_pb2 as identity_events
from aisuper.platform import pagination
from aisuper.platform.auth import OPERATOR, Principal, current_principal
from aisuper.platform.db import Database
from aisuper.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PreconditionViolation,
    ResourceExhausted,
)
from aisuper.platform.events.outbox import Outbox
from aisuper.platform.idempotency import idempotent
from aisuper.platform.ids import new_id
from aisuper.platform.timestamps import timestamp as _ts
from aisuper.policy.v1 import events_pb2, policy_pb2_grpc
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import domain, store
from aisuper_policy.eligibility import Eligibility, compile_eligibility
from aisuper_policy.governance_api import GovernanceApi

Context = Any  # grpc.aio.ServicerContext: handlers never touch it

_OUTPUT_ONLY = ("id", "revision", "create_time", "update_time")


def facts_of(row: store.OrganizationRow, now: datetime) -> pb.OrganizationFacts:
    return pb.OrganizationFacts(
        org_id=row.org_id,
        kind=domain.ORG_KINDS.get(row.kind, ""),
        country=row.country,
        region=domain.region_of(row.country),
        incubator_member=row.incubator_member,
        verified=row.verified,
        suspended=row.suspended,
        age_days=max(0, (now - row.registered_at).days),
        employee_count=row.employee_count,
    )


def reservation_proto(
    row: store.ReservationRow, legs: Sequence[store.ReservationLegRow]
) -> pb.Reservation:
    return pb.Reservation(
        id=row.id,
        org_id=row.org_id,
        kind=row.kind,  # type: ignore[arg-type]
        cost=row.cost,
        covered=row.covered,
        legs=[
            pb.ReservationLeg(
                program_id=leg.program_id, amount=leg.amount, settled=leg.settled, period=leg.period
            )
            for leg in legs
        ],
        reference=row.reference,
        state=row.state,  # type: ignore[arg-type]
        actual_cost=row.actual_cost,
        settled=row.settled,
        create_time=_ts(row.created_at),
        expire_time=_ts(row.expires_at),
        close_time=_ts(row.closed_at),
    )


def _org_in_scope(principal: Principal, org_id: str) -> str:
    """The org a call is about: the caller's own unless an operator names another."""
    if not org_id or org_id == principal.org_id:
        return principal.org_id
    if principal.is_operator:
        return org_id
    raise NotFound("organization not found")


class Programs:
    """Programs with their compiled eligibility, compiled once per revision."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, int], Eligibility] = {}

    def eligibility(self, program: pb.Program) -> Eligibility:
        key = (program.id, program.revision)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = compile_eligibility(program.eligibility)
        return found


class PolicyApi(GovernanceApi, policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, *, db: Database, outbox: Outbox, reservation_ttl_s: float) -> None:
        self._db = db
        self._outbox = outbox
        self._ttl = timedelta(seconds=reservation_ttl_s)
        self.programs = Programs()

    # -- programs -------------------------------------------------------------

    async def CreateProgram(
        self, request: pb.CreateProgramRequest, context: Context
    ) -> pb.CreateProgramResponse:
        current_principal().require_role(OPERATOR)
        program = pb.Program()
        program.CopyFrom(request.program)
        for name in _OUTPUT_ONLY:
            program.ClearField(name)  # type: ignore[arg-type]
        domain.check_program(program)
        compile_eligibility(program.eligibility)

        async def create(session: AsyncSession) -> pb.CreateProgramResponse:
            if await store.get_program_by_slug(session=session, slug=program.slug) is not None:
                raise AlreadyExists(f"program.slug: {program.slug!r} is taken")
            now = datetime.now(UTC)
            program.id = new_id("prg")
            program.revision = 1
            program.create_time.FromDatetime(now)
            program.update_time.FromDatetime(now)
            session.add(
                store.ProgramRow(
                    id=program.id,
                    slug=program.slug,
                    kind=program.kind,
                    revision=1,
                    body=program.SerializeToString(deterministic=True),
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            await store.open_accounts(session=session, program_id=program.id)
            await self._fund(session, program.id, program.budget, now)
            self._outbox.add(
                session, events_pb2.ProgramPublished(program=program), subject=program.id
            )
            return pb.CreateProgramResponse(program=program)

        return await idempotent(
            self._db,
            scope="create-program",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateProgramResponse,
            create=create,
        )

    async def _fund(
        self, session: AsyncSession, program_id: str, delta: int, now: datetime
    ) -> None:
        """Moves `delta` into (or, negative, out of) the program's budget."""
        funding = store.account_id(program_id, store.FUNDING)
        budget = store.account_id(program_id, store.BUDGET)
        moves = [(funding, budget, delta)] if delta >= 0 else [(budget, funding, -delta)]
        await store.post(
            session=session, transfer_id=new_id("trf"), kind="fund", moves=moves, now=now
        )

    async def UpdateProgram(
        self, request: pb.UpdateProgramRequest, context: Context
    ) -> pb.UpdateProgramResponse:
        current_principal().require_role(OPERATOR)
        async with self._db.write() as session:
            row = await store.get_program(
                session=session, program_id=request.program_id, for_update=True
            )
            if row is None:
                raise NotFound("program not found")
            if request.expected_revision and request.expected_revision != row.revision:
                raise Aborted(f"the program is at revision {row.revision}")
            current = pb.Program.FromString(row.body)
            updated = pb.Program()
            updated.CopyFrom(request.program)
            # What a program is never changes: its id, kind and slug.
            updated.id, updated.kind, updated.slug = current.id, current.kind, current.slug
            updated.create_time.CopyFrom(current.create_time)
            domain.check_program(updated)
            compile_eligibility(updated.eligibility)
            now = datetime.now(UTC)
            await self._check_cap_change(session, current, updated, now)
            delta = updated.budget - current.budget
            if delta:
                try:
                    await self._fund(session, row.id, delta, now)
                except ResourceExhausted:
                    raise FailedPrecondition.of(
                        [
                            PreconditionViolation(
                                "BUDGET_IN_USE",
                                "program.budget",
                                "the budget cannot go below what is reserved and spent",
                            )
                        ]
                    ) from None
            updated.revision = row.revision + 1
            updated.update_time.FromDatetime(now)
            row.revision = updated.revision
            row.body = updated.SerializeToString(deterministic=True)
            row.updated_at = now
            self._outbox.add(session, events_pb2.ProgramPublished(program=updated), subject=row.id)
            return pb.UpdateProgramResponse(program=updated)

    async def _check_cap_change(
        self, session: AsyncSession, current: pb.Program, updated: pb.Program, now: datetime
    ) -> None:
        """A cap never drops below what an organisation has used of it this period."""
        if not updated.per_org_cap or (
            updated.per_org_cap >= current.per_org_cap and updated.cap_period == current.cap_period
        ):
            return
        used = await store.most_cap_used(
            session=session, program_id=current.id, period=domain.period_of(updated, now)
        )
        if updated.per_org_cap < used:
            raise FailedPrecondition.of(
                [
                    PreconditionViolation(
                        "CAP_IN_USE",
                        "program.per_org_cap",
                        f"an organisation has already used {used} of it this period",
                    )
                ]
            )

    async def GetProgram(
        self, request: pb.GetProgramRequest, context: Context
    ) -> pb.GetProgramResponse:
        current_principal()
        async with self._db.read() as session:
            if request.WhichOneof("program") == "slug":
                row = await store.get_program_by_slug(session=session, slug=request.slug)
            else:
                row = await store.get_program(session=session, program_id=request.program_id)
        if row is None:
            raise NotFound("program not found")
        return pb.GetProgramResponse(program=pb.Program.FromString(row.body))

    async def ListPrograms(
        self, request: pb.ListProgramsRequest, context: Context
    ) -> pb.ListProgramsResponse:
        current_principal()
        key = pagination.query_key(str(request.kind), str(request.active_only))
        after = pagination.decode_token(request.page_token, key)
        size = pagination.page_size(request.page_size)
        now = datetime.now(UTC)
        async with self._db.read() as session:
            rows = await store.list_programs(session=session, kind=request.kind, after=after)
        programs = [pb.Program.FromString(row.body) for row in rows]
        if request.active_only:
            programs = [p for p in programs if domain.is_active(p, now)]
        shown, token = pagination.page(programs, size, lambda p: p.id, key)
        return pb.ListProgramsResponse(programs=shown, next_page_token=token)

    async def _facts(
        self, session: AsyncSession, org_id: str, now: datetime
    ) -> pb.OrganizationFacts:
        row = await store.get_organization(session=session, org_id=org_id)
        if row is None:
            # Identity's OrganizationRegistered has not reached policy yet (or never will).
            raise FailedPrecondition.of(
                [
                    PreconditionViolation(
                        "ORGANIZATION_UNKNOWN",
                        "org_id",
                        "policy has not learnt of this organisation yet; retry shortly",
                    )
                ]
            )
        return facts_of(row, now)

    async def CheckEligibility(
        self, request: pb.CheckEligibilityRequest, context: Context
    ) -> pb.CheckEligibilityResponse:
        org_id = _org_in_scope(current_principal(), request.org_id)
        now = datetime.now(UTC)
        async with self._db.read() as session:
            facts = await self._facts(session, org_id, now)
            rows = await store.list_programs(session=session)
            found = []
            for row in rows:
                program = pb.Program.FromString(row.body)
                eligible, reason = domain.eligible_reason(
                    program, facts, now, self.programs.eligibility(program).admits
                )
                cap_left = 0
                if program.per_org_cap:
                    used = await store.cap_used_so_far(
                        session=session,
                        program_id=program.id,
                        org_id=org_id,
                        period=domain.period_of(program, now),
                    )
                    cap_left = max(0, program.per_org_cap - used)
                found.append(
                    pb.ProgramEligibility(
                        program=program, eligible=eligible, reason=reason, cap_remaining=cap_left
                    )
                )
        return pb.CheckEligibilityResponse(organization=facts, programs=found)

    # -- organisations (from identity's events) -----------------------------------

    async def learn_organization(self, session: AsyncSession, data: Any) -> None:
        """Keeps an organisation's facts; says so when its eligible programs change."""
        now = datetime.now(UTC)
        row = await store.get_organization(session=session, org_id=data.org_id)
        if isinstance(data, identity_events.OrganizationRegistered):
            if row is not None:
                return
            row = store.OrganizationRow(
                org_id=data.org_id,
                kind=data.kind,
                country=data.country,
                incubator_member=data.incubator_member,
                employee_count=data.employee_count,
                registered_at=data.register_time.ToDatetime(UTC)
                if data.HasField("register_time")
                else now,
            )
            session.add(row)
            before: set[str] = set()
        elif row is None:
            return  # a change to an organisation registered before policy kept facts
        else:
            before = await self._eligible_ids(session, facts_of(row, now), now)
            if isinstance(data, identity_events.OrganizationVerified):
                row.verified = True
            elif isinstance(data, identity_events.OrganizationSuspended):
                row.suspended = True
        await session.flush()
        after = await self._eligible_ids(session, facts_of(row, now), now)
        if after != before:
            self._outbox.add(
                session,
                events_pb2.EligibilityChanged(
                    org_id=row.org_id,
                    eligible_program_ids=sorted(after),
                    previously_eligible_program_ids=sorted(before),
                ),
                subject=row.org_id,
                org_id=row.org_id,
            )

    async def _eligible_ids(
        self, session: AsyncSession, facts: pb.OrganizationFacts, now: datetime
    ) -> set[str]:
        found = set()
        for row in await store.list_programs(session=session):
            program = pb.Program.FromString(row.body)
            admits = self.programs.eligibility(program).admits
            if domain.eligible_reason(program, facts, now, admits)[0]:
                found.add(program.id)
        return found

    # -- the ledger -------------------------------------------------------------

    async def ReserveSubsidy(
        self, request: pb.ReserveSubsidyRequest, context: Context
    ) -> pb.ReserveSubsidyResponse:
        org_id = _org_in_scope(current_principal(), request.org_id)
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else self._ttl

        async def reserve(session: AsyncSession) -> pb.ReserveSubsidyResponse:
            now = datetime.now(UTC)
            facts = await self._facts(session, org_id, now)
            candidates = []
            for row in await store.list_programs(session=session):
                program = pb.Program.FromString(row.body)
                if request.kind not in program.covers:
                    continue
                eligible, _ = domain.eligible_reason(
                    program, facts, now, self.programs.eligibility(program).admits
                )
                if eligible:
                    candidates.append(program)
            if not candidates:
                raise FailedPrecondition.of(
                    [
                        PreconditionViolation(
                            "NOT_ELIGIBLE",
                            "kind",
                            "no running program the organisation is eligible for pays this cost",
                        )
                    ]
                )
            await self._lock_budgets(session, [program.id for program in candidates])
            offers = []
            for program in domain.pay_order(candidates):
                budget_left = await store.balance(
                    session=session,
                    account=store.account_id(program.id, store.BUDGET),
                    lock=True,
                )
                # Usage is counted for every program, capped or not, so a cap
                # added or lifted later still sees (and gives back) the right amount.
                used = await store.cap_used(
                    session=session,
                    program_id=program.id,
                    org_id=org_id,
                    period=domain.period_of(program, now),
                    lock=True,
                )
                cap_left = max(0, program.per_org_cap - used) if program.per_org_cap else None
                offers.append(domain.Offer(program, budget_left, cap_left))
            legs = domain.coverage(request.cost, offers)
            if not legs:
                raise ResourceExhausted(
                    "the programs that would pay have no budget or cap left for this organisation"
                )
            by_id = {offer.program.id: offer.program for offer in offers}
            reservation = store.ReservationRow(
                id=new_id("rsv"),
                org_id=org_id,
                kind=request.kind,
                cost=request.cost,
                covered=sum(leg.amount for leg in legs),
                reference=request.reference,
                state=pb.RESERVATION_STATE_RESERVED,
                created_at=now,
                expires_at=now + ttl,
            )
            session.add(reservation)
            await session.flush()
            rows = []
            for leg in legs:
                program = by_id[leg.program_id]
                period = domain.period_of(program, now)
                rows.append(
                    store.ReservationLegRow(
                        reservation_id=reservation.id,
                        program_id=leg.program_id,
                        amount=leg.amount,
                        period=period,
                    )
                )
                await store.add_cap_usage(
                    session=session,
                    program_id=program.id,
                    org_id=org_id,
                    period=period,
                    delta=leg.amount,
                    cap=program.per_org_cap,
                )
            session.add_all(rows)
            await store.post(
                session=session,
                transfer_id=new_id("trf"),
                kind="reserve",
                reservation_id=reservation.id,
                moves=[
                    (
                        store.account_id(leg.program_id, store.BUDGET),
                        store.account_id(leg.program_id, store.RESERVED),
                        leg.amount,
                    )
                    for leg in legs
                ],
                now=now,
            )
            message = reservation_proto(reservation, rows)
            self._outbox.add(
                session,
                events_pb2.SubsidyReserved(reservation=message),
                subject=reservation.id,
                org_id=org_id,
            )
            return pb.ReserveSubsidyResponse(reservation=message)

        return await idempotent(
            self._db,
            scope=f"reserve:{org_id}",
            request_id=request.request_id,
            request=request,
            response_type=pb.ReserveSubsidyResponse,
            create=reserve,
        )

    async def _open_reservation(
        self, session: AsyncSession, reservation_id: str
    ) -> tuple[store.ReservationRow, Sequence[store.ReservationLegRow]]:
        principal = current_principal()
        row = await store.get_reservation(
            session=session, reservation_id=reservation_id, for_update=True
        )
        if row is None or not principal.sees_org(row.org_id):
            raise NotFound("reservation not found")
        return row, await store.legs_of(session=session, reservation_id=row.id)

    async def _close(
        self,
        session: AsyncSession,
        row: store.ReservationRow,
        legs: Sequence[store.ReservationLegRow],
        *,
        actual_cost: int,
        state: int,
        now: datetime,
    ) -> pb.Reservation:
        """Settles `actual_cost` (0 to release) and gives the rest back to each budget."""
        await self._lock_budgets(session, [leg.program_id for leg in legs])
        moves = []
        for leg in legs:
            leg.settled = domain.settled_share(leg.amount, row.cost, actual_cost)
            back = leg.amount - leg.settled
            reserved = store.account_id(leg.program_id, store.RESERVED)
            moves.append((reserved, store.account_id(leg.program_id, store.SPENT), leg.settled))
            moves.append((reserved, store.account_id(leg.program_id, store.BUDGET), back))
            if back:
                await store.add_cap_usage(
                    session=session,
                    program_id=leg.program_id,
                    org_id=row.org_id,
                    period=leg.period,
                    delta=-back,
                    cap=0,
                )
        await store.post(
            session=session,
            transfer_id=new_id("trf"),
            kind="settle" if state == pb.RESERVATION_STATE_SETTLED else "release",
            reservation_id=row.id,
            moves=moves,
            now=now,
        )
        row.state = state
        row.actual_cost = actual_cost
        row.settled = sum(leg.settled for leg in legs)
        row.closed_at = now
        await session.flush()
        message = reservation_proto(row, legs)
        event: Any = (
            events_pb2.SubsidySettled(reservation=message)
            if state == pb.RESERVATION_STATE_SETTLED
            else events_pb2.SubsidyReleased(reservation=message)
        )
        self._outbox.add(session, event, subject=row.id, org_id=row.org_id)
        return message

    async def _lock_budgets(self, session: AsyncSession, program_ids: Sequence[str]) -> None:
        """Every ledger change to a program first locks its budget row, in id order, so
        reserves, settlements and releases serialise per program and never deadlock."""
        for program_id in sorted(set(program_ids)):
            await store.balance(
                session=session, account=store.account_id(program_id, store.BUDGET), lock=True
            )

    async def SettleSubsidy(
        self, request: pb.SettleSubsidyRequest, context: Context
    ) -> pb.SettleSubsidyResponse:
        async with self._db.write() as session:
            row, legs = await self._open_reservation(session, request.reservation_id)
            domain.check_open(row.state)
            domain.check_actual_cost(request.actual_cost, row.cost)
            settled = await self._close(
                session,
                row,
                legs,
                actual_cost=request.actual_cost,
                state=pb.RESERVATION_STATE_SETTLED,
                now=datetime.now(UTC),
            )
        return pb.SettleSubsidyResponse(reservation=settled)

    async def ReleaseSubsidy(
        self, request: pb.ReleaseSubsidyRequest, context: Context
    ) -> pb.ReleaseSubsidyResponse:
        async with self._db.write() as session:
            row, legs = await self._open_reservation(session, request.reservation_id)
            domain.check_open(row.state)
            released = await self._close(
                session,
                row,
                legs,
                actual_cost=0,
                state=pb.RESERVATION_STATE_RELEASED,
                now=datetime.now(UTC),
            )
        return pb.ReleaseSubsidyResponse(reservation=released)

    async def expire(self, reservation_id: str, now: datetime) -> bool:
        """Releases one reservation whose time ran out; False if it was closed meanwhile."""
        async with self._db.write() as session:
            row = await store.get_reservation(
                session=session, reservation_id=reservation_id, for_update=True
            )
            if row is None or row.state != pb.RESERVATION_STATE_RESERVED or row.expires_at > now:
                return False
            legs = await store.legs_of(session=session, reservation_id=row.id)
            await self._close(
                session, row, legs, actual_cost=0, state=pb.RESERVATION_STATE_EXPIRED, now=now
            )
            return True

    async def GetReservation(
        self, request: pb.GetReservationRequest, context: Context
    ) -> pb.GetReservationResponse:
        principal = current_principal()
        async with self._db.read() as session:
            row = await store.get_reservation(
                session=session, reservation_id=request.reservation_id
            )
            if row is None or not principal.sees_org(row.org_id):
                raise NotFound("reservation not found")
            legs = await store.legs_of(session=session, reservation_id=row.id)
        return pb.GetReservationResponse(reservation=reservation_proto(row, legs))

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: Context
    ) -> pb.GetBudgetResponse:
        current_principal()
        async with self._db.read() as session:
            if await store.get_program(session=session, program_id=request.program_id) is None:
                raise NotFound("program not found")
            found = await store.balances(session=session, program_id=request.program_id)
        return pb.GetBudgetResponse(
            budget=pb.Budget(
                program_id=request.program_id,
                total=-found[store.FUNDING],
                reserved=found[store.RESERVED],
                spent=found[store.SPENT],
                available=found[store.BUDGET],
            )
        )

    async def GetOrganizationUsage(
        self, request: pb.GetOrganizationUsageRequest, context: Context
    ) -> pb.GetOrganizationUsageResponse:
        org_id = _org_in_scope(current_principal(), request.org_id)
        async with self._db.read() as session:
            rows = await store.org_usage(session=session, org_id=org_id)
            usage = []
            for row in rows:
                program_row = await store.get_program(session=session, program_id=row.program_id)
                cap = pb.Program.FromString(program_row.body).per_org_cap if program_row else 0
                usage.append(
                    pb.ProgramUsage(
                        program_id=row.program_id, period=row.period, cap=cap, used=row.used
                    )
                )
        return pb.GetOrganizationUsageResponse(usage=usage)
