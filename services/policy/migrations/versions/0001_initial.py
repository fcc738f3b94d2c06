"""Programs, organisations' facts, the ledger (accounts, transfers, entries, cap
usage), reservations; the platform tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from aisuper.platform.db import UtcDateTime
from aisuper.platform.tables import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "programs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "org_facts",
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("incubator_member", sa.Boolean(), nullable=False),
        sa.Column("employee_count", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("registered_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("program_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        # The ledger's floor: no interleaving of transactions takes a budget below zero.
        sa.CheckConstraint("may_go_negative OR balance >= 0", name="ck_accounts_floor"),
    )
    op.create_index("ix_accounts_program_id", "accounts", ["program_id"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reservation_id", sa.String(40), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_transfers_reservation_id", "transfers", ["reservation_id"])
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("transfer_id", sa.String(40), sa.ForeignKey("transfers.id"), nullable=False),
        sa.Column("account_id", sa.String(80), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_entries_transfer_id", "entries", ["transfer_id"])
    op.create_index("ix_entries_account_id", "entries", ["account_id"])
    op.create_table(
        "cap_usage",
        sa.Column("program_id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("period", sa.String(20), primary_key=True),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("used >= 0", name="ck_cap_usage_floor"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("covered", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("actual_cost", sa.BigInteger(), nullable=False),
        sa.Column("settled", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_reservations_org_id", "reservations", ["org_id"])
    op.create_index("ix_reservations_state_expires_at", "reservations", ["state", "expires_at"])
    op.create_table(
        "reservation_legs",
        sa.Column(
            "reservation_id", sa.String(40), sa.ForeignKey("reservations.id"), primary_key=True
        ),
        sa.Column("program_id", sa.String(40), primary_key=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("settled", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "reservation_legs",
        "reservations",
        "cap_usage",
        "entries",
        "transfers",
        "accounts",
        "org_facts",
        "programs",
    ):
        op.drop_table(table)
