"""Governance: who may do what, decided by Cedar policies. No I/O here.

The schema names the principals (Organization, and its Member and ApiKey
principals, each `in` their organisation), the resources (Listing, Pool,
Program) and the actions. Every principal carries `org` (its organisation;
an organisation's is itself), `roles` and `operator`, so one policy reads
`principal.org.verified` whatever kind of principal asks. A request's
context map is the tags of `context.request`.

Built-in policies: open listings are usable by everyone authenticated,
registered ones by registered organisations, verified ones by verified
organisations, restricted ones only with a grant (the organisation is in the
listing's `granted`); a listing's owner manages it; operators manage
everything; suspended organisations are forbidden everything (a forbid wins
over any permit). Nothing permitting means deny.

The schema and the policy set are parsed once; an `Engine` is rebuilt only
when the policy set's revision changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cedarpy

SCHEMA_TEXT = """
entity Organization = {
  org: Organization,
  roles: Set<String>,
  operator: Bool,
  registered: Bool,
  verified: Bool,
  suspended: Bool,
  kind: String,
  country: String,
};
entity Member in [Organization] = { org: Organization, roles: Set<String>, operator: Bool };
entity ApiKey in [Organization] = { org: Organization, roles: Set<String>, operator: Bool };

entity Listing = {
  kind: String,
  tier: String,
  deprecated: Bool,
  owner?: Organization,
  granted: Set<Organization>,
};
entity Pool;
entity Program;
entity Request tags String;

type Context = { request: Request };

action consume;
action use_model in [consume] appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Listing], context: Context
};
action read_dataset in [consume] appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Listing], context: Context
};
action request_compute in [consume] appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Listing, Pool], context: Context
};
action publish_listing appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Listing], context: Context
};
action manage_listings appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Listing], context: Context
};
action manage_programs appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Program], context: Context
};
action manage_pools appliesTo {
  principal: [Organization, Member, ApiKey], resource: [Pool], context: Context
};
"""

SCHEMA = cedarpy.Schema.from_str(SCHEMA_TEXT)

ACTIONS = (
    "use_model",
    "read_dataset",
    "request_compute",
    "publish_listing",
    "manage_programs",
    "manage_pools",
    "manage_listings",
)
RESOURCE_KINDS = ("Listing", "Pool", "Program")
PRINCIPAL_KINDS = ("Organization", "Member", "ApiKey")
APPLIES_TO: Mapping[str, frozenset[str]] = {
    "use_model": frozenset({"Listing"}),
    "read_dataset": frozenset({"Listing"}),
    "request_compute": frozenset({"Listing", "Pool"}),
    "publish_listing": frozenset({"Listing"}),
    "manage_listings": frozenset({"Listing"}),
    "manage_programs": frozenset({"Program"}),
    "manage_pools": frozenset({"Pool"}),
}
TIERS = ("unknown", "open", "registered", "verified", "restricted")

#: (name, description, Cedar text); their ids are "builtin.<name>".
BUILTIN_POLICIES: tuple[tuple[str, str, str], ...] = (
    (
        "open-listings",
        "Open listings are usable by every authenticated organisation.",
        'permit (principal, action in Action::"consume", resource is Listing)\n'
        'when { resource.tier == "open" };',
    ),
    (
        "registered-listings",
        "Registered-tier listings are usable by every registered organisation.",
        'permit (principal, action in Action::"consume", resource is Listing)\n'
        'when { resource.tier == "registered" && principal.org.registered };',
    ),
    (
        "verified-listings",
        "Verified-tier listings are usable by verified organisations only.",
        'permit (principal, action in Action::"consume", resource is Listing)\n'
        'when { resource.tier == "verified" && principal.org.verified };',
    ),
    (
        "restricted-listings",
        "Restricted listings are usable only with an access grant from the catalog.",
        'permit (principal, action in Action::"consume", resource is Listing)\n'
        'when { resource.tier == "restricted" && resource.granted.contains(principal.org) };',
    ),
    (
        "listing-owners",
        "An organisation publishes and manages its own listings.",
        "permit (\n"
        "  principal,\n"
        '  action in [Action::"publish_listing", Action::"manage_listings"],\n'
        "  resource is Listing\n"
        ")\n"
        "when { resource has owner && resource.owner == principal.org };",
    ),
    (
        "operators",
        "Operators may do everything.",
        "permit (principal, action, resource)\nwhen { principal.operator };",
    ),
    (
        "suspended-organizations",
        "A suspended organisation may do nothing (a forbid: it wins over every permit).",
        "forbid (principal, action, resource)\nwhen { principal.org.suspended };",
    ),
)
BUILTIN_PREFIX = "builtin."


@dataclass(frozen=True)
class StoredPolicy:
    """A policy of the set: its id (the id decisions name) and Cedar text."""

    id: str
    text: str


@dataclass(frozen=True)
class OrgFacts:
    org_id: str
    #: Whether policy has learnt of the organisation (identity registered it).
    registered: bool = False
    verified: bool = False
    suspended: bool = False
    kind: str = ""
    country: str = ""


@dataclass(frozen=True)
class ListingFacts:
    listing_id: str
    tier: str = "unknown"
    kind: str = ""
    owner_org_id: str = ""
    deprecated: bool = False
    granted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PrincipalRef:
    kind: str  # one of PRINCIPAL_KINDS
    id: str
    org_id: str
    roles: frozenset[str] = frozenset()
    operator: bool = False


@dataclass(frozen=True)
class AccessRequest:
    principal: PrincipalRef
    action: str
    resource_kind: str  # one of RESOURCE_KINDS
    resource_id: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    errors: tuple[str, ...]


class PolicyError(ValueError):
    """Cedar text the schema does not admit; the message is the validator's."""


