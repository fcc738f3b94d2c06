"""Tenancy and roles on the shelf: another organisation's draft or access
request answers exactly like a missing one, lists and searches never show a
foreign draft, anonymous callers see open published listings only, and roles
bound what a credential may do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from catalog_harness import Catalog, Metadata, Org, dataset_listing, model_listing
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from grpc_status import rpc_status

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.identity.v1 import identity_pb2
from aisuper.platform import pagination
from aisuper.platform.grpc_client import bearer
from aisuper.platform.grpc_errors import bad_request_of

MISSING_LISTING = "lst_" + "0" * 26
MISSING_REQUEST = "acr_" + "0" * 26
MISSING_SLUG = "no-such-listing"
PURPOSE = "Evaluating the corpus for a research project."


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def _status_of(error: grpc.aio.AioRpcError) -> tuple[Any, ...]:
    """Everything a caller can observe of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return (
        error.code(),
        error.details(),
        status.SerializeToString(deterministic=True) if status else None,
        bad_request_of(error),
    )


async def _jwt_of(catalog: Catalog, org: Org) -> Metadata:
    issued = await catalog.identity.stub.IssueToken(
        identity_pb2.IssueTokenRequest(), metadata=org.auth
    )
    return bearer(issued.token)


async def _member(catalog: Catalog, org: Org, role: int) -> Metadata:
    return bearer(await catalog.member_key(org, role))


async def _approve(catalog: Catalog, org: Org, request_id: str) -> pb.AccessRequest:
    approved = await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=request_id), metadata=org.auth
    )
    return approved.access_request


async def _request(catalog: Catalog, org: Org, listing_id: str) -> pb.AccessRequest:
    filed = await catalog.stub.RequestAccess(
        pb.RequestAccessRequest(listing_id=listing_id, purpose=PURPOSE), metadata=org.auth
    )
    return filed.access_request


@dataclass
class World:
    """Org A's listings and the access requests on them; B is the outsider."""

    a: Org
    b: Org
    c: Org
    d: Org
    draft: pb.Listing  # A's draft
    listing: pb.Listing  # A's published open listing
    gated: pb.Listing  # A's published restricted data set
    pending: pb.AccessRequest  # C -> gated, pending
    accepted: pb.AccessRequest  # D -> gated, accepted


async def _world(catalog: Catalog) -> World:
    a, b, c, d = await asyncio.gather(
        catalog.org("Alpha GmbH"),
        catalog.org("Beta SAS"),
        catalog.org("Gamma BV"),
        catalog.org("Delta AB"),
    )
    draft = await catalog.create(a, model_listing("alpha-secret-draft", name="Alpha Zanzibar"))
    listing = await catalog.published(a, model_listing("alpha-open"))
    gated = await catalog.published(
        a, dataset_listing("alpha-gated", access_tier=pb.ACCESS_TIER_RESTRICTED)
    )
    pending = await _request(catalog, c, gated.id)
    accepted = await _approve(catalog, a, (await _request(catalog, d, gated.id)).id)
    return World(a, b, c, d, draft, listing, gated, pending, accepted)


async def _state_of(catalog: Catalog, a: Org) -> list[Message]:
    """A's listings (every revision, with cards) and access requests, as the operator sees them."""
    operator = catalog.operator.auth
    found: list[Message] = []
    for state in (pb.LISTING_STATE_DRAFT, pb.LISTING_STATE_PUBLISHED, pb.LISTING_STATE_DEPRECATED):
        page = await catalog.stub.ListListings(
            pb.ListListingsRequest(
                filter=pb.ListingFilter(org_id=a.id, state=state),
                page_size=1000,
                view=pb.LISTING_VIEW_FULL,
            ),
            metadata=operator,
        )
        for listing in page.listings:
            found.append(listing)
            for revision in range(1, listing.revision):
                old = await catalog.stub.GetListing(
                    pb.GetListingRequest(listing_id=listing.id, revision=revision),
                    metadata=operator,
                )
                found.append(old.listing)
    requests = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(page_size=1000), metadata=operator
    )
    found += [r for r in requests.access_requests if a.id in (r.org_id, r.listing_org_id)]
    return found


