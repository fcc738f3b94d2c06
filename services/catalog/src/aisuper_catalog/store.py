"""The catalog's tables and the queries on them.

A listing's latest revision is one `listings` row: the columns it is filtered
and ordered by, and the listing itself as protobuf bytes (BASIC view, plus
the card apart), so that a page of results is read without assembling
anything. Every revision stays in `listing_revisions`. Values a listing may
hold several of (languages, licence ids, modalities, tags, capabilities)
are rows of `listing_facets`, keyed by (facet, slug) so that a filter walks
them in page order.

Full text lives in `listing_search`, a different table per engine: an FTS5
table on SQLite, a `tsvector` with a GIN index on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col

from aisuper.platform.db import utc_column
from aisuper_catalog import search_text
from aisuper_catalog.domain import ListingQuery


class ListingRow(SQLModel, table=True):
    __tablename__ = "listings"

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(index=True, max_length=40)
    slug: str = Field(unique=True, max_length=100)
    kind: int
    state: int
    access_tier: int
    revision: int
    #: The latest revision's `Listing`, BASIC view, serialised.
    basic: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    card: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class ListingRevision(SQLModel, table=True):
    __tablename__ = "listing_revisions"

    listing_id: str = Field(primary_key=True, foreign_key="listings.id", max_length=40)
    revision: int = Field(primary_key=True)
    basic: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    card: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


class ListingFacet(SQLModel, table=True):
    __tablename__ = "listing_facets"

    facet: str = Field(primary_key=True, max_length=120)
    slug: str = Field(primary_key=True, max_length=100)
    listing_id: str = Field(index=True, max_length=40)


class AccessRequestRow(SQLModel, table=True):
    __tablename__ = "access_requests"

    id: str = Field(primary_key=True, max_length=40)
    listing_id: str = Field(foreign_key="listings.id", index=True, max_length=40)
    #: The organisation asking.
    org_id: str = Field(index=True, max_length=40)
    #: The listing's organisation, which decides.
    listing_org_id: str = Field(index=True, max_length=40)
    purpose: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    state: int
    requested_by: str = Field(max_length=200)
    decided_by: str = Field(default="", max_length=200)
    decision_reason: str = Field(default="", max_length=1000)
    created_at: datetime = Field(sa_column=utc_column())
    decided_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


#: Full text, per engine (created by the migration, not by SQLModel).
fts5_search = sa.table(
    "listing_search",
    sa.column("rowid"),
    sa.column("listing_id"),
    sa.column("name"),
    sa.column("tags"),
    sa.column("provider"),
    sa.column("card"),
)
pg_search = sa.table(
    "listing_search", sa.column("listing_id"), sa.column("document", postgresql.TSVECTOR)
)
#: Column weights: a word in the name counts most, in the card least.
FTS5_WEIGHTS = (0.0, 10.0, 5.0, 3.0, 1.0)
PG_WEIGHTS = ("A", "B", "B", "D")

_listing = ListingRow.__table__  # type: ignore[attr-defined]


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# -- listings ---------------------------------------------------------------


async def get_listing(
    *, session: AsyncSession, listing_id: str, for_update: bool = False
) -> ListingRow | None:
    return await session.get(ListingRow, listing_id, with_for_update=for_update)


async def get_listing_by_slug(*, session: AsyncSession, slug: str) -> ListingRow | None:
    query = sa.select(ListingRow).where(col(ListingRow.slug) == slug)
    return (await session.execute(query)).scalars().first()


async def slug_taken(*, session: AsyncSession, slug: str) -> bool:
    query = sa.select(sa.literal(1)).where(col(ListingRow.slug) == slug)
    return (await session.execute(query)).first() is not None


async def get_revision(
    *, session: AsyncSession, listing_id: str, revision: int
) -> ListingRevision | None:
    return await session.get(ListingRevision, (listing_id, revision))


async def save_revision(*, session: AsyncSession, row: ListingRow) -> None:
    """Keeps `row`'s current revision in the history (replacing a draft's)."""
    stored = await session.get(ListingRevision, (row.id, row.revision))
    if stored is None:
        session.add(
            ListingRevision(
                listing_id=row.id,
                revision=row.revision,
                basic=row.basic,
                card=row.card,
                created_at=row.updated_at,
            )
        )
    else:
        stored.basic, stored.card, stored.created_at = row.basic, row.card, row.updated_at
    await session.flush()


async def index_listing(
    *,
    session: AsyncSession,
    listing_id: str,
    slug: str,
    facets: Sequence[str],
    texts: tuple[str, str, str, str],
) -> None:
    """Replaces the listing's facets and full-text entry."""
    await session.execute(sa.delete(ListingFacet).where(col(ListingFacet.listing_id) == listing_id))
    if facets:
        await session.execute(
            sa.insert(ListingFacet),
            [{"facet": f, "slug": slug, "listing_id": listing_id} for f in facets],
        )
    if _is_postgres(session):
        await session.execute(sa.delete(pg_search).where(pg_search.c.listing_id == listing_id))
        document = search_text.pg_document(zip(texts, PG_WEIGHTS, strict=True))
        await session.execute(
            sa.insert(pg_search).values(
                listing_id=listing_id, document=sa.cast(document, postgresql.TSVECTOR)
            )
        )
    else:
        await session.execute(sa.delete(fts5_search).where(fts5_search.c.listing_id == listing_id))
        name, tags, provider, card = (search_text.fts5_text(t) for t in texts)
        await session.execute(
            sa.insert(fts5_search).values(
                listing_id=listing_id, name=name, tags=tags, provider=provider, card=card
            )
        )


