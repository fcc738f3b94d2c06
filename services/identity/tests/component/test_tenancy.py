"""Tenancy and roles: another organisation's resource looks exactly like a
missing one, listings never show a foreign row, and roles bound what a
credential may do."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2 as pb
from aisuper.platform.grpc_errors import bad_request_of

MISSING_ORG = "org_" + "0" * 26
MISSING_MEMBER = "mem_" + "0" * 26
MISSING_KEY = "0" * 16


@dataclass
class Tenant:
    org_id: str
    member_id: str
    key_id: str
    key: str  # the admin's API key


async def _tenant(identity: Identity, name: str, email: str) -> Tenant:
    registered = await identity.register(name=name, admin_email=email)
    return Tenant(
        registered.organization.id,
        registered.admin.id,
        registered.api_key.id,
        registered.api_key_secret,
    )


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def _status_of(error: grpc.aio.AioRpcError) -> tuple[Any, ...]:
    """Everything a caller can observe of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return (
        error.code(),
        error.details(),
        status.SerializeToString(deterministic=True) if status else None,
        bad_request_of(error),
    )


async def _state_of(identity: Identity, tenant: Tenant) -> list[Message]:
    operator = identity.as_(identity.operator_key)
    org = await identity.stub.GetOrganization(
        pb.GetOrganizationRequest(org_id=tenant.org_id), metadata=operator
    )
    members = await identity.stub.ListMembers(
        pb.ListMembersRequest(org_id=tenant.org_id, page_size=1000), metadata=operator
    )
    keys = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=tenant.org_id, page_size=1000, include_revoked=True),
        metadata=operator,
    )
    return [org.organization, *members.members, *keys.api_keys]


async def _jwt_of(identity: Identity, key: str) -> str:
    issued = await identity.stub.IssueToken(pb.IssueTokenRequest(), metadata=identity.as_(key))
    return issued.token


# (name, request on org A's resource, request on a well-formed missing one),
# each built from (A, B). B always calls.
Probe = tuple[str, Callable[[Tenant, Tenant], Message], Callable[[Tenant, Tenant], Message]]

