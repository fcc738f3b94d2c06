"""A poison message on a topic identity consumes goes to the DLQ; the next one still counts."""

from __future__ import annotations

import grpc
from aiokafka import AIOKafkaProducer
from identity_harness import Identity

from aisuper.identity.v1 import events_pb2, identity_pb2
from aisuper.platform.events.envelope import encode_headers, headers_to_kafka
from aisuper.platform.identity_client import API_KEY_REVOKED, API_KEYS_TOPIC
from aisuper.platform.testing import BrokerUnderTest, eventually, header, read_topic, unique


async def rejected(identity: Identity, credential: str) -> bool:
    try:
        await identity.stub.Authenticate(
            identity_pb2.AuthenticateRequest(), metadata=identity.as_(credential)
        )
    except grpc.aio.AioRpcError as error:
        return error.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


async def test_poison_on_api_keys_topic_is_dead_lettered_and_revocations_still_apply(
    broker: BrokerUnderTest, identity: Identity
) -> None:
    first = await identity.register("Poison One", admin_email="a@one.test")
    second = await identity.register("Poison Two", admin_email="a@two.test")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()

    async def revoke_by_event(response: identity_pb2.RegisterOrganizationResponse) -> None:
        event = events_pb2.ApiKeyRevoked(
            key_id=response.api_key.id, org_id=response.organization.id
        )
        headers = encode_headers(
            API_KEY_REVOKED, source="/aisuper/identity", subject=response.api_key.id
        )
        await producer.send_and_wait(
            API_KEYS_TOPIC,
            event.SerializeToString(),
            key=response.api_key.id.encode(),
            headers=headers_to_kafka(headers),
        )

    try:
        # Identity reads this topic from the latest offset: wait until it is
        # demonstrably listening before sending the poison.
        async def listening() -> bool:
            await revoke_by_event(first)
            return await rejected(identity, first.api_key_secret)

        await eventually(listening, within_s=30, every_s=0.5)
        assert not await rejected(identity, second.api_key_secret)

        poison_key = unique("poison").encode()
        await producer.send_and_wait(API_KEYS_TOPIC, b"\x00not an event", key=poison_key)
        await revoke_by_event(second)
        await eventually(lambda: rejected(identity, second.api_key_secret), within_s=15)
    finally:
        await producer.stop()

    dead = await read_topic(
        broker,
        f"{API_KEYS_TOPIC}.dlq",
        until=lambda records: any(r.key == poison_key for r in records),
    )
    [record] = [r for r in dead if r.key == poison_key]
    assert record.value == b"\x00not an event"
    assert "missing CloudEvents header" in (header(record, "aisuper_dlq_error") or "")
    assert header(record, "aisuper_dlq_consumer") == "identity.auth-cache.api-keys"
