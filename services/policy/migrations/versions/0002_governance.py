"""Governance: access policies and the policy set's revision, listing facts and
grants from catalog's events, the hash-chained decision log and its head.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from aisuper.platform.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "access_policies",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    head = op.create_table(
        "policy_set_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "revision": 0}])
    op.create_table(
        "listing_facts",
        sa.Column("listing_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "listing_grants",
        sa.Column("listing_id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("access_request_id", sa.String(40), nullable=False),
        sa.Column("granted_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "decision_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("policy_ids", sa.Text(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("policy_revision", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    chain = op.create_table(
        "decision_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(chain, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    for table in (
        "decision_chain_head",
        "decision_log",
        "listing_grants",
        "listing_facts",
        "policy_set_head",
        "access_policies",
    ):
        op.drop_table(table)
