"""Listings, their revisions, facets and full text; access requests; platform tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from aisuper.platform.db import UtcDateTime
from aisuper.platform.tables import create_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Requests that are pending or accepted: an organisation has at most one per listing.
OPEN_REQUEST = sa.text("state IN (1, 2)")


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "listings",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("access_tier", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("basic", sa.LargeBinary(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_listings_org_id", "listings", ["org_id"])
    # Pages are walked by slug within a state, filtered by kind or tier.
    op.create_index("ix_listings_state_slug", "listings", ["state", "slug"])
    op.create_index("ix_listings_state_kind_slug", "listings", ["state", "kind", "slug"])
    op.create_table(
        "listing_revisions",
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("listings.id"), primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True),
        sa.Column("basic", sa.LargeBinary(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "listing_facets",
        sa.Column("facet", sa.String(120), primary_key=True),
        sa.Column("slug", sa.String(100), primary_key=True),
        sa.Column("listing_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_listing_facets_listing_id", "listing_facets", ["listing_id"])
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("listings.id"), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("listing_org_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decision_reason", sa.String(1000), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_access_requests_listing_id", "access_requests", ["listing_id"])
    op.create_index("ix_access_requests_org_id", "access_requests", ["org_id"])
    op.create_index("ix_access_requests_listing_org_id", "access_requests", ["listing_org_id"])
    op.create_index(
        "uq_access_requests_open",
        "access_requests",
        ["listing_id", "org_id"],
        unique=True,
        sqlite_where=OPEN_REQUEST,
        postgresql_where=OPEN_REQUEST,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "listing_search",
            sa.Column("listing_id", sa.String(40), primary_key=True),
            sa.Column("document", postgresql.TSVECTOR(), nullable=False),
        )
        op.create_index(
            "ix_listing_search_document",
            "listing_search",
            ["document"],
            postgresql_using="gin",
        )
    else:
        # Our own tokens, space-separated (see aisuper_catalog.search_text): the
        # ascii tokenizer keeps every non-ASCII character inside a token.
        op.execute(
            "CREATE VIRTUAL TABLE listing_search USING fts5("
            "listing_id UNINDEXED, name, tags, provider, card, "
            "tokenize='ascii', prefix='2 3 4')"
        )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS listing_search")
    op.drop_table("access_requests")
    op.drop_table("listing_facets")
    op.drop_table("listing_revisions")
    op.drop_table("listings")
