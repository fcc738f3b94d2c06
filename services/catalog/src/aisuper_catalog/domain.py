"""The shelf's rules: what a valid listing is, who sees what, what may change.

No I/O here: listings are the generated `Listing` messages, callers are
`Viewer`s, and every rule raises a platform error naming the field or rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import langcodes
from google.protobuf import field_mask_pb2
from license_expression import ExpressionError, Licensing, get_spdx_licensing

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.platform.auth import ORG_ADMIN, Principal
from aisuper.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
)

MODEL = pb.LISTING_KIND_MODEL
DATASET = pb.LISTING_KIND_DATASET
COMPUTE_PRODUCT = pb.LISTING_KIND_COMPUTE_PRODUCT
DRAFT = pb.LISTING_STATE_DRAFT
PUBLISHED = pb.LISTING_STATE_PUBLISHED
DEPRECATED = pb.LISTING_STATE_DEPRECATED

ATTRIBUTES_OF_KIND = {MODEL: "model", DATASET: "dataset", COMPUTE_PRODUCT: "compute_product"}
PRICES_OF_KIND = {
    MODEL: {
        "input_per_million_tokens",
        "output_per_million_tokens",
        "cached_input_per_million_tokens",
    },
    DATASET: {"per_dataset_access"},
    COMPUTE_PRODUCT: {"per_gpu_hour"},
}
#: What UpdateListing may change (and paths below these).
MUTABLE_PATHS = frozenset(
    {
        "name",
        "provider",
        "version",
        "card",
        "license",
        "languages",
        "tags",
        "access_tier",
        "prices",
        "source_urls",
        "model",
        "dataset",
        "compute_product",
    }
)

# SPDX allows any length; ours fits a facet (and ListingFilter.license) with room to spare.
_LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.-]{1,85}")
_ALLOWED_TRANSITIONS = {(DRAFT, PUBLISHED), (PUBLISHED, DEPRECATED)}


def state_name(state: int) -> str:
    return pb.ListingState.Name(state).removeprefix("LISTING_STATE_").lower()  # type: ignore[arg-type]


# -- who is asking ----------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The caller as the shelf sees it; `org_id` is None without a credential."""

    org_id: str | None
    operator: bool = False
    admin: bool = False

    @classmethod
    def of(cls, principal: Principal | None) -> Viewer:
        if principal is None:
            return cls(org_id=None)
        return cls(
            org_id=principal.org_id,
            operator=principal.is_operator,
            admin=principal.has_any_role(ORG_ADMIN),
        )

    def manages(self, org_id: str) -> bool:
        """Whether this caller may see this org's drafts and requests."""
        return self.operator or self.org_id == org_id

    def reads(self, *, org_id: str, state: int, access_tier: int) -> bool:
        if state == DRAFT:
            return self.manages(org_id)
        return self.org_id is not None or access_tier == pb.ACCESS_TIER_OPEN


@dataclass(frozen=True)
class ListingQuery:
    """What ListListings and SearchListings select, visibility included."""

    state: int
    kind: int = 0
    access_tier: int = 0
    org_id: str | None = None
    facets: tuple[str, ...] = ()


def listing_query(viewer: Viewer, f: pb.ListingFilter) -> ListingQuery | None:
    """The query a filter means for this caller; None if it can see nothing."""
    state = f.state or PUBLISHED
    access_tier = f.access_tier
    org_id = f.org_id or None
    if viewer.org_id is None:
        if state == DRAFT or access_tier not in (0, pb.ACCESS_TIER_OPEN):
            return None
        access_tier = pb.ACCESS_TIER_OPEN
    elif state == DRAFT and not viewer.operator:
        if org_id not in (None, viewer.org_id):
            return None
        org_id = viewer.org_id
    facets: list[str] = []
    if f.language:
        facets.append(f"lang:{_language_filter(f.language)}")
    if f.license:
        facets.append(f"lic:{_license_filter(f.license)}")
    if f.modality:
        facets.append(f"mod:{f.modality}")
    if f.tag:
        facets.append(f"tag:{f.tag}")
    if f.capability:
        facets.append(f"cap:{f.capability}")
    return ListingQuery(
        state=state, kind=f.kind, access_tier=access_tier, org_id=org_id, facets=tuple(facets)
    )


