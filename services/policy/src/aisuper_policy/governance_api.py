"""Governance over gRPC: access policies (Cedar), Authorize, and the listing facts
catalog's events bring. A mixin of PolicyApi, which gives it `_db` and `_outbox`.

Authorize never calls another service: the principal's organisation comes
from `org_facts` (identity's events), a listing's tier, owner and grants from
`listing_facts` / `listing_grants` (catalog's events).

Tenancy: a caller asks about principals of its own organisation; naming a
principal of another organisation is NOT_FOUND unless the caller is an
operator (the same answer as for any other organisation's resource, so the
reply does not tell whether that organisation exists). Only the caller's own
principal carries its roles and operator flag; a principal named by id is
evaluated without roles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.catalog.v1 import catalog_pb2
from aisuper.catalog.v1 import events_pb2 as catalog_events
from aisuper.platform import pagination
from aisuper.platform.auth import OPERATOR, Principal, current_principal
from aisuper.platform.db import Database
from aisuper.platform.errors import InvalidArgument, NotFound
from aisuper.platform.events.outbox import Outbox
from aisuper.platform.ids import new_id
from aisuper.policy.v1 import events_pb2
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import decision_log, domain, governance, store
from aisuper_policy import governance_store as gstore

Context = Any

ACTIONS: dict[int, str] = {
    pb.AUTHORIZATION_ACTION_USE_MODEL: "use_model",
    pb.AUTHORIZATION_ACTION_READ_DATASET: "read_dataset",
    pb.AUTHORIZATION_ACTION_REQUEST_COMPUTE: "request_compute",
    pb.AUTHORIZATION_ACTION_PUBLISH_LISTING: "publish_listing",
    pb.AUTHORIZATION_ACTION_MANAGE_PROGRAMS: "manage_programs",
    pb.AUTHORIZATION_ACTION_MANAGE_POOLS: "manage_pools",
    pb.AUTHORIZATION_ACTION_MANAGE_LISTINGS: "manage_listings",
}
RESOURCE_KINDS: dict[int, str] = {
    pb.RESOURCE_KIND_LISTING: "Listing",
    pb.RESOURCE_KIND_POOL: "Pool",
    pb.RESOURCE_KIND_PROGRAM: "Program",
}
LISTING_KINDS: dict[int, str] = {
    catalog_pb2.LISTING_KIND_MODEL: "model",
    catalog_pb2.LISTING_KIND_DATASET: "dataset",
    catalog_pb2.LISTING_KIND_COMPUTE_PRODUCT: "compute_product",
}


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def access_policy_proto(row: gstore.AccessPolicyRow) -> pb.AccessPolicy:
    return pb.AccessPolicy(
        id=row.id,
        name=row.name,
        description=row.description,
        text=row.text,
        revision=row.revision,
        create_time=_ts(row.created_at),
        update_time=_ts(row.updated_at),
    )


def builtin_protos() -> list[pb.AccessPolicy]:
    return [
        pb.AccessPolicy(
            id=governance.BUILTIN_PREFIX + name,
            name=name,
            description=description,
            text=text,
            builtin=True,
            revision=1,
        )
        for name, description, text in governance.BUILTIN_POLICIES
    ]


def _principal_of(
    caller: Principal, request: pb.AuthorizeRequest
) -> tuple[governance.PrincipalRef, pb.AuthorizationPrincipal]:
    """The principal a request is about, and how the decision log names it."""
    if not request.HasField("principal"):
        if not caller.org_id:
            raise InvalidArgument.field("principal.org_id", "the caller has no organisation")
        if caller.credential_kind == "jwt" and caller.subject.startswith("member:"):
            member = caller.subject.removeprefix("member:")
            ref = governance.PrincipalRef(
                "Member", member, caller.org_id, caller.roles, caller.is_operator
            )
            return ref, pb.AuthorizationPrincipal(org_id=caller.org_id, member_id=member)
        if caller.key_id:
            ref = governance.PrincipalRef(
                "ApiKey", caller.key_id, caller.org_id, caller.roles, caller.is_operator
            )
            return ref, pb.AuthorizationPrincipal(org_id=caller.org_id, api_key_id=caller.key_id)
        ref = governance.PrincipalRef(
            "Organization", caller.org_id, caller.org_id, caller.roles, caller.is_operator
        )
        return ref, pb.AuthorizationPrincipal(org_id=caller.org_id)
    named = request.principal
    org_id = named.org_id or caller.org_id
    if not org_id:
        raise InvalidArgument.field("principal.org_id", "name the principal's organisation")
    if org_id != caller.org_id and not caller.is_operator:
        raise NotFound("organization not found")
    if named.member_id and named.api_key_id:
        raise InvalidArgument.field(
            "principal", "name a member or an API key (or neither, for the organisation)"
        )
    logged = pb.AuthorizationPrincipal(
        org_id=org_id, member_id=named.member_id, api_key_id=named.api_key_id
    )
    if named.api_key_id:
        kind, id_ = "ApiKey", named.api_key_id
        is_caller = caller.key_id == id_ and caller.org_id == org_id
    elif named.member_id:
        kind, id_ = "Member", named.member_id
        is_caller = caller.subject == f"member:{id_}" and caller.org_id == org_id
    else:
        kind, id_ = "Organization", org_id
        is_caller = False
    if is_caller:
        return governance.PrincipalRef(kind, id_, org_id, caller.roles, caller.is_operator), logged
    return governance.PrincipalRef(kind, id_, org_id), logged


class GovernanceApi:
    _db: Database
    _outbox: Outbox
    _governance_engine: governance.Engine | None = None

    async def _engine(self, session: AsyncSession) -> governance.Engine:
        """The policy set at the stored revision: rebuilt only when the revision moved."""
        revision = await gstore.policy_revision(session=session)
        engine = self._governance_engine
        if engine is None or engine.revision != revision:
            rows = await gstore.list_access_policies(session=session)
            engine = governance.Engine(
                [governance.StoredPolicy(row.id, row.text) for row in rows], revision=revision
            )
            self._governance_engine = engine
        return engine

    # -- access policies ---------------------------------------------------------

    async def PutAccessPolicy(
        self, request: pb.PutAccessPolicyRequest, context: Context
    ) -> pb.PutAccessPolicyResponse:
        current_principal().require_role(OPERATOR)
        given = request.policy
        try:
            governance.validate(given.text)
        except governance.PolicyError as error:
            raise InvalidArgument.field("policy.text", str(error)) from None
        now = datetime.now(UTC)
        async with self._db.write() as session:
            # Locks the policy set: changes to it are serialised.
            revision = await gstore.bump_policy_revision(session=session)
            row = await gstore.get_access_policy_by_name(session=session, name=given.name)
            if row is None:
                row = gstore.AccessPolicyRow(
                    id=new_id("acp"),
                    name=given.name,
                    description=given.description,
                    text=given.text,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            else:
                row.description, row.text = given.description, given.text
                row.revision += 1
                row.updated_at = now
            await session.flush()
            rows = await gstore.list_access_policies(session=session)
            try:
                engine = governance.Engine(
                    [governance.StoredPolicy(r.id, r.text) for r in rows], revision=revision
                )
            except ValueError as error:  # the set as a whole does not build
                raise InvalidArgument.field("policy.text", str(error)) from None
            saved = access_policy_proto(row)
        self._governance_engine = engine
        return pb.PutAccessPolicyResponse(policy=saved, policy_revision=revision)

    async def ListAccessPolicies(
        self, request: pb.ListAccessPoliciesRequest, context: Context
    ) -> pb.ListAccessPoliciesResponse:
        current_principal().require_role(OPERATOR)
        after = pagination.decode_token(request.page_token, "access-policies")
        size = pagination.page_size(request.page_size)
        async with self._db.read() as session:
            revision = await gstore.policy_revision(session=session)
            rows = await gstore.list_access_policies(session=session)
        # Built-ins first ("0:"), then the operators' policies by id ("1:").
        keyed = [(f"0:{n:04d}", p) for n, p in enumerate(builtin_protos())]
        keyed += [(f"1:{row.id}", access_policy_proto(row)) for row in rows]
        if after is not None:
            keyed = [item for item in keyed if item[0] > after]
        shown, token = pagination.page(keyed, size, lambda item: item[0], "access-policies")
        return pb.ListAccessPoliciesResponse(
            policies=[p for _, p in shown], next_page_token=token, policy_revision=revision
        )

    async def DeleteAccessPolicy(
        self, request: pb.DeleteAccessPolicyRequest, context: Context
    ) -> pb.DeleteAccessPolicyResponse:
        current_principal().require_role(OPERATOR)
        async with self._db.write() as session:
            revision = await gstore.bump_policy_revision(session=session)
            row = await gstore.get_access_policy(session=session, policy_id=request.policy_id)
            if row is None:
                raise NotFound("access policy not found")
            await session.delete(row)
        return pb.DeleteAccessPolicyResponse(policy_revision=revision)

    # -- decisions -------------------------------------------------------------------

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: Context
    ) -> pb.AuthorizeResponse:
        caller = current_principal()
        ref, logged = _principal_of(caller, request)
        action = ACTIONS[request.action]
        kind = RESOURCE_KINDS[request.resource.kind]
        if kind not in governance.APPLIES_TO[action]:
            raise InvalidArgument.field(
                "resource.kind", f"{action} applies to {', '.join(governance.APPLIES_TO[action])}"
            )
        async with self._db.read() as session:
            engine = await self._engine(session)
            org_row = await store.get_organization(session=session, org_id=ref.org_id)
            org = (
                governance.OrgFacts(
                    org_id=org_row.org_id,
                    registered=True,
                    verified=org_row.verified,
                    suspended=org_row.suspended,
                    kind=domain.ORG_KINDS.get(org_row.kind, ""),
                    country=org_row.country,
                )
                if org_row is not None
                else governance.OrgFacts(org_id=ref.org_id)
            )
            listing = None
            if kind == "Listing":
                listing = await _listing_facts(session, request.resource.id)
        decision = engine.authorize(
            governance.AccessRequest(
                principal=ref,
                action=action,
                resource_kind=kind,
                resource_id=request.resource.id,
                context=dict(request.context),
            ),
            org,
            listing,
        )
        decision_id = new_id("dec")
        now = datetime.now(UTC)
        async with self._db.write() as session:
            await decision_log.append(
                session,
                self._outbox,
                decision_id=decision_id,
                input=events_pb2.DecisionInput(
                    caller_org_id=caller.org_id,
                    caller_subject=caller.subject,
                    principal=logged,
                    action=request.action,
                    resource=request.resource,
                    context=dict(request.context),
                ),
                allowed=decision.allowed,
                policy_ids=list(decision.policy_ids),
                errors=list(decision.errors),
                policy_revision=engine.revision,
                now=now,
            )
        return pb.AuthorizeResponse(
            allowed=decision.allowed,
            decision_id=decision_id,
            determining_policy_ids=decision.policy_ids,
            reasons=decision.reasons,
            errors=decision.errors,
            policy_revision=engine.revision,
            decide_time=_ts(now),
        )

    # -- listings (from catalog's events) ------------------------------------------

    async def learn_listing(self, session: AsyncSession, data: Any) -> None:
        """Keeps a listing's tier, owner and state, and its access grants."""
        now = datetime.now(UTC)
        if isinstance(data, catalog_events.AccessGranted | catalog_events.AccessRevoked):
            access = data.access_request
            if isinstance(data, catalog_events.AccessGranted):
                await gstore.grant(
                    session=session,
                    listing_id=access.listing_id,
                    org_id=access.org_id,
                    access_request_id=access.id,
                    now=now,
                )
            else:
                await gstore.revoke(
                    session=session, listing_id=access.listing_id, org_id=access.org_id
                )
            return
        listing = data.listing
        row = await gstore.get_listing(session=session, listing_id=listing.id)
        if row is not None and listing.revision < row.revision:
            return  # an older revision than the one kept
        state = listing.state
        if isinstance(data, catalog_events.ListingDeprecated):
            state = catalog_pb2.LISTING_STATE_DEPRECATED
        if row is None:
            session.add(
                gstore.ListingFactsRow(
                    listing_id=listing.id,
                    kind=listing.kind,
                    tier=listing.access_tier,
                    org_id=listing.org_id,
                    state=state,
                    revision=listing.revision,
                    updated_at=now,
                )
            )
        else:
            row.kind, row.tier, row.org_id = listing.kind, listing.access_tier, listing.org_id
            row.state, row.revision, row.updated_at = state, listing.revision, now
        await session.flush()


async def _listing_facts(session: AsyncSession, listing_id: str) -> governance.ListingFacts:
    row = await gstore.get_listing(session=session, listing_id=listing_id)
    granted = await gstore.granted_orgs(session=session, listing_id=listing_id)
    if row is None:
        return governance.ListingFacts(listing_id, granted=granted)
    tiers = governance.TIERS
    return governance.ListingFacts(
        listing_id=listing_id,
        tier=tiers[row.tier] if 0 <= row.tier < len(tiers) else "unknown",
        kind=LISTING_KINDS.get(row.kind, ""),
        owner_org_id=row.org_id,
        deprecated=row.state == catalog_pb2.LISTING_STATE_DEPRECATED,
        granted=granted,
    )