def _update(listing_id: str, **request: Any) -> pb.UpdateListingRequest:
    return pb.UpdateListingRequest(
        listing_id=listing_id,
        listing=pb.Listing(name="Hijacked", access_tier=pb.ACCESS_TIER_OPEN),
        update_mask=FieldMask(paths=["name", "access_tier"]),
        **request,
    )


# (what, RPC, request on A's resource, request on a well-formed missing one).
Probe = tuple[str, str, Callable[[World], Message], Callable[[World], Message]]

PROBES: list[Probe] = [
    (
        "update A's draft",
        "UpdateListing",
        lambda w: _update(w.draft.id),
        lambda _: _update(MISSING_LISTING),
    ),
    (
        "update A's published listing",
        "UpdateListing",
        lambda w: _update(w.listing.id),
        lambda _: _update(MISSING_LISTING),
    ),
    (
        "update A's published listing at a stale revision",
        "UpdateListing",
        lambda w: _update(w.listing.id, expected_revision=7),
        lambda _: _update(MISSING_LISTING, expected_revision=7),
    ),
    (
        "publish A's draft",
        "PublishListing",
        lambda w: pb.PublishListingRequest(listing_id=w.draft.id),
        lambda _: pb.PublishListingRequest(listing_id=MISSING_LISTING),
    ),
    (
        "deprecate A's published listing",
        "DeprecateListing",
        lambda w: pb.DeprecateListingRequest(listing_id=w.listing.id, reason="mine now"),
        lambda _: pb.DeprecateListingRequest(listing_id=MISSING_LISTING, reason="mine now"),
    ),
    (
        "deprecate A's draft",
        "DeprecateListing",
        lambda w: pb.DeprecateListingRequest(listing_id=w.draft.id),
        lambda _: pb.DeprecateListingRequest(listing_id=MISSING_LISTING),
    ),
    (
        "get A's draft by id",
        "GetListing",
        lambda w: pb.GetListingRequest(listing_id=w.draft.id),
        lambda _: pb.GetListingRequest(listing_id=MISSING_LISTING),
    ),
    (
        "get A's draft by slug",
        "GetListing",
        lambda w: pb.GetListingRequest(slug=w.draft.slug),
        lambda _: pb.GetListingRequest(slug=MISSING_SLUG),
    ),
    (
        "get revision 1 of A's draft, BASIC",
        "GetListing",
        lambda w: pb.GetListingRequest(
            listing_id=w.draft.id, revision=1, view=pb.LISTING_VIEW_BASIC
        ),
        lambda _: pb.GetListingRequest(
            listing_id=MISSING_LISTING, revision=1, view=pb.LISTING_VIEW_BASIC
        ),
    ),
    (
        "request access to A's draft",
        "RequestAccess",
        lambda w: pb.RequestAccessRequest(listing_id=w.draft.id, purpose=PURPOSE),
        lambda _: pb.RequestAccessRequest(listing_id=MISSING_LISTING, purpose=PURPOSE),
    ),
    (
        "request access to A's draft, idempotently",
        "RequestAccess",
        lambda w: pb.RequestAccessRequest(listing_id=w.draft.id, purpose=PURPOSE, request_id="r1"),
        lambda _: pb.RequestAccessRequest(
            listing_id=MISSING_LISTING, purpose=PURPOSE, request_id="r2"
        ),
    ),
    (
        "get C's request to A",
        "GetAccessRequest",
        lambda w: pb.GetAccessRequestRequest(access_request_id=w.pending.id),
        lambda _: pb.GetAccessRequestRequest(access_request_id=MISSING_REQUEST),
    ),
    (
        "approve C's request to A",
        "ApproveAccessRequest",
        lambda w: pb.ApproveAccessRequestRequest(access_request_id=w.pending.id, reason="ok"),
        lambda _: pb.ApproveAccessRequestRequest(access_request_id=MISSING_REQUEST, reason="ok"),
    ),
    (
        "reject C's request to A",
        "RejectAccessRequest",
        lambda w: pb.RejectAccessRequestRequest(access_request_id=w.pending.id, reason="no"),
        lambda _: pb.RejectAccessRequestRequest(access_request_id=MISSING_REQUEST, reason="no"),
    ),
    (
        "reject D's accepted request to A",
        "RejectAccessRequest",
        lambda w: pb.RejectAccessRequestRequest(access_request_id=w.accepted.id, reason="no"),
        lambda _: pb.RejectAccessRequestRequest(access_request_id=MISSING_REQUEST, reason="no"),
    ),
    (
        "revoke D's access to A",
        "RevokeAccess",
        lambda w: pb.RevokeAccessRequest(access_request_id=w.accepted.id, reason="no"),
        lambda _: pb.RevokeAccessRequest(access_request_id=MISSING_REQUEST, reason="no"),
    ),
]


