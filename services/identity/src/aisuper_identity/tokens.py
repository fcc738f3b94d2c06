"""Short-lived JWTs signed with rotating Ed25519 keys.

The newest key signs; older keys stay in the JWKS until every token they
signed has expired, so rotation never breaks a valid token.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.platform.auth import JWT_ALGORITHM, Principal
from aisuper.platform.db import Database
from aisuper_identity import store

MAX_TOKEN_TTL = timedelta(hours=1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_signing_key(now: datetime, rotation: timedelta) -> store.SigningKey:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return store.SigningKey(
        kid=_b64(hashlib.sha256(public).digest()[:12]),
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_x=_b64(public),
        created_at=now,
        retire_at=now + rotation + MAX_TOKEN_TTL,
    )


def jwk(key: store.SigningKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": key.public_x,
        "kid": key.kid,
        "alg": JWT_ALGORITHM,
        "use": "sig",
    }


@dataclass
class TokenIssuer:
    db: Database
    issuer: str
    rotation: timedelta

    async def current_key(self, session: AsyncSession) -> store.SigningKey:
        """The signing key, made (or rotated) when the newest is too old."""
        now = datetime.now(UTC)
        keys = await store.signing_keys(session=session, now=now)
        if keys and keys[0].created_at > now - self.rotation:
            return keys[0]
        key = new_signing_key(now, self.rotation)
        session.add(key)
        await session.flush()
        return key

    async def ensure_key(self) -> None:
        async with self.db.write() as session:
            await self.current_key(session)

    async def jwks(self) -> list[dict[str, str]]:
        async with self.db.read() as session:
            return [
                jwk(k) for k in await store.signing_keys(session=session, now=datetime.now(UTC))
            ]

    async def issue(
        self, principal: Principal, *, audience: str, ttl: timedelta, scopes: list[str]
    ) -> tuple[str, datetime]:
        async with self.db.read() as session:
            keys = await store.signing_keys(session=session, now=datetime.now(UTC))
        if not keys or keys[0].created_at <= datetime.now(UTC) - self.rotation:
            async with self.db.write() as session:
                key = await self.current_key(session)
        else:
            key = keys[0]
        now = datetime.now(UTC)
        expires = now + min(ttl, MAX_TOKEN_TTL)
        if principal.expires_at is not None:
            expires = min(expires, datetime.fromtimestamp(principal.expires_at, UTC))
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": principal.subject,
            "org": principal.org_id,
            "roles": sorted(principal.roles),
            "scope": " ".join(scopes),
            "akid": principal.key_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": str(uuid.uuid4()),
        }
        private = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
        token = jwt.encode(claims, private, algorithm=JWT_ALGORITHM, headers={"kid": key.kid})  # type: ignore[arg-type]
        return token, expires
