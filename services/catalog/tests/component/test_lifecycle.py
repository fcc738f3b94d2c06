"""A listing's life: draft, published, updated (new revisions), deprecated."""

from __future__ import annotations

import grpc
import pytest
from catalog_harness import Catalog, model_listing
from google.protobuf.field_mask_pb2 import FieldMask

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import events_pb2
from aisuper.platform.testing import BrokerUnderTest, header, read_topic


async def test_create_publish_update_deprecate_keeps_every_revision(catalog: Catalog) -> None:
    acme = await catalog.org()
    draft = await catalog.create(acme, model_listing("acme-7b", license="apache-2.0"))
    assert draft.state == pb.LISTING_STATE_DRAFT
    assert draft.revision == 1
    assert draft.org_id == acme.id
    assert draft.license == "Apache-2.0"  # stored normalised
    assert draft.id.startswith("lst_")

    published = (
        await catalog.stub.PublishListing(
            pb.PublishListingRequest(listing_id=draft.id), metadata=acme.auth
        )
    ).listing
    assert published.state == pb.LISTING_STATE_PUBLISHED
    assert published.HasField("publish_time")

    updated = (
        await catalog.stub.UpdateListing(
            pb.UpdateListingRequest(
                listing_id=draft.id,
                listing=pb.Listing(
                    name="Acme 7B v2", prices=pb.Prices(input_per_million_tokens=1_000_000)
                ),
                update_mask=FieldMask(paths=["name", "prices.input_per_million_tokens"]),
            ),
            metadata=acme.auth,
        )
    ).listing
    assert updated.revision == 2
    assert updated.name == "Acme 7B v2"
    assert updated.prices.input_per_million_tokens == 1_000_000
    assert updated.prices.output_per_million_tokens == 8_000_000  # untouched

    latest = (
        await catalog.stub.GetListing(pb.GetListingRequest(slug="acme-7b"), metadata=acme.auth)
    ).listing
    assert latest.revision == 2
    assert latest.name == "Acme 7B v2"
    assert latest.card.startswith("# Test Model")
    first = (
        await catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=draft.id, revision=1), metadata=acme.auth
        )
    ).listing
    assert first.name == "Test Model 7B"
    assert first.revision == 1

    deprecated = (
        await catalog.stub.DeprecateListing(
            pb.DeprecateListingRequest(listing_id=draft.id, reason="superseded"),
            metadata=acme.auth,
        )
    ).listing
    assert deprecated.state == pb.LISTING_STATE_DEPRECATED
    assert deprecated.deprecation_reason == "superseded"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await catalog.stub.PublishListing(
            pb.PublishListingRequest(listing_id=draft.id), metadata=acme.auth
        )
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_events_carry_the_listing_through_the_outbox(
    catalog: Catalog, broker: BrokerUnderTest
) -> None:
    acme = await catalog.org()
    listing = await catalog.published(acme, model_listing())
    records = await read_topic(
        broker,
        "catalog.listings",
        until=lambda got: any(r.key == listing.id.encode() for r in got),
    )
    record = next(r for r in records if r.key == listing.id.encode())
    assert header(record, "ce_type") == "aisuper.catalog.listing.published.v1"
    assert header(record, "aisuper_org") == acme.id
    event = events_pb2.ListingPublished.FromString(record.value or b"")
    assert event.listing.slug == listing.slug
    assert event.listing.access_tier == pb.ACCESS_TIER_OPEN
    assert list(event.listing.model.capabilities) == [pb.CAPABILITY_CHAT, pb.CAPABILITY_COMPLETIONS]
    assert event.listing.prices.output_per_million_tokens == 8_000_000
    assert not event.listing.card  # the BASIC view: consumers need no card


async def test_search_ranks_name_matches_first(catalog: Catalog) -> None:
    acme = await catalog.org()
    await catalog.published(acme, model_listing("alpha", name="Orca Chat", card="nothing here"))
    await catalog.published(
        acme, model_listing("beta", name="Other", card="This card mentions orca once.")
    )
    await catalog.published(acme, model_listing("gamma", name="Unrelated", card="no match"))
    found = await catalog.stub.SearchListings(pb.SearchListingsRequest(query="orca"))
    assert [listing.slug for listing in found.listings] == ["alpha", "beta"]
    # Query syntax is not syntax here: only the words count.
    found = await catalog.stub.SearchListings(pb.SearchListingsRequest(query='"orca*" -(^'))
    assert [listing.slug for listing in found.listings] == ["alpha", "beta"]
