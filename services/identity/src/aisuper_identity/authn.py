"""Identity authenticates API keys against its own table (others ask it)."""

from __future__ import annotations

from datetime import UTC, datetime

from aisuper.platform.auth import Principal
from aisuper.platform.db import Database
from aisuper.platform.errors import Unauthenticated
from aisuper_identity import domain, store


class LocalApiKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def authenticate_api_key(self, credential: str) -> Principal:
        key_id, secret = domain.parse_api_key(credential)
        async with self._db.read() as session:
            found = await store.get_api_key_with_org(session=session, key_id=key_id)
        # One answer for every failure: a caller learns nothing about which
        # keys exist.
        if found is None:
            raise Unauthenticated("invalid API key")
        key, org = found
        now = datetime.now(UTC)
        if (
            not domain.secret_matches(secret, key.secret_hash)
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
            or org.suspended
        ):
            raise Unauthenticated("invalid API key")
        return principal_of(key)

    async def check_token(self, principal: Principal) -> None:
        """A token is only as good as the key it was issued for, now."""
        async with self._db.read() as session:
            found = await store.get_api_key_with_org(session=session, key_id=principal.key_id)
        if found is None or found[0].revoked_at is not None or found[1].suspended:
            raise Unauthenticated("token of a revoked key or a suspended organization")


def principal_of(key: store.ApiKey) -> Principal:
    return Principal(
        org_id=key.org_id,
        subject=f"member:{key.member_id}" if key.member_id else f"key:{key.id}",
        roles=frozenset({domain.ROLE_NAME[key.role]}),
        scopes=frozenset(key.scopes.split()),
        credential_kind="api_key",
        key_id=key.id,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
    )