async def test_foreign_resource_answers_like_a_missing_one(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _state_of(catalog, world.a)
    callers = {
        "B's admin key": world.b.auth,
        "B's admin token": await _jwt_of(catalog, world.b),
        "B's developer": await _member(catalog, world.b, identity_pb2.ROLE_DEVELOPER),
    }

    differences: list[str] = []
    for what, rpc, foreign, missing in PROBES:
        call = getattr(catalog.stub, rpc)
        for caller, metadata in callers.items():
            on_foreign = await _error(call(foreign(world), metadata=metadata))
            on_missing = await _error(call(missing(world), metadata=metadata))
            if on_foreign.code() != grpc.StatusCode.NOT_FOUND:
                differences.append(f"{what} as {caller}: {on_foreign.code()} not NOT_FOUND")
            if _status_of(on_foreign) != _status_of(on_missing):
                differences.append(
                    f"{what} as {caller}: {_status_of(on_foreign)} != {_status_of(on_missing)}"
                )
    assert not differences, "\n".join(differences)
    assert await _state_of(catalog, world.a) == before

    # A still manages all of it: nothing B did got half-way.
    got = await catalog.stub.GetListing(
        pb.GetListingRequest(listing_id=world.draft.id), metadata=world.a.auth
    )
    assert got.listing.name == "Alpha Zanzibar"
    request = await catalog.stub.GetAccessRequest(
        pb.GetAccessRequestRequest(access_request_id=world.pending.id), metadata=world.c.auth
    )
    assert request.access_request.state == pb.ACCESS_REQUEST_STATE_PENDING


async def _slugs(
    catalog: Catalog, metadata: Metadata, *, page_size: int = 1000, **filter_: Any
) -> list[str]:
    """Every slug the caller can page through with this filter."""
    slugs: list[str] = []
    token = ""
    while True:
        page = await catalog.stub.ListListings(
            pb.ListListingsRequest(
                filter=pb.ListingFilter(**filter_), page_size=page_size, page_token=token
            ),
            metadata=metadata,
        )
        slugs += [listing.slug for listing in page.listings]
        token = page.next_page_token
        if not token:
            return slugs


async def _found(
    catalog: Catalog, metadata: Metadata, query: str = "", **filter_: Any
) -> list[str]:
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query=query, filter=pb.ListingFilter(**filter_), page_size=100),
        metadata=metadata,
    )
    return [listing.slug for listing in found.listings]


DRAFT = pb.LISTING_STATE_DRAFT


