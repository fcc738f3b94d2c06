"""What catalog emits, and what it subscribes to.

Emits on `catalog.listings` (key: listing id, so a listing's changes and
the access decisions on it stay in order) through the outbox. Subscribes,
without a consumer group, to identity's revocations and suspensions so that
its credential cache drops them on every replica.
"""

from __future__ import annotations

from aisuper.catalog.v1 import events_pb2
from aisuper.platform.auth import AuthCache
from aisuper.platform.events.consumer import Subscription
from aisuper.platform.events.envelope import EventCatalog, EventType
from aisuper.platform.identity_client import invalidation_subscriptions

SOURCE = "/aisuper/catalog"
LISTINGS_TOPIC = "catalog.listings"

LISTING_PUBLISHED = EventType(
    events_pb2.ListingPublished, LISTINGS_TOPIC, "aisuper.catalog.listing.published.v1"
)
LISTING_UPDATED = EventType(
    events_pb2.ListingUpdated, LISTINGS_TOPIC, "aisuper.catalog.listing.updated.v1"
)
LISTING_DEPRECATED = EventType(
    events_pb2.ListingDeprecated, LISTINGS_TOPIC, "aisuper.catalog.listing.deprecated.v1"
)
ACCESS_REQUESTED = EventType(
    events_pb2.AccessRequested, LISTINGS_TOPIC, "aisuper.catalog.listing.access_requested.v1"
)
ACCESS_GRANTED = EventType(
    events_pb2.AccessGranted, LISTINGS_TOPIC, "aisuper.catalog.listing.access_granted.v1"
)
ACCESS_REJECTED = EventType(
    events_pb2.AccessRejected, LISTINGS_TOPIC, "aisuper.catalog.listing.access_rejected.v1"
)
ACCESS_REVOKED = EventType(
    events_pb2.AccessRevoked, LISTINGS_TOPIC, "aisuper.catalog.listing.access_revoked.v1"
)

CATALOG = EventCatalog(
    SOURCE,
    [
        LISTING_PUBLISHED,
        LISTING_UPDATED,
        LISTING_DEPRECATED,
        ACCESS_REQUESTED,
        ACCESS_GRANTED,
        ACCESS_REJECTED,
        ACCESS_REVOKED,
    ],
)


def subscriptions(cache: AuthCache) -> list[Subscription]:
    return invalidation_subscriptions("catalog", cache)