def builtin_policies() -> list[StoredPolicy]:
    return [StoredPolicy(BUILTIN_PREFIX + name, text) for name, _, text in BUILTIN_POLICIES]


def validate(text: str) -> None:
    """Raises PolicyError with the parser's or validator's message unless `text` is a
    non-empty set of static policies the schema admits."""
    try:
        parsed = cedarpy.PolicySet.from_str(text)
    except ValueError as error:
        raise PolicyError(f"Policy parse error: {error}") from None
    if parsed.templates():
        raise PolicyError("templates (?principal, ?resource) are not supported")
    if len(parsed) == 0:
        raise PolicyError("holds no policy")
    result = cedarpy.validate_policies(text, SCHEMA)
    if not result.validation_passed:
        messages = sorted({error.error for error in result.errors})
        raise PolicyError("; ".join(messages))


def _statements(policy: StoredPolicy) -> dict[str, Any]:
    """The policy's statements in Cedar's JSON form, keyed by the ids decisions report."""
    parsed = json.loads(cedarpy.policies_to_json_str(policy.text))
    statements: dict[str, Any] = parsed.get("staticPolicies", {})
    if len(statements) == 1:
        return {policy.id: next(iter(statements.values()))}
    return {f"{policy.id}#{n}": body for n, body in enumerate(statements.values())}


def _uid(kind: str, id_: str) -> dict[str, str]:
    return {"type": kind, "id": id_}


def _ref(kind: str, id_: str) -> dict[str, dict[str, str]]:
    return {"__entity": _uid(kind, id_)}


class Engine:
    """A parsed policy set at one revision: the built-in policies plus `policies`."""

    def __init__(self, policies: Sequence[StoredPolicy] = (), *, revision: int = 0) -> None:
        self.revision = revision
        statements: dict[str, Any] = {}
        for policy in [*builtin_policies(), *policies]:
            statements.update(_statements(policy))
        self.policy_ids = tuple(statements)
        self._policies = cedarpy.PolicySet.from_json_str(
            json.dumps({"staticPolicies": statements, "templates": {}, "templateLinks": []})
        )

    def authorize(
        self, request: AccessRequest, org: OrgFacts, listing: ListingFacts | None = None
    ) -> Decision:
        if request.action not in APPLIES_TO:
            raise ValueError(f"unknown action {request.action!r}")
        if request.resource_kind not in APPLIES_TO[request.action]:
            raise ValueError(f"{request.action} does not apply to a {request.resource_kind}")
        principal = request.principal
        org_ref = _ref("Organization", org.org_id)
        org_attrs: dict[str, Any] = {
            "org": org_ref,
            "roles": [],
            "operator": False,
            "registered": org.registered,
            "verified": org.verified,
            "suspended": org.suspended,
            "kind": org.kind,
            "country": org.country,
        }
        entities: list[dict[str, Any]] = []
        if principal.kind == "Organization":
            org_attrs["roles"] = sorted(principal.roles)
            org_attrs["operator"] = principal.operator
        else:
            entities.append(
                {
                    "uid": _uid(principal.kind, principal.id),
                    "attrs": {
                        "org": org_ref,
                        "roles": sorted(principal.roles),
                        "operator": principal.operator,
                    },
                    "parents": [_uid("Organization", org.org_id)],
                }
            )
        entities.append(
            {"uid": _uid("Organization", org.org_id), "attrs": org_attrs, "parents": []}
        )
        resource_attrs: dict[str, Any] = {}
        if request.resource_kind == "Listing":
            facts = listing or ListingFacts(request.resource_id)
            resource_attrs = {
                "kind": facts.kind,
                "tier": facts.tier,
                "deprecated": facts.deprecated,
                "granted": [_ref("Organization", o) for o in sorted(facts.granted)],
            }
            if facts.owner_org_id:
                resource_attrs["owner"] = _ref("Organization", facts.owner_org_id)
        entities.append(
            {
                "uid": _uid(request.resource_kind, request.resource_id),
                "attrs": resource_attrs,
                "parents": [],
            }
        )
        entities.append(
            {
                "uid": _uid("Request", "request"),
                "attrs": {},
                "parents": [],
                "tags": dict(request.context),
            }
        )
        result = cedarpy.is_authorized(
            {
                "principal": _uid(principal.kind, principal.id),
                "action": _uid("Action", request.action),
                "resource": _uid(request.resource_kind, request.resource_id),
                "context": {"request": _ref("Request", "request")},
            },
            self._policies,
            entities,
            schema=SCHEMA,
        )
        allowed = result.decision == cedarpy.Decision.Allow
        ids = tuple(sorted(result.diagnostics.reasons))
        errors = tuple(str(error) for error in result.diagnostics.errors)
        if allowed:
            reasons = (f"permitted by {', '.join(ids)}",)
        elif ids:
            reasons = (f"forbidden by {', '.join(ids)}",)
        elif result.decision == cedarpy.Decision.Deny:
            reasons = ("no policy permits this (default deny)",)
        else:
            reasons = ("the request could not be evaluated: denied",)
        return Decision(allowed=allowed, policy_ids=ids, reasons=reasons, errors=errors)