async def test_drafts_of_another_organisation_are_never_listed_or_found(
    catalog: Catalog,
) -> None:
    a, b = await asyncio.gather(catalog.org("Alpha GmbH"), catalog.org("Beta SAS"))
    for slug in ("a-draft-1", "a-draft-2", "a-draft-3"):
        await catalog.create(a, model_listing(slug, name="Zanzibar Secret"))
    await catalog.create(b, model_listing("b-draft", name="Zanzibar Beta"))
    await catalog.published(a, model_listing("a-published", name="Zanzibar Public"))
    a_developer = await _member(catalog, a, identity_pb2.ROLE_DEVELOPER)
    b_viewer = await _member(catalog, b, identity_pb2.ROLE_VIEWER)

    for b_caller in (b.auth, await _jwt_of(catalog, b), b_viewer):
        assert await _slugs(catalog, b_caller, state=DRAFT) == ["b-draft"]
        assert await _slugs(catalog, b_caller, state=DRAFT, page_size=1) == ["b-draft"]
        assert await _slugs(catalog, b_caller, state=DRAFT, org_id=a.id) == []
        assert await _slugs(catalog, b_caller, state=DRAFT, org_id=b.id) == ["b-draft"]
        assert await _slugs(catalog, b_caller, org_id=a.id) == ["a-published"]
        assert await _slugs(catalog, b_caller) == ["a-published"]
        assert await _found(catalog, b_caller, "zanzibar") == ["a-published"]
        assert await _found(catalog, b_caller, "zanzibar secret") == []
        assert await _found(catalog, b_caller, "zanzibar", state=DRAFT) == ["b-draft"]
        assert await _found(catalog, b_caller, "secret", state=DRAFT, org_id=a.id) == []
        assert await _found(catalog, b_caller, "", state=DRAFT) == ["b-draft"]

    # A's own members, whatever their role, see A's drafts.
    drafts = ["a-draft-1", "a-draft-2", "a-draft-3"]
    for a_caller in (a.auth, a_developer):
        assert await _slugs(catalog, a_caller, state=DRAFT) == drafts
        assert await _slugs(catalog, a_caller, state=DRAFT, page_size=2) == drafts
        assert await _found(catalog, a_caller, "secret", state=DRAFT) == drafts
    # And the operator sees everyone's.
    everyone = [*drafts, "b-draft"]
    assert await _slugs(catalog, catalog.operator.auth, state=DRAFT) == everyone
    assert await _slugs(catalog, catalog.operator.auth, state=DRAFT, page_size=1) == everyone
    assert await _slugs(catalog, catalog.operator.auth, state=DRAFT, org_id=a.id) == drafts


async def _outcome(call: Awaitable[Any]) -> Any:
    [outcome] = await asyncio.gather(call, return_exceptions=True)
    return outcome


async def test_a_page_token_never_reveals_another_organisations_drafts(
    catalog: Catalog,
) -> None:
    a, b = await asyncio.gather(catalog.org("Alpha GmbH"), catalog.org("Beta SAS"))
    for slug in ("a-1", "a-2", "a-3", "c-1"):
        await catalog.create(a, model_listing(slug, name="Draft Listing"))
    for slug in ("b-1", "b-2"):
        await catalog.create(b, model_listing(slug, name="Draft Listing"))
    b_drafts = {"b-1", "b-2"}
    drafts = pb.ListingFilter(state=DRAFT)

    first = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=drafts, page_size=1), metadata=a.auth
    )
    assert [listing.slug for listing in first.listings] == ["a-1"]
    searched = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query="draft", filter=drafts, page_size=1), metadata=a.auth
    )
    assert searched.next_page_token
    # Tokens this service never issued, but bound to the same filter.
    key = pagination.query_key(drafts.SerializeToString(deterministic=True))
    forged = [pagination.encode_token(after, key) for after in ("0", "a-0", "a-1", "zzz", "-")]

    for token in [first.next_page_token, *forged]:
        outcome = await _outcome(
            catalog.stub.ListListings(
                pb.ListListingsRequest(filter=drafts, page_token=token), metadata=b.auth
            )
        )
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT, outcome.details()
            assert "page_token" in bad_request_of(outcome)
        else:
            assert {listing.slug for listing in outcome.listings} <= b_drafts, token
        # The same token on a filter naming A is no way in either.
        outcome = await _outcome(
            catalog.stub.ListListings(
                pb.ListListingsRequest(
                    filter=pb.ListingFilter(state=DRAFT, org_id=a.id), page_token=token
                ),
                metadata=b.auth,
            )
        )
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT, outcome.details()
        else:
            assert not outcome.listings

    outcome = await _outcome(
        catalog.stub.SearchListings(
            pb.SearchListingsRequest(
                query="draft", filter=drafts, page_token=searched.next_page_token
            ),
            metadata=b.auth,
        )
    )
    if isinstance(outcome, grpc.aio.AioRpcError):
        assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT, outcome.details()
    else:
        assert {listing.slug for listing in outcome.listings} <= b_drafts


