"""IdentityService over gRPC: translates protos to store and domain calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.identity.v1 import events_pb2, identity_pb2, identity_pb2_grpc
from aisuper.platform import pagination
from aisuper.platform.auth import AuthCache, Principal, current_principal
from aisuper.platform.db import Database
from aisuper.platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aisuper.platform.events.outbox import Outbox
from aisuper.platform.idempotency import idempotent
from aisuper.platform.identity_client import principal_to_proto
from aisuper.platform.ids import new_id
from aisuper.platform.timestamps import timestamp as _ts
from aisuper_identity import domain, store
from aisuper_identity.tokens import TokenIssuer

Context = Any  # grpc.aio.ServicerContext: handlers never touch it


def organization_proto(org: store.Organization) -> identity_pb2.Organization:
    return identity_pb2.Organization(
        id=org.id,
        name=org.name,
        kind=org.kind,  # type: ignore[arg-type]
        country=org.country,
        incubator_member=org.incubator_member,
        verified=org.verified,
        suspended=org.suspended,
        employee_count=org.employee_count,
        create_time=_ts(org.created_at),
        verify_time=_ts(org.verified_at),
        suspend_time=_ts(org.suspended_at),
        suspend_reason=org.suspend_reason,
    )


def member_proto(member: store.Member) -> identity_pb2.Member:
    return identity_pb2.Member(
        id=member.id,
        org_id=member.org_id,
        email=member.email,
        display_name=member.display_name,
        role=member.role,  # type: ignore[arg-type]
        create_time=_ts(member.created_at),
    )


def api_key_proto(key: store.ApiKey) -> identity_pb2.ApiKey:
    return identity_pb2.ApiKey(
        id=key.id,
        org_id=key.org_id,
        member_id=key.member_id or "",
        name=key.name,
        role=key.role,  # type: ignore[arg-type]
        scopes=key.scopes.split(),
        create_time=_ts(key.created_at),
        expire_time=_ts(key.expires_at),
        revoke_time=_ts(key.revoked_at),
        prefix=f"ais_{key.id}_",
    )


async def _existing_org(
    session: AsyncSession, org_id: str, *, for_update: bool = False
) -> store.Organization:
    org = await store.get_organization(session=session, org_id=org_id, for_update=for_update)
    if org is None:
        raise NotFound("organization not found")
    return org


class IdentityApi(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(
        self, *, db: Database, outbox: Outbox, tokens: TokenIssuer, cache: AuthCache, audience: str
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._tokens = tokens
        self._cache = cache
        self._audience = audience

    # -- organisations -----------------------------------------------------

    async def RegisterOrganization(
        self, request: identity_pb2.RegisterOrganizationRequest, context: Context
    ) -> identity_pb2.RegisterOrganizationResponse:
        domain.check_country(request.country)

        async def create(session: AsyncSession) -> identity_pb2.RegisterOrganizationResponse:
            org, admin, key, secret = await self.create_organization(
                session,
                name=request.name,
                kind=request.kind,
                country=request.country,
                incubator_member=request.incubator_member,
                employee_count=request.employee_count,
                admin_email=domain.normalise_email(request.admin_email),
                key_role=identity_pb2.ROLE_ORG_ADMIN,
            )
            return identity_pb2.RegisterOrganizationResponse(
                organization=organization_proto(org),
                admin=member_proto(admin),
                api_key=api_key_proto(key),
                api_key_secret=secret,
            )

        def without_secret(
            response: identity_pb2.RegisterOrganizationResponse,
        ) -> identity_pb2.RegisterOrganizationResponse:
            stored = identity_pb2.RegisterOrganizationResponse()
            stored.CopyFrom(response)
            stored.api_key_secret = ""
            return stored

        return await idempotent(
            self._db,
            scope="register",
            request_id=request.request_id,
            request=request,
            response_type=identity_pb2.RegisterOrganizationResponse,
            create=create,
            stored=without_secret,
        )

    async def create_organization(
        self,
        session: AsyncSession,
        *,
        name: str,
        kind: int,
        country: str,
        incubator_member: bool,
        employee_count: int,
        admin_email: str,
        key_role: int,
        verified: bool = False,
        is_platform: bool = False,
    ) -> tuple[store.Organization, store.Member, store.ApiKey, str]:
        now = datetime.now(UTC)
        org = store.Organization(
            id=new_id("org"),
            name=name,
            kind=kind,
            country=country,
            incubator_member=incubator_member,
            employee_count=employee_count,
            verified=verified,
            verified_at=now if verified else None,
            is_platform=is_platform,
            created_at=now,
        )
        admin = store.Member(
            id=new_id("mem"),
            org_id=org.id,
            email=admin_email,
            display_name="",
            role=identity_pb2.ROLE_ORG_ADMIN,
            created_at=now,
        )
        session.add(org)
        await session.flush()
        session.add(admin)
        await session.flush()
        key, secret = self._new_key(
            session,
            org_id=org.id,
            member_id=admin.id,
            name="first key",
            role=key_role,
            scopes=[],
            expires_at=None,
        )
        self._outbox.add(
            session,
            events_pb2.OrganizationRegistered(
                org_id=org.id,
                name=org.name,
                kind=kind,  # type: ignore[arg-type]
                country=country,
                incubator_member=incubator_member,
                employee_count=employee_count,
                register_time=_ts(now),
            ),
            subject=org.id,
            org_id=org.id,
        )
        self._member_added(session, admin)
        return org, admin, key, secret

    async def GetOrganization(
        self, request: identity_pb2.GetOrganizationRequest, context: Context
    ) -> identity_pb2.GetOrganizationResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id)
        async with self._db.read() as session:
            org = await _existing_org(session, request.org_id)
        return identity_pb2.GetOrganizationResponse(organization=organization_proto(org))

    async def ListOrganizations(
        self, request: identity_pb2.ListOrganizationsRequest, context: Context
    ) -> identity_pb2.ListOrganizationsResponse:
        principal = current_principal()
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            orgs = await store.list_organizations(
                session=session,
                org_id=None if principal.is_operator else principal.org_id,
                after=pagination.decode_token(request.page_token),
                limit=size + 1,
            )
        shown, next_token = pagination.page(orgs, size, lambda org: org.id)
        return identity_pb2.ListOrganizationsResponse(
            organizations=[organization_proto(o) for o in shown], next_page_token=next_token
        )

    async def _org_for_change(
        self, session: AsyncSession, principal: Principal, org_id: str
    ) -> store.Organization:
        domain.require_visible(principal, org_id)
        return await _existing_org(session, org_id, for_update=True)

    async def VerifyOrganization(
        self, request: identity_pb2.VerifyOrganizationRequest, context: Context
    ) -> identity_pb2.VerifyOrganizationResponse:
        principal = current_principal()
        async with self._db.write() as session:
            org = await self._org_for_change(session, principal, request.org_id)
            domain.require_operator(principal)
            if not org.verified:
                org.verified = True
                org.verified_at = datetime.now(UTC)
                session.add(org)
                self._outbox.add(
                    session,
                    events_pb2.OrganizationVerified(
                        org_id=org.id, verify_time=_ts(org.verified_at)
                    ),
                    subject=org.id,
                    org_id=org.id,
                )
        return identity_pb2.VerifyOrganizationResponse(organization=organization_proto(org))

    async def SuspendOrganization(
        self, request: identity_pb2.SuspendOrganizationRequest, context: Context
    ) -> identity_pb2.SuspendOrganizationResponse:
        principal = current_principal()
        async with self._db.write() as session:
            org = await self._org_for_change(session, principal, request.org_id)
            domain.require_operator(principal)
            if org.is_platform:
                raise FailedPrecondition("the operators' organization cannot be suspended")
            if not org.suspended:
                org.suspended = True
                org.suspended_at = datetime.now(UTC)
                org.suspend_reason = request.reason
                session.add(org)
                self._outbox.add(
                    session,
                    events_pb2.OrganizationSuspended(
                        org_id=org.id, reason=request.reason, suspend_time=_ts(org.suspended_at)
                    ),
                    subject=org.id,
                    org_id=org.id,
                )
        self._cache.drop_org(org.id)
        return identity_pb2.SuspendOrganizationResponse(organization=organization_proto(org))

    # -- members -----------------------------------------------------------

    def _member_added(self, session: AsyncSession, member: store.Member) -> None:
        self._outbox.add(
            session,
            events_pb2.MemberAdded(
                org_id=member.org_id,
                member_id=member.id,
                role=member.role,  # type: ignore[arg-type]
                add_time=_ts(member.created_at),
            ),
            subject=member.org_id,
            org_id=member.org_id,
        )

    async def AddMember(
        self, request: identity_pb2.AddMemberRequest, context: Context
    ) -> identity_pb2.AddMemberResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id)
        domain.require_org_admin(principal)
        domain.check_grantable(principal, request.role)
        email = domain.normalise_email(request.email)

        async def create(session: AsyncSession) -> identity_pb2.AddMemberResponse:
            # The org row lock serialises membership changes of one org.
            await _existing_org(session, request.org_id, for_update=True)
            if await store.find_member_by_email(
                session=session, org_id=request.org_id, email=email
            ):
                raise AlreadyExists("a member with this email exists")
            member = store.Member(
                id=new_id("mem"),
                org_id=request.org_id,
                email=email,
                display_name=request.display_name,
                role=request.role,
                created_at=datetime.now(UTC),
            )
            session.add(member)
            await session.flush()
            self._member_added(session, member)
            return identity_pb2.AddMemberResponse(member=member_proto(member))

        return await idempotent(
            self._db,
            scope=request.org_id,
            request_id=request.request_id,
            request=request,
            response_type=identity_pb2.AddMemberResponse,
            create=create,
        )

    async def RemoveMember(
        self, request: identity_pb2.RemoveMemberRequest, context: Context
    ) -> identity_pb2.RemoveMemberResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id, "member")
        revoked: list[str] = []
        async with self._db.write() as session:
            # Locking the org first serialises concurrent removals: two can
            # never both see "another admin is left" and remove the last two.
            if not await store.get_organization(
                session=session, org_id=request.org_id, for_update=True
            ):
                raise NotFound("member not found")
            member = await store.get_member(
                session=session, org_id=request.org_id, member_id=request.member_id
            )
            if member is None:
                raise NotFound("member not found")
            domain.require_org_admin(principal)
            if member.role == identity_pb2.ROLE_ORG_ADMIN and (
                await store.count_admins(
                    session=session, org_id=request.org_id, admin_role=identity_pb2.ROLE_ORG_ADMIN
                )
                <= 1
            ):
                raise FailedPrecondition("cannot remove the organization's last org_admin")
            # A removed member's keys stop working with them.
            for key in await store.live_keys_of_member(
                session=session, org_id=request.org_id, member_id=member.id
            ):
                self._revoke(session, key)
                revoked.append(key.id)
            await session.flush()
            await session.delete(member)
            self._outbox.add(
                session,
                events_pb2.MemberRemoved(
                    org_id=member.org_id, member_id=member.id, remove_time=_ts(datetime.now(UTC))
                ),
                subject=member.org_id,
                org_id=member.org_id,
            )
        for key_id in revoked:
            self._cache.drop_key(key_id)
        return identity_pb2.RemoveMemberResponse()

    async def ListMembers(
        self, request: identity_pb2.ListMembersRequest, context: Context
    ) -> identity_pb2.ListMembersResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id)
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            await _existing_org(session, request.org_id)
            members = await store.list_members(
                session=session,
                org_id=request.org_id,
                after=pagination.decode_token(request.page_token),
                limit=size + 1,
            )
        shown, next_token = pagination.page(members, size, lambda member: member.id)
        return identity_pb2.ListMembersResponse(
            members=[member_proto(m) for m in shown], next_page_token=next_token
        )

    # -- API keys ----------------------------------------------------------

    def _new_key(
        self,
        session: AsyncSession,
        *,
        org_id: str,
        member_id: str | None,
        name: str,
        role: int,
        scopes: list[str],
        expires_at: datetime | None,
    ) -> tuple[store.ApiKey, str]:
        made = domain.new_api_key()
        now = datetime.now(UTC)
        key = store.ApiKey(
            id=made.key_id,
            org_id=org_id,
            member_id=member_id,
            name=name,
            role=role,
            scopes=" ".join(scopes),
            secret_hash=made.secret_hash,
            created_at=now,
            expires_at=expires_at,
        )
        session.add(key)
        self._outbox.add(
            session,
            events_pb2.ApiKeyCreated(
                key_id=key.id,
                org_id=org_id,
                member_id=member_id or "",
                role=role,  # type: ignore[arg-type]
                scopes=scopes,
                create_time=_ts(now),
                expire_time=_ts(expires_at),
            ),
            subject=key.id,
            org_id=org_id,
        )
        return key, made.secret

    async def CreateApiKey(
        self, request: identity_pb2.CreateApiKeyRequest, context: Context
    ) -> identity_pb2.CreateApiKeyResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id)
        role = request.role or identity_pb2.ROLE_DEVELOPER
        principal.require_role("org_admin", "developer")
        domain.check_grantable(principal, role)
        domain.check_member_binding(principal, request.member_id)
        scopes = domain.check_scopes(principal, list(request.scopes))
        expires_at = (
            datetime.now(UTC) + request.ttl.ToTimedelta() if request.HasField("ttl") else None
        )

        async def create(session: AsyncSession) -> identity_pb2.CreateApiKeyResponse:
            await _existing_org(session, request.org_id)
            if request.member_id and not await store.get_member(
                session=session, org_id=request.org_id, member_id=request.member_id
            ):
                raise InvalidArgument.field("member_id", "no such member in this organization")
            key, secret = self._new_key(
                session,
                org_id=request.org_id,
                member_id=request.member_id or None,
                name=request.name,
                role=role,
                scopes=scopes,
                expires_at=expires_at,
            )
            return identity_pb2.CreateApiKeyResponse(api_key=api_key_proto(key), secret=secret)

        def without_secret(
            response: identity_pb2.CreateApiKeyResponse,
        ) -> identity_pb2.CreateApiKeyResponse:
            return identity_pb2.CreateApiKeyResponse(api_key=response.api_key)

        return await idempotent(
            self._db,
            scope=request.org_id,
            request_id=request.request_id,
            request=request,
            response_type=identity_pb2.CreateApiKeyResponse,
            create=create,
            stored=without_secret,
        )

    async def ListApiKeys(
        self, request: identity_pb2.ListApiKeysRequest, context: Context
    ) -> identity_pb2.ListApiKeysResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id)
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            await _existing_org(session, request.org_id)
            keys = await store.list_api_keys(
                session=session,
                org_id=request.org_id,
                after=pagination.decode_token(request.page_token),
                limit=size + 1,
                include_revoked=request.include_revoked,
            )
        shown, next_token = pagination.page(keys, size, lambda key: key.id)
        return identity_pb2.ListApiKeysResponse(
            api_keys=[api_key_proto(k) for k in shown], next_page_token=next_token
        )

    def _revoke(self, session: AsyncSession, key: store.ApiKey) -> None:
        key.revoked_at = datetime.now(UTC)
        session.add(key)
        self._outbox.add(
            session,
            events_pb2.ApiKeyRevoked(
                key_id=key.id, org_id=key.org_id, revoke_time=_ts(key.revoked_at)
            ),
            subject=key.id,
            org_id=key.org_id,
        )

    async def RevokeApiKey(
        self, request: identity_pb2.RevokeApiKeyRequest, context: Context
    ) -> identity_pb2.RevokeApiKeyResponse:
        principal = current_principal()
        domain.require_visible(principal, request.org_id, "API key")
        async with self._db.write() as session:
            key = await store.get_api_key(
                session=session, org_id=request.org_id, key_id=request.key_id
            )
            if key is None:
                raise NotFound("API key not found")
            if principal.key_id != key.id:
                domain.require_org_admin(principal)
            if key.revoked_at is None:
                self._revoke(session, key)
        self._cache.drop_key(key.id)
        return identity_pb2.RevokeApiKeyResponse(api_key=api_key_proto(key))

    # -- authentication and tokens -----------------------------------------

    async def Authenticate(
        self, request: identity_pb2.AuthenticateRequest, context: Context
    ) -> identity_pb2.AuthenticateResponse:
        return identity_pb2.AuthenticateResponse(principal=principal_to_proto(current_principal()))

    async def IssueToken(
        self, request: identity_pb2.IssueTokenRequest, context: Context
    ) -> identity_pb2.IssueTokenResponse:
        principal = current_principal()
        if principal.credential_kind != "api_key":
            raise FailedPrecondition("tokens are issued for API keys, not for other tokens")
        scopes = domain.check_scopes(principal, list(request.scopes))
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else timedelta(minutes=15)
        token, expires = await self._tokens.issue(
            principal, audience=request.audience or self._audience, ttl=ttl, scopes=scopes
        )
        return identity_pb2.IssueTokenResponse(
            token=token,
            token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
            expire_time=_ts(expires),
        )

    async def GetJwks(
        self, request: identity_pb2.GetJwksRequest, context: Context
    ) -> identity_pb2.GetJwksResponse:
        return identity_pb2.GetJwksResponse(
            keys=[identity_pb2.JsonWebKey(**key) for key in await self._tokens.jwks()]
        )
