"""Gated access, as on Hugging Face: an organisation asks for a restricted
listing with a stated purpose; the listing's organisation (or an operator)
approves or rejects, and may revoke what it granted. Every step is an event
on `catalog.listings`, keyed by the listing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from catalog_harness import Catalog, Metadata, Org, dataset_listing, model_listing
from google.protobuf.message import Message

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import events_pb2
from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer
from aisuper.platform.grpc_errors import bad_request_of, precondition_failures_of
from aisuper.platform.testing import BrokerUnderTest, header, read_topic

PURPOSE = "Fine-tuning a Swahili customer-support assistant."
PENDING = pb.ACCESS_REQUEST_STATE_PENDING
ACCEPTED = pb.ACCESS_REQUEST_STATE_ACCEPTED
REJECTED = pb.ACCESS_REQUEST_STATE_REJECTED
REVOKED = pb.ACCESS_REQUEST_STATE_REVOKED

EVENT_TYPES: dict[str, type[Message]] = {
    "aisuper.catalog.listing.access_requested.v1": events_pb2.AccessRequested,
    "aisuper.catalog.listing.access_granted.v1": events_pb2.AccessGranted,
    "aisuper.catalog.listing.access_rejected.v1": events_pb2.AccessRejected,
    "aisuper.catalog.listing.access_revoked.v1": events_pb2.AccessRevoked,
}


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _gated(catalog: Catalog, provider: Org, slug: str = "gated-corpus") -> pb.Listing:
    return await catalog.published(
        provider, dataset_listing(slug, access_tier=pb.ACCESS_TIER_RESTRICTED)
    )


async def _ask(
    catalog: Catalog, metadata: Metadata, listing_id: str, **request: Any
) -> pb.AccessRequest:
    filed = await catalog.stub.RequestAccess(
        pb.RequestAccessRequest(listing_id=listing_id, purpose=PURPOSE, **request),
        metadata=metadata,
    )
    return filed.access_request


async def _get(catalog: Catalog, metadata: Metadata, request_id: str) -> pb.AccessRequest:
    got = await catalog.stub.GetAccessRequest(
        pb.GetAccessRequestRequest(access_request_id=request_id), metadata=metadata
    )
    return got.access_request


async def _listed(catalog: Catalog, metadata: Metadata, **request: Any) -> list[pb.AccessRequest]:
    found = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(page_size=1000, **request), metadata=metadata
    )
    return list(found.access_requests)


async def _events(
    broker: BrokerUnderTest, listing_id: str, count: int
) -> list[tuple[str, str | None, Message]]:
    """The first `count` access events on the listing: (ce_type, aisuper_org, payload)."""

    def access_events(records: list[Any]) -> list[Any]:
        return [
            r
            for r in records
            if r.key == listing_id.encode() and header(r, "ce_type") in EVENT_TYPES
        ]

    records = await read_topic(
        broker, "catalog.listings", until=lambda got: len(access_events(got)) >= count
    )
    found: list[tuple[str, str | None, Message]] = []
    for record in access_events(records):
        ce_type = header(record, "ce_type") or ""
        found.append(
            (ce_type, header(record, "aisuper_org"), EVENT_TYPES[ce_type].FromString(record.value))
        )
    return found


async def test_request_approve_revoke_reject_and_ask_again(
    catalog: Catalog, broker: BrokerUnderTest
) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    listing = await _gated(catalog, provider, "kiswahili-support-chats")
    developer = bearer(await catalog.member_key(requester, identity_pb2.ROLE_DEVELOPER))

    # The requester's admin asks.
    first = await _ask(catalog, requester.auth, listing.id)
    assert first.id.startswith("acr_")
    assert first.state == PENDING
    assert first.listing_id == listing.id
    assert first.org_id == requester.id
    assert first.listing_org_id == provider.id
    assert first.purpose == PURPOSE
    assert first.requested_by
    assert first.HasField("create_time")
    assert not first.decided_by
    assert not first.HasField("decide_time")
    assert await _get(catalog, requester.auth, first.id) == first

    # The provider sees it waiting and approves.
    waiting = await _listed(catalog, provider.auth, state=PENDING)
    assert [r.id for r in waiting] == [first.id]
    approved = await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=first.id, reason="Purpose fits."),
        metadata=provider.auth,
    )
    accepted = approved.access_request
    assert accepted.state == ACCEPTED
    assert accepted.decided_by
    assert accepted.decision_reason == "Purpose fits."
    assert accepted.HasField("decide_time")
    assert await _get(catalog, requester.auth, first.id) == accepted
    assert await _listed(catalog, provider.auth, state=PENDING) == []

    # While access stands, asking again is refused.
    error = await _error(_ask(catalog, developer, listing.id))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in (error.details() or "")

    # Revoked: the requester may ask again (here its developer does).
    revoked = await catalog.stub.RevokeAccess(
        pb.RevokeAccessRequest(access_request_id=first.id, reason="Licence terms changed."),
        metadata=provider.auth,
    )
    assert revoked.access_request.state == REVOKED
    assert revoked.access_request.HasField("revoke_time")
    assert revoked.access_request.decision_reason == "Licence terms changed."
    second = await _ask(catalog, developer, listing.id)
    assert second.state == PENDING
    assert second.id != first.id
    assert second.requested_by != first.requested_by  # the developer, not the admin

    # Rejected: the requester may ask again too.
    rejected = await catalog.stub.RejectAccessRequest(
        pb.RejectAccessRequestRequest(access_request_id=second.id, reason="Say more."),
        metadata=provider.auth,
    )
    assert rejected.access_request.state == REJECTED
    assert rejected.access_request.decision_reason == "Say more."
    assert rejected.access_request.HasField("decide_time")
    third = await _ask(catalog, requester.auth, listing.id)
    assert third.state == PENDING

    history = await _listed(catalog, requester.auth, listing_id=listing.id)
    assert {r.id: r.state for r in history} == {
        first.id: REVOKED,
        second.id: REJECTED,
        third.id: PENDING,
    }

    events = await _events(broker, listing.id, 6)
    assert [(ce_type.split(".")[-2], org) for ce_type, org, _ in events] == [
        ("access_requested", requester.id),
        ("access_granted", requester.id),
        ("access_revoked", requester.id),
        ("access_requested", requester.id),
        ("access_rejected", requester.id),
        ("access_requested", requester.id),
    ]
    expected = [
        (first.id, PENDING),
        (first.id, ACCEPTED),
        (first.id, REVOKED),
        (second.id, PENDING),
        (second.id, REJECTED),
        (third.id, PENDING),
    ]
    for (_, _, event), (request_id, state) in zip(events, expected, strict=True):
        request: pb.AccessRequest = event.access_request  # type: ignore[attr-defined]
        assert (request.id, request.state) == (request_id, state)
        assert request.listing_id == listing.id
        assert request.org_id == requester.id
        assert request.listing_org_id == provider.id
        assert event.listing_slug == "kiswahili-support-chats"  # type: ignore[attr-defined]
    granted: pb.AccessRequest = events[1][2].access_request  # type: ignore[attr-defined]
    assert granted == accepted


async def test_only_the_listings_admins_decide(catalog: Catalog) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    listing = await _gated(catalog, provider)
    filed = await _ask(catalog, requester.auth, listing.id)
    requester_developer = bearer(await catalog.member_key(requester, identity_pb2.ROLE_DEVELOPER))
    provider_developer = bearer(await catalog.member_key(provider, identity_pb2.ROLE_DEVELOPER))

    async def refused(metadata: Metadata, request_id: str) -> None:
        for call in (
            catalog.stub.ApproveAccessRequest(
                pb.ApproveAccessRequestRequest(access_request_id=request_id), metadata=metadata
            ),
            catalog.stub.RejectAccessRequest(
                pb.RejectAccessRequestRequest(access_request_id=request_id, reason="no"),
                metadata=metadata,
            ),
            catalog.stub.RevokeAccess(
                pb.RevokeAccessRequest(access_request_id=request_id, reason="no"),
                metadata=metadata,
            ),
        ):
            # The requester sees its request, so it is told no rather than "not found".
            error = await _error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()

    for metadata in (requester.auth, requester_developer, provider_developer):
        await refused(metadata, filed.id)
    assert (await _get(catalog, requester.auth, filed.id)).state == PENDING

    await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=filed.id), metadata=provider.auth
    )
    for metadata in (requester.auth, requester_developer, provider_developer):
        await refused(metadata, filed.id)
    assert (await _get(catalog, requester.auth, filed.id)).state == ACCEPTED


async def test_decisions_follow_the_request_life(catalog: Catalog) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    listing = await _gated(catalog, provider)
    filed = await _ask(catalog, requester.auth, listing.id)

    async def refused(call: Awaitable[Any]) -> None:
        error = await _error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert "access_request.state" in precondition_failures_of(error)

    # Only access that was granted can be revoked.
    await refused(
        catalog.stub.RevokeAccess(
            pb.RevokeAccessRequest(access_request_id=filed.id, reason="early"),
            metadata=provider.auth,
        )
    )
    await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=filed.id), metadata=provider.auth
    )
    for call in (
        catalog.stub.ApproveAccessRequest(
            pb.ApproveAccessRequestRequest(access_request_id=filed.id), metadata=provider.auth
        ),
        catalog.stub.RejectAccessRequest(
            pb.RejectAccessRequestRequest(access_request_id=filed.id, reason="late"),
            metadata=provider.auth,
        ),
    ):
        await refused(call)
    await catalog.stub.RevokeAccess(
        pb.RevokeAccessRequest(access_request_id=filed.id, reason="done"), metadata=provider.auth
    )
    for call in (
        catalog.stub.ApproveAccessRequest(
            pb.ApproveAccessRequestRequest(access_request_id=filed.id), metadata=provider.auth
        ),
        catalog.stub.RevokeAccess(
            pb.RevokeAccessRequest(access_request_id=filed.id, reason="again"),
            metadata=provider.auth,
        ),
    ):
        await refused(call)
    assert (await _get(catalog, provider.auth, filed.id)).state == REVOKED


async def test_only_restricted_published_listings_of_others_take_requests(
    catalog: Catalog,
) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    gated = await _gated(catalog, provider)
    registered = await catalog.published(
        provider, model_listing("registered-model", access_tier=pb.ACCESS_TIER_REGISTERED)
    )
    open_ = await catalog.published(provider, model_listing("open-model"))
    old = await _gated(catalog, provider, "old-gated-corpus")
    await catalog.stub.DeprecateListing(
        pb.DeprecateListingRequest(listing_id=old.id), metadata=provider.auth
    )

    for listing_id, metadata, subject in (
        (registered.id, requester.auth, "listing.access_tier"),
        (open_.id, requester.auth, "listing.access_tier"),
        (old.id, requester.auth, "listing.state"),
        (gated.id, provider.auth, "listing.org_id"),
    ):
        error = await _error(_ask(catalog, metadata, listing_id))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert subject in precondition_failures_of(error)
    error = await _error(
        catalog.stub.RequestAccess(
            pb.RequestAccessRequest(listing_id=gated.id, purpose="too short"),
            metadata=requester.auth,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose" in bad_request_of(error)
    assert await _listed(catalog, catalog.operator.auth) == []


async def test_request_access_is_idempotent_with_a_request_id(catalog: Catalog) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    listing = await _gated(catalog, provider)

    first = await _ask(catalog, requester.auth, listing.id, request_id="ask-1")
    again = await _ask(catalog, requester.auth, listing.id, request_id="ask-1")
    assert again == first
    # Replayed after a decision, the key still names the request it created.
    await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=first.id), metadata=provider.auth
    )
    replayed = await _ask(catalog, requester.auth, listing.id, request_id="ask-1")
    assert replayed.id == first.id

    # The same key for a different request is a mistake, not a second request.
    error = await _error(
        catalog.stub.RequestAccess(
            pb.RequestAccessRequest(
                listing_id=listing.id, purpose="Something else entirely.", request_id="ask-1"
            ),
            metadata=requester.auth,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in bad_request_of(error)
    # A new key while access stands is refused.
    error = await _error(_ask(catalog, requester.auth, listing.id, request_id="ask-2"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [r.id for r in await _listed(catalog, catalog.operator.auth)] == [first.id]

    # Keys are per organisation: another one's "ask-1" is its own request.
    other = await catalog.org("Other Lab")
    theirs = await _ask(catalog, other.auth, listing.id, request_id="ask-1")
    assert theirs.id != first.id
    assert theirs.org_id == other.id


async def test_the_operator_decides_on_any_request(
    catalog: Catalog, broker: BrokerUnderTest
) -> None:
    provider, r1, r2 = await asyncio.gather(
        catalog.org("Provider Data GmbH"),
        catalog.org("Requester One"),
        catalog.org("Requester Two"),
    )
    listing = await _gated(catalog, provider)
    operator = catalog.operator.auth
    one = await _ask(catalog, r1.auth, listing.id)
    two = await _ask(catalog, r2.auth, listing.id)

    assert {r.id for r in await _listed(catalog, operator, listing_id=listing.id)} == {
        one.id,
        two.id,
    }
    approved = await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=one.id, reason="Verified."),
        metadata=operator,
    )
    assert approved.access_request.state == ACCEPTED
    rejected = await catalog.stub.RejectAccessRequest(
        pb.RejectAccessRequestRequest(access_request_id=two.id, reason="Unclear purpose."),
        metadata=operator,
    )
    assert rejected.access_request.state == REJECTED
    revoked = await catalog.stub.RevokeAccess(
        pb.RevokeAccessRequest(access_request_id=one.id, reason="Audit."), metadata=operator
    )
    assert revoked.access_request.state == REVOKED
    # The provider sees the operator's decisions.
    assert {r.id: r.state for r in await _listed(catalog, provider.auth)} == {
        one.id: REVOKED,
        two.id: REJECTED,
    }
    events = await _events(broker, listing.id, 5)
    decisions = {
        (e.access_request.id, ce_type.split(".")[-2], org) for ce_type, org, e in events[2:]
    }  # type: ignore[attr-defined]
    assert decisions == {
        (one.id, "access_granted", r1.id),
        (two.id, "access_rejected", r2.id),
        (one.id, "access_revoked", r1.id),
    }


async def test_list_access_requests_filters_and_pages(catalog: Catalog) -> None:
    provider = await catalog.org("Provider Data GmbH")
    requesters = await asyncio.gather(*(catalog.org(f"Requester {i}") for i in range(5)))
    first = await _gated(catalog, provider, "first-corpus")
    second = await _gated(catalog, provider, "second-corpus")
    states: dict[str, tuple[str, int]] = {}  # request id -> (listing id, state)
    for index, requester in enumerate(requesters):
        for listing in (first, second) if index % 2 == 0 else (first,):
            filed = await _ask(catalog, requester.auth, listing.id)
            states[filed.id] = (listing.id, PENDING)
    decisions = list(states)[:3]
    await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=decisions[0]), metadata=provider.auth
    )
    await catalog.stub.RejectAccessRequest(
        pb.RejectAccessRequestRequest(access_request_id=decisions[1], reason="no"),
        metadata=provider.auth,
    )
    await catalog.stub.ApproveAccessRequest(
        pb.ApproveAccessRequestRequest(access_request_id=decisions[2]), metadata=provider.auth
    )
    states[decisions[0]] = (states[decisions[0]][0], ACCEPTED)
    states[decisions[1]] = (states[decisions[1]][0], REJECTED)
    states[decisions[2]] = (states[decisions[2]][0], ACCEPTED)

    async def paged(page_size: int, **request: Any) -> list[str]:
        ids: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await catalog.stub.ListAccessRequests(
                pb.ListAccessRequestsRequest(page_size=page_size, page_token=token, **request),
                metadata=provider.auth,
            )
            assert len(page.access_requests) <= page_size
            ids += [r.id for r in page.access_requests]
            pages += 1
            token = page.next_page_token
            if not token:
                assert pages == max(1, -(-len(ids) // page_size))  # no empty last page
                return ids

    def expected(listing_id: str = "", state: int = 0) -> list[str]:
        return sorted(
            request_id
            for request_id, (on, now) in states.items()
            if listing_id in ("", on) and state in (0, now)
        )

    assert len(states) == 8
    for filters in (
        {},
        {"listing_id": first.id},
        {"listing_id": second.id},
        {"state": PENDING},
        {"state": ACCEPTED},
        {"listing_id": first.id, "state": ACCEPTED},
        {"listing_id": second.id, "state": REJECTED},
    ):
        everything = await paged(1000, **filters)
        assert everything == expected(**filters), filters  # by id
        for size in (1, 2, 3):
            assert await paged(size, **filters) == everything, (filters, size)

    page = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(listing_id=first.id, page_size=2), metadata=provider.auth
    )
    assert page.next_page_token
    for other in (
        pb.ListAccessRequestsRequest(listing_id=second.id, page_token=page.next_page_token),
        pb.ListAccessRequestsRequest(
            listing_id=first.id, state=PENDING, page_token=page.next_page_token
        ),
        pb.ListAccessRequestsRequest(page_token=page.next_page_token),
    ):
        error = await _error(catalog.stub.ListAccessRequests(other, metadata=provider.auth))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in bad_request_of(error)