def _license_filter(license_id: str) -> str:
    """One licence id in the form listings store it (`gpl-2.0` finds `GPL-2.0-only`)."""
    ids = license_ids(normalise_license(license_id, "filter.license"))
    if len(ids) != 1:
        raise InvalidArgument.field("filter.license", "name one licence id, not an expression")
    return ids[0].lower()


def _language_filter(tag: str) -> str:
    if not langcodes.tag_is_valid(tag):
        raise InvalidArgument.field("filter.language", f"{tag!r} is not a BCP-47 language tag")
    return langcodes.standardize_tag(tag).lower()


# -- what a listing may hold ------------------------------------------------


@functools.cache
def _licensing() -> Licensing:
    return get_spdx_licensing()


def normalise_license(expression: str, field: str = "listing.license") -> str:
    """The SPDX expression in canonical form; `LicenseRef-*` ids are allowed."""
    licensing = _licensing()
    try:
        info = licensing.validate(expression, strict=True)
    except (ExpressionError, AttributeError, AssertionError, IndexError, TypeError):
        # license-expression 30.4 fails this way on some malformed input.
        raise InvalidArgument.field(field, "not a valid SPDX licence expression") from None
    unknown = [s for s in info.invalid_symbols if not _LICENSE_REF.fullmatch(s)]
    other = [e for e in info.errors if not e.startswith("Unknown license key")]
    if unknown or other or not expression.strip():
        why = (
            f"unknown SPDX licence id(s): {', '.join(unknown)}"
            if unknown and not other
            else "not a valid SPDX licence expression"
        )
        raise InvalidArgument.field(field, why)
    try:
        return str(licensing.parse(expression, validate=False, strict=True))
    except (ExpressionError, AttributeError, AssertionError, IndexError, TypeError):
        raise InvalidArgument.field(field, "not a valid SPDX licence expression") from None


def license_ids(expression: str) -> list[str]:
    parsed = _licensing().parse(expression, validate=False, strict=True)
    return [symbol.key for symbol in _licensing().license_symbols(parsed)]


def normalise_languages(tags: Iterable[str], field: str = "listing.languages") -> list[str]:
    out: list[str] = []
    violations: list[FieldViolation] = []
    for index, tag in enumerate(tags):
        if not langcodes.tag_is_valid(tag):
            violations.append(
                FieldViolation(f"{field}[{index}]", f"{tag!r} is not a BCP-47 language tag")
            )
            continue
        canonical = langcodes.standardize_tag(tag)
        if canonical not in out:
            out.append(canonical)
    if violations:
        raise InvalidArgument.of(violations)
    return out


def check_listing(listing: pb.Listing, *, prefix: str = "listing") -> pb.Listing:
    """A copy of `listing` with licence and languages normalised, or InvalidArgument.

    Checks what field annotations cannot: that the attributes and prices fit
    the kind, the licence expression and the language tags.
    """
    checked = pb.Listing()
    checked.CopyFrom(listing)
    violations: list[FieldViolation] = []
    expected = ATTRIBUTES_OF_KIND.get(listing.kind)
    present = listing.WhichOneof("attributes")
    if present is not None and present != expected:
        kind = pb.ListingKind.Name(listing.kind)
        violations.append(
            FieldViolation(f"{prefix}.{present}", f"{present} attributes do not fit a {kind}")
        )
    fitting = PRICES_OF_KIND.get(listing.kind, set())
    for price, value in listing.prices.ListFields():
        if value and price.name not in fitting:
            violations.append(
                FieldViolation(
                    f"{prefix}.prices.{price.name}",
                    f"a {pb.ListingKind.Name(listing.kind)} has no {price.name} price",
                )
            )
    if listing.license:
        try:
            checked.license = normalise_license(listing.license, f"{prefix}.license")
        except InvalidArgument as error:
            violations.extend(error.violations)
    try:
        del checked.languages[:]
        checked.languages.extend(normalise_languages(listing.languages, f"{prefix}.languages"))
    except InvalidArgument as error:
        violations.extend(error.violations)
    if violations:
        raise InvalidArgument.of(violations)
    return checked


