"""Governance over gRPC: access policies, Authorize, catalog's events, the decision log.

Tenancy: a caller names principals of its own organisation only; naming
another organisation's principal is NOT_FOUND (as for any resource of another
organisation), unless the caller is an operator. Policies are operators' to
put, list and delete (PERMISSION_DENIED for anyone else).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from policy_harness import Org, Policy

from aisuper.catalog.v1 import catalog_pb2
from aisuper.catalog.v1 import events_pb2 as catalog_events
from aisuper.identity.v1 import identity_pb2
from aisuper.platform.db import Database
from aisuper.platform.events.envelope import EventType, encode_headers, headers_to_kafka
from aisuper.platform.grpc_errors import bad_request_of
from aisuper.platform.ids import new_id
from aisuper.platform.testing import BrokerUnderTest, eventually, read_topic
from aisuper.policy.v1 import events_pb2
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import events
from aisuper_policy.verify_decisions import check

USE_MODEL = pb.AUTHORIZATION_ACTION_USE_MODEL
Publish = Callable[[EventType, Message, str], Awaitable[None]]


@pytest.fixture
async def publish(broker: BrokerUnderTest) -> AsyncIterator[Publish]:
    """Produces catalog events on `catalog.listings`, as catalog's outbox relay would."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()

    async def send(event_type: EventType, message: Message, listing_id: str) -> None:
        headers = encode_headers(event_type, source="/aisuper/catalog", subject=listing_id)
        await producer.send_and_wait(
            event_type.topic,
            message.SerializeToString(),
            key=listing_id.encode(),
            headers=headers_to_kafka(headers),
        )

    try:
        yield send
    finally:
        await producer.stop()


def listing(
    listing_id: str, owner: str, tier: int, revision: int = 1, **fields: Any
) -> catalog_pb2.Listing:
    return catalog_pb2.Listing(
        id=listing_id,
        kind=catalog_pb2.LISTING_KIND_MODEL,
        slug=listing_id.replace("_", "-"),
        name="A model",
        org_id=owner,
        access_tier=tier,  # type: ignore[arg-type]
        state=catalog_pb2.LISTING_STATE_PUBLISHED,
        revision=revision,
        **fields,
    )


async def authorize(
    policy: Policy,
    caller: Org,
    resource_id: str,
    action: int = USE_MODEL,
    kind: int = pb.RESOURCE_KIND_LISTING,
    **fields: Any,
) -> pb.AuthorizeResponse:
    response: pb.AuthorizeResponse = await policy.stub.Authorize(
        pb.AuthorizeRequest(
            action=action,  # type: ignore[arg-type]
            resource=pb.AuthorizationResource(kind=kind, id=resource_id),  # type: ignore[arg-type]
            **fields,
        ),
        metadata=caller.auth,
    )
    return response


async def becomes(
    probe: Callable[[], Awaitable[pb.AuthorizeResponse]], allowed: bool
) -> pb.AuthorizeResponse:
    async def decided() -> pb.AuthorizeResponse | None:
        found = await probe()
        return found if found.allowed is allowed else None

    return await eventually(decided, within_s=20, every_s=0.1)


async def test_catalog_events_tiers_and_grants_drive_the_decisions(
    policy: Policy, publish: Publish
) -> None:
    owner = await policy.org("Model House")
    acme = await policy.org("Acme Robotics")
    restricted = new_id("lst")
    await publish(
        events.LISTING_PUBLISHED,
        catalog_events.ListingPublished(
            listing=listing(restricted, owner.id, catalog_pb2.ACCESS_TIER_RESTRICTED)
        ),
        restricted,
    )
    # Once policy knows the listing, its owner manages it ...
    managed = await becomes(
        lambda: authorize(policy, owner, restricted, pb.AUTHORIZATION_ACTION_MANAGE_LISTINGS),
        True,
    )
    assert list(managed.determining_policy_ids) == ["builtin.listing-owners"]
    # ... and nobody else uses it without a grant.
    denied = await authorize(policy, acme, restricted)
    assert not denied.allowed
    assert list(denied.determining_policy_ids) == []
    assert list(denied.reasons) == ["no policy permits this (default deny)"]
    assert denied.decision_id.startswith("dec_")

    access = catalog_pb2.AccessRequest(
        id=new_id("acr"), listing_id=restricted, org_id=acme.id, listing_org_id=owner.id
    )
    await publish(
        events.ACCESS_GRANTED, catalog_events.AccessGranted(access_request=access), restricted
    )
    granted = await becomes(lambda: authorize(policy, acme, restricted), True)
    assert list(granted.determining_policy_ids) == ["builtin.restricted-listings"]
    assert granted.decision_id != denied.decision_id

    await publish(
        events.ACCESS_REVOKED, catalog_events.AccessRevoked(access_request=access), restricted
    )
    await becomes(lambda: authorize(policy, acme, restricted), False)

    # The owner opens the listing up: everyone may use it.
    await publish(
        events.LISTING_UPDATED,
        catalog_events.ListingUpdated(
            listing=listing(restricted, owner.id, catalog_pb2.ACCESS_TIER_OPEN, revision=2),
            changed_fields=["access_tier"],
        ),
        restricted,
    )
    opened = await becomes(lambda: authorize(policy, acme, restricted), True)
    assert list(opened.determining_policy_ids) == ["builtin.open-listings"]