async def test_operator_sees_and_manages_everything(catalog: Catalog) -> None:
    world = await _world(catalog)
    operator = catalog.operator.auth

    got = await catalog.stub.GetListing(
        pb.GetListingRequest(slug=world.draft.slug), metadata=operator
    )
    assert got.listing.id == world.draft.id
    assert got.listing.card  # FULL
    updated = await catalog.stub.UpdateListing(
        pb.UpdateListingRequest(
            listing_id=world.draft.id,
            listing=pb.Listing(name="Renamed by the operator"),
            update_mask=FieldMask(paths=["name"]),
        ),
        metadata=operator,
    )
    assert updated.listing.name == "Renamed by the operator"
    assert updated.listing.org_id == world.a.id  # still A's
    published = await catalog.stub.PublishListing(
        pb.PublishListingRequest(listing_id=world.draft.id), metadata=operator
    )
    assert published.listing.state == pb.LISTING_STATE_PUBLISHED
    deprecated = await catalog.stub.DeprecateListing(
        pb.DeprecateListingRequest(listing_id=world.listing.id, reason="withdrawn"),
        metadata=operator,
    )
    assert deprecated.listing.state == pb.LISTING_STATE_DEPRECATED

    listed = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(), metadata=operator
    )
    assert {r.id for r in listed.access_requests} >= {world.pending.id, world.accepted.id}
    seen = await catalog.stub.GetAccessRequest(
        pb.GetAccessRequestRequest(access_request_id=world.pending.id), metadata=operator
    )
    assert seen.access_request.org_id == world.c.id
    rejected = await catalog.stub.RejectAccessRequest(
        pb.RejectAccessRequestRequest(access_request_id=world.pending.id, reason="incomplete"),
        metadata=operator,
    )
    assert rejected.access_request.state == pb.ACCESS_REQUEST_STATE_REJECTED
    revoked = await catalog.stub.RevokeAccess(
        pb.RevokeAccessRequest(access_request_id=world.accepted.id, reason="audit"),
        metadata=operator,
    )
    assert revoked.access_request.state == pb.ACCESS_REQUEST_STATE_REVOKED


async def test_access_requests_between_others_stay_between_them(catalog: Catalog) -> None:
    world = await _world(catalog)
    mine = await _request(catalog, world.b, world.gated.id)

    async def listed(metadata: Metadata, **request: Any) -> set[str]:
        """Every request id the caller can page through."""
        ids: list[str] = []
        token = ""
        while True:
            page = await catalog.stub.ListAccessRequests(
                pb.ListAccessRequestsRequest(page_token=token, **request), metadata=metadata
            )
            ids += [r.id for r in page.access_requests]
            token = page.next_page_token
            if not token:
                assert len(ids) == len(set(ids))
                return set(ids)

    b_developer = await _member(catalog, world.b, identity_pb2.ROLE_DEVELOPER)
    for b_caller in (world.b.auth, b_developer):
        assert await listed(b_caller) == {mine.id}
        assert await listed(b_caller, listing_id=world.gated.id) == {mine.id}
        assert await listed(b_caller, state=pb.ACCESS_REQUEST_STATE_ACCEPTED) == set()
        assert await listed(b_caller, listing_id=world.gated.id, page_size=1) == {mine.id}
    assert await listed(world.c.auth) == {world.pending.id}
    assert await listed(world.d.auth) == {world.accepted.id}
    everything = {world.pending.id, world.accepted.id, mine.id}
    assert await listed(world.a.auth) == everything
    assert await listed(catalog.operator.auth) == everything