def _conditions(query: ListingQuery) -> list[sa.ColumnElement[bool]]:
    found = [_listing.c.state == query.state]
    if query.kind:
        found.append(_listing.c.kind == query.kind)
    if query.access_tier:
        found.append(_listing.c.access_tier == query.access_tier)
    if query.org_id is not None:
        found.append(_listing.c.org_id == query.org_id)
    facet = ListingFacet.__table__  # type: ignore[attr-defined]
    for value in query.facets:
        found.append(sa.exists().where(facet.c.facet == value, facet.c.slug == _listing.c.slug))
    return found


async def list_listings(
    *, session: AsyncSession, query: ListingQuery, after: str | None, limit: int
) -> Sequence[sa.Row[str, bytes]]:
    """(slug, basic) of matching listings, by slug."""
    select = (
        sa.select(_listing.c.slug, _listing.c.basic)
        .where(*_conditions(query))
        .order_by(_listing.c.slug)
        .limit(limit)
    )
    if after is not None:
        select = select.where(_listing.c.slug > after)
    return (await session.execute(select)).all()


async def search_listings(
    *,
    session: AsyncSession,
    query: ListingQuery,
    terms: Sequence[search_text.Term],
    offset: int,
    limit: int,
) -> Sequence[sa.Row[str, bytes]]:
    """(slug, basic) of matching listings, best match first, then by slug."""
    if not terms:
        select = sa.select(_listing.c.slug, _listing.c.basic).where(*_conditions(query))
        select = select.order_by(_listing.c.slug)
    elif _is_postgres(session):
        tsquery = sa.cast(search_text.pg_query(terms), postgresql.TSQUERY)
        rank = sa.func.ts_rank(pg_search.c.document, tsquery)
        select = (
            sa.select(_listing.c.slug, _listing.c.basic)
            .join_from(pg_search, _listing, _listing.c.id == pg_search.c.listing_id)
            .where(pg_search.c.document.op("@@")(tsquery), *_conditions(query))
            .order_by(rank.desc(), _listing.c.slug)
        )
    else:
        match = sa.literal_column("listing_search").op("MATCH")(search_text.fts5_match(terms))
        rank = sa.func.bm25(sa.literal_column("listing_search"), *FTS5_WEIGHTS)
        select = (
            sa.select(_listing.c.slug, _listing.c.basic)
            .join_from(fts5_search, _listing, _listing.c.id == fts5_search.c.listing_id)
            .where(match, *_conditions(query))
            .order_by(rank, _listing.c.slug)
        )
    return (await session.execute(select.offset(offset).limit(limit))).all()


# -- access requests ----------------------------------------------------------


async def get_access_request(
    *, session: AsyncSession, request_id: str, for_update: bool = False
) -> AccessRequestRow | None:
    return await session.get(AccessRequestRow, request_id, with_for_update=for_update)


async def open_access_request(
    *, session: AsyncSession, listing_id: str, org_id: str, open_states: Sequence[int]
) -> AccessRequestRow | None:
    query = sa.select(AccessRequestRow).where(
        col(AccessRequestRow.listing_id) == listing_id,
        col(AccessRequestRow.org_id) == org_id,
        col(AccessRequestRow.state).in_(open_states),
    )
    return (await session.execute(query)).scalars().first()


async def list_access_requests(
    *,
    session: AsyncSession,
    org_id: str | None,
    listing_id: str | None,
    state: int,
    after: str | None,
    limit: int,
) -> Sequence[AccessRequestRow]:
    """Requests `org_id` filed or must decide on (all of them when None), by id."""
    query = sa.select(AccessRequestRow).order_by(col(AccessRequestRow.id)).limit(limit)
    if org_id is not None:
        query = query.where(
            sa.or_(
                col(AccessRequestRow.org_id) == org_id,
                col(AccessRequestRow.listing_org_id) == org_id,
            )
        )
    if listing_id is not None:
        query = query.where(col(AccessRequestRow.listing_id) == listing_id)
    if state:
        query = query.where(col(AccessRequestRow.state) == state)
    if after is not None:
        query = query.where(col(AccessRequestRow.id) > after)
    return (await session.execute(query)).scalars().all()
