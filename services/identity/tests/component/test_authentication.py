"""Authentication: every bad credential is UNAUTHENTICATED, forged tokens
never pass, good ones do; tokens and idempotent creation behave as promised."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.duration_pb2 import Duration
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2 as pb
from aisuper.platform.db import Database
from aisuper.platform.grpc_errors import bad_request_of
from aisuper_identity import store


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Org:
    org_id: str
    member_id: str
    key_id: str
    key: str


@pytest.fixture
async def org(identity: Identity) -> Org:
    registered = await identity.register()
    return Org(
        registered.organization.id,
        registered.admin.id,
        registered.api_key.id,
        registered.api_key_secret,
    )


@pytest.fixture
async def database(identity: Identity) -> AsyncIterator[Database]:
    """The service's own database, for what no RPC can do (expiry, signing keys)."""
    db = Database(identity.settings.database_url)
    yield db
    await db.dispose()


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _authenticate(identity: Identity, credential: str) -> pb.Principal:
    response = await identity.stub.Authenticate(
        pb.AuthenticateRequest(), metadata=identity.as_(credential)
    )
    return response.principal


async def _assert_unauthenticated(
    identity: Identity, metadata: tuple[tuple[str, str], ...]
) -> None:
    """Refused on a call that needs a credential, and on a public one."""
    error = await _error(identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=metadata))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    if any(name == "authorization" for name, _ in metadata):
        # A credential that is presented must be valid even where none is needed.
        error = await _error(identity.stub.GetJwks(pb.GetJwksRequest(), metadata=metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()


async def _assert_refused(identity: Identity, credential: str) -> None:
    await _assert_unauthenticated(identity, identity.as_(credential))


# -- malformed authorization --------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Basic xyz"),),
        (("authorization", "Basic YWRtaW46YWRtaW4="),),
        (("authorization", "Bearer"),),
        (("authorization", "Bearer "),),
        (("authorization", "Bearer     "),),
        (("authorization", "Token ais_0123456789abcdef_aaaaaaaaaaaaaaaaaaaa"),),
        (("authorization", "ais_0123456789abcdef_aaaaaaaaaaaaaaaaaaaa"),),
        (("authorization", "Bearer garbage"),),
        (("authorization", "Bearer ais_"),),
        (("authorization", "Bearer ais_0123456789abcdef_"),),
        (("authorization", "Bearer ais_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaa"),),
        (("authorization", "Bearer ais_' OR 1=1 --_aaaaaaaaaaaaaaaaaaaaaaaa"),),
        (("authorization", "Bearer a.b.c"),),
        (("authorization", "Bearer .."),),
        (("authorization", "Bearer " + "x" * 4000),),
        (("x-api-key", "ais_0123456789abcdef_aaaaaaaaaaaaaaaaaaaa"),),
    ],
    ids=lambda metadata: metadata[0][1][:40] if metadata else "no-credential",
)
async def test_malformed_authorization_is_unauthenticated(
    identity: Identity, metadata: tuple[tuple[str, str], ...]
) -> None:
    await _assert_unauthenticated(identity, metadata)


async def test_public_calls_need_no_credential(identity: Identity) -> None:
    jwks = await identity.stub.GetJwks(pb.GetJwksRequest())
    assert jwks.keys
    registered = await identity.register()
    assert registered.api_key_secret