def check_new(listing: pb.Listing) -> pb.Listing:
    violations = [
        FieldViolation(f"listing.{name}", "required")
        for name, missing in (
            ("kind", not listing.kind),
            ("slug", not listing.slug),
            ("name", not listing.name.strip()),
        )
        if missing
    ]
    if violations:
        raise InvalidArgument.of(violations)
    return check_listing(listing)


def publish_gaps(listing: pb.Listing) -> list[PreconditionViolation]:
    """What a listing lacks before it may be published (empty: nothing)."""
    required: list[tuple[str, bool]] = [
        ("name", bool(listing.name.strip())),
        ("provider", bool(listing.provider.strip())),
        ("version", bool(listing.version.strip())),
        ("card", bool(listing.card.strip())),
        ("access_tier", bool(listing.access_tier)),
    ]
    attributes = ATTRIBUTES_OF_KIND[listing.kind]
    required.append((attributes, listing.WhichOneof("attributes") == attributes))
    if listing.kind in (MODEL, DATASET):
        # Weights and data come under a licence; GPU hours come under the operator's terms.
        required.append(("license", bool(listing.license)))
        required.append(("languages", bool(listing.languages)))
    if listing.kind == MODEL:
        model = listing.model
        required += [
            ("model.family", bool(model.family.strip())),
            ("model.parameter_count", model.parameter_count > 0),
            ("model.context_length", model.context_length > 0),
            ("model.capabilities", bool(model.capabilities)),
            ("model.input_modalities", bool(model.input_modalities)),
        ]
        if pb.CAPABILITY_EMBEDDINGS in model.capabilities:
            required.append(("model.embedding_dimensions", model.embedding_dimensions > 0))
    elif listing.kind == DATASET:
        data = listing.dataset
        required += [
            ("dataset.format", bool(data.format.strip())),
            ("dataset.modalities", bool(data.modalities)),
            ("dataset.provenance", bool(data.provenance.strip())),
            ("dataset.collection_method", bool(data.collection_method)),
            ("dataset.update_cadence", bool(data.update_cadence)),
            ("dataset.token_count", data.token_count > 0 or data.byte_count > 0),
        ]
    else:
        product = listing.compute_product
        required += [
            ("compute_product.gpu_type", bool(product.gpu_type.strip())),
            ("compute_product.gpu_memory_gib", product.gpu_memory_gib > 0),
            ("compute_product.region", bool(product.region.strip())),
        ]
    return [
        PreconditionViolation(
            "REQUIRED_TO_PUBLISH", f"listing.{name}", "a published listing needs this field"
        )
        for name, present in required
        if not present
    ]


def check_publishable(listing: pb.Listing) -> None:
    gaps = publish_gaps(listing)
    if gaps:
        raise FailedPrecondition.of(gaps)


def check_transition(current: int, target: int) -> None:
    if (current, target) not in _ALLOWED_TRANSITIONS:
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "STATE_TRANSITION",
                    "listing.state",
                    f"a {state_name(current)} listing cannot become {state_name(target)}",
                )
            ]
        )


# -- updates ----------------------------------------------------------------


def check_mask(mask: field_mask_pb2.FieldMask) -> list[str]:
    paths = list(dict.fromkeys(mask.paths))
    if not paths:
        raise InvalidArgument.field("update_mask", "name at least one field to change")
    for path in paths:
        if path.split(".")[0] not in MUTABLE_PATHS:
            raise InvalidArgument.field(
                "update_mask",
                f"{path[:64]!r} cannot be changed (mutable: {', '.join(sorted(MUTABLE_PATHS))})",
            )
    if not mask.IsValidForDescriptor(pb.Listing.DESCRIPTOR):
        raise InvalidArgument.field("update_mask", "names a field that Listing does not have")
    return paths


