"""Missing, oversized, malformed and hostile input, for every identity RPC.

Each case must be refused with INVALID_ARGUMENT whose `google.rpc.BadRequest`
names the offending field, must leave every stored row as it was, and must
leave the service serving.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2 as pb
from aisuper.platform.grpc_errors import bad_request_of

MISSING_ORG = "org_" + "0" * 26
MISSING_MEMBER = "mem_" + "0" * 26
TEN_KB = "x" * 10_000


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class World:
    """What exists before a hostile call: one customer organisation."""

    org_id: str
    member_id: str
    key_id: str
    admin_key: str
    operator_key: str


@dataclass(frozen=True)
class Case:
    id: str
    rpc: str
    request: Callable[[World], Message]
    field: str
    #: Whose credential goes with the call: one that would be allowed to make it.
    caller: str = "admin"  # admin | operator | none


def _register(**overrides: Any) -> Callable[[World], Message]:
    def make(_: World) -> Message:
        fields: dict[str, Any] = {
            "name": "Hostile Inputs Ltd",
            "kind": pb.ORGANIZATION_KIND_STARTUP,
            "country": "FR",
            "admin_email": "root@hostile.test",
        }
        fields.update(overrides)
        return pb.RegisterOrganizationRequest(**fields)

    return make


def _own(message: type[Message], **overrides: Any) -> Callable[[World], Message]:
    """A request on the caller's own organisation, with `overrides` applied."""

    def make(world: World) -> Message:
        fields: dict[str, Any] = {"org_id": world.org_id}
        fields.update(overrides)
        return message(**fields)

    return make


def _add_member(**overrides: Any) -> Callable[[World], Message]:
    base = {"email": "new@acme.test", "role": pb.ROLE_DEVELOPER}
    return _own(pb.AddMemberRequest, **{**base, **overrides})


def _create_key(**overrides: Any) -> Callable[[World], Message]:
    return _own(pb.CreateApiKeyRequest, **{"name": "ci", **overrides})


def _remove_member(member_id: str) -> Callable[[World], Message]:
    return lambda world: pb.RemoveMemberRequest(org_id=world.org_id, member_id=member_id)


def _revoke(key_id: str) -> Callable[[World], Message]:
    return lambda world: pb.RevokeApiKeyRequest(org_id=world.org_id, key_id=key_id)


