"""Revocation and suspension survive a restart that empties every cache."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from identity_harness import Spawner

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.testing import BrokerUnderTest

pytestmark = pytest.mark.slow


async def test_tokens_of_revoked_keys_and_suspended_orgs_stay_refused_after_a_restart(
    broker: BrokerUnderTest,
    database_url: str,
    tmp_path: Path,
    spawn: Spawner,
) -> None:
    first = spawn()
    await first.wait_serving()
    operator = bearer((tmp_path / "operator.key").read_text().strip())
    async with channel(first.address, tracing=False) as chan:
        stub = identity_pb2_grpc.IdentityServiceStub(chan)
        tokens = {}
        for name in ("revoked", "suspended"):
            org = await stub.RegisterOrganization(
                identity_pb2.RegisterOrganizationRequest(
                    name=f"{name.title()} Inc",
                    kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
                    country="NG",
                    admin_email=f"a@{name}.test",
                )
            )
            token = await stub.IssueToken(
                identity_pb2.IssueTokenRequest(), metadata=bearer(org.api_key_secret)
            )
            tokens[name] = (org, token.token)
        org, _ = tokens["revoked"]
        await stub.RevokeApiKey(
            identity_pb2.RevokeApiKeyRequest(org_id=org.organization.id, key_id=org.api_key.id),
            metadata=operator,
        )
        org, _ = tokens["suspended"]
        await stub.SuspendOrganization(
            identity_pb2.SuspendOrganizationRequest(org_id=org.organization.id, reason="fraud"),
            metadata=operator,
        )
    first.kill()

    second = spawn()
    await second.wait_serving()
    async with channel(second.address, tracing=False) as chan:
        stub = identity_pb2_grpc.IdentityServiceStub(chan)
        for name, (_, token) in tokens.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Authenticate(identity_pb2.AuthenticateRequest(), metadata=bearer(token))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