PROBES: list[Probe] = [
    (
        "GetOrganization",
        lambda a, _: pb.GetOrganizationRequest(org_id=a.org_id),
        lambda _, __: pb.GetOrganizationRequest(org_id=MISSING_ORG),
    ),
    (
        "ListMembers",
        lambda a, _: pb.ListMembersRequest(org_id=a.org_id),
        lambda _, __: pb.ListMembersRequest(org_id=MISSING_ORG),
    ),
    (
        "AddMember",
        lambda a, _: pb.AddMemberRequest(
            org_id=a.org_id, email="mole@b.test", role=pb.ROLE_ORG_ADMIN
        ),
        lambda _, __: pb.AddMemberRequest(
            org_id=MISSING_ORG, email="mole@b.test", role=pb.ROLE_ORG_ADMIN
        ),
    ),
    (
        "RemoveMember",
        lambda a, _: pb.RemoveMemberRequest(org_id=a.org_id, member_id=a.member_id),
        lambda _, b: pb.RemoveMemberRequest(org_id=b.org_id, member_id=MISSING_MEMBER),
    ),
    (
        "RemoveMember",  # A's member addressed through B's own organisation
        lambda a, b: pb.RemoveMemberRequest(org_id=b.org_id, member_id=a.member_id),
        lambda _, __: pb.RemoveMemberRequest(org_id=MISSING_ORG, member_id=MISSING_MEMBER),
    ),
    (
        "ListApiKeys",
        lambda a, _: pb.ListApiKeysRequest(org_id=a.org_id, include_revoked=True),
        lambda _, __: pb.ListApiKeysRequest(org_id=MISSING_ORG, include_revoked=True),
    ),
    (
        "CreateApiKey",
        lambda a, _: pb.CreateApiKeyRequest(
            org_id=a.org_id, name="backdoor", role=pb.ROLE_ORG_ADMIN
        ),
        lambda _, __: pb.CreateApiKeyRequest(
            org_id=MISSING_ORG, name="backdoor", role=pb.ROLE_ORG_ADMIN
        ),
    ),
    (
        "CreateApiKey",  # B's own organisation, bound to A's member
        lambda a, b: pb.CreateApiKeyRequest(org_id=b.org_id, name="x", member_id=a.member_id),
        lambda _, b: pb.CreateApiKeyRequest(org_id=b.org_id, name="x", member_id=MISSING_MEMBER),
    ),
    (
        "RevokeApiKey",
        lambda a, _: pb.RevokeApiKeyRequest(org_id=a.org_id, key_id=a.key_id),
        lambda _, b: pb.RevokeApiKeyRequest(org_id=b.org_id, key_id=MISSING_KEY),
    ),
    (
        "RevokeApiKey",  # A's key addressed through B's own organisation
        lambda a, b: pb.RevokeApiKeyRequest(org_id=b.org_id, key_id=a.key_id),
        lambda _, __: pb.RevokeApiKeyRequest(org_id=MISSING_ORG, key_id=MISSING_KEY),
    ),
    (
        "VerifyOrganization",
        lambda a, _: pb.VerifyOrganizationRequest(org_id=a.org_id),
        lambda _, __: pb.VerifyOrganizationRequest(org_id=MISSING_ORG),
    ),
    (
        "SuspendOrganization",
        lambda a, _: pb.SuspendOrganizationRequest(org_id=a.org_id, reason="hostile takeover"),
        lambda _, __: pb.SuspendOrganizationRequest(org_id=MISSING_ORG, reason="hostile takeover"),
    ),
]


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
@pytest.mark.parametrize(
    ("rpc", "foreign", "missing"), PROBES, ids=[f"{i}-{p[0]}" for i, p in enumerate(PROBES)]
)
async def test_foreign_resource_answers_like_a_missing_one(
    identity: Identity,
    credential: str,
    rpc: str,
    foreign: Callable[[Tenant, Tenant], Message],
    missing: Callable[[Tenant, Tenant], Message],
) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    b = await _tenant(identity, "Beta SAS", "admin@beta.test")
    as_b = identity.as_(b.key if credential == "api_key" else await _jwt_of(identity, b.key))
    before = await _state_of(identity, a)
    call = getattr(identity.stub, rpc)

    on_foreign = await _error(call(foreign(a, b), metadata=as_b))
    on_missing = await _error(call(missing(a, b), metadata=as_b))

    if rpc == "CreateApiKey" and on_missing.code() == grpc.StatusCode.INVALID_ARGUMENT:
        # A member id of another organisation is just as unknown as a missing one.
        assert "member_id" in bad_request_of(on_foreign)
    else:
        assert on_foreign.code() == grpc.StatusCode.NOT_FOUND
    assert _status_of(on_foreign) == _status_of(on_missing)
    assert await _state_of(identity, a) == before
    # A's credential still works and A's organisation is untouched.
    who = await identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=identity.as_(a.key))
    assert who.principal.org_id == a.org_id


async def _list_orgs(identity: Identity, credential: str, **fields: Any) -> list[str]:
    """Every organisation id the caller can page through."""
    ids: list[str] = []
    token = ""
    while True:
        page = await identity.stub.ListOrganizations(
            pb.ListOrganizationsRequest(page_token=token, **fields),
            metadata=identity.as_(credential),
        )
        ids += [org.id for org in page.organizations]
        token = page.next_page_token
        if not token:
            return ids