async def test_registration_with_a_bad_credential_is_refused(identity: Identity) -> None:
    before = await identity.stub.ListOrganizations(
        pb.ListOrganizationsRequest(), metadata=identity.as_(identity.operator_key)
    )
    error = await _error(
        identity.stub.RegisterOrganization(
            pb.RegisterOrganizationRequest(
                name="Sneaky",
                kind=pb.ORGANIZATION_KIND_STARTUP,
                country="DE",
                admin_email="a@sneaky.test",
            ),
            metadata=identity.as_("ais_0123456789abcdef_" + "a" * 52),
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    after = await identity.stub.ListOrganizations(
        pb.ListOrganizationsRequest(), metadata=identity.as_(identity.operator_key)
    )
    assert after == before


# -- API keys -----------------------------------------------------------------


async def test_valid_api_key_authenticates(identity: Identity, org: Org) -> None:
    principal = await _authenticate(identity, org.key)
    assert principal.org_id == org.org_id
    assert list(principal.roles) == [pb.ROLE_ORG_ADMIN]
    assert principal.credential_kind == pb.CREDENTIAL_KIND_API_KEY
    assert principal.key_id == org.key_id


def _flip(char: str) -> str:
    return "b" if char != "b" else "c"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda key: key[:-1] + _flip(key[-1]), id="last-char-of-secret"),
        pytest.param(lambda key: key[:21] + _flip(key[21]) + key[22:], id="first-char-of-secret"),
        pytest.param(lambda key: key + "a", id="secret-plus-one"),
        pytest.param(lambda key: key[:-1], id="secret-minus-one"),
        pytest.param(lambda key: key[:21] + "a" * 16, id="short-secret"),
        pytest.param(lambda key: key.upper().replace("AIS_", "ais_", 1), id="uppercased"),
        pytest.param(lambda key: key[:4] + "zzzzzzzzzzzzzzzz" + key[20:], id="unknown-key-id"),
        pytest.param(lambda key: key[:4] + key[5:20] + "0" + key[20:], id="shifted-key-id"),
        pytest.param(lambda key: key.replace("ais_", "ais__", 1), id="double-underscore"),
    ],
)
async def test_wrong_api_key_is_unauthenticated(
    identity: Identity, org: Org, mangle: Callable[[str], str]
) -> None:
    await _authenticate(identity, org.key)  # the real one is cached now
    forged = mangle(org.key)
    assert forged != org.key
    await _assert_refused(identity, forged)
    assert (await _authenticate(identity, org.key)).org_id == org.org_id


async def test_secret_of_one_key_does_not_open_another(identity: Identity, org: Org) -> None:
    other = await identity.register(name="Other Org", admin_email="x@other.test")
    other_secret = other.api_key_secret.split("_", 2)[2]
    await _assert_refused(identity, f"ais_{org.key_id}_{other_secret}")


async def test_revoked_key_is_refused_immediately(identity: Identity, org: Org) -> None:
    created = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org.org_id, name="ci"), metadata=identity.as_(org.key)
    )
    await _authenticate(identity, created.secret)  # cached
    token = (
        await identity.stub.IssueToken(
            pb.IssueTokenRequest(), metadata=identity.as_(created.secret)
        )
    ).token
    unused_token = (
        await identity.stub.IssueToken(
            pb.IssueTokenRequest(ttl=Duration(seconds=600)), metadata=identity.as_(created.secret)
        )
    ).token
    await _authenticate(identity, token)  # cached

    await identity.stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(org_id=org.org_id, key_id=created.api_key.id),
        metadata=identity.as_(org.key),
    )

    # Tokens minted from a revoked key stop with it.
    for credential in (created.secret, token, unused_token):
        await _assert_refused(identity, credential)
    assert (await _authenticate(identity, org.key)).org_id == org.org_id


async def test_expired_key_is_refused(identity: Identity, org: Org, database: Database) -> None:
    created = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org.org_id, name="short", ttl=Duration(seconds=60)),
        metadata=identity.as_(org.key),
    )
    assert created.api_key.expire_time.ToSeconds() - time.time() == pytest.approx(60, abs=5)
    # Age the key in the database: nothing may have cached it yet.
    async with database.write() as session:
        key = await session.get(store.ApiKey, created.api_key.id)
        assert key is not None
        key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(key)

    await _assert_refused(identity, created.secret)


async def test_key_expiry_bounds_the_tokens_it_mints(identity: Identity, org: Org) -> None:
    created = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org.org_id, name="short", ttl=Duration(seconds=60)),
        metadata=identity.as_(org.key),
    )
    issued = await identity.stub.IssueToken(
        pb.IssueTokenRequest(ttl=Duration(seconds=3600)), metadata=identity.as_(created.secret)
    )
    assert issued.expire_time.ToSeconds() <= created.api_key.expire_time.ToSeconds()


