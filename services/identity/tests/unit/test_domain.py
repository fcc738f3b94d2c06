"""Identity's rules, without I/O: API keys, countries, roles and scopes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from aisuper.identity.v1 import identity_pb2 as pb
from aisuper.platform.auth import Principal
from aisuper.platform.errors import InvalidArgument, PermissionDenied, Unauthenticated
from aisuper_identity import domain

KEY_FORMAT = re.compile(r"^ais_(?P<id>[0-9a-z]{16})_(?P<secret>[a-z2-7]+)$")


def _principal(*roles: str, scopes: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        org_id="org_" + "1" * 26,
        subject="key:0123456789abcdef",
        roles=frozenset(roles),
        scopes=scopes,
    )


# -- API key generation ------------------------------------------------------


def test_new_api_key_has_the_documented_format() -> None:
    made = domain.new_api_key()
    match = KEY_FORMAT.match(made.secret)
    assert match, made.secret
    assert match["id"] == made.key_id
    assert len(made.key_id) == 16
    assert set(made.key_id) <= set("0123456789abcdefghijklmnopqrstuvwxyz")


def test_new_api_key_secret_carries_at_least_128_random_bits() -> None:
    made = domain.new_api_key()
    secret = made.secret.split("_", 2)[2]
    raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    assert len(raw) * 8 >= 128
    assert len(secret) * 5 >= 128  # base32: five bits a character


def test_new_api_keys_differ() -> None:
    made = [domain.new_api_key() for _ in range(200)]
    assert len({m.key_id for m in made}) == 200
    assert len({m.secret for m in made}) == 200
    assert len({m.secret_hash for m in made}) == 200
    # Every position of the key id varies: it is random, not a counter.
    for position in range(16):
        assert len({m.key_id[position] for m in made}) > 1


def test_new_api_key_stores_only_a_hash_of_its_secret() -> None:
    made = domain.new_api_key()
    secret = made.secret.split("_", 2)[2]
    assert made.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in made.secret_hash
    assert made.secret_hash != hashlib.sha256(made.secret.encode()).hexdigest()


def test_generated_key_parses_back_and_matches() -> None:
    made = domain.new_api_key()
    key_id, secret = domain.parse_api_key(made.secret)
    assert key_id == made.key_id
    assert domain.secret_matches(secret, made.secret_hash)


# -- parsing -------------------------------------------------------------------

GOOD_ID = "0123456789abcdef"
GOOD_SECRET = "a" * 52


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "ais_",
        "ais",
        "AIS_" + GOOD_ID + "_" + GOOD_SECRET,
        "sk_" + GOOD_ID + "_" + GOOD_SECRET,
        " ais_" + GOOD_ID + "_" + GOOD_SECRET,
        "ais_" + GOOD_ID,  # no separator
        "ais_" + GOOD_ID + GOOD_SECRET,  # no separator either
        "ais_" + GOOD_ID + "_",  # empty secret
        "ais_" + GOOD_ID + "_" + "a" * 15,  # secret too short
        "ais_" + GOOD_ID + "_" + "a" * 129,  # secret too long
        "ais_" + GOOD_ID[:-1] + "_" + GOOD_SECRET,  # 15-char id
        "ais_" + GOOD_ID + "0_" + GOOD_SECRET,  # 17-char id
        "ais_" + GOOD_ID.upper() + "_" + GOOD_SECRET,
        "ais_0123456789abcde-_" + GOOD_SECRET,
        "ais_0123456789abcd\u00e9f_" + GOOD_SECRET,
        "ais_\uff10123456789abcdef_" + GOOD_SECRET,  # fullwidth zero
        "ais__" + GOOD_ID + "_" + GOOD_SECRET,
        "ais_' OR 1=1 --xxx_" + GOOD_SECRET,
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
    ],
)
def test_parse_api_key_rejects_malformed_credentials(credential: str) -> None:
    with pytest.raises(Unauthenticated):
        domain.parse_api_key(credential)


def test_parse_api_key_failures_all_say_the_same() -> None:
    messages = set()
    for credential in ("", "ais_x_" + GOOD_SECRET, "ais_" + GOOD_ID + "_short"):
        with pytest.raises(Unauthenticated) as info:
            domain.parse_api_key(credential)
        messages.add(info.value.message)
    assert len(messages) == 1


@pytest.mark.parametrize("secret", ["a" * 16, "a" * 128, "abc_def_" + "a" * 20])
def test_parse_api_key_accepts_the_documented_bounds(secret: str) -> None:
    assert domain.parse_api_key(f"ais_{GOOD_ID}_{secret}") == (GOOD_ID, secret)


# -- secret comparison -----------------------------------------------------------


def test_secret_matches_only_the_hashed_secret() -> None:
    made = domain.new_api_key()
    secret = made.secret.split("_", 2)[2]
    assert domain.secret_matches(secret, made.secret_hash) is True
    assert domain.secret_matches(secret[:-1], made.secret_hash) is False
    assert domain.secret_matches(secret + "a", made.secret_hash) is False
    assert domain.secret_matches(secret.upper(), made.secret_hash) is False
    assert domain.secret_matches("", made.secret_hash) is False
    assert domain.secret_matches(secret, made.secret_hash.upper()) is False
    assert domain.secret_matches(secret, "") is False
    other = domain.new_api_key()
    assert domain.secret_matches(secret, other.secret_hash) is False
    # The hash itself is no secret: presenting it does not match.
    assert domain.secret_matches(made.secret_hash, made.secret_hash) is False


def test_secret_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison goes through `hmac.compare_digest`, never `==`."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(domain.hmac, "compare_digest", spy)
    made = domain.new_api_key()
    secret = made.secret.split("_", 2)[2]
    assert domain.secret_matches(secret, made.secret_hash)
    assert not domain.secret_matches("x" * 52, made.secret_hash)
    assert calls == [
        (made.secret_hash, made.secret_hash),
        (hashlib.sha256(b"x" * 52).hexdigest(), made.secret_hash),
    ]


# -- countries ---------------------------------------------------------------------


@pytest.mark.parametrize("country", ["DE", "FR", "CN", "US", "JP", "BR"])
def test_check_country_accepts_iso_3166_alpha_2(country: str) -> None:
    domain.check_country(country)


@pytest.mark.parametrize(
    "country", ["", "XX", "ZZ", "QQ", "de", "De", "DEU", "D", "276", "UK", "EU", " DE", "DE\n"]
)
def test_check_country_refuses_everything_else(country: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        domain.check_country(country)
    assert [v.field for v in info.value.violations] == ["country"]


# -- roles -------------------------------------------------------------------------

GRANTABLE = {
    "viewer": {pb.ROLE_VIEWER},
    "developer": {pb.ROLE_VIEWER, pb.ROLE_DEVELOPER},
    "org_admin": {pb.ROLE_VIEWER, pb.ROLE_DEVELOPER, pb.ROLE_ORG_ADMIN},
    "operator": {pb.ROLE_VIEWER, pb.ROLE_DEVELOPER, pb.ROLE_ORG_ADMIN},
}
ORG_ROLES = [pb.ROLE_VIEWER, pb.ROLE_DEVELOPER, pb.ROLE_ORG_ADMIN, pb.ROLE_OPERATOR]


@pytest.mark.parametrize("caller", GRANTABLE.keys())
@pytest.mark.parametrize("role", ORG_ROLES, ids=pb.Role.Name)
def test_check_grantable_allows_at_most_the_callers_role(caller: str, role: int) -> None:
    principal = _principal(caller)
    if role in GRANTABLE[caller]:
        domain.check_grantable(principal, role)
    else:
        with pytest.raises(PermissionDenied):
            domain.check_grantable(principal, role)


def test_nobody_may_grant_operator() -> None:
    for roles in ((), ("viewer",), ("org_admin",), ("operator",), ("operator", "org_admin")):
        with pytest.raises(PermissionDenied):
            domain.check_grantable(_principal(*roles), pb.ROLE_OPERATOR)


def test_the_strongest_of_several_roles_counts() -> None:
    principal = _principal("viewer", "org_admin")
    domain.check_grantable(principal, pb.ROLE_ORG_ADMIN)


@pytest.mark.parametrize("roles", [(), ("superuser",), ("ORG_ADMIN",), ("admin",)])
def test_unknown_roles_grant_nothing(roles: tuple[str, ...]) -> None:
    for role in (pb.ROLE_VIEWER, pb.ROLE_DEVELOPER, pb.ROLE_ORG_ADMIN):
        with pytest.raises(PermissionDenied):
            domain.check_grantable(_principal(*roles), role)


def test_require_visible_hides_other_organizations() -> None:
    principal = _principal("org_admin")
    domain.require_visible(principal, principal.org_id)
    with pytest.raises(domain.NotFound) as info:
        domain.require_visible(principal, "org_" + "2" * 26, "API key")
    assert info.value.message == "API key not found"
    domain.require_visible(_principal("operator"), "org_" + "2" * 26)


def test_require_org_admin_and_operator() -> None:
    domain.require_org_admin(_principal("org_admin"))
    domain.require_org_admin(_principal("operator"))
    for role in ("developer", "viewer"):
        with pytest.raises(PermissionDenied):
            domain.require_org_admin(_principal(role))
    domain.require_operator(_principal("operator"))
    for role in ("org_admin", "developer", "viewer"):
        with pytest.raises(PermissionDenied):
            domain.require_operator(_principal(role))


# -- scopes --------------------------------------------------------------------------


def test_unscoped_caller_may_request_any_scopes() -> None:
    assert domain.check_scopes(_principal("developer"), ["b", "a"]) == ["a", "b"]
    assert domain.check_scopes(_principal("developer"), []) == []


def test_scoped_caller_keeps_its_scopes_when_none_are_requested() -> None:
    principal = _principal("developer", scopes=frozenset({"models:read", "gpus:read"}))
    assert domain.check_scopes(principal, []) == ["gpus:read", "models:read"]


def test_scoped_caller_may_narrow_its_scopes() -> None:
    principal = _principal("developer", scopes=frozenset({"models:read", "gpus:read"}))
    assert domain.check_scopes(principal, ["models:read"]) == ["models:read"]
    assert domain.check_scopes(principal, ["models:read", "gpus:read"]) == [
        "gpus:read",
        "models:read",
    ]


@pytest.mark.parametrize(
    "requested",
    [["models:write"], ["models:read", "models:write"], ["models"], ["models:read:extra"]],
)
def test_scoped_caller_cannot_widen_its_scopes(requested: list[str]) -> None:
    principal = _principal("org_admin", scopes=frozenset({"models:read"}))
    with pytest.raises(PermissionDenied) as info:
        domain.check_scopes(principal, requested)
    for extra in set(requested) - {"models:read"}:
        assert extra in info.value.message


def test_role_tables_are_consistent() -> None:
    assert set(domain.ROLE_RANK) == set(ORG_ROLES)
    assert domain.ROLE_RANK[pb.ROLE_OPERATOR] > domain.ROLE_RANK[pb.ROLE_ORG_ADMIN]
    assert domain.ROLE_RANK[pb.ROLE_ORG_ADMIN] > domain.ROLE_RANK[pb.ROLE_DEVELOPER]
    assert domain.ROLE_RANK[pb.ROLE_DEVELOPER] > domain.ROLE_RANK[pb.ROLE_VIEWER]
    assert {domain.ROLE_BY_NAME[n] for n in domain.ROLE_NAME.values()} == set(ORG_ROLES)


def test_normalise_email_lowercases_only_the_domain() -> None:
    assert domain.normalise_email("Alice.Smith@Example.TEST") == "Alice.Smith@example.test"