def _token_after(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


async def test_listing_never_returns_a_foreign_organization(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    b = await _tenant(identity, "Beta SAS", "admin@beta.test")
    c = await _tenant(identity, "Gamma BV", "admin@gamma.test")
    platform = (
        await identity.stub.Authenticate(
            pb.AuthenticateRequest(), metadata=identity.as_(identity.operator_key)
        )
    ).principal.org_id

    for tenant in (a, b, c):
        assert await _list_orgs(identity, tenant.key) == [tenant.org_id]
        assert await _list_orgs(identity, tenant.key, page_size=1) == [tenant.org_id]
        assert await _list_orgs(identity, await _jwt_of(identity, tenant.key)) == [tenant.org_id]
        # A forged page token moves the cursor but never widens the filter.
        # (Refusing the token outright is just as good.)
        for after in ("", "org_", "~", MISSING_ORG, "' OR 1=1 --"):
            [outcome] = await asyncio.gather(
                identity.stub.ListOrganizations(
                    pb.ListOrganizationsRequest(page_token=_token_after(after)),
                    metadata=identity.as_(tenant.key),
                ),
                return_exceptions=True,
            )
            if isinstance(outcome, grpc.aio.AioRpcError):
                assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT, outcome.details()
                assert "page_token" in bad_request_of(outcome)
            else:
                assert isinstance(outcome, pb.ListOrganizationsResponse)
                assert {org.id for org in outcome.organizations} <= {tenant.org_id}
        # Keys and members listed for one's own organisation are one's own.
        keys = await identity.stub.ListApiKeys(
            pb.ListApiKeysRequest(org_id=tenant.org_id, include_revoked=True),
            metadata=identity.as_(tenant.key),
        )
        assert {k.org_id for k in keys.api_keys} == {tenant.org_id}
        members = await identity.stub.ListMembers(
            pb.ListMembersRequest(org_id=tenant.org_id), metadata=identity.as_(tenant.key)
        )
        assert {m.org_id for m in members.members} == {tenant.org_id}

    everything = {platform, a.org_id, b.org_id, c.org_id}
    assert set(await _list_orgs(identity, identity.operator_key)) == everything
    paged = await _list_orgs(identity, identity.operator_key, page_size=1)
    assert sorted(paged) == sorted(everything)  # every row once, none twice


async def test_operator_sees_and_reads_every_organization(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    b = await _tenant(identity, "Beta SAS", "admin@beta.test")
    operator = identity.as_(identity.operator_key)
    for tenant, name in ((a, "Alpha GmbH"), (b, "Beta SAS")):
        got = await identity.stub.GetOrganization(
            pb.GetOrganizationRequest(org_id=tenant.org_id), metadata=operator
        )
        assert got.organization.name == name
        keys = await identity.stub.ListApiKeys(
            pb.ListApiKeysRequest(org_id=tenant.org_id), metadata=operator
        )
        assert [k.id for k in keys.api_keys] == [tenant.key_id]


# -- roles --------------------------------------------------------------------


async def _key(identity: Identity, by: str, org_id: str, role: int, **fields: Any) -> str:
    created = await identity.stub.CreateApiKey(
        pb.CreateApiKeyRequest(org_id=org_id, name=f"role-{role}", role=role, **fields),
        metadata=identity.as_(by),
    )
    return created.secret


async def test_viewer_cannot_create_keys_or_manage_members(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    viewer = await _key(identity, a.key, a.org_id, pb.ROLE_VIEWER)
    before = await _state_of(identity, a)

    for role in (pb.ROLE_UNSPECIFIED, pb.ROLE_VIEWER, pb.ROLE_DEVELOPER, pb.ROLE_ORG_ADMIN):
        error = await _error(
            identity.stub.CreateApiKey(
                pb.CreateApiKeyRequest(org_id=a.org_id, name="mine", role=role),
                metadata=identity.as_(viewer),
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await _error(
        identity.stub.AddMember(
            pb.AddMemberRequest(org_id=a.org_id, email="x@alpha.test", role=pb.ROLE_VIEWER),
            metadata=identity.as_(viewer),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await _error(
        identity.stub.RemoveMember(
            pb.RemoveMemberRequest(org_id=a.org_id, member_id=a.member_id),
            metadata=identity.as_(viewer),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await _error(
        identity.stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(org_id=a.org_id, key_id=a.key_id), metadata=identity.as_(viewer)
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await _state_of(identity, a) == before
    # A viewer still reads its own organisation.
    got = await identity.stub.GetOrganization(
        pb.GetOrganizationRequest(org_id=a.org_id), metadata=identity.as_(viewer)
    )
    assert got.organization.id == a.org_id


async def test_developer_cannot_mint_a_stronger_key(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    developer = await _key(identity, a.key, a.org_id, pb.ROLE_DEVELOPER)
    before = await _state_of(identity, a)

    error = await _error(
        identity.stub.CreateApiKey(
            pb.CreateApiKeyRequest(org_id=a.org_id, name="escalate", role=pb.ROLE_ORG_ADMIN),
            metadata=identity.as_(developer),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nor through a token minted from it.
    token = await _jwt_of(identity, developer)
    error = await _error(
        identity.stub.CreateApiKey(
            pb.CreateApiKeyRequest(org_id=a.org_id, name="escalate", role=pb.ROLE_ORG_ADMIN),
            metadata=identity.as_(token),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await _state_of(identity, a) == before

    # Equal or weaker roles are fine; unspecified means developer.
    for role, expected in (
        (pb.ROLE_DEVELOPER, pb.ROLE_DEVELOPER),
        (pb.ROLE_VIEWER, pb.ROLE_VIEWER),
        (pb.ROLE_UNSPECIFIED, pb.ROLE_DEVELOPER),
    ):
        created = await identity.stub.CreateApiKey(
            pb.CreateApiKeyRequest(org_id=a.org_id, name="weaker", role=role),
            metadata=identity.as_(developer),
        )
        assert created.api_key.role == expected


async def test_developer_cannot_revoke_another_key_but_can_revoke_its_own(
    identity: Identity,
) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    developer = await _key(identity, a.key, a.org_id, pb.ROLE_DEVELOPER)
    developer_id = developer.split("_")[1]

    error = await _error(
        identity.stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(org_id=a.org_id, key_id=a.key_id),
            metadata=identity.as_(developer),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=identity.as_(a.key))

    revoked = await identity.stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(org_id=a.org_id, key_id=developer_id),
        metadata=identity.as_(developer),
    )
    assert revoked.api_key.HasField("revoke_time")
    error = await _error(
        identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=identity.as_(developer))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("caller", ["org_admin", "operator"])
async def test_nobody_can_mint_the_operator_role(identity: Identity, caller: str) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    credential = a.key if caller == "org_admin" else identity.operator_key
    before = await _state_of(identity, a)

    error = await _error(
        identity.stub.CreateApiKey(
            pb.CreateApiKeyRequest(org_id=a.org_id, name="god mode", role=pb.ROLE_OPERATOR),
            metadata=identity.as_(credential),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "role" in bad_request_of(error)
    error = await _error(
        identity.stub.AddMember(
            pb.AddMemberRequest(org_id=a.org_id, email="god@alpha.test", role=pb.ROLE_OPERATOR),
            metadata=identity.as_(credential),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "role" in bad_request_of(error)
    assert await _state_of(identity, a) == before


async def test_org_admin_cannot_verify_or_suspend_its_own_organization(
    identity: Identity,
) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    for credential in (a.key, await _jwt_of(identity, a.key)):
        error = await _error(
            identity.stub.VerifyOrganization(
                pb.VerifyOrganizationRequest(org_id=a.org_id), metadata=identity.as_(credential)
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        error = await _error(
            identity.stub.SuspendOrganization(
                pb.SuspendOrganizationRequest(org_id=a.org_id, reason="self"),
                metadata=identity.as_(credential),
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    got = await identity.stub.GetOrganization(
        pb.GetOrganizationRequest(org_id=a.org_id), metadata=identity.as_(a.key)
    )
    assert not got.organization.verified
    assert not got.organization.suspended

    verified = await identity.stub.VerifyOrganization(
        pb.VerifyOrganizationRequest(org_id=a.org_id),
        metadata=identity.as_(identity.operator_key),
    )
    assert verified.organization.verified
    assert verified.organization.HasField("verify_time")


async def test_last_org_admin_cannot_be_removed(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    error = await _error(
        identity.stub.RemoveMember(
            pb.RemoveMemberRequest(org_id=a.org_id, member_id=a.member_id),
            metadata=identity.as_(a.key),
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    # With a second admin the first can go; then the second is the last one.
    second = await identity.stub.AddMember(
        pb.AddMemberRequest(org_id=a.org_id, email="second@alpha.test", role=pb.ROLE_ORG_ADMIN),
        metadata=identity.as_(a.key),
    )
    second_key = await _key(
        identity, a.key, a.org_id, pb.ROLE_ORG_ADMIN, member_id=second.member.id
    )
    await identity.stub.RemoveMember(
        pb.RemoveMemberRequest(org_id=a.org_id, member_id=a.member_id),
        metadata=identity.as_(second_key),
    )
    for caller in (second_key, identity.operator_key):
        error = await _error(
            identity.stub.RemoveMember(
                pb.RemoveMemberRequest(org_id=a.org_id, member_id=second.member.id),
                metadata=identity.as_(caller),
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    members = await identity.stub.ListMembers(
        pb.ListMembersRequest(org_id=a.org_id), metadata=identity.as_(second_key)
    )
    assert [m.id for m in members.members] == [second.member.id]


async def test_removing_a_member_revokes_its_keys(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    bob = await identity.stub.AddMember(
        pb.AddMemberRequest(org_id=a.org_id, email="bob@alpha.test", role=pb.ROLE_DEVELOPER),
        metadata=identity.as_(a.key),
    )
    bobs_key = await _key(identity, a.key, a.org_id, pb.ROLE_DEVELOPER, member_id=bob.member.id)
    org_wide = await _key(identity, a.key, a.org_id, pb.ROLE_DEVELOPER)
    # Used (and so cached) before the removal, as is a token minted from it.
    who = await identity.stub.Authenticate(
        pb.AuthenticateRequest(), metadata=identity.as_(bobs_key)
    )
    assert who.principal.subject == f"member:{bob.member.id}"
    bobs_token = await _jwt_of(identity, bobs_key)
    await identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=identity.as_(bobs_token))

    await identity.stub.RemoveMember(
        pb.RemoveMemberRequest(org_id=a.org_id, member_id=bob.member.id),
        metadata=identity.as_(a.key),
    )

    for credential in (bobs_key, bobs_token):
        error = await _error(
            identity.stub.Authenticate(pb.AuthenticateRequest(), metadata=identity.as_(credential))
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    keys = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=a.org_id, include_revoked=True),
        metadata=identity.as_(a.key),
    )
    bobs_id = bobs_key.split("_")[1]
    revoked = {k.id for k in keys.api_keys if k.HasField("revoke_time")}
    assert revoked == {bobs_id}
    live = await identity.stub.ListApiKeys(
        pb.ListApiKeysRequest(org_id=a.org_id), metadata=identity.as_(a.key)
    )
    assert bobs_id not in {k.id for k in live.api_keys}
    # Other keys keep working.
    for credential in (a.key, org_wide):
        await identity.stub.Authenticate(
            pb.AuthenticateRequest(), metadata=identity.as_(credential)
        )
    members = await identity.stub.ListMembers(
        pb.ListMembersRequest(org_id=a.org_id), metadata=identity.as_(a.key)
    )
    assert [m.id for m in members.members] == [a.member_id]


# -- races on members ------------------------------------------------------------


async def test_concurrent_removals_never_leave_an_organization_without_admin(
    identity: Identity,
) -> None:
    """Every admin removed at once: all but one removal win, the last admin stays."""
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    operator = identity.as_(identity.operator_key)
    admins = [a.member_id]
    for n in range(5):
        added = await identity.stub.AddMember(
            pb.AddMemberRequest(
                org_id=a.org_id, email=f"admin{n}@alpha.test", role=pb.ROLE_ORG_ADMIN
            ),
            metadata=identity.as_(a.key),
        )
        admins.append(added.member.id)

    results = await asyncio.gather(
        *(
            identity.stub.RemoveMember(
                pb.RemoveMemberRequest(org_id=a.org_id, member_id=member_id), metadata=operator
            )
            for member_id in admins
        ),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert [e.code() for e in refused] == [grpc.StatusCode.FAILED_PRECONDITION]
    assert sum(1 for r in results if isinstance(r, pb.RemoveMemberResponse)) == len(admins) - 1
    members = await identity.stub.ListMembers(
        pb.ListMembersRequest(org_id=a.org_id), metadata=operator
    )
    assert [m.role for m in members.members] == [pb.ROLE_ORG_ADMIN]


async def test_concurrent_adds_of_one_email_create_one_member(identity: Identity) -> None:
    a = await _tenant(identity, "Alpha GmbH", "admin@alpha.test")
    request = pb.AddMemberRequest(org_id=a.org_id, email="twin@alpha.test", role=pb.ROLE_DEVELOPER)

    results = await asyncio.gather(
        *(identity.stub.AddMember(request, metadata=identity.as_(a.key)) for _ in range(5)),
        return_exceptions=True,
    )

    added = [r for r in results if isinstance(r, pb.AddMemberResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(added) == 1
    # The losers learn the email is taken, or that they lost a race (retryable):
    # never an internal error.
    assert {e.code() for e in refused} <= {
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
    }, [e.details() for e in refused]
    members = await identity.stub.ListMembers(
        pb.ListMembersRequest(org_id=a.org_id), metadata=identity.as_(a.key)
    )
    assert sorted(m.email for m in members.members) == ["admin@alpha.test", "twin@alpha.test"]