async def test_suspended_organization_is_locked_out(identity: Identity, org: Org) -> None:
    developer = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org.org_id, name="dev"), metadata=identity.as_(org.key)
    )
    token = (
        await identity.stub.IssueToken(pb.IssueTokenRequest(), metadata=identity.as_(org.key))
    ).token
    unused_token = (
        await identity.stub.IssueToken(
            pb.IssueTokenRequest(ttl=Duration(seconds=900)), metadata=identity.as_(developer.secret)
        )
    ).token
    for credential in (org.key, developer.secret, token):
        await _authenticate(identity, credential)  # cached

    suspended = await identity.stub.SuspendOrganization(
        pb.SuspendOrganizationRequest(org_id=org.org_id, reason="unpaid invoices"),
        metadata=identity.as_(identity.operator_key),
    )
    assert suspended.organization.suspended
    assert suspended.organization.suspend_reason == "unpaid invoices"

    for credential in (org.key, developer.secret, token, unused_token):
        await _assert_refused(identity, credential)
    # Other organisations are unaffected.
    assert (await _authenticate(identity, identity.operator_key)).roles == [pb.ROLE_OPERATOR]


async def test_operators_organization_cannot_be_suspended(identity: Identity) -> None:
    operator = await _authenticate(identity, identity.operator_key)
    error = await _error(
        identity.stub.SuspendOrganization(
            pb.SuspendOrganizationRequest(org_id=operator.org_id, reason="oops"),
            metadata=identity.as_(identity.operator_key),
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    await _authenticate(identity, identity.operator_key)


# -- JWTs ---------------------------------------------------------------------


async def _issue(identity: Identity, credential: str, **fields: Any) -> pb.IssueTokenResponse:
    return await identity.stub.IssueToken(
        pb.IssueTokenRequest(**fields), metadata=identity.as_(credential)
    )


async def test_issued_token_authenticates_as_its_key(identity: Identity, org: Org) -> None:
    by_key = await _authenticate(identity, org.key)
    issued = await _issue(identity, org.key)
    assert issued.token_type == "Bearer"

    by_token = await _authenticate(identity, issued.token)

    assert by_token.org_id == by_key.org_id == org.org_id
    assert list(by_token.roles) == list(by_key.roles) == [pb.ROLE_ORG_ADMIN]
    assert by_token.subject == by_key.subject
    assert by_token.key_id == org.key_id
    assert by_token.credential_kind == pb.CREDENTIAL_KIND_JWT


async def test_issued_token_verifies_offline_against_the_jwks(identity: Identity, org: Org) -> None:
    issued = await _issue(identity, org.key, ttl=Duration(seconds=3600), scopes=["models:read"])
    jwks = await identity.stub.GetJwks(pb.GetJwksRequest())
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "EdDSA"
    [key] = [k for k in jwks.keys if k.kid == header["kid"]]
    assert (key.kty, key.crv, key.alg, key.use) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert len(unb64(key.x)) == 32

    public = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x}, algorithm="EdDSA")
    claims = jwt.decode(
        issued.token,
        public,
        algorithms=["EdDSA"],
        audience=identity.settings.jwt_audience,
        issuer=identity.settings.jwt_issuer,
    )
    assert claims["org"] == org.org_id
    assert claims["roles"] == ["org_admin"]
    assert claims["scope"] == "models:read"
    assert claims["akid"] == org.key_id
    assert claims["sub"]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] <= time.time() + 1
    assert claims["exp"] == issued.expire_time.ToSeconds()


async def test_jwks_lists_ed25519_keys_only(identity: Identity) -> None:
    jwks = await identity.stub.GetJwks(pb.GetJwksRequest())
    assert jwks.keys
    for key in jwks.keys:
        assert (key.kty, key.crv, key.alg, key.use) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert key.kid
        assert len(unb64(key.x)) == 32
    assert len({k.kid for k in jwks.keys}) == len(jwks.keys)


