"""Policy's tables, and the ledger that moves money between its accounts.

The ledger is double-entry: every transfer is a set of entries that sum to
zero, and an account's balance is the sum of its entries (kept on the row).
Each program has four accounts: `funding` (where its budget comes from; may
go negative), `budget` (what it may still pay), `reserved` and `spent`. A
CHECK constraint keeps every other account at or above zero, and every
decrement is conditional on the balance, so no interleaving of transactions
can overspend a budget. An organisation's use of a program's cap is a
guarded counter per period (`cap_usage`), moved in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col

from aisuper.platform.db import utc_column
from aisuper.platform.errors import ResourceExhausted

FUNDING, BUDGET, RESERVED, SPENT = "funding", "budget", "reserved", "spent"


class ProgramRow(SQLModel, table=True):
    __tablename__ = "programs"

    id: str = Field(primary_key=True, max_length=40)
    slug: str = Field(unique=True, max_length=100)
    kind: int
    revision: int
    #: The `Program` message, serialised.
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class OrganizationRow(SQLModel, table=True):
    """An organisation's facts, as identity's events told them."""

    __tablename__ = "org_facts"

    org_id: str = Field(primary_key=True, max_length=40)
    kind: int
    country: str = Field(max_length=2)
    incubator_member: bool
    employee_count: int
    verified: bool = False
    suspended: bool = False
    registered_at: datetime = Field(sa_column=utc_column())


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        sa.CheckConstraint("may_go_negative OR balance >= 0", name="ck_accounts_floor"),
    )

    id: str = Field(primary_key=True, max_length=80)
    program_id: str = Field(index=True, max_length=40)
    kind: str = Field(max_length=20)
    balance: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    may_go_negative: bool = False


class Transfer(SQLModel, table=True):
    __tablename__ = "transfers"

    id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(max_length=20)
    reservation_id: str | None = Field(default=None, index=True, max_length=40)
    created_at: datetime = Field(sa_column=utc_column())


class Entry(SQLModel, table=True):
    __tablename__ = "entries"

    id: int | None = Field(default=None, primary_key=True)
    transfer_id: str = Field(foreign_key="transfers.id", index=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=80)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))


class CapUsage(SQLModel, table=True):
    __tablename__ = "cap_usage"
    __table_args__ = (sa.CheckConstraint("used >= 0", name="ck_cap_usage_floor"),)

    program_id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(primary_key=True, max_length=40)
    period: str = Field(primary_key=True, max_length=20)
    used: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))


class ReservationRow(SQLModel, table=True):
    __tablename__ = "reservations"

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(index=True, max_length=40)
    kind: int
    cost: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    covered: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    reference: str = Field(max_length=200)
    state: int
    actual_cost: int = Field(default=0, sa_column=sa.Column(sa.BigInteger(), nullable=False))
    settled: int = Field(default=0, sa_column=sa.Column(sa.BigInteger(), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ReservationLegRow(SQLModel, table=True):
    __tablename__ = "reservation_legs"

    reservation_id: str = Field(primary_key=True, foreign_key="reservations.id", max_length=40)
    program_id: str = Field(primary_key=True, max_length=40)
    amount: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    settled: int = Field(default=0, sa_column=sa.Column(sa.BigInteger(), nullable=False))
    period: str = Field(max_length=20)


def account_id(program_id: str, kind: str) -> str:
    return f"{kind}:{program_id}"


# -- programs and organisations ------------------------------------------------


async def get_program(
    *, session: AsyncSession, program_id: str, for_update: bool = False
) -> ProgramRow | None:
    return await session.get(ProgramRow, program_id, with_for_update=for_update)


async def get_program_by_slug(*, session: AsyncSession, slug: str) -> ProgramRow | None:
    query = sa.select(ProgramRow).where(col(ProgramRow.slug) == slug)
    return (await session.execute(query)).scalars().first()


async def list_programs(
    *, session: AsyncSession, kind: int = 0, after: str | None = None, limit: int | None = None
) -> Sequence[ProgramRow]:
    query = sa.select(ProgramRow).order_by(col(ProgramRow.id))
    if kind:
        query = query.where(col(ProgramRow.kind) == kind)
    if after is not None:
        query = query.where(col(ProgramRow.id) > after)
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()


async def get_organization(*, session: AsyncSession, org_id: str) -> OrganizationRow | None:
    return await session.get(OrganizationRow, org_id)


# -- the ledger ---------------------------------------------------------------


async def open_accounts(*, session: AsyncSession, program_id: str) -> None:
    session.add_all(
        [
            Account(
                id=account_id(program_id, kind),
                program_id=program_id,
                kind=kind,
                balance=0,
                may_go_negative=kind == FUNDING,
            )
            for kind in (FUNDING, BUDGET, RESERVED, SPENT)
        ]
    )
    await session.flush()


async def balance(*, session: AsyncSession, account: str, lock: bool = False) -> int:
    query = sa.select(col(Account.balance)).where(col(Account.id) == account)
    if lock:
        query = query.with_for_update()
    return int((await session.execute(query)).scalar_one())


async def balances(*, session: AsyncSession, program_id: str) -> dict[str, int]:
    query = sa.select(col(Account.kind), col(Account.balance)).where(
        col(Account.program_id) == program_id
    )
    return {kind: int(value) for kind, value in (await session.execute(query)).all()}


async def post(
    *,
    session: AsyncSession,
    transfer_id: str,
    kind: str,
    moves: Sequence[tuple[str, str, int]],
    now: datetime,
    reservation_id: str | None = None,
) -> None:
    """One balanced transfer: each (from, to, amount) takes from one account, gives to another.

    A move that would take an account below zero (unless it may go negative)
    raises ResourceExhausted and the caller's transaction rolls back whole.
    """
    session.add(Transfer(id=transfer_id, kind=kind, reservation_id=reservation_id, created_at=now))
    await session.flush()
    accounts = Account.__table__  # type: ignore[attr-defined]
    entries: list[dict[str, object]] = []
    for source, target, amount in moves:
        if amount == 0:
            continue
        if amount < 0:
            raise ValueError("a move carries a positive amount")
        taken = await session.execute(
            sa.update(accounts)
            .where(
                accounts.c.id == source,
                sa.or_(accounts.c.may_go_negative, accounts.c.balance >= amount),
            )
            .values(balance=accounts.c.balance - amount)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise ResourceExhausted(f"{source} holds less than {amount}")
        await session.execute(
            sa.update(accounts)
            .where(accounts.c.id == target)
            .values(balance=accounts.c.balance + amount)
        )
        entries += [
            {"transfer_id": transfer_id, "account_id": source, "amount": -amount},
            {"transfer_id": transfer_id, "account_id": target, "amount": amount},
        ]
    if entries:
        await session.execute(sa.insert(Entry), entries)


async def cap_used(
    *, session: AsyncSession, program_id: str, org_id: str, period: str, lock: bool = False
) -> int:
    """What the org has used of the program's cap this period (the row made if missing)."""
    insert = (
        postgresql.insert(CapUsage)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(CapUsage)
    )
    await session.execute(
        insert.values(
            program_id=program_id, org_id=org_id, period=period, used=0
        ).on_conflict_do_nothing()
    )
    query = sa.select(col(CapUsage.used)).where(
        col(CapUsage.program_id) == program_id,
        col(CapUsage.org_id) == org_id,
        col(CapUsage.period) == period,
    )
    if lock:
        query = query.with_for_update()
    return int((await session.execute(query)).scalar_one())


