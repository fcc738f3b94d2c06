"""No API-key secret in the database, the logs or the events."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.db import Database
from aisuper.platform.testing import BrokerUnderTest, read_topic


async def test_secrets_are_shown_once_and_stored_nowhere(
    identity: Identity, broker: BrokerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registered = await identity.register("Secretive GmbH", admin_email="s@secret.test")
    org = registered.organization.id
    admin = identity.as_(registered.api_key_secret)
    created = await identity.stub.CreateApiKey(
        identity_pb2.CreateApiKeyRequest(org_id=org, name="ci", request_id="ci-key-1"),
        metadata=admin,
    )
    replay = await identity.stub.CreateApiKey(
        identity_pb2.CreateApiKeyRequest(org_id=org, name="ci", request_id="ci-key-1"),
        metadata=admin,
    )
    assert replay.api_key.id == created.api_key.id
    assert replay.secret == ""  # shown once
    token = await identity.stub.IssueToken(
        identity_pb2.IssueTokenRequest(), metadata=identity.as_(created.secret)
    )
    await identity.stub.Authenticate(
        identity_pb2.AuthenticateRequest(), metadata=identity.as_(token.token)
    )
    await identity.stub.RevokeApiKey(
        identity_pb2.RevokeApiKeyRequest(org_id=org, key_id=created.api_key.id), metadata=admin
    )
    secrets = {
        s.rsplit("_", 1)[1]
        for s in (registered.api_key_secret, created.secret, identity.operator_key)
    }
    assert all(len(s) >= 40 for s in secrets)

    # Every row of every table, as text.
    db = Database(identity.settings.database_url)
    try:
        async with db.read() as session:
            tables = await session.run_sync(lambda s: sa.inspect(s.connection()).get_table_names())
            dump = []
            for table in tables:
                rows = await session.execute(sa.text(f'SELECT * FROM "{table}"'))  # noqa: S608
                dump.extend(repr(tuple(row)) for row in rows)
    finally:
        await db.dispose()
    text = "\n".join(dump)
    assert created.api_key.id in text  # the dump does see the keys' rows
    for secret in secrets:
        assert secret not in text
    if identity.settings.database_url.startswith("sqlite"):
        path = Path(identity.settings.database_url.split(":///", 1)[1])
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for secret in secrets:
            assert secret.encode() not in raw

    for topic in ("identity.api-keys", "identity.organizations"):
        records = await read_topic(
            broker,
            topic,
            until=lambda rs: any(r.key and r.key.decode() in (org, created.api_key.id) for r in rs),
        )
        blob = b"".join((r.value or b"") + b"".join(v for _, v in r.headers or ()) for r in records)
        for secret in secrets:
            assert secret.encode() not in blob

    assert caplog.records  # the service did log
    for secret in secrets:
        assert secret not in caplog.text