async def test_token_cannot_mint_a_token(identity: Identity, org: Org) -> None:
    issued = await _issue(identity, org.key)
    error = await _error(_issue(identity, issued.token))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("seconds", [3601, 7200, 9, 0])
async def test_token_ttl_out_of_range_is_invalid(
    identity: Identity, org: Org, seconds: int
) -> None:
    error = await _error(_issue(identity, org.key, ttl=Duration(seconds=seconds)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ttl" in bad_request_of(error)


async def test_token_ttl_bounds_are_honoured(identity: Identity, org: Org) -> None:
    for seconds in (10, 3600):
        issued = await _issue(identity, org.key, ttl=Duration(seconds=seconds))
        claims = jwt.decode(issued.token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == seconds
    default = await _issue(identity, org.key)
    claims = jwt.decode(default.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60


async def test_token_scopes_cannot_exceed_the_keys(identity: Identity, org: Org) -> None:
    scoped = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org.org_id, name="scoped", scopes=["models:read"]),
        metadata=identity.as_(org.key),
    )
    error = await _error(_issue(identity, scoped.secret, scopes=["models:read", "models:write"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    narrowed = await _issue(identity, scoped.secret)
    principal = await _authenticate(identity, narrowed.token)
    assert list(principal.scopes) == ["models:read"]


async def test_token_for_another_audience_is_refused_here(identity: Identity, org: Org) -> None:
    issued = await _issue(identity, org.key, audience="some-other-service")
    await _assert_refused(identity, issued.token)


# -- forged JWTs ----------------------------------------------------------------


@dataclass
class Signer:
    kid: str
    private: Ed25519PrivateKey


@pytest.fixture
async def signer(identity: Identity, database: Database) -> Signer:
    """Identity's real signing key, to craft tokens whose only flaw is the one tested."""
    async with database.read() as session:
        [newest, *_] = await store.signing_keys(session=session, now=datetime.now(UTC))
    private = serialization.load_pem_private_key(newest.private_pem.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    return Signer(newest.kid, private)


def _claims(identity: Identity, org: Org, /, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": identity.settings.jwt_issuer,
        "aud": identity.settings.jwt_audience,
        "sub": f"member:{org.member_id}",
        "org": org.org_id,
        "roles": ["org_admin"],
        "scope": "",
        "akid": org.key_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _sign(private: Ed25519PrivateKey, kid: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})


def _raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return ".".join(
        [
            b64(json.dumps(header).encode()),
            b64(json.dumps(claims).encode()),
            b64(signature),
        ]
    )


def _ed_raw(private: Ed25519PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Signs exactly the header given, whatever PyJWT would think of it."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(private.sign(signing_input.encode()))}"


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def test_crafted_token_with_the_real_key_is_accepted(
    identity: Identity, org: Org, signer: Signer
) -> None:
    """The control for the forgeries below: only their flaw makes them fail."""
    token = _sign(signer.private, signer.kid, _claims(identity, org))
    principal = await _authenticate(identity, token)
    assert principal.org_id == org.org_id
    assert list(principal.roles) == [pb.ROLE_ORG_ADMIN]


Forgery = Callable[[Identity, Org, Signer], str]


def _public_raw(signer: Signer) -> bytes:
    return signer.private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _public_pem(signer: Signer) -> bytes:
    return signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


FORGERIES: dict[str, Forgery] = {
    "alg-none": lambda i, o, s: _raw_token(
        {"alg": "none", "typ": "JWT", "kid": s.kid}, _claims(i, o), b""
    ),
    "alg-None-mixed-case": lambda i, o, s: _raw_token(
        {"alg": "None", "kid": s.kid}, _claims(i, o), b""
    ),
    "alg-missing": lambda i, o, s: _raw_token(
        {"kid": s.kid},
        _claims(i, o),
        s.private.sign(b"irrelevant"),
    ),
    "hs256-public-key-raw": lambda i, o, s: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": s.kid}, _claims(i, o), _public_raw(s)
    ),
    "hs256-public-key-pem": lambda i, o, s: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": s.kid}, _claims(i, o), _public_pem(s)
    ),
    "hs256-jwk-x": lambda i, o, s: _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": s.kid}, _claims(i, o), b64(_public_raw(s)).encode()
    ),
    "fresh-key-unknown-kid": lambda i, o, s: _sign(
        Ed25519PrivateKey.generate(), "attacker-key-1", _claims(i, o)
    ),
    "fresh-key-claiming-real-kid": lambda i, o, s: _sign(
        Ed25519PrivateKey.generate(), s.kid, _claims(i, o)
    ),
    "fresh-key-operator-claim": lambda i, o, s: _sign(
        Ed25519PrivateKey.generate(), s.kid, _claims(i, o, roles=["operator"])
    ),
    "no-kid": lambda i, o, s: jwt.encode(_claims(i, o), s.private, algorithm="EdDSA"),
    "empty-kid": lambda i, o, s: _sign(s.private, "", _claims(i, o)),
    "kid-not-a-string": lambda i, o, s: _ed_raw(
        s.private, {"alg": "EdDSA", "kid": 7}, _claims(i, o)
    ),
    "embedded-jwk": lambda i, o, s: _forged_with_embedded_jwk(i, o, s),
    "wrong-aud": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, aud="not-aisuper")),
    "aud-list-without-ours": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, aud=["a", "b"])),
    "no-aud": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, aud=None)),
    "wrong-iss": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, iss="https://evil.example")),
    "no-iss": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, iss=None)),
    "exp-in-the-past": lambda i, o, s: _sign(
        s.private,
        s.kid,
        _claims(
            i, o, iat=int(time.time()) - 600, nbf=int(time.time()) - 600, exp=int(time.time()) - 60
        ),
    ),
    "no-exp": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, exp=None)),
    "nbf-in-the-future": lambda i, o, s: _sign(
        s.private, s.kid, _claims(i, o, nbf=int(time.time()) + 120)
    ),
    "no-nbf": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, nbf=None)),
    "no-iat": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, iat=None)),
    "no-org": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, org=None)),
    "no-sub": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, sub=None)),
    "roles-not-a-list": lambda i, o, s: _sign(s.private, s.kid, _claims(i, o, roles="operator")),
    "scope-not-a-string": lambda i, o, s: _sign(
        s.private, s.kid, _claims(i, o, scope=["models:read"])
    ),
}


