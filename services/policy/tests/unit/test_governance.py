"""The governance engine: the Cedar schema, the built-in policies, operators' policies."""

from __future__ import annotations

import pytest

from aisuper_policy.decision_log import MASK, mask_context
from aisuper_policy.governance import (
    AccessRequest,
    Decision,
    Engine,
    ListingFacts,
    OrgFacts,
    PolicyError,
    PrincipalRef,
    StoredPolicy,
    validate,
)

ORG = "org_a"
KEY = PrincipalRef("ApiKey", "key1", ORG)
ENGINE = Engine()

UNREGISTERED = OrgFacts(ORG)
REGISTERED = OrgFacts(ORG, registered=True)
VERIFIED = OrgFacts(ORG, registered=True, verified=True)
SUSPENDED = OrgFacts(ORG, registered=True, verified=True, suspended=True)


def use(tier: str, org: OrgFacts, *, granted: frozenset[str] = frozenset()) -> Decision:
    return ENGINE.authorize(
        AccessRequest(KEY, "use_model", "Listing", "lst_1"),
        org,
        ListingFacts("lst_1", tier=tier, kind="model", granted=granted),
    )


@pytest.mark.parametrize(
    ("tier", "org", "allowed"),
    [
        ("open", UNREGISTERED, True),
        ("open", REGISTERED, True),
        ("open", VERIFIED, True),
        ("registered", UNREGISTERED, False),
        ("registered", REGISTERED, True),
        ("registered", VERIFIED, True),
        ("verified", UNREGISTERED, False),
        ("verified", REGISTERED, False),
        ("verified", VERIFIED, True),
        ("restricted", REGISTERED, False),
        ("restricted", VERIFIED, False),
        ("unknown", VERIFIED, False),
    ],
)
def test_each_tier_admits_the_organisations_it_names(
    tier: str, org: OrgFacts, allowed: bool
) -> None:
    decision = use(tier, org)
    assert decision.allowed is allowed, decision
    if allowed:
        assert decision.policy_ids == (f"builtin.{tier}-listings",)
    else:
        assert decision.policy_ids == ()
        assert decision.reasons == ("no policy permits this (default deny)",)


def test_restricted_listings_need_a_grant_from_the_catalog() -> None:
    assert not use("restricted", VERIFIED, granted=frozenset({"org_other"})).allowed
    granted = use("restricted", REGISTERED, granted=frozenset({ORG}))
    assert granted.allowed
    assert granted.policy_ids == ("builtin.restricted-listings",)


@pytest.mark.parametrize("tier", ["open", "registered", "verified", "restricted"])
def test_a_suspended_organisation_is_forbidden_whatever_permits(tier: str) -> None:
    decision = use(tier, SUSPENDED, granted=frozenset({ORG}))
    assert not decision.allowed
    assert decision.policy_ids == ("builtin.suspended-organizations",)
    assert decision.reasons == ("forbidden by builtin.suspended-organizations",)


def test_forbid_wins_over_an_operators_permit_too() -> None:
    operator = PrincipalRef("ApiKey", "key1", ORG, frozenset({"operator"}), operator=True)
    request = AccessRequest(operator, "manage_programs", "Program", "prg_1")
    assert ENGINE.authorize(request, VERIFIED).policy_ids == ("builtin.operators",)
    assert not ENGINE.authorize(request, SUSPENDED).allowed


def test_operators_manage_everything_and_others_nothing_by_default() -> None:
    operator = PrincipalRef("Member", "mem_1", ORG, frozenset({"operator"}), operator=True)
    for action, kind in [
        ("manage_programs", "Program"),
        ("manage_pools", "Pool"),
        ("manage_listings", "Listing"),
        ("request_compute", "Pool"),
    ]:
        assert ENGINE.authorize(AccessRequest(operator, action, kind, "x_1"), VERIFIED).allowed
        assert not ENGINE.authorize(AccessRequest(KEY, action, kind, "x_1"), VERIFIED).allowed


