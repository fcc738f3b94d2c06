"""How every other service authenticates: the platform's identity client against
a real identity server, with revocation events dropping its cache."""

from __future__ import annotations

import time

import pytest
from faststream.kafka import KafkaBroker
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.broker import kafka_broker
from aisuper.platform.errors import Unauthenticated
from aisuper.platform.events.consumer import EventConsumers
from aisuper.platform.grpc_client import channel
from aisuper.platform.identity_client import invalidation_subscriptions, remote_resolver
from aisuper.platform.settings import ServiceSettings
from aisuper.platform.testing import BrokerUnderTest, eventually


async def test_remote_resolver_caches_keys_verifies_tokens_and_drops_revoked_keys(
    identity: Identity, broker: BrokerUnderTest
) -> None:
    settings = ServiceSettings(
        service_name="someservice",
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        auth_cache_ttl_s=300,  # only the event can drop the entry in time
    )
    registered = await identity.register("Remote Ltd", admin_email="r@remote.test")
    key = registered.api_key_secret
    token = (
        await identity.stub.IssueToken(identity_pb2.IssueTokenRequest(), metadata=identity.as_(key))
    ).token
    async with channel(identity.address) as chan:
        resolver = remote_resolver(chan, settings)
        faststream: KafkaBroker = kafka_broker(settings)
        consumers = EventConsumers(faststream, fetch_max_wait_ms=50)
        consumers.subscribe_all(invalidation_subscriptions("someservice", resolver.cache))
        await faststream.start()
        await consumers.ready()
        try:
            by_key = await resolver.resolve(key)
            assert by_key.org_id == registered.organization.id
            assert by_key.roles == frozenset({"org_admin"})
            assert by_key.credential_kind == "api_key"
            by_token = await resolver.resolve(token)
            assert by_token.org_id == registered.organization.id
            assert by_token.credential_kind == "jwt"
            assert by_token.key_id == registered.api_key.id
            assert resolver.cache.get(key) is not None

            await identity.stub.RevokeApiKey(
                identity_pb2.RevokeApiKeyRequest(
                    org_id=registered.organization.id, key_id=registered.api_key.id
                ),
                metadata=identity.as_(identity.operator_key),
            )
            revoked_at = time.monotonic()
            await eventually(lambda: resolver.cache.get(key) is None, within_s=5, every_s=0.01)
            assert time.monotonic() - revoked_at < 1.0
            with pytest.raises(Unauthenticated):
                await resolver.resolve(key)
            # The token minted from the revoked key is refused too.
            with pytest.raises(Unauthenticated):
                await resolver.resolve(token)
        finally:
            await faststream.stop()


async def test_remote_resolver_rejects_garbage_without_calling_anyone(
    identity: Identity, broker: BrokerUnderTest
) -> None:
    settings = ServiceSettings(kafka_bootstrap=broker.bootstrap)
    async with channel(identity.address) as chan:
        resolver = remote_resolver(chan, settings)
        for credential in ("nonsense", "a.b", "ais_short_x", "e30.e30.sig"):
            with pytest.raises(Unauthenticated):
                await resolver.resolve(credential)
