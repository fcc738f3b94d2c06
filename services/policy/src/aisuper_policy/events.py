"""What policy emits, and what it subscribes to.

Emits through the outbox: `policy.programs` (ProgramPublished keyed by
program id, EligibilityChanged keyed by org id) and `policy.subsidies`
(keyed by reservation id) and `policy.decisions` (DecisionRecorded, keyed by
decision id: the decision log). Subscribes, in consumer group `policy`, to
identity's organisation events, keeping each organisation's facts for
eligibility (exactly once in effect: the inbox); in the same group to
catalog's listing events (tier, owner, state, access grants) for Authorize; and, without a group, to
revocations and suspensions for its credential cache.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.catalog.v1 import events_pb2 as catalog_events
from aisuper.platform.auth import AuthCache
from aisuper.platform.db import Database
from aisuper.platform.events.consumer import Subscription
from aisuper.platform.events.envelope import Event, EventCatalog, EventType
from aisuper.platform.identity_client import (
    ORGANIZATION_REGISTERED,
    ORGANIZATION_SUSPENDED,
    ORGANIZATION_VERIFIED,
    ORGANIZATIONS_TOPIC,
    invalidation_subscriptions,
)
from aisuper.policy.v1 import events_pb2
from aisuper_policy.api import PolicyApi

SOURCE = "/aisuper/policy"
PROGRAMS_TOPIC = "policy.programs"
SUBSIDIES_TOPIC = "policy.subsidies"
DECISIONS_TOPIC = "policy.decisions"
LISTINGS_TOPIC = "catalog.listings"

PROGRAM_PUBLISHED = EventType(
    events_pb2.ProgramPublished, PROGRAMS_TOPIC, "aisuper.policy.program.published.v1"
)
ELIGIBILITY_CHANGED = EventType(
    events_pb2.EligibilityChanged, PROGRAMS_TOPIC, "aisuper.policy.eligibility.changed.v1"
)
SUBSIDY_RESERVED = EventType(
    events_pb2.SubsidyReserved, SUBSIDIES_TOPIC, "aisuper.policy.subsidy.reserved.v1"
)
SUBSIDY_SETTLED = EventType(
    events_pb2.SubsidySettled, SUBSIDIES_TOPIC, "aisuper.policy.subsidy.settled.v1"
)
SUBSIDY_RELEASED = EventType(
    events_pb2.SubsidyReleased, SUBSIDIES_TOPIC, "aisuper.policy.subsidy.released.v1"
)

DECISION_RECORDED = EventType(
    events_pb2.DecisionRecorded, DECISIONS_TOPIC, "aisuper.policy.decision.recorded.v1"
)

CATALOG = EventCatalog(
    SOURCE,
    [
        PROGRAM_PUBLISHED,
        ELIGIBILITY_CHANGED,
        SUBSIDY_RESERVED,
        SUBSIDY_SETTLED,
        SUBSIDY_RELEASED,
        DECISION_RECORDED,
    ],
)

# Catalog's events policy consumes (the same ce_types catalog emits).
LISTING_PUBLISHED = EventType(
    catalog_events.ListingPublished, LISTINGS_TOPIC, "aisuper.catalog.listing.published.v1"
)
LISTING_UPDATED = EventType(
    catalog_events.ListingUpdated, LISTINGS_TOPIC, "aisuper.catalog.listing.updated.v1"
)
LISTING_DEPRECATED = EventType(
    catalog_events.ListingDeprecated, LISTINGS_TOPIC, "aisuper.catalog.listing.deprecated.v1"
)
ACCESS_GRANTED = EventType(
    catalog_events.AccessGranted, LISTINGS_TOPIC, "aisuper.catalog.listing.access_granted.v1"
)
ACCESS_REVOKED = EventType(
    catalog_events.AccessRevoked, LISTINGS_TOPIC, "aisuper.catalog.listing.access_revoked.v1"
)


def subscriptions(
    db: Database, api: PolicyApi, cache: AuthCache, group: str = "policy"
) -> list[Subscription]:
    """`group` is the consumer group: the service's name (replicas share the work)."""

    async def on_organization(event: Event[Any], session: AsyncSession | None) -> None:
        assert session is not None  # a grouped subscription with a database
        await api.learn_organization(session, event.data)

    async def on_listing(event: Event[Any], session: AsyncSession | None) -> None:
        assert session is not None  # a grouped subscription with a database
        await api.learn_listing(session, event.data)

    return [
        *invalidation_subscriptions("policy", cache),
        Subscription(
            name="policy.organizations",
            topic=ORGANIZATIONS_TOPIC,
            types=(ORGANIZATION_REGISTERED, ORGANIZATION_VERIFIED, ORGANIZATION_SUSPENDED),
            handler=on_organization,
            group=group,
            db=db,
        ),
        Subscription(
            name="policy.listings",
            topic=LISTINGS_TOPIC,
            types=(
                LISTING_PUBLISHED,
                LISTING_UPDATED,
                LISTING_DEPRECATED,
                ACCESS_GRANTED,
                ACCESS_REVOKED,
            ),
            handler=on_listing,
            group=group,
            db=db,
        ),
    ]