async def test_verified_tier_follows_identity_and_suspension_is_forbidden(
    policy: Policy, publish: Publish
) -> None:
    owner = await policy.org("Verified Models")
    acme = await policy.org("Acme Verified")
    verified_only = new_id("lst")
    await publish(
        events.LISTING_PUBLISHED,
        catalog_events.ListingPublished(
            listing=listing(verified_only, owner.id, catalog_pb2.ACCESS_TIER_VERIFIED)
        ),
        verified_only,
    )
    await becomes(
        lambda: authorize(policy, owner, verified_only, pb.AUTHORIZATION_ACTION_MANAGE_LISTINGS),
        True,
    )
    assert not (await authorize(policy, acme, verified_only)).allowed
    await policy.verify(acme)
    allowed = await becomes(lambda: authorize(policy, acme, verified_only), True)
    assert list(allowed.determining_policy_ids) == ["builtin.verified-listings"]

    await policy.identity.stub.SuspendOrganization(
        identity_pb2.SuspendOrganizationRequest(org_id=acme.id, reason="abuse"),
        metadata=policy.operator.auth,
    )

    # The suspended org's keys stop working; an operator asks on its behalf.
    async def for_acme() -> pb.AuthorizeResponse:
        return await authorize(
            policy,
            policy.operator,
            verified_only,
            principal=pb.AuthorizationPrincipal(org_id=acme.id),
        )

    forbidden = await becomes(for_acme, False)
    assert list(forbidden.determining_policy_ids) == ["builtin.suspended-organizations"]