def _seconds(seconds: int, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


# Malformed organisation ids: each must fail the `org_<ulid>` pattern.
BAD_ORG_IDS = {
    "empty": "",
    "no-prefix": "0" * 26,
    "sql-injection": "org_' OR 1=1 --",
    "sql-union": "org_x' UNION SELECT * FROM api_keys --",
    "cyrillic-o": "\u043erg_" + "0" * 26,  # CYRILLIC SMALL LETTER O looks like 'o'
    "fullwidth-digits": "org_" + "\uff10" * 26,
    "uppercase": "ORG_" + "0" * 26,
    "upper-ulid": "org_" + "A" * 26,
    "too-long": "org_" + "0" * 27,
    "too-short": "org_" + "0" * 25,
    "trailing-newline": MISSING_ORG + "\n",
    "nul-byte": MISSING_ORG[:-1] + "\x00",
    "wildcard": "org_%",
    "path-traversal": "org_../../etc/passwd",
    "ten-kb": "org_" + "0" * 10_000,
    "member-id": MISSING_MEMBER,
}

# Garbage page tokens: each must be refused, never crash the listing.
BAD_PAGE_TOKENS = {
    "bangs": "!!!",
    "b64-not-json": b64(b"definitely not json"),
    "b64-int-after": b64(json.dumps({"after": 5}).encode()),
    "b64-null-after": b64(json.dumps({"after": None}).encode()),
    "b64-list-after": b64(json.dumps({"after": ["org_"]}).encode()),
    "b64-no-after": b64(json.dumps({"before": "x"}).encode()),
    "b64-list": b64(json.dumps(["after", "x"]).encode()),
    "b64-string": b64(json.dumps("after").encode()),
    "b64-not-utf8": b64(b"\xff\xfe\xfd{"),
    "b64-nested": b64(b"[" * 300 + b"]" * 300),
    "oversized": "a" * 513,
}

SCOPE_CASES = {
    "uppercase": ["Read"],
    "duplicates": ["read", "read"],
    "33-items": [f"s{i}" for i in range(33)],
    "empty-item": [""],
    "leading-digit": ["1read"],
    "with-space": ["read write"],
    "with-newline": ["read\n"],
    "65-chars": ["a" * 65],
    "nul-byte": ["read\x00"],
}


def _cases() -> list[Case]:
    cases: list[Case] = []

    # RegisterOrganization: public, so called without a credential.
    for label, value in {
        "empty": "",
        "one-char": "a",
        "201-chars": "x" * 201,
        "10kb": TEN_KB,
        "nul": "Acme\x00Corp",
        "newline": "Acme\nCorp",
        "escape-seq": "Acme\x1b[31mCorp",
        "del": "Acme\x7fCorp",
        "c1-control": "Acme\x85Corp",
    }.items():
        cases.append(
            Case(
                f"register-name-{label}",
                "RegisterOrganization",
                _register(name=value),
                "name",
                "none",
            )
        )
    for label, kind in {"unspecified": 0, "unknown-99": 99, "negative": -1}.items():
        cases.append(
            Case(
                f"register-kind-{label}",
                "RegisterOrganization",
                _register(kind=kind),
                "kind",
                "none",
            )
        )
    for label, country in {
        "empty": "",
        "lowercase-de": "de",
        "not-iso-XX": "XX",  # passes the pattern: the domain check refuses it
        "not-iso-ZZ": "ZZ",
        "alpha-3": "DEU",
        "digit": "D1",
        "umlauts": "\u00c4\u00d6",
        "newline": "DE\n",
        "sql": "' OR 1=1 --",
    }.items():
        cases.append(
            Case(
                f"register-country-{label}",
                "RegisterOrganization",
                _register(country=country),
                "country",
                "none",
            )
        )
    for label, email in {
        "empty": "",
        "no-at": "not-an-email",
        "no-domain": "root@",
        "no-local": "@hostile.test",
        "spaces": "root @hostile.test",
        "nul": "root@hostile.test\x00",
        "header-injection": "root@hostile.test\r\nBcc: all@x.test",
        "too-long": "r" * 250 + "@hostile.test",
    }.items():
        cases.append(
            Case(
                f"register-email-{label}",
                "RegisterOrganization",
                _register(admin_email=email),
                "admin_email",
                "none",
            )
        )
    for label, count in {"negative": -1, "huge": 10_000_001, "int32-min": -(2**31)}.items():
        cases.append(
            Case(
                f"register-employees-{label}",
                "RegisterOrganization",
                _register(employee_count=count),
                "employee_count",
                "none",
            )
        )
    for label, request_id in {
        "129-chars": "r" * 129,
        "10kb": TEN_KB,
        "space": "req 1",
        "sql": "r'; DROP TABLE organizations; --",
        "newline": "req-1\n",
    }.items():
        cases.append(
            Case(
                f"register-request-id-{label}",
                "RegisterOrganization",
                _register(request_id=request_id),
                "request_id",
                "none",
            )
        )

    # Calls addressed by organisation id.
    for label, org_id in BAD_ORG_IDS.items():
        cases += [
            Case(
                f"get-org-{label}",
                "GetOrganization",
                lambda _, o=org_id: pb.GetOrganizationRequest(org_id=o),
                "org_id",
            ),
            Case(
                f"verify-{label}",
                "VerifyOrganization",
                lambda _, o=org_id: pb.VerifyOrganizationRequest(org_id=o),
                "org_id",
                "operator",
            ),
            Case(
                f"suspend-{label}",
                "SuspendOrganization",
                lambda _, o=org_id: pb.SuspendOrganizationRequest(org_id=o, reason="abuse"),
                "org_id",
                "operator",
            ),
            Case(f"add-member-org-{label}", "AddMember", _add_member(org_id=org_id), "org_id"),
            Case(
                f"remove-member-org-{label}",
                "RemoveMember",
                lambda w, o=org_id: pb.RemoveMemberRequest(org_id=o, member_id=w.member_id),
                "org_id",
            ),
            Case(
                f"list-members-{label}",
                "ListMembers",
                lambda _, o=org_id: pb.ListMembersRequest(org_id=o),
                "org_id",
            ),
            Case(f"create-key-org-{label}", "CreateApiKey", _create_key(org_id=org_id), "org_id"),
            Case(
                f"list-keys-{label}",
                "ListApiKeys",
                lambda _, o=org_id: pb.ListApiKeysRequest(org_id=o),
                "org_id",
            ),
            Case(
                f"revoke-org-{label}",
                "RevokeApiKey",
                lambda w, o=org_id: pb.RevokeApiKeyRequest(org_id=o, key_id=w.key_id),
                "org_id",
            ),
        ]

    # Verify / suspend need a reason only for suspension.
    for label, reason in {"empty": "", "1001-chars": "r" * 1001, "10kb": TEN_KB}.items():
        cases.append(
            Case(
                f"suspend-reason-{label}",
                "SuspendOrganization",
                _own(pb.SuspendOrganizationRequest, reason=reason),
                "reason",
                "operator",
            )
        )

    # Paging, on every List call.
    list_calls: dict[str, tuple[str, Callable[..., Callable[[World], Message]], str]] = {
        "list-orgs": (
            "ListOrganizations",
            lambda **kw: lambda _: pb.ListOrganizationsRequest(**kw),
            "operator",
        ),
        "list-members": ("ListMembers", lambda **kw: _own(pb.ListMembersRequest, **kw), "admin"),
        "list-keys": ("ListApiKeys", lambda **kw: _own(pb.ListApiKeysRequest, **kw), "admin"),
    }
    for prefix, (rpc, make, caller) in list_calls.items():
        for label, size in {
            "negative": -1,
            "int32-min": -(2**31),
            "1001": 1001,
            "int32-max": 2**31 - 1,
        }.items():
            cases.append(
                Case(f"{prefix}-page-size-{label}", rpc, make(page_size=size), "page_size", caller)
            )
        for label, token in BAD_PAGE_TOKENS.items():
            cases.append(
                Case(
                    f"{prefix}-page-token-{label}",
                    rpc,
                    make(page_token=token),
                    "page_token",
                    caller,
                )
            )

    # AddMember's own fields.
    for label, email in {
        "empty": "",
        "no-at": "bob",
        "too-long": "b" * 250 + "@acme.test",
        "nul": "bob\x00@acme.test",
        "sql": "' OR 1=1 --@acme.test",
    }.items():
        cases.append(
            Case(f"add-member-email-{label}", "AddMember", _add_member(email=email), "email")
        )
    for label, name in {
        "201-chars": "n" * 201,
        "10kb": TEN_KB,
        "nul": "Bob\x00",
        "newline": "Bob\nAdmin",
        "tab": "Bob\tSmith",
    }.items():
        cases.append(
            Case(
                f"add-member-display-name-{label}",
                "AddMember",
                _add_member(display_name=name),
                "display_name",
            )
        )
    for label, role in {
        "unspecified": pb.ROLE_UNSPECIFIED,
        "operator": pb.ROLE_OPERATOR,
        "unknown-99": 99,
        "negative": -5,
    }.items():
        cases.append(Case(f"add-member-role-{label}", "AddMember", _add_member(role=role), "role"))
    cases.append(
        Case(
            "add-member-request-id-129",
            "AddMember",
            _add_member(request_id="r" * 129),
            "request_id",
        )
    )
    cases.append(
        Case(
            "add-member-request-id-sql",
            "AddMember",
            _add_member(request_id="x' OR '1'='1"),
            "request_id",
        )
    )

    # RemoveMember's member id.
    for label, member_id in {
        "empty": "",
        "no-prefix": "0" * 26,
        "sql-injection": "mem_' OR 1=1 --",
        "cyrillic-e": "m\u0435m_" + "0" * 26,  # CYRILLIC SMALL LETTER IE looks like 'e'
        "org-id": MISSING_ORG,
        "too-long": MISSING_MEMBER + "0",
        "ten-kb": "mem_" + "0" * 10_000,
    }.items():
        cases.append(
            Case(
                f"remove-member-id-{label}", "RemoveMember", _remove_member(member_id), "member_id"
            )
        )

    # CreateApiKey's own fields.
    for label, name in {
        "empty": "",
        "201-chars": "k" * 201,
        "10kb": TEN_KB,
        "nul": "ci\x00",
        "newline": "ci\nkey",
    }.items():
        cases.append(
            Case(f"create-key-name-{label}", "CreateApiKey", _create_key(name=name), "name")
        )
    for label, role in {"operator": pb.ROLE_OPERATOR, "unknown-99": 99, "negative": -1}.items():
        cases.append(
            Case(f"create-key-role-{label}", "CreateApiKey", _create_key(role=role), "role")
        )
    for label, member_id in {
        "no-prefix": "0" * 26,
        "sql": "mem_' OR 1=1 --",
        "org-id": MISSING_ORG,
    }.items():
        cases.append(
            Case(
                f"create-key-member-id-{label}",
                "CreateApiKey",
                _create_key(member_id=member_id),
                "member_id",
            )
        )
    # Well-formed but no such member: the domain check names the field.
    cases.append(
        Case(
            "create-key-member-id-missing",
            "CreateApiKey",
            _create_key(member_id=MISSING_MEMBER),
            "member_id",
        )
    )
    for label, scopes in SCOPE_CASES.items():
        cases.append(
            Case(f"create-key-scopes-{label}", "CreateApiKey", _create_key(scopes=scopes), "scopes")
        )
    for label, ttl in {
        "zero": _seconds(0),
        "59s": _seconds(59),
        "negative": _seconds(-60),
        "just-under-60s": _seconds(59, 999_999_999),
        "over-10-years": _seconds(315_360_001),
        "max-seconds": _seconds(315_576_000_000),
    }.items():
        cases.append(Case(f"create-key-ttl-{label}", "CreateApiKey", _create_key(ttl=ttl), "ttl"))
    cases.append(
        Case(
            "create-key-request-id-129",
            "CreateApiKey",
            _create_key(request_id="r" * 129),
            "request_id",
        )
    )

    # RevokeApiKey's key id.
    for label, key_id in {
        "empty": "",
        "15-chars": "0" * 15,
        "17-chars": "0" * 17,
        "uppercase": "ABCDEFGHIJKLMNOP",
        "sql": "' OR '1'='1' --",
        "cyrillic-a": "\u0430" * 16,
        "full-secret": "ais_0123456789abcdef_secret",
        "ten-kb": "0" * 10_000,
    }.items():
        cases.append(Case(f"revoke-key-id-{label}", "RevokeApiKey", _revoke(key_id), "key_id"))

    # IssueToken.
    for label, audience in {
        "space": "my service",
        "129-chars": "a" * 129,
        "nul": "aud\x00",
        "10kb": TEN_KB,
        "newline": "aud\n",
    }.items():
        cases.append(
            Case(
                f"issue-token-audience-{label}",
                "IssueToken",
                lambda _, a=audience: pb.IssueTokenRequest(audience=a),
                "audience",
            )
        )
    for label, ttl in {
        "zero": _seconds(0),
        "9s": _seconds(9),
        "3601s": _seconds(3601),
        "negative": _seconds(-10),
        "a-day": _seconds(86_400),
    }.items():
        cases.append(
            Case(
                f"issue-token-ttl-{label}",
                "IssueToken",
                lambda _, t=ttl: pb.IssueTokenRequest(ttl=t),
                "ttl",
            )
        )
    for label, scopes in SCOPE_CASES.items():
        cases.append(
            Case(
                f"issue-token-scopes-{label}",
                "IssueToken",
                lambda _, s=scopes: pb.IssueTokenRequest(scopes=s),
                "scopes",
            )
        )
    return cases


# Text that would reach the database as-is: a page token's cursor and the
# suspension reason. PostgreSQL text cannot hold NUL (it answered INTERNAL
# before these were validated), so they must be refused like any other
# malformed field.
STORED_TEXT_CASES = [
    *(
        Case(
            f"{prefix}-page-token-b64-nul-after", rpc, make(page_token=token), "page_token", caller
        )
        for prefix, rpc, make, caller, token in [
            (
                "list-orgs",
                "ListOrganizations",
                lambda **kw: lambda _: pb.ListOrganizationsRequest(**kw),
                "operator",
                b64(json.dumps({"after": "\u0000"}).encode()),
            ),
            (
                "list-members",
                "ListMembers",
                lambda **kw: _own(pb.ListMembersRequest, **kw),
                "admin",
                b64(json.dumps({"after": "mem_\u0000"}).encode()),
            ),
            (
                "list-keys",
                "ListApiKeys",
                lambda **kw: _own(pb.ListApiKeysRequest, **kw),
                "admin",
                b64(json.dumps({"after": "\u0000"}).encode()),
            ),
        ]
    ),
    Case(
        "suspend-reason-nul",
        "SuspendOrganization",
        _own(pb.SuspendOrganizationRequest, reason="fraud\x00"),
        "reason",
        "operator",
    ),
    Case(
        "suspend-reason-escape-seq",
        "SuspendOrganization",
        _own(pb.SuspendOrganizationRequest, reason="fraud\x1b[2J\x1b[H"),
        "reason",
        "operator",
    ),
]
CASES = [*_cases(), *STORED_TEXT_CASES]


def test_every_rpc_with_fields_is_covered() -> None:
    """Every RPC whose request has fields has hostile cases here."""
    service = pb.DESCRIPTOR.services_by_name["IdentityService"]
    with_fields = {m.name for m in service.methods if m.input_type.fields}
    assert with_fields <= {case.rpc for case in CASES}
    assert len({case.id for case in CASES}) == len(CASES)


async def _world(identity: Identity) -> World:
    registered = await identity.register()
    return World(
        org_id=registered.organization.id,
        member_id=registered.admin.id,
        key_id=registered.api_key.id,
        admin_key=registered.api_key_secret,
        operator_key=identity.operator_key,
    )


async def _snapshot(identity: Identity) -> list[Message]:
    """Everything stored that a caller can see, read as the operator."""
    operator = identity.as_(identity.operator_key)
    orgs = await identity.stub.ListOrganizations(
        pb.ListOrganizationsRequest(page_size=1000), metadata=operator
    )
    seen: list[Message] = []
    for org in orgs.organizations:
        seen.append(org)
        members = await identity.stub.ListMembers(
            pb.ListMembersRequest(org_id=org.id, page_size=1000), metadata=operator
        )
        keys = await identity.stub.ListApiKeys(
            pb.ListApiKeysRequest(org_id=org.id, page_size=1000, include_revoked=True),
            metadata=operator,
        )
        seen += [*members.members, *keys.api_keys]
    return seen


def _metadata(identity: Identity, world: World, caller: str) -> tuple[tuple[str, str], ...]:
    if caller == "none":
        return ()
    return identity.as_(world.operator_key if caller == "operator" else world.admin_key)


async def _refused(identity: Identity, world: World, case: Case) -> grpc.aio.AioRpcError:
    call = getattr(identity.stub, case.rpc)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(case.request(world), metadata=_metadata(identity, world, case.caller))
    return info.value


def _assert_names_field(error: grpc.aio.AioRpcError, case: Case) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case.id, error.details())
    violations = bad_request_of(error)
    named = [f for f in violations if f == case.field or f.startswith(f"{case.field}[")]
    assert named, f"{case.id}: violations {violations} do not name {case.field!r}"
    assert all(description for description in violations.values())