async def cap_used_so_far(
    *, session: AsyncSession, program_id: str, org_id: str, period: str
) -> int:
    found = await session.get(CapUsage, (program_id, org_id, period))
    return found.used if found is not None else 0


async def most_cap_used(*, session: AsyncSession, program_id: str, period: str) -> int:
    """The most any one organisation has used of the program's cap in `period`."""
    query = sa.select(sa.func.max(col(CapUsage.used))).where(
        col(CapUsage.program_id) == program_id, col(CapUsage.period) == period
    )
    return int((await session.execute(query)).scalar_one() or 0)


async def add_cap_usage(
    *, session: AsyncSession, program_id: str, org_id: str, period: str, delta: int, cap: int
) -> None:
    """Moves the counter by `delta`; never above `cap` (0: no cap) nor below zero."""
    table = CapUsage.__table__  # type: ignore[attr-defined]
    conditions = [
        table.c.program_id == program_id,
        table.c.org_id == org_id,
        table.c.period == period,
        table.c.used + delta >= 0,
    ]
    if cap and delta > 0:
        conditions.append(table.c.used + delta <= cap)
    moved = await session.execute(
        sa.update(table).where(*conditions).values(used=table.c.used + delta)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise ResourceExhausted(f"the organisation's cap of {program_id} is used up")


async def org_usage(*, session: AsyncSession, org_id: str) -> Sequence[CapUsage]:
    query = (
        sa.select(CapUsage)
        .where(col(CapUsage.org_id) == org_id)
        .order_by(col(CapUsage.program_id), col(CapUsage.period))
    )
    return (await session.execute(query)).scalars().all()


# -- reservations ---------------------------------------------------------------


async def get_reservation(
    *, session: AsyncSession, reservation_id: str, for_update: bool = False
) -> ReservationRow | None:
    return await session.get(ReservationRow, reservation_id, with_for_update=for_update)


async def legs_of(*, session: AsyncSession, reservation_id: str) -> Sequence[ReservationLegRow]:
    query = (
        sa.select(ReservationLegRow)
        .where(col(ReservationLegRow.reservation_id) == reservation_id)
        .order_by(col(ReservationLegRow.program_id))
    )
    return (await session.execute(query)).scalars().all()


async def expired_reservations(
    *, session: AsyncSession, now: datetime, state: int, limit: int
) -> Sequence[str]:
    query = (
        sa.select(col(ReservationRow.id))
        .where(col(ReservationRow.state) == state, col(ReservationRow.expires_at) <= now)
        .order_by(col(ReservationRow.expires_at))
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()
