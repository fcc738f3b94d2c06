"""Races: concurrent writers on one slug, one idempotency key, one listing,
one organisation's access request and one decision. Every loser gets a clean
answer (ALREADY_EXISTS or ABORTED, never INTERNAL) and the stored state is
what exactly one winner made."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import grpc
import pytest
from catalog_harness import Catalog, dataset_listing, model_listing
from google.protobuf.field_mask_pb2 import FieldMask

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import events_pb2
from aisuper.platform.testing import BrokerUnderTest, header, read_topic
from aisuper_catalog import store

ON_POSTGRES = bool(os.environ.get("AISUPER_TEST_POSTGRES_URL"))
T = TypeVar("T")
PURPOSE = "Training a retrieval model for legal documents."
LOSERS = {grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED}


async def _race(calls: Sequence[Awaitable[T]]) -> tuple[list[T], Counter[grpc.StatusCode]]:
    """Runs `calls` at once: what succeeded, and how many failed with which code."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    won: list[T] = []
    lost: Counter[grpc.StatusCode] = Counter()
    for outcome in outcomes:
        if isinstance(outcome, grpc.aio.AioRpcError):
            lost[outcome.code()] += 1
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            won.append(outcome)
    return won, lost


async def test_one_slug_goes_to_exactly_one_organisation(catalog: Catalog) -> None:
    orgs = await asyncio.gather(*(catalog.org(f"Racer {i}") for i in range(16)))
    won, lost = await _race([catalog.create(org, model_listing("contested")) for org in orgs])

    assert len(won) == 1, lost
    assert set(lost) <= LOSERS, lost
    assert sum(lost.values()) == 15
    winner = won[0]
    stored = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)),
        metadata=catalog.operator.auth,
    )
    assert [(x.id, x.slug, x.org_id) for x in stored.listings] == [
        (winner.id, "contested", winner.org_id)
    ]
    # The loser's search index holds nothing of a listing that does not exist.
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(
            query="test model", filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)
        ),
        metadata=catalog.operator.auth,
    )
    assert [x.id for x in found.listings] == [winner.id]