def test_an_organisation_manages_its_own_listings() -> None:
    own = ListingFacts("lst_1", tier="verified", owner_org_id=ORG)
    theirs = ListingFacts("lst_1", tier="verified", owner_org_id="org_b")
    for action in ("publish_listing", "manage_listings"):
        request = AccessRequest(KEY, action, "Listing", "lst_1")
        decision = ENGINE.authorize(request, REGISTERED, own)
        assert decision.allowed
        assert decision.policy_ids == ("builtin.listing-owners",)
        assert not ENGINE.authorize(request, REGISTERED, theirs).allowed


def test_the_organisation_itself_is_a_principal() -> None:
    org = PrincipalRef("Organization", ORG, ORG)
    request = AccessRequest(org, "read_dataset", "Listing", "lst_1")
    assert ENGINE.authorize(request, VERIFIED, ListingFacts("lst_1", tier="verified")).allowed


def test_operators_policies_add_to_the_builtins_and_name_their_statements() -> None:
    engine = Engine(
        [
            StoredPolicy(
                "acp_1",
                'permit (principal, action == Action::"manage_pools", resource is Pool)\n'
                'when { principal.org.verified && principal.org.country == "KE" };',
            ),
            StoredPolicy(
                "acp_2",
                "forbid (principal, action, resource is Listing)\n"
                'when { context.request.hasTag("purpose") &&'
                ' context.request.getTag("purpose") == "weapons" };\n'
                'permit (principal, action == Action::"request_compute", resource is Pool)\n'
                "when { principal.org.registered };",
            ),
        ],
        revision=3,
    )
    assert engine.revision == 3
    assert engine.policy_ids[-3:] == ("acp_1", "acp_2#0", "acp_2#1")
    kenyan = OrgFacts(ORG, registered=True, verified=True, country="KE")
    pools = engine.authorize(AccessRequest(KEY, "manage_pools", "Pool", "pool_1"), kenyan)
    assert pools.allowed
    assert pools.policy_ids == ("acp_1",)
    assert not engine.authorize(
        AccessRequest(KEY, "manage_pools", "Pool", "pool_1"), VERIFIED
    ).allowed
    compute = engine.authorize(AccessRequest(KEY, "request_compute", "Pool", "p"), REGISTERED)
    assert compute.policy_ids == ("acp_2#1",)
    listing = ListingFacts("lst_1", tier="open")
    harmful = AccessRequest(KEY, "use_model", "Listing", "lst_1", {"purpose": "weapons"})
    benign = AccessRequest(KEY, "use_model", "Listing", "lst_1", {"purpose": "research"})
    denied = engine.authorize(harmful, REGISTERED, listing)
    assert not denied.allowed
    assert denied.policy_ids == ("acp_2#0",)
    assert engine.authorize(benign, REGISTERED, listing).allowed


def test_the_schema_rejects_policies_it_does_not_admit() -> None:
    with pytest.raises(PolicyError, match="attribute `tierr` on entity type `Listing` not found"):
        validate('permit (principal, action, resource is Listing) when { resource.tierr == "x" };')
    with pytest.raises(PolicyError, match="unrecognized action"):
        validate('permit (principal, action == Action::"fly", resource);')
    with pytest.raises(PolicyError, match="Policy parse error"):
        validate("permit (principal, action, resource")
    with pytest.raises(PolicyError, match="templates"):
        validate("permit (principal == ?principal, action, resource);")
    with pytest.raises(PolicyError, match="holds no policy"):
        validate("// nothing but a comment")
    validate("permit (principal, action, resource is Pool) when { principal.org.verified };")


def test_a_request_outside_an_actions_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="does not apply"):
        ENGINE.authorize(AccessRequest(KEY, "manage_programs", "Listing", "lst_1"), VERIFIED)


def test_secrets_in_the_context_are_masked() -> None:
    masked = mask_context(
        {
            "purpose": "research",
            "api_key": "whatever",
            "Authorization": "x",
            "note": "Bearer abc.def",
            "credential_hint": "y",
            "plain": "ais_0123456789abcdef_secretsecret",
            "jwt": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtZW1iZXIifQ.c2lnbmF0dXJlc2ln",
        }
    )
    assert masked["purpose"] == "research"
    assert {k for k, v in masked.items() if v == MASK} == {
        "api_key",
        "Authorization",
        "note",
        "credential_hint",
        "plain",
        "jwt",
    }
