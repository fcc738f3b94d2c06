"""Who is calling: credentials -> `Principal`, for every service.

A credential is an API key (`ais_<key-id>_<secret>`), resolved by identity
(cached here), or a JWT that identity signed, verified offline against its
JWKS. Verification fixes the algorithm and checks iss, aud, exp and nbf.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jwt

from aisuper.platform.errors import PermissionDenied, Unauthenticated

OPERATOR = "operator"
ORG_ADMIN = "org_admin"
DEVELOPER = "developer"
VIEWER = "viewer"
ROLES = (OPERATOR, ORG_ADMIN, DEVELOPER, VIEWER)

API_KEY_PREFIX = "ais_"
JWT_ALGORITHM = "EdDSA"

CredentialKind = Literal["api_key", "jwt"]


@dataclass(frozen=True)
class Principal:
    org_id: str
    subject: str
    roles: frozenset[str]
    scopes: frozenset[str] = frozenset()
    credential_kind: CredentialKind = "api_key"
    key_id: str = ""
    expires_at: float | None = None

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.roles

    def sees_org(self, org_id: str) -> bool:
        """Whether this caller may see `org_id`'s resources at all."""
        return self.is_operator or self.org_id == org_id

    def has_any_role(self, *roles: str) -> bool:
        return self.is_operator or not self.roles.isdisjoint(roles)

    def require_role(self, *roles: str) -> None:
        if not self.has_any_role(*roles):
            raise PermissionDenied(f"needs one of the roles {', '.join(roles)}")


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "aisuper_principal", default=None
)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being handled."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("this call needs a credential")
    return principal


def optional_principal() -> Principal | None:
    return _current.get()


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def bearer_credential(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The credential of an `authorization: Bearer <credential>` header, if any."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, credential = text.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise Unauthenticated("authorization must be 'Bearer <credential>'")
            return credential.strip()
    return None


def kind_of(credential: str) -> CredentialKind:
    if credential.startswith(API_KEY_PREFIX):
        return "api_key"
    if credential.count(".") == 2:
        return "jwt"
    raise Unauthenticated("credential is neither an API key nor a token")


class ApiKeyAuthenticator(Protocol):
    async def authenticate_api_key(self, credential: str) -> Principal: ...


JwksFetcher = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]


class JwtVerifier:
    """Verifies identity's JWTs offline; refetches the JWKS on an unknown `kid`."""

    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 5.0,
        refetch_interval_s: float = 5.0,
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._refetch_interval_s = refetch_interval_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            if kid not in self._keys and (
                time.monotonic() - self._fetched_at >= self._refetch_interval_s
            ):
                self._fetched_at = time.monotonic()
                self._keys = {
                    str(jwk["kid"]): jwt.PyJWK(dict(jwk), algorithm=JWT_ALGORITHM)
                    for jwk in await self._fetch_jwks()
                }
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthenticated("token signed with an unknown key") from None

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token") from None
        if header.get("alg") != JWT_ALGORITHM:
            raise Unauthenticated(f"token algorithm must be {JWT_ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "org"]},
            )
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        roles = claims.get("roles", [])
        scope = claims.get("scope", "")
        if not isinstance(roles, list) or not isinstance(scope, str):
            raise Unauthenticated("invalid token: malformed roles or scope")
        return Principal(
            org_id=str(claims["org"]),
            subject=str(claims["sub"]),
            roles=frozenset(str(r) for r in roles if r in ROLES),
            scopes=frozenset(scope.split()),
            credential_kind="jwt",
            key_id=str(claims.get("akid", "")),
            expires_at=float(claims["exp"]),
        )


@dataclass
class _Entry:
    principal: Principal
    expires: float


@dataclass
class AuthCache:
    """Recent authentication results, dropped by key or by organisation.

    Entries are keyed by a hash of the credential, so the cache never holds
    a secret. Revocation and suspension events call `drop_key` / `drop_org`;
    credentials seen revoked stay refused for `denylist_ttl_s` (the longest
    token lifetime), which also covers tokens minted from a revoked key.
    """

    ttl_s: float = 60.0
    denylist_ttl_s: float = 3600.0
    max_entries: int = 100_000
    _entries: dict[bytes, _Entry] = field(default_factory=dict)
    _revoked_keys: dict[str, float] = field(default_factory=dict)
    _suspended_orgs: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _digest(credential: str) -> bytes:
        return hashlib.sha256(credential.encode()).digest()

    def get(self, credential: str) -> Principal | None:
        entry = self._entries.get(self._digest(credential))
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            self._entries.pop(self._digest(credential), None)
            return None
        return entry.principal

    def put(self, credential: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        expires = time.monotonic() + self.ttl_s
        if principal.expires_at is not None:
            expires = min(expires, time.monotonic() + principal.expires_at - time.time())
        self._entries[self._digest(credential)] = _Entry(principal, expires)

    def is_denied(self, principal: Principal) -> bool:
        now = time.monotonic()
        key_until = self._revoked_keys.get(principal.key_id) if principal.key_id else None
        org_until = self._suspended_orgs.get(principal.org_id)
        return (key_until is not None and key_until > now) or (
            org_until is not None and org_until > now
        )

    def drop_key(self, key_id: str) -> None:
        self._revoked_keys[key_id] = time.monotonic() + self.denylist_ttl_s
        self._drop(lambda p: p.key_id == key_id)

    def drop_org(self, org_id: str) -> None:
        self._suspended_orgs[org_id] = time.monotonic() + self.denylist_ttl_s
        self._drop(lambda p: p.org_id == org_id)

    def restore_org(self, org_id: str) -> None:
        self._suspended_orgs.pop(org_id, None)

    def _drop(self, match: Callable[[Principal], bool]) -> None:
        for digest in [d for d, e in self._entries.items() if match(e.principal)]:
            del self._entries[digest]


PrincipalCheck = Callable[[Principal], Awaitable[None]]


class CredentialResolver:
    """Turns a bearer credential into a Principal, with caching.

    `check_token`, when given, runs once per token before it is cached: the
    service that owns the truth (identity) uses it to refuse tokens of keys
    revoked or organisations suspended even after a restart emptied its
    deny-list; other services rely on the events and the one-hour token cap.
    """

    def __init__(
        self,
        *,
        api_keys: ApiKeyAuthenticator,
        tokens: JwtVerifier,
        cache: AuthCache,
        check_token: PrincipalCheck | None = None,
    ) -> None:
        self._api_keys = api_keys
        self._tokens = tokens
        self._check_token = check_token
        self.cache = cache

    async def resolve(self, credential: str) -> Principal:
        principal = self.cache.get(credential)
        if principal is None:
            if kind_of(credential) == "api_key":
                principal = await self._api_keys.authenticate_api_key(credential)
            else:
                principal = await self._tokens.verify(credential)
                if self._check_token is not None:
                    await self._check_token(principal)
            if self.cache.is_denied(principal):
                raise Unauthenticated("credential revoked")
            self.cache.put(credential, principal)
        elif principal.expires_at is not None and principal.expires_at <= time.time():
            raise Unauthenticated("credential expired")
        return principal