def apply_update(
    current: pb.Listing, patch: pb.Listing, mask: field_mask_pb2.FieldMask
) -> tuple[pb.Listing, list[str]]:
    """`current` with the masked fields of `patch`, checked; and the paths that changed."""
    if current.state == DEPRECATED:
        raise FailedPrecondition.of(
            [PreconditionViolation("STATE", "listing.state", "a deprecated listing is frozen")]
        )
    paths = check_mask(mask)
    source = pb.Listing()
    source.CopyFrom(patch)
    for path in paths:
        # MergeMessage skips a sub-path whose parent is unset in the source; the
        # caller named it, so it takes the patch's (default) value.
        parent: Any = source
        for name in path.split(".")[:-1]:
            parent = getattr(parent, name)
        if parent is not source:
            parent.SetInParent()
    updated = pb.Listing()
    updated.CopyFrom(current)
    effective = field_mask_pb2.FieldMask(paths=paths)
    effective.MergeMessage(source, updated, replace_message_field=True, replace_repeated_field=True)
    if not updated.name.strip():
        raise InvalidArgument.field("listing.name", "a listing always has a name")
    updated = check_listing(updated)
    changed = [path for path in paths if _project(current, path) != _project(updated, path)]
    if current.state == PUBLISHED:
        gaps = publish_gaps(updated)
        if gaps:
            raise FailedPrecondition.of(gaps)
    return updated, changed


def _project(listing: pb.Listing, path: str) -> bytes:
    """The bytes of one field path of `listing`, to compare versions by."""
    projected = pb.Listing()
    field_mask_pb2.FieldMask(paths=[path]).MergeMessage(
        listing, projected, replace_message_field=True, replace_repeated_field=True
    )
    return projected.SerializeToString(deterministic=True)


# -- derived data -----------------------------------------------------------


def basic_view(listing: pb.Listing) -> pb.Listing:
    basic = pb.Listing()
    basic.CopyFrom(listing)
    basic.ClearField("card")
    return basic


def facets(listing: pb.Listing) -> list[str]:
    """The values ListListings filters by that a listing may hold several of."""
    found: list[str] = []
    for tag in listing.languages:
        canonical = tag.lower()
        found.append(f"lang:{canonical}")
        found.append(f"lang:{canonical.split('-')[0]}")
    if listing.license:
        found += [f"lic:{key.lower()}" for key in license_ids(listing.license)]
    kind = listing.WhichOneof("attributes")
    modalities: list[int] = []
    if kind == "model":
        modalities += [*listing.model.input_modalities, *listing.model.output_modalities]
        found += [f"cap:{c}" for c in listing.model.capabilities]
    elif kind == "dataset":
        modalities += list(listing.dataset.modalities)
    found += [f"mod:{m}" for m in modalities]
    found += [f"tag:{tag}" for tag in listing.tags]
    return list(dict.fromkeys(found))


def search_fields(listing: pb.Listing) -> tuple[str, str, str, str]:
    """The texts search ranks over, most telling first: name, tags, provider, card."""
    name = f"{listing.name} {listing.slug}"
    tags = " ".join(listing.tags)
    return name, tags, listing.provider, listing.card


# -- access requests --------------------------------------------------------


def check_can_request(viewer: Viewer, listing: pb.Listing) -> None:
    if listing.state != PUBLISHED:
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "STATE", "listing.state", "only published listings take requests"
                )
            ]
        )
    if listing.access_tier != pb.ACCESS_TIER_RESTRICTED:
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "ACCESS_TIER",
                    "listing.access_tier",
                    "only restricted listings need an access request",
                )
            ]
        )
    if viewer.org_id == listing.org_id:
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "OWN_LISTING",
                    "listing.org_id",
                    "an organisation has access to its own listings",
                )
            ]
        )


_REQUEST_TRANSITIONS: dict[int, int] = {
    pb.ACCESS_REQUEST_STATE_ACCEPTED: pb.ACCESS_REQUEST_STATE_PENDING,
    pb.ACCESS_REQUEST_STATE_REJECTED: pb.ACCESS_REQUEST_STATE_PENDING,
    pb.ACCESS_REQUEST_STATE_REVOKED: pb.ACCESS_REQUEST_STATE_ACCEPTED,
}


def check_decision(current: int, target: int) -> None:
    if _REQUEST_TRANSITIONS[target] != current:
        name = pb.AccessRequestState.Name
        raise FailedPrecondition.of(
            [
                PreconditionViolation(
                    "STATE_TRANSITION",
                    "access_request.state",
                    f"a {name(current).removeprefix('ACCESS_REQUEST_STATE_').lower()} request "  # type: ignore[arg-type]
                    f"cannot become {name(target).removeprefix('ACCESS_REQUEST_STATE_').lower()}",  # type: ignore[arg-type]
                )
            ]
        )


def not_found(what: str = "listing") -> NotFound:
    return NotFound(f"{what} not found")
