"""CatalogService over gRPC: translates protos to store and domain calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import catalog_pb2_grpc, events_pb2
from aisuper.platform import pagination
from aisuper.platform.auth import (
    DEVELOPER,
    ORG_ADMIN,
    current_principal,
    optional_principal,
)
from aisuper.platform.db import Database
from aisuper.platform.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from aisuper.platform.events.outbox import Outbox
from aisuper.platform.idempotency import idempotent
from aisuper.platform.ids import new_id
from aisuper.platform.timestamps import timestamp as _ts
from aisuper_catalog import domain, search_text, store
from aisuper_catalog.domain import Viewer

Context = Any  # grpc.aio.ServicerContext: handlers never touch it

_OUTPUT_ONLY = (
    "id",
    "org_id",
    "state",
    "revision",
    "create_time",
    "update_time",
    "publish_time",
    "deprecate_time",
    "deprecation_reason",
)
_OPEN_REQUEST = (pb.ACCESS_REQUEST_STATE_PENDING, pb.ACCESS_REQUEST_STATE_ACCEPTED)
_DECISION_EVENTS: dict[int, Any] = {
    pb.ACCESS_REQUEST_STATE_ACCEPTED: events_pb2.AccessGranted,
    pb.ACCESS_REQUEST_STATE_REJECTED: events_pb2.AccessRejected,
    pb.ACCESS_REQUEST_STATE_REVOKED: events_pb2.AccessRevoked,
}


def _full(row: store.ListingRow | store.ListingRevision) -> pb.Listing:
    listing = pb.Listing.FromString(row.basic)
    listing.card = row.card
    return listing


def _in_view(listing: pb.Listing, view: int, default: int) -> pb.Listing:
    if (view or default) == pb.LISTING_VIEW_BASIC:
        return domain.basic_view(listing)
    return listing


def _write(row: store.ListingRow, listing: pb.Listing) -> None:
    row.state = listing.state
    row.access_tier = listing.access_tier
    row.revision = listing.revision
    row.basic = domain.basic_view(listing).SerializeToString(deterministic=True)
    row.card = listing.card
    row.updated_at = listing.update_time.ToDatetime(UTC)


def _page_of(rows: Sequence[sa.Row[str, bytes]]) -> list[pb.Listing]:
    return [pb.Listing.FromString(basic) for _slug, basic in rows]


def access_request_proto(row: store.AccessRequestRow) -> pb.AccessRequest:
    return pb.AccessRequest(
        id=row.id,
        listing_id=row.listing_id,
        org_id=row.org_id,
        listing_org_id=row.listing_org_id,
        purpose=row.purpose,
        state=row.state,  # type: ignore[arg-type]
        requested_by=row.requested_by,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        create_time=_ts(row.created_at),
        decide_time=_ts(row.decided_at),
        revoke_time=_ts(row.revoked_at),
    )


class CatalogApi(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, *, db: Database, outbox: Outbox, search_max_results: int) -> None:
        self._db = db
        self._outbox = outbox
        self._search_max_results = search_max_results

    # -- writing listings ---------------------------------------------------

    async def CreateListing(
        self, request: pb.CreateListingRequest, context: Context
    ) -> pb.CreateListingResponse:
        principal = current_principal()
        principal.require_role(ORG_ADMIN)
        listing = domain.check_new(request.listing)
        for name in _OUTPUT_ONLY:
            listing.ClearField(name)  # type: ignore[arg-type]

        async def create(session: AsyncSession) -> pb.CreateListingResponse:
            if await store.slug_taken(session=session, slug=listing.slug):
                raise AlreadyExists(f"listing.slug: {listing.slug!r} is taken")
            now = datetime.now(UTC)
            listing.id = new_id("lst")
            listing.org_id = principal.org_id
            listing.state = pb.LISTING_STATE_DRAFT
            listing.revision = 1
            listing.create_time.FromDatetime(now)
            listing.update_time.FromDatetime(now)
            row = store.ListingRow(
                id=listing.id,
                org_id=listing.org_id,
                slug=listing.slug,
                kind=listing.kind,
                state=0,
                access_tier=0,
                revision=0,
                basic=b"",
                card="",
                created_at=now,
                updated_at=now,
            )
            _write(row, listing)
            session.add(row)
            await session.flush()
            await self._saved(session, row, listing)
            return pb.CreateListingResponse(listing=listing)

        return await idempotent(
            self._db,
            scope=f"create-listing:{principal.org_id}",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateListingResponse,
            create=create,
        )

    async def _saved(
        self, session: AsyncSession, row: store.ListingRow, listing: pb.Listing
    ) -> None:
        await store.save_revision(session=session, row=row)
        await store.index_listing(
            session=session,
            listing_id=row.id,
            slug=row.slug,
            facets=domain.facets(listing),
            texts=domain.search_fields(listing),
        )

    async def _managed(
        self, session: AsyncSession, listing_id: str
    ) -> tuple[store.ListingRow, pb.Listing]:
        """The listing the caller may change, locked, or NOT_FOUND."""
        principal = current_principal()
        row = await store.get_listing(session=session, listing_id=listing_id, for_update=True)
        if row is None or not Viewer.of(principal).manages(row.org_id):
            raise domain.not_found()
        principal.require_role(ORG_ADMIN)
        return row, _full(row)

    async def UpdateListing(
        self, request: pb.UpdateListingRequest, context: Context
    ) -> pb.UpdateListingResponse:
        async with self._db.write() as session:
            row, current = await self._managed(session, request.listing_id)
            if request.expected_revision and request.expected_revision != row.revision:
                raise Aborted(
                    f"the listing is at revision {row.revision}, not {request.expected_revision}"
                )
            updated, changed = domain.apply_update(current, request.listing, request.update_mask)
            if not changed:
                return pb.UpdateListingResponse(listing=current)
            if current.state == domain.PUBLISHED:
                updated.revision = current.revision + 1
            updated.update_time.FromDatetime(datetime.now(UTC))
            _write(row, updated)
            await self._saved(session, row, updated)
            if current.state == domain.PUBLISHED:
                self._emit(
                    session,
                    events_pb2.ListingUpdated(
                        listing=domain.basic_view(updated), changed_fields=changed
                    ),
                    updated,
                )
            return pb.UpdateListingResponse(listing=updated)

    async def PublishListing(
        self, request: pb.PublishListingRequest, context: Context
    ) -> pb.PublishListingResponse:
        async with self._db.write() as session:
            row, listing = await self._managed(session, request.listing_id)
            domain.check_transition(listing.state, domain.PUBLISHED)
            domain.check_publishable(listing)
            now = datetime.now(UTC)
            listing.state = domain.PUBLISHED
            listing.publish_time.FromDatetime(now)
            listing.update_time.FromDatetime(now)
            _write(row, listing)
            await store.save_revision(session=session, row=row)
            self._emit(
                session, events_pb2.ListingPublished(listing=domain.basic_view(listing)), listing
            )
            return pb.PublishListingResponse(listing=listing)

    async def DeprecateListing(
        self, request: pb.DeprecateListingRequest, context: Context
    ) -> pb.DeprecateListingResponse:
        async with self._db.write() as session:
            row, listing = await self._managed(session, request.listing_id)
            domain.check_transition(listing.state, domain.DEPRECATED)
            now = datetime.now(UTC)
            listing.state = domain.DEPRECATED
            listing.deprecate_time.FromDatetime(now)
            listing.update_time.FromDatetime(now)
            listing.deprecation_reason = request.reason
            _write(row, listing)
            await store.save_revision(session=session, row=row)
            self._emit(
                session, events_pb2.ListingDeprecated(listing=domain.basic_view(listing)), listing
            )
            return pb.DeprecateListingResponse(listing=listing)

    def _emit(self, session: AsyncSession, event: Any, listing: pb.Listing) -> None:
        self._outbox.add(session, event, subject=listing.id, org_id=listing.org_id)

    # -- reading listings ---------------------------------------------------

    async def GetListing(
        self, request: pb.GetListingRequest, context: Context
    ) -> pb.GetListingResponse:
        viewer = Viewer.of(optional_principal())
        async with self._db.read() as session:
            if request.WhichOneof("listing") == "slug":
                row = await store.get_listing_by_slug(session=session, slug=request.slug)
            else:
                row = await store.get_listing(session=session, listing_id=request.listing_id)
            if row is None or (row.state == domain.DRAFT and not viewer.manages(row.org_id)):
                raise domain.not_found()
            if not viewer.reads(org_id=row.org_id, state=row.state, access_tier=row.access_tier):
                # Published, so no secret: say what would let the caller see it.
                raise Unauthenticated("this listing is shown to registered organisations only")
            if request.revision and request.revision != row.revision:
                revision = await store.get_revision(
                    session=session, listing_id=row.id, revision=request.revision
                )
                if revision is None:
                    raise domain.not_found(f"revision {request.revision} of this listing")
                listing = _full(revision)
            else:
                listing = _full(row)
        return pb.GetListingResponse(listing=_in_view(listing, request.view, pb.LISTING_VIEW_FULL))

    async def ListListings(
        self, request: pb.ListListingsRequest, context: Context
    ) -> pb.ListListingsResponse:
        key = pagination.query_key(request.filter.SerializeToString(deterministic=True))
        after = pagination.decode_token(request.page_token, key)
        query = domain.listing_query(Viewer.of(optional_principal()), request.filter)
        if query is None:
            return pb.ListListingsResponse()
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            rows = await store.list_listings(
                session=session, query=query, after=after, limit=size + 1
            )
        shown, token = pagination.page(rows, size, lambda row: row[0], key)
        listings = _page_of(shown)
        if request.view == pb.LISTING_VIEW_FULL:
            listings = await self._with_cards(listings)
        return pb.ListListingsResponse(listings=listings, next_page_token=token)

    async def SearchListings(
        self, request: pb.SearchListingsRequest, context: Context
    ) -> pb.SearchListingsResponse:
        terms = search_text.query_terms(request.query)
        key = pagination.query_key(
            request.filter.SerializeToString(deterministic=True),
            "\x1f".join(" ".join(term.tokens) for term in terms),
        )
        after = pagination.decode_token(request.page_token, key)
        if after is not None and not after.isdigit():
            raise InvalidArgument.field("page_token", "not a token this service issued")
        offset = int(after or 0)
        query = domain.listing_query(Viewer.of(optional_principal()), request.filter)
        size = min(pagination.page_size(request.page_size), 100)
        size = min(size, self._search_max_results - offset)
        if query is None or size <= 0:
            return pb.SearchListingsResponse()
        async with self._db.read() as session:
            rows = await store.search_listings(
                session=session, query=query, terms=terms, offset=offset, limit=size + 1
            )
        more = len(rows) > size and offset + size < self._search_max_results
        listings = _page_of(rows[:size])
        if request.view == pb.LISTING_VIEW_FULL:
            listings = await self._with_cards(listings)
        token = pagination.encode_token(str(offset + size), key) if more else ""
        return pb.SearchListingsResponse(listings=listings, next_page_token=token)

    async def _with_cards(self, listings: list[pb.Listing]) -> list[pb.Listing]:
        async with self._db.read() as session:
            for listing in listings:
                row = await store.get_listing(session=session, listing_id=listing.id)
                if row is not None:
                    listing.card = row.card
        return listings

    # -- gated access -------------------------------------------------------

    async def RequestAccess(
        self, request: pb.RequestAccessRequest, context: Context
    ) -> pb.RequestAccessResponse:
        principal = current_principal()
        viewer = Viewer.of(principal)

        async def create(session: AsyncSession) -> pb.RequestAccessResponse:
            row = await store.get_listing(session=session, listing_id=request.listing_id)
            if row is None or not viewer.reads(
                org_id=row.org_id, state=row.state, access_tier=row.access_tier
            ):
                raise domain.not_found()
            principal.require_role(ORG_ADMIN, DEVELOPER)
            listing = _full(row)
            domain.check_can_request(viewer, listing)
            existing = await store.open_access_request(
                session=session,
                listing_id=row.id,
                org_id=principal.org_id,
                open_states=_OPEN_REQUEST,
            )
            if existing is not None:
                raise AlreadyExists(
                    f"this organisation already has an open access request: {existing.id}"
                )
            access = store.AccessRequestRow(
                id=new_id("acr"),
                listing_id=row.id,
                org_id=principal.org_id,
                listing_org_id=row.org_id,
                purpose=request.purpose,
                state=pb.ACCESS_REQUEST_STATE_PENDING,
                requested_by=principal.subject,
                created_at=datetime.now(UTC),
            )
            session.add(access)
            await session.flush()
            message = access_request_proto(access)
            self._outbox.add(
                session,
                events_pb2.AccessRequested(access_request=message, listing_slug=row.slug),
                subject=row.id,
                org_id=access.org_id,
            )
            return pb.RequestAccessResponse(access_request=message)

        return await idempotent(
            self._db,
            scope=f"request-access:{principal.org_id}",
            request_id=request.request_id,
            request=request,
            response_type=pb.RequestAccessResponse,
            create=create,
        )

    async def GetAccessRequest(
        self, request: pb.GetAccessRequestRequest, context: Context
    ) -> pb.GetAccessRequestResponse:
        viewer = Viewer.of(current_principal())
        async with self._db.read() as session:
            row = await store.get_access_request(
                session=session, request_id=request.access_request_id
            )
        if row is None or not (viewer.manages(row.org_id) or viewer.manages(row.listing_org_id)):
            raise domain.not_found("access request")
        return pb.GetAccessRequestResponse(access_request=access_request_proto(row))

    async def ListAccessRequests(
        self, request: pb.ListAccessRequestsRequest, context: Context
    ) -> pb.ListAccessRequestsResponse:
        principal = current_principal()
        key = pagination.query_key(request.listing_id, str(request.state))
        after = pagination.decode_token(request.page_token, key)
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            rows = await store.list_access_requests(
                session=session,
                org_id=None if principal.is_operator else principal.org_id,
                listing_id=request.listing_id or None,
                state=request.state,
                after=after,
                limit=size + 1,
            )
        shown, token = pagination.page(rows, size, lambda row: row.id, key)
        return pb.ListAccessRequestsResponse(
            access_requests=[access_request_proto(row) for row in shown], next_page_token=token
        )

    async def _decide(self, access_request_id: str, target: int, reason: str) -> pb.AccessRequest:
        principal = current_principal()
        viewer = Viewer.of(principal)
        async with self._db.write() as session:
            row = await store.get_access_request(
                session=session, request_id=access_request_id, for_update=True
            )
            if row is None or not (
                viewer.manages(row.org_id) or viewer.manages(row.listing_org_id)
            ):
                raise domain.not_found("access request")
            if not viewer.manages(row.listing_org_id):
                raise PermissionDenied("only the listing's organisation decides on its requests")
            principal.require_role(ORG_ADMIN)
            domain.check_decision(row.state, target)
            now = datetime.now(UTC)
            row.state = target
            row.decided_by = principal.subject
            row.decision_reason = reason
            if target == pb.ACCESS_REQUEST_STATE_REVOKED:
                row.revoked_at = now
            else:
                row.decided_at = now
            await session.flush()
            listing = await store.get_listing(session=session, listing_id=row.listing_id)
            slug = listing.slug if listing is not None else ""
            message = access_request_proto(row)
            event = _DECISION_EVENTS[target]
            self._outbox.add(
                session,
                event(access_request=message, listing_slug=slug),
                subject=row.listing_id,
                org_id=row.org_id,
            )
            return message

    async def ApproveAccessRequest(
        self, request: pb.ApproveAccessRequestRequest, context: Context
    ) -> pb.ApproveAccessRequestResponse:
        decided = await self._decide(
            request.access_request_id, pb.ACCESS_REQUEST_STATE_ACCEPTED, request.reason
        )
        return pb.ApproveAccessRequestResponse(access_request=decided)

    async def RejectAccessRequest(
        self, request: pb.RejectAccessRequestRequest, context: Context
    ) -> pb.RejectAccessRequestResponse:
        decided = await self._decide(
            request.access_request_id, pb.ACCESS_REQUEST_STATE_REJECTED, request.reason
        )
        return pb.RejectAccessRequestResponse(access_request=decided)

    async def RevokeAccess(
        self, request: pb.RevokeAccessRequest, context: Context
    ) -> pb.RevokeAccessResponse:
        decided = await self._decide(
            request.access_request_id, pb.ACCESS_REQUEST_STATE_REVOKED, request.reason
        )
        return pb.RevokeAccessResponse(access_request=decided)