def _hold_replays_until_the_first_commits(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Forces the interleaving that a burst of same-key calls hits now and then on
    PostgreSQL (about one run in ten): a replay has looked up the idempotency record
    (none yet), the first call commits, and only then does the replay check the slug.
    Set the returned event once the first call is done."""
    original = store.slug_taken
    first_done = asyncio.Event()
    another_arrived = asyncio.Event()
    arrived = 0

    async def slug_taken(*, session: Any, slug: str) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == 1:
            # A service that makes replays wait for the first call's commit never lets
            # them get here: then go on after a while.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(another_arrived.wait(), 3)
        else:
            another_arrived.set()
            await first_done.wait()
        return await original(session=session, slug=slug)

    monkeypatch.setattr(store, "slug_taken", slug_taken)
    return first_done


async def test_one_request_id_creates_one_listing(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await catalog.org()
    first_done = _hold_replays_until_the_first_commits(monkeypatch) if ON_POSTGRES else None
    listing = model_listing("once-only")
    calls = [
        asyncio.ensure_future(catalog.create(acme, listing, request_id="create-once-only"))
        for _ in range(16)
    ]
    async with asyncio.timeout(60):
        if first_done is not None:
            await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
            first_done.set()
        won, lost = await _race(calls)

    assert not lost, lost
    assert len({x.id for x in won}) == 1
    assert all(x == won[0] for x in won)
    stored = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)),
        metadata=acme.auth,
    )
    assert [x.id for x in stored.listings] == [won[0].id]


def _rename(listing_id: str, name: str, expected_revision: int = 0) -> pb.UpdateListingRequest:
    return pb.UpdateListingRequest(
        listing_id=listing_id,
        listing=pb.Listing(name=name),
        update_mask=FieldMask(paths=["name"]),
        expected_revision=expected_revision,
    )


async def test_concurrent_updates_each_get_their_own_revision(
    catalog: Catalog, broker: BrokerUnderTest
) -> None:
    acme = await catalog.org()
    listing = await catalog.published(acme, model_listing("busy-model"))
    names = [f"Busy Model take {i}" for i in range(10)]
    won, lost = await _race(
        [
            catalog.stub.UpdateListing(_rename(listing.id, name), metadata=acme.auth)
            for name in names
        ]
    )

    assert not lost, lost
    revisions = sorted(response.listing.revision for response in won)
    assert revisions == list(range(2, 12))
    by_revision = {response.listing.revision: response.listing.name for response in won}
    assert sorted(by_revision.values()) == sorted(names)
    for revision, name in by_revision.items():
        got = await catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=listing.id, revision=revision), metadata=acme.auth
        )
        assert (got.listing.revision, got.listing.name) == (revision, name)
    latest = await catalog.stub.GetListing(
        pb.GetListingRequest(listing_id=listing.id), metadata=acme.auth
    )
    assert latest.listing.revision == 11
    assert latest.listing.name == by_revision[11]
    # Search and the shelf agree with the latest revision.
    listed = await catalog.stub.ListListings(pb.ListListingsRequest(), metadata=acme.auth)
    assert [(x.revision, x.name) for x in listed.listings] == [(11, by_revision[11])]
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query=by_revision[11]), metadata=acme.auth
    )
    assert [x.id for x in found.listings] == [listing.id]

    # One ListingUpdated per revision, in revision order.
    def updates(records: list[Any]) -> list[pb.Listing]:
        return [
            events_pb2.ListingUpdated.FromString(r.value).listing
            for r in records
            if r.key == listing.id.encode()
            and header(r, "ce_type") == "aisuper.catalog.listing.updated.v1"
        ]

    records = await read_topic(
        broker, "catalog.listings", until=lambda got: len(updates(got)) >= 10
    )
    assert [(x.revision, x.name) for x in updates(records)] == sorted(by_revision.items())


async def test_expected_revision_lets_exactly_one_writer_win(catalog: Catalog) -> None:
    acme = await catalog.org()
    listing = await catalog.published(acme, model_listing("guarded-model"))
    won, lost = await _race(
        [
            catalog.stub.UpdateListing(
                _rename(listing.id, f"Guarded take {i}", expected_revision=1), metadata=acme.auth
            )
            for i in range(10)
        ]
    )

    assert len(won) == 1, lost
    assert lost == Counter({grpc.StatusCode.ABORTED: 9})
    latest = await catalog.stub.GetListing(
        pb.GetListingRequest(listing_id=listing.id), metadata=acme.auth
    )
    assert latest.listing.revision == 2
    assert latest.listing.name == won[0].listing.name
    missing = await asyncio.gather(
        catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=listing.id, revision=3), metadata=acme.auth
        ),
        return_exceptions=True,
    )
    assert isinstance(missing[0], grpc.aio.AioRpcError)
    assert missing[0].code() == grpc.StatusCode.NOT_FOUND


async def test_one_organisation_has_one_open_request_per_listing(catalog: Catalog) -> None:
    provider, requester = await asyncio.gather(
        catalog.org("Provider Data GmbH"), catalog.org("Requester AI Ltd")
    )
    listing = await catalog.published(
        provider, dataset_listing("gated-legal", access_tier=pb.ACCESS_TIER_RESTRICTED)
    )
    won, lost = await _race(
        [
            catalog.stub.RequestAccess(
                pb.RequestAccessRequest(
                    listing_id=listing.id, purpose=PURPOSE, request_id=f"ask-{i}"
                ),
                metadata=requester.auth,
            )
            for i in range(8)
        ]
    )

    assert len(won) == 1, lost
    assert set(lost) <= LOSERS, lost
    stored = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(listing_id=listing.id), metadata=provider.auth
    )
    assert [(r.id, r.state) for r in stored.access_requests] == [
        (won[0].access_request.id, pb.ACCESS_REQUEST_STATE_PENDING)
    ]
    # Each losing key may be retried: the answer is the same refusal, not a second request.
    retried = await asyncio.gather(
        catalog.stub.RequestAccess(
            pb.RequestAccessRequest(listing_id=listing.id, purpose=PURPOSE, request_id="ask-0"),
            metadata=requester.auth,
        ),
        return_exceptions=True,
    )
    if isinstance(retried[0], grpc.aio.AioRpcError):
        assert retried[0].code() == grpc.StatusCode.ALREADY_EXISTS
    else:
        assert retried[0].access_request.id == won[0].access_request.id


async def test_approve_and_reject_race_has_one_winner(
    catalog: Catalog, broker: BrokerUnderTest
) -> None:
    provider = await catalog.org("Provider Data GmbH")
    requesters = await asyncio.gather(*(catalog.org(f"Requester {i}") for i in range(4)))
    listing = await catalog.published(
        provider, dataset_listing("gated-legal", access_tier=pb.ACCESS_TIER_RESTRICTED)
    )
    decision_types = {
        "aisuper.catalog.listing.access_granted.v1": pb.ACCESS_REQUEST_STATE_ACCEPTED,
        "aisuper.catalog.listing.access_rejected.v1": pb.ACCESS_REQUEST_STATE_REJECTED,
    }
    outcomes: dict[str, int] = {}  # request id -> the state its one winner set
    for requester in requesters:
        filed = (
            await catalog.stub.RequestAccess(
                pb.RequestAccessRequest(listing_id=listing.id, purpose=PURPOSE),
                metadata=requester.auth,
            )
        ).access_request
        calls: list[Awaitable[Any]] = []
        for _ in range(3):
            calls.append(
                catalog.stub.ApproveAccessRequest(
                    pb.ApproveAccessRequestRequest(access_request_id=filed.id),
                    metadata=provider.auth,
                )
            )
            calls.append(
                catalog.stub.RejectAccessRequest(
                    pb.RejectAccessRequestRequest(access_request_id=filed.id, reason="no"),
                    metadata=catalog.operator.auth,
                )
            )
        won, lost = await _race(calls)
        assert len(won) == 1, lost
        # The losers found the request decided already.
        assert lost == Counter({grpc.StatusCode.FAILED_PRECONDITION: 5}), lost
        decided = won[0].access_request
        stored = await catalog.stub.GetAccessRequest(
            pb.GetAccessRequestRequest(access_request_id=filed.id), metadata=requester.auth
        )
        assert stored.access_request == decided
        outcomes[filed.id] = decided.state

    # A marker after the races: once it is on the topic, so is every decision before it.
    marker = await catalog.stub.DeprecateListing(
        pb.DeprecateListingRequest(listing_id=listing.id), metadata=provider.auth
    )
    assert marker.listing.state == pb.LISTING_STATE_DEPRECATED

    def of_listing(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == listing.id.encode()]

    records = await read_topic(
        broker,
        "catalog.listings",
        until=lambda got: any(
            header(r, "ce_type") == "aisuper.catalog.listing.deprecated.v1" for r in of_listing(got)
        ),
    )
    decisions: Counter[tuple[str, int]] = Counter()
    for record in of_listing(records):
        ce_type = header(record, "ce_type") or ""
        if ce_type in decision_types:
            event = events_pb2.AccessGranted.FromString(record.value)  # same shape as rejected
            assert event.access_request.state == decision_types[ce_type]
            decisions[(event.access_request.id, event.access_request.state)] += 1
    assert decisions == Counter(outcomes.items())