def _forged_with_embedded_jwk(identity: Identity, org: Org, signer: Signer) -> str:
    """A fresh key that ships its own public half in the header (CVE-2018-0114 style)."""
    attacker = Ed25519PrivateKey.generate()
    x = b64(
        attacker.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    )
    return _ed_raw(
        attacker,
        {"alg": "EdDSA", "kid": signer.kid, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}},
        _claims(identity, org, roles=["operator"]),
    )


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_token_is_unauthenticated(
    identity: Identity, org: Org, signer: Signer, forge: Forgery
) -> None:
    await _assert_refused(identity, forge(identity, org, signer))


def _tamper_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    claims.update(changes)
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def _garble(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


MANGLES: dict[str, Callable[[str], str]] = {
    "truncated-signature": lambda t: t[:-10],
    "truncated-to-two-parts": lambda t: ".".join(t.split(".")[:2]),
    "no-signature": lambda t: t.rsplit(".", 1)[0] + ".",
    "garbled-signature": lambda t: _garble(t, len(t) - 5),
    "garbled-payload": lambda t: _garble(t, t.index(".") + 5),
    "garbled-header": lambda t: _garble(t, 3),
    "payload-escalated-to-operator": lambda t: _tamper_payload(t, roles=["operator"]),
    "payload-moved-to-other-org": lambda t: _tamper_payload(t, org="org_" + "0" * 26),
    "payload-ttl-extended": lambda t: _tamper_payload(t, exp=int(time.time()) + 86_400),
    "signature-from-other-token": lambda t: t,  # replaced below
    "extra-segment": lambda t: t + ".AAAA",
    "whitespace-inside": lambda t: t[:20] + " " + t[20:],
}


@pytest.mark.parametrize("mangle", MANGLES.keys())
async def test_tampered_issued_token_is_unauthenticated(
    identity: Identity, org: Org, mangle: str
) -> None:
    token = (await _issue(identity, org.key)).token
    if mangle == "signature-from-other-token":
        other = (await _issue(identity, org.key, scopes=["x"])).token
        tampered = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    else:
        tampered = MANGLES[mangle](token)
    assert tampered != token
    await _assert_refused(identity, tampered)
    assert (await _authenticate(identity, token)).org_id == org.org_id


# -- idempotency ----------------------------------------------------------------


async def _organization_ids(identity: Identity) -> list[str]:
    listed = await identity.stub.ListOrganizations(
        pb.ListOrganizationsRequest(page_size=1000), metadata=identity.as_(identity.operator_key)
    )
    return [o.id for o in listed.organizations]


async def test_register_replay_returns_the_same_org_without_the_secret(
    identity: Identity,
) -> None:
    before = await _organization_ids(identity)
    first = await identity.register(request_id="signup-42")
    second = await identity.register(request_id="signup-42")

    assert second.organization.id == first.organization.id
    assert second.admin.id == first.admin.id
    assert second.api_key.id == first.api_key.id
    assert first.api_key_secret
    assert second.api_key_secret == ""
    assert sorted(await _organization_ids(identity)) == sorted([*before, first.organization.id])
    assert (await _authenticate(identity, first.api_key_secret)).org_id == first.organization.id


async def test_register_request_id_reused_for_another_request_is_invalid(
    identity: Identity,
) -> None:
    first = await identity.register(request_id="signup-42")
    before = await _organization_ids(identity)

    error = await _error(identity.register(name="Something Else", request_id="signup-42"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in bad_request_of(error)
    assert await _organization_ids(identity) == before
    assert first.organization.id in before


async def test_create_api_key_replay_returns_the_same_key_without_the_secret(
    identity: Identity, org: Org
) -> None:
    request = pb.CreateApiKeyRequest(
        org_id=org.org_id, name="deploy", role=pb.ROLE_VIEWER, request_id="key-7"
    )
    first = await identity.stub.CreateApiKey(request, metadata=identity.as_(org.key))
    second = await identity.stub.CreateApiKey(request, metadata=identity.as_(org.key))

    assert second.api_key.id == first.api_key.id
    assert first.secret
    assert second.secret == ""
    keys = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=org.org_id), metadata=identity.as_(org.key)
    )
    assert sorted(k.id for k in keys.api_keys) == sorted([org.key_id, first.api_key.id])

    changed = pb.CreateApiKeyRequest()
    changed.CopyFrom(request)
    changed.name = "deploy-2"
    error = await _error(identity.stub.CreateApiKey(changed, metadata=identity.as_(org.key)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in bad_request_of(error)
    again = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=org.org_id), metadata=identity.as_(org.key)
    )
    assert again == keys


async def test_concurrent_registrations_with_one_request_id_create_one_org(
    identity: Identity,
) -> None:
    before = await _organization_ids(identity)

    responses = await asyncio.gather(*(identity.register(request_id="burst-1") for _ in range(10)))

    assert len({r.organization.id for r in responses}) == 1
    assert len({r.api_key.id for r in responses}) == 1
    assert sum(1 for r in responses if r.api_key_secret) == 1
    after = await _organization_ids(identity)
    assert len(after) == len(before) + 1
    [secret] = [r.api_key_secret for r in responses if r.api_key_secret]
    assert (await _authenticate(identity, secret)).org_id == responses[0].organization.id


async def test_concurrent_key_creations_with_one_request_id_create_one_key(
    identity: Identity, org: Org
) -> None:
    request = pb.CreateApiKeyRequest(org_id=org.org_id, name="burst", request_id="burst-key")
    responses = await asyncio.gather(
        *(identity.stub.CreateApiKey(request, metadata=identity.as_(org.key)) for _ in range(10))
    )
    assert len({r.api_key.id for r in responses}) == 1
    assert sum(1 for r in responses if r.secret) == 1
    keys = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=org.org_id), metadata=identity.as_(org.key)
    )
    assert len(keys.api_keys) == 2
