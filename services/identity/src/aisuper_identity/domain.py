"""Identity's rules: credentials, roles, who may do what. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import iso3166

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.auth import API_KEY_PREFIX, Principal
from aisuper.platform.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated

KEY_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 16
SECRET_BYTES = 32  # 256 random bits

#: How much each org role may do; a credential never mints a stronger one.
ROLE_RANK: dict[int, int] = {
    identity_pb2.ROLE_VIEWER: 1,
    identity_pb2.ROLE_DEVELOPER: 2,
    identity_pb2.ROLE_ORG_ADMIN: 3,
    identity_pb2.ROLE_OPERATOR: 4,
}
ROLE_BY_NAME: dict[str, int] = {
    "viewer": identity_pb2.ROLE_VIEWER,
    "developer": identity_pb2.ROLE_DEVELOPER,
    "org_admin": identity_pb2.ROLE_ORG_ADMIN,
    "operator": identity_pb2.ROLE_OPERATOR,
}
ROLE_NAME: dict[int, str] = {value: name for name, value in ROLE_BY_NAME.items()}


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    secret: str  # the whole credential, `ais_<key-id>_<secret>`: shown once
    secret_hash: str


def new_api_key() -> NewApiKey:
    key_id = "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=").lower()
    return NewApiKey(key_id, f"{API_KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    # The secret has 256 random bits, so a fast hash is enough: nothing to
    # brute-force, unlike a password.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(credential: str) -> tuple[str, str]:
    """`ais_<key-id>_<secret>` -> (key id, secret); Unauthenticated if malformed."""
    if not credential.startswith(API_KEY_PREFIX):
        raise Unauthenticated("invalid API key")
    key_id, sep, secret = credential[len(API_KEY_PREFIX) :].partition("_")
    if (
        not sep
        or len(key_id) != KEY_ID_LENGTH
        or any(c not in KEY_ID_ALPHABET for c in key_id)
        or not 16 <= len(secret) <= 128
    ):
        raise Unauthenticated("invalid API key")
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def check_country(country: str) -> None:
    if country not in iso3166.countries_by_alpha2:
        raise InvalidArgument.field("country", f"{country!r} is not an ISO 3166-1 alpha-2 code")


def normalise_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local}@{domain.lower()}"


def require_visible(principal: Principal, org_id: str, what: str = "organization") -> None:
    """Another organisation's resource answers exactly like a missing one."""
    if not principal.sees_org(org_id):
        raise NotFound(f"{what} not found")


def require_org_admin(principal: Principal) -> None:
    if not principal.has_any_role("org_admin"):
        raise PermissionDenied("needs the org_admin role")


def require_operator(principal: Principal) -> None:
    if not principal.is_operator:
        raise PermissionDenied("needs the operator role")


def caller_rank(principal: Principal) -> int:
    return max(
        (ROLE_RANK[ROLE_BY_NAME[r]] for r in principal.roles if r in ROLE_BY_NAME), default=0
    )


def check_grantable(principal: Principal, role: int) -> None:
    """A caller may hand out at most its own role, and never operator."""
    if role not in ROLE_RANK:
        raise InvalidArgument.field("role", "not a role")
    if role == identity_pb2.ROLE_OPERATOR or ROLE_RANK[role] > caller_rank(principal):
        raise PermissionDenied(f"cannot grant the role {ROLE_NAME[role]}")


def check_member_binding(principal: Principal, member_id: str) -> None:
    """Only an org admin binds a key to someone else: a key's subject is who it speaks for."""
    if (
        member_id
        and not principal.has_any_role("org_admin")
        and (principal.subject != f"member:{member_id}")
    ):
        raise PermissionDenied("only an org_admin may create keys for another member")


def check_scopes(principal: Principal, requested: list[str]) -> list[str]:
    """Requested scopes must be among the caller's; none requested keeps the caller's."""
    if not principal.scopes:
        return sorted(requested)
    if not requested:
        return sorted(principal.scopes)
    extra = set(requested) - principal.scopes
    if extra:
        raise PermissionDenied(f"scopes not held by the caller: {', '.join(sorted(extra))}")
    return sorted(requested)