async def _still_serving(identity: Identity, world: World) -> None:
    who = await identity.stub.Authenticate(
        pb.AuthenticateRequest(), metadata=identity.as_(world.admin_key)
    )
    assert who.principal.org_id == world.org_id
    other = await identity.register(name="After The Storm", admin_email="calm@after.test")
    assert other.organization.id.startswith("org_")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_hostile_field_is_refused_and_changes_nothing(identity: Identity, case: Case) -> None:
    world = await _world(identity)
    before = await _snapshot(identity)

    error = await _refused(identity, world, case)

    _assert_names_field(error, case)
    assert await _snapshot(identity) == before
    await _still_serving(identity, world)


async def test_service_keeps_serving_after_every_hostile_call_at_once(
    identity: Identity,
) -> None:
    world = await _world(identity)
    before = await _snapshot(identity)

    errors = await asyncio.gather(*(_refused(identity, world, case) for case in CASES))

    for case, error in zip(CASES, errors, strict=True):
        _assert_names_field(error, case)
    assert await _snapshot(identity) == before
    await _still_serving(identity, world)


@pytest.mark.parametrize(
    "rpc", [m.name for m in pb.DESCRIPTOR.services_by_name["IdentityService"].methods]
)
async def test_undecodable_request_body_is_refused_and_changes_nothing(
    identity: Identity, rpc: str
) -> None:
    """Bytes that are no protobuf at all never reach a handler."""
    world = await _world(identity)
    before = await _snapshot(identity)
    path = f"/aisuper.identity.v1.IdentityService/{rpc}"
    async with grpc.aio.insecure_channel(identity.address) as raw:
        call = raw.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            # A truncated length-delimited field: not a parseable message.
            await call(b"\x0a\xff\xff\xff\xff\x0f", metadata=identity.as_(world.admin_key))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request is not a valid message" in (info.value.details() or "")
    assert await _snapshot(identity) == before
    await _still_serving(identity, world)
