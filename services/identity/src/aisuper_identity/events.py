"""What identity emits, and what it subscribes to.

Emits on `identity.organizations` (key: org id) and `identity.api-keys`
(key: key id) through the outbox. Subscribes, without a consumer group, to
its own revocation and suspension events so that every replica drops the
credentials it cached, whichever replica handled the change.
"""

from __future__ import annotations

from aisuper.identity.v1 import events_pb2
from aisuper.platform.auth import AuthCache
from aisuper.platform.events.consumer import Subscription
from aisuper.platform.events.envelope import EventCatalog, EventType
from aisuper.platform.identity_client import (
    API_KEY_REVOKED,
    API_KEYS_TOPIC,
    ORGANIZATION_REGISTERED,
    ORGANIZATION_SUSPENDED,
    ORGANIZATION_VERIFIED,
    ORGANIZATIONS_TOPIC,
    invalidation_subscriptions,
)

SOURCE = "/aisuper/identity"

MEMBER_ADDED = EventType(
    events_pb2.MemberAdded, ORGANIZATIONS_TOPIC, "aisuper.identity.organization.member_added.v1"
)
MEMBER_REMOVED = EventType(
    events_pb2.MemberRemoved,
    ORGANIZATIONS_TOPIC,
    "aisuper.identity.organization.member_removed.v1",
)
API_KEY_CREATED = EventType(
    events_pb2.ApiKeyCreated, API_KEYS_TOPIC, "aisuper.identity.api_key.created.v1"
)

CATALOG = EventCatalog(
    SOURCE,
    [
        ORGANIZATION_REGISTERED,
        ORGANIZATION_VERIFIED,
        ORGANIZATION_SUSPENDED,
        MEMBER_ADDED,
        MEMBER_REMOVED,
        API_KEY_CREATED,
        API_KEY_REVOKED,
    ],
)


def subscriptions(cache: AuthCache) -> list[Subscription]:
    return invalidation_subscriptions("identity", cache)
