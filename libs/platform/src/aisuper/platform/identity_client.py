"""How every service (and identity's own replicas) authenticates callers.

API keys are resolved by identity's `Authenticate` and cached; JWTs are
verified offline with identity's JWKS. Identity publishes `ApiKeyRevoked`
and `OrganizationSuspended`; every process subscribes without a consumer
group (each must hear every event) and drops what it cached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.identity.v1 import events_pb2, identity_pb2, identity_pb2_grpc
from aisuper.platform.auth import (
    AuthCache,
    CredentialResolver,
    JwtVerifier,
    Principal,
)
from aisuper.platform.errors import Unauthenticated
from aisuper.platform.events.consumer import Subscription
from aisuper.platform.events.envelope import Event, EventType
from aisuper.platform.grpc_client import bearer
from aisuper.platform.settings import ServiceSettings

ORGANIZATIONS_TOPIC = "identity.organizations"
API_KEYS_TOPIC = "identity.api-keys"

API_KEY_REVOKED = EventType(
    events_pb2.ApiKeyRevoked, API_KEYS_TOPIC, "aisuper.identity.api_key.revoked.v1"
)
ORGANIZATION_SUSPENDED = EventType(
    events_pb2.OrganizationSuspended,
    ORGANIZATIONS_TOPIC,
    "aisuper.identity.organization.suspended.v1",
)
# Other services keep their own copy of an organisation's facts from these.
ORGANIZATION_REGISTERED = EventType(
    events_pb2.OrganizationRegistered,
    ORGANIZATIONS_TOPIC,
    "aisuper.identity.organization.registered.v1",
)
ORGANIZATION_VERIFIED = EventType(
    events_pb2.OrganizationVerified,
    ORGANIZATIONS_TOPIC,
    "aisuper.identity.organization.verified.v1",
)

_ROLE_NAMES = {
    identity_pb2.ROLE_OPERATOR: "operator",
    identity_pb2.ROLE_ORG_ADMIN: "org_admin",
    identity_pb2.ROLE_DEVELOPER: "developer",
    identity_pb2.ROLE_VIEWER: "viewer",
}
ROLE_VALUES = {name: value for value, name in _ROLE_NAMES.items()}


def principal_from_proto(message: identity_pb2.Principal) -> Principal:
    return Principal(
        org_id=message.org_id,
        subject=message.subject,
        roles=frozenset(_ROLE_NAMES[r] for r in message.roles if r in _ROLE_NAMES),
        scopes=frozenset(message.scopes),
        credential_kind="jwt"
        if message.credential_kind == identity_pb2.CREDENTIAL_KIND_JWT
        else "api_key",
        key_id=message.key_id,
        expires_at=message.expire_time.ToDatetime().timestamp()
        if message.HasField("expire_time")
        else None,
    )


def principal_to_proto(principal: Principal) -> identity_pb2.Principal:
    message = identity_pb2.Principal(
        org_id=principal.org_id,
        subject=principal.subject,
        roles=sorted(ROLE_VALUES[r] for r in principal.roles if r in ROLE_VALUES),
        scopes=sorted(principal.scopes),
        credential_kind=identity_pb2.CREDENTIAL_KIND_JWT
        if principal.credential_kind == "jwt"
        else identity_pb2.CREDENTIAL_KIND_API_KEY,
        key_id=principal.key_id,
    )
    if principal.expires_at is not None:
        message.expire_time.FromSeconds(int(principal.expires_at))
    return message


class IdentityClient:
    """Identity's Authenticate and GetJwks, for other services."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 5.0) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._timeout_s = timeout_s

    async def authenticate_api_key(self, credential: str) -> Principal:
        try:
            response = await self._stub.Authenticate(
                identity_pb2.AuthenticateRequest(),
                metadata=bearer(credential),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(error.details() or "invalid credential") from None
            raise
        return principal_from_proto(response.principal)

    async def fetch_jwks(self) -> Sequence[Mapping[str, Any]]:
        response = await self._stub.GetJwks(identity_pb2.GetJwksRequest(), timeout=self._timeout_s)
        return [MessageToDict(key, preserving_proto_field_name=True) for key in response.keys]


def remote_resolver(channel: grpc.aio.Channel, settings: ServiceSettings) -> CredentialResolver:
    """The resolver of every service but identity."""
    client = IdentityClient(channel)
    return CredentialResolver(
        api_keys=client,
        tokens=JwtVerifier(
            client.fetch_jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        ),
        cache=AuthCache(ttl_s=settings.auth_cache_ttl_s),
    )


def invalidation_subscriptions(service: str, cache: AuthCache) -> list[Subscription]:
    """Drop cached credentials as soon as identity revokes or suspends them."""

    async def on_key_revoked(event: Event[Any], _session: AsyncSession | None) -> None:
        cache.drop_key(event.data.key_id)

    async def on_org_suspended(event: Event[Any], _session: AsyncSession | None) -> None:
        cache.drop_org(event.data.org_id)

    return [
        Subscription(
            name=f"{service}.auth-cache.api-keys",
            topic=API_KEYS_TOPIC,
            types=(API_KEY_REVOKED,),
            handler=on_key_revoked,
            group=None,
        ),
        Subscription(
            name=f"{service}.auth-cache.organizations",
            topic=ORGANIZATIONS_TOPIC,
            types=(ORGANIZATION_SUSPENDED,),
            handler=on_org_suspended,
            group=None,
        ),
    ]