async def test_anonymous_callers_read_open_published_listings_only(catalog: Catalog) -> None:
    acme = await catalog.org()
    listings = {
        tier: await catalog.published(acme, model_listing(f"tier-{tier}", access_tier=tier))
        for tier in (
            pb.ACCESS_TIER_OPEN,
            pb.ACCESS_TIER_REGISTERED,
            pb.ACCESS_TIER_VERIFIED,
            pb.ACCESS_TIER_RESTRICTED,
        )
    }
    draft = await catalog.create(acme, model_listing("open-draft"))
    old = await catalog.published(acme, model_listing("open-old"))
    await catalog.stub.DeprecateListing(
        pb.DeprecateListingRequest(listing_id=old.id), metadata=acme.auth
    )
    old_registered = await catalog.published(
        acme, model_listing("registered-old", access_tier=pb.ACCESS_TIER_REGISTERED)
    )
    await catalog.stub.DeprecateListing(
        pb.DeprecateListingRequest(listing_id=old_registered.id), metadata=acme.auth
    )
    open_slug = listings[pb.ACCESS_TIER_OPEN].slug
    anonymous: Metadata = ()

    for request in (
        pb.GetListingRequest(slug=open_slug),
        pb.GetListingRequest(listing_id=listings[pb.ACCESS_TIER_OPEN].id, revision=1),
        pb.GetListingRequest(slug="open-old"),
    ):
        got = await catalog.stub.GetListing(request)
        assert got.listing.access_tier == pb.ACCESS_TIER_OPEN
    for tier, listing in listings.items():
        if tier == pb.ACCESS_TIER_OPEN:
            continue
        for request in (
            pb.GetListingRequest(listing_id=listing.id),
            pb.GetListingRequest(slug=listing.slug),
        ):
            error = await _error(catalog.stub.GetListing(request))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (tier, error.details())
    error = await _error(catalog.stub.GetListing(pb.GetListingRequest(slug="registered-old")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # A draft is as unknown as a missing listing.
    for on_draft, on_missing in (
        (
            pb.GetListingRequest(listing_id=draft.id),
            pb.GetListingRequest(listing_id=MISSING_LISTING),
        ),
        (pb.GetListingRequest(slug=draft.slug), pb.GetListingRequest(slug=MISSING_SLUG)),
    ):
        drafted = await _error(catalog.stub.GetListing(on_draft))
        missing = await _error(catalog.stub.GetListing(on_missing))
        assert drafted.code() == grpc.StatusCode.NOT_FOUND
        assert _status_of(drafted) == _status_of(missing)

    assert await _slugs(catalog, anonymous) == [open_slug]
    assert await _slugs(catalog, anonymous, page_size=1) == [open_slug]
    assert await _slugs(catalog, anonymous, access_tier=pb.ACCESS_TIER_OPEN) == [open_slug]
    for tier in (pb.ACCESS_TIER_REGISTERED, pb.ACCESS_TIER_VERIFIED, pb.ACCESS_TIER_RESTRICTED):
        assert await _slugs(catalog, anonymous, access_tier=tier) == []
        assert await _found(catalog, anonymous, "", access_tier=tier) == []
    assert await _slugs(catalog, anonymous, state=DRAFT) == []
    assert await _slugs(catalog, anonymous, state=DRAFT, org_id=acme.id) == []
    assert await _slugs(catalog, anonymous, state=pb.LISTING_STATE_DEPRECATED) == ["open-old"]
    assert await _found(catalog, anonymous) == [open_slug]
    assert await _found(catalog, anonymous, "test model") == [open_slug]
    assert await _found(catalog, anonymous, "test", state=DRAFT) == []
    assert await _found(catalog, anonymous, "test", state=pb.LISTING_STATE_DEPRECATED) == [
        "open-old"
    ]
    # Any registered organisation sees every published tier.
    outsider = await catalog.org("Outsider Ltd")
    assert await _slugs(catalog, outsider.auth) == sorted(x.slug for x in listings.values())


async def test_anonymous_mutations_need_a_credential(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _state_of(catalog, world.a)
    calls: list[tuple[str, Message]] = [
        ("CreateListing", pb.CreateListingRequest(listing=model_listing("anonymous"))),
        ("UpdateListing", _update(world.listing.id)),
        ("UpdateListing", _update(world.draft.id)),
        ("PublishListing", pb.PublishListingRequest(listing_id=world.draft.id)),
        ("DeprecateListing", pb.DeprecateListingRequest(listing_id=world.listing.id)),
        ("RequestAccess", pb.RequestAccessRequest(listing_id=world.gated.id, purpose=PURPOSE)),
        ("GetAccessRequest", pb.GetAccessRequestRequest(access_request_id=world.pending.id)),
        ("ListAccessRequests", pb.ListAccessRequestsRequest()),
        (
            "ApproveAccessRequest",
            pb.ApproveAccessRequestRequest(access_request_id=world.pending.id),
        ),
        (
            "RejectAccessRequest",
            pb.RejectAccessRequestRequest(access_request_id=world.pending.id, reason="no"),
        ),
        ("RevokeAccess", pb.RevokeAccessRequest(access_request_id=world.accepted.id, reason="x")),
    ]
    for rpc, request in calls:
        error = await _error(getattr(catalog.stub, rpc)(request))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, rpc
        # A credential, once presented, must be valid, on public calls too.
        error = await _error(getattr(catalog.stub, rpc)(request, metadata=bearer("sk_bogus")))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, rpc
    error = await _error(
        catalog.stub.GetListing(
            pb.GetListingRequest(slug=world.listing.slug), metadata=bearer("sk_bogus")
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await _state_of(catalog, world.a) == before


async def test_developers_read_drafts_but_only_admins_manage_listings(catalog: Catalog) -> None:
    world = await _world(catalog)
    developer = await _member(catalog, world.a, identity_pb2.ROLE_DEVELOPER)
    viewer = await _member(catalog, world.a, identity_pb2.ROLE_VIEWER)
    before = await _state_of(catalog, world.a)

    for member in (developer, viewer):
        denied: list[tuple[str, Message]] = [
            ("CreateListing", pb.CreateListingRequest(listing=model_listing("by-a-member"))),
            ("UpdateListing", _update(world.draft.id)),
            ("UpdateListing", _update(world.listing.id)),
            ("PublishListing", pb.PublishListingRequest(listing_id=world.draft.id)),
            ("DeprecateListing", pb.DeprecateListingRequest(listing_id=world.listing.id)),
            (
                "ApproveAccessRequest",
                pb.ApproveAccessRequestRequest(access_request_id=world.pending.id),
            ),
            (
                "RejectAccessRequest",
                pb.RejectAccessRequestRequest(access_request_id=world.pending.id, reason="no"),
            ),
            (
                "RevokeAccess",
                pb.RevokeAccessRequest(access_request_id=world.accepted.id, reason="no"),
            ),
        ]
        for rpc, request in denied:
            error = await _error(getattr(catalog.stub, rpc)(request, metadata=member))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, rpc
        # ...but every member reads its organisation's drafts and requests.
        got = await catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=world.draft.id), metadata=member
        )
        assert got.listing.card
        assert await _slugs(catalog, member, state=DRAFT) == [world.draft.slug]
        seen = await catalog.stub.GetAccessRequest(
            pb.GetAccessRequestRequest(access_request_id=world.pending.id), metadata=member
        )
        assert seen.access_request.state == pb.ACCESS_REQUEST_STATE_PENDING
    assert await _state_of(catalog, world.a) == before

    # Asking for access is for admins and developers, not viewers.
    b_viewer = await _member(catalog, world.b, identity_pb2.ROLE_VIEWER)
    error = await _error(
        catalog.stub.RequestAccess(
            pb.RequestAccessRequest(listing_id=world.gated.id, purpose=PURPOSE), metadata=b_viewer
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    b_developer = await _member(catalog, world.b, identity_pb2.ROLE_DEVELOPER)
    filed = await catalog.stub.RequestAccess(
        pb.RequestAccessRequest(listing_id=world.gated.id, purpose=PURPOSE), metadata=b_developer
    )
    assert filed.access_request.org_id == world.b.id
    assert filed.access_request.state == pb.ACCESS_REQUEST_STATE_PENDING