async def test_put_access_policy_validates_against_the_schema_and_keeps_the_old_set(
    policy: Policy,
) -> None:
    acme = await policy.org("Acme Pools")
    pool = new_id("pool")
    request_compute = pb.AUTHORIZATION_ACTION_REQUEST_COMPUTE
    assert not (await authorize(policy, acme, pool, request_compute, pb.RESOURCE_KIND_POOL)).allowed

    put = await policy.stub.PutAccessPolicy(
        pb.PutAccessPolicyRequest(
            policy=pb.AccessPolicy(
                name="registered-compute",
                description="Registered organisations request compute from any pool.",
                text='permit (principal, action == Action::"request_compute", resource is Pool)\n'
                "when { principal.org.registered };",
            )
        ),
        metadata=policy.operator.auth,
    )
    assert put.policy.id.startswith("acp_")
    assert put.policy.revision == 1
    allowed = await authorize(policy, acme, pool, request_compute, pb.RESOURCE_KIND_POOL)
    assert allowed.allowed
    assert list(allowed.determining_policy_ids) == [put.policy.id]
    assert allowed.policy_revision == put.policy_revision

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policy.stub.PutAccessPolicy(
            pb.PutAccessPolicyRequest(
                policy=pb.AccessPolicy(
                    name="registered-compute",
                    text="permit (principal, action, resource is Pool)\n"
                    "when { principal.org.is_nice };",
                )
            ),
            metadata=policy.operator.auth,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = bad_request_of(refused.value)
    assert "attribute `is_nice`" in found["policy.text"], found

    # The refused policy changed nothing: same revision, same decision.
    still = await authorize(policy, acme, pool, request_compute, pb.RESOURCE_KIND_POOL)
    assert still.allowed
    assert still.policy_revision == put.policy_revision
    listed = await policy.stub.ListAccessPolicies(
        pb.ListAccessPoliciesRequest(page_size=100), metadata=policy.operator.auth
    )
    assert listed.policy_revision == put.policy_revision
    [mine] = [p for p in listed.policies if not p.builtin]
    assert mine.text == put.policy.text
    assert {p.id for p in listed.policies if p.builtin} >= {
        "builtin.open-listings",
        "builtin.suspended-organizations",
    }

    # Paging walks the same list.
    seen, token = [], ""
    while True:
        page = await policy.stub.ListAccessPolicies(
            pb.ListAccessPoliciesRequest(page_size=3, page_token=token),
            metadata=policy.operator.auth,
        )
        seen += [p.id for p in page.policies]
        token = page.next_page_token
        if not token:
            break
    assert seen == [p.id for p in listed.policies]

    # Replacing by name, then deleting, moves the revision and the decisions.
    replaced = await policy.stub.PutAccessPolicy(
        pb.PutAccessPolicyRequest(
            policy=pb.AccessPolicy(
                name="registered-compute",
                text='permit (principal, action == Action::"request_compute", resource is Pool)\n'
                "when { principal.org.verified };",
            )
        ),
        metadata=policy.operator.auth,
    )
    assert replaced.policy.id == put.policy.id
    assert replaced.policy.revision == 2
    assert replaced.policy_revision > put.policy_revision
    assert not (await authorize(policy, acme, pool, request_compute, pb.RESOURCE_KIND_POOL)).allowed
    deleted = await policy.stub.DeleteAccessPolicy(
        pb.DeleteAccessPolicyRequest(policy_id=put.policy.id), metadata=policy.operator.auth
    )
    assert deleted.policy_revision > replaced.policy_revision


async def test_tenancy_others_principals_are_not_found_and_policies_are_operators(
    policy: Policy,
) -> None:
    acme = await policy.org("Acme Tenancy")
    other = await policy.org("Other Tenancy")
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await authorize(
            policy, acme, new_id("lst"), principal=pb.AuthorizationPrincipal(org_id=other.id)
        )
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    # Its own organisation, named, is fine.
    own = await authorize(
        policy, acme, new_id("lst"), principal=pb.AuthorizationPrincipal(org_id=acme.id)
    )
    assert not own.allowed

    for call in (
        policy.stub.PutAccessPolicy(
            pb.PutAccessPolicyRequest(
                policy=pb.AccessPolicy(name="mine", text="permit (principal, action, resource);")
            ),
            metadata=acme.auth,
        ),
        policy.stub.ListAccessPolicies(pb.ListAccessPoliciesRequest(), metadata=acme.auth),
        policy.stub.DeleteAccessPolicy(
            pb.DeleteAccessPolicyRequest(policy_id=new_id("acp")), metadata=acme.auth
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # A request the action does not apply to is refused, not decided.
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await authorize(policy, acme, new_id("lst"), pb.AUTHORIZATION_ACTION_MANAGE_PROGRAMS)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource.kind" in bad_request_of(invalid.value)


async def _run_cli(database_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aisuper_policy.verify_decisions",
        "--database-url",
        database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


async def test_the_decision_log_is_a_hash_chain_that_detects_tampering(
    policy: Policy, broker: BrokerUnderTest
) -> None:
    acme = await policy.org("Acme Chain")
    listing_id = new_id("lst")
    # Concurrent decisions still make one linear chain.
    decided = await asyncio.gather(
        *(
            authorize(
                policy,
                acme,
                listing_id,
                context={"purpose": f"run-{n}", "api_key": "ais_abcdef_secret"},
            )
            for n in range(20)
        )
    )
    ids = {d.decision_id for d in decided}
    assert len(ids) == 20

    url = policy.settings.database_url
    result = await check(url)
    assert result.ok, result
    assert result.checked >= 20
    code, output = await _run_cli(url)
    assert code == 0, output

    # The log never holds the secret; the event carries the record's hashes.
    db = Database(url, pool_size=1)
    try:
        async with db.read() as session:
            inputs = (await session.execute(sa.text("SELECT input FROM decision_log"))).all()
        assert inputs
        assert all("ais_abcdef_secret" not in row[0] for row in inputs)
        assert all('"api_key":"[masked]"' in row[0] for row in inputs)

        records = await read_topic(
            broker,
            events.DECISIONS_TOPIC,
            until=lambda found: any(r.key == decided[0].decision_id.encode() for r in found),
        )
        [record] = [r for r in records if r.key == decided[0].decision_id.encode()]
        assert record.value is not None
        recorded = events_pb2.DecisionRecorded.FromString(record.value)
        assert recorded.input.context["api_key"] == "[masked]"
        assert recorded.input.principal.org_id == acme.id
        assert len(recorded.hash) == 64
        assert recorded.hash != recorded.previous_hash

        # One stored record changed by hand breaks the chain at that record.
        async with db.write() as session:
            victim = (
                await session.execute(
                    sa.text("SELECT id FROM decision_log ORDER BY seq LIMIT 1 OFFSET 4")
                )
            ).scalar_one()
            await session.execute(
                sa.text("UPDATE decision_log SET allowed = NOT allowed WHERE id = :id"),
                {"id": victim},
            )
    finally:
        await db.dispose()
    broken = await check(url)
    assert not broken.ok
    assert broken.broken_id == victim, broken
    code, output = await _run_cli(url)
    assert code == 1, output
    assert victim in output
