"""The shelf's rules, without I/O: licences, languages, kinds, publishing,
updates, visibility, facets and access decisions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from catalog_harness import compute_listing, dataset_listing, model_listing
from google.protobuf.field_mask_pb2 import FieldMask

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.platform.auth import Principal
from aisuper.platform.errors import FailedPrecondition, InvalidArgument
from aisuper_catalog import domain
from aisuper_catalog.domain import Viewer

ACME = "org_" + "a" * 26
GLOBEX = "org_" + "g" * 26
PLATFORM = "org_" + "p" * 26

ANONYMOUS = Viewer(org_id=None)
MEMBER = Viewer(org_id=ACME, admin=True)
OPERATOR = Viewer(org_id=PLATFORM, operator=True)

DRAFT = pb.LISTING_STATE_DRAFT
PUBLISHED = pb.LISTING_STATE_PUBLISHED
DEPRECATED = pb.LISTING_STATE_DEPRECATED
PENDING = pb.ACCESS_REQUEST_STATE_PENDING
ACCEPTED = pb.ACCESS_REQUEST_STATE_ACCEPTED
REJECTED = pb.ACCESS_REQUEST_STATE_REJECTED
REVOKED = pb.ACCESS_REQUEST_STATE_REVOKED


def _fields(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def _subjects(error: pytest.ExceptionInfo[FailedPrecondition]) -> dict[str, str]:
    return {v.subject: v.description for v in error.value.violations}


def _stored(listing: pb.Listing, state: int = DRAFT, org_id: str = ACME) -> pb.Listing:
    """`listing` as the store would hold it: checked, with an org and a state."""
    stored = domain.check_new(listing)
    stored.id = "lst_" + "0" * 26
    stored.org_id = org_id
    stored.state = state  # type: ignore[assignment]
    stored.revision = 1
    return stored


# -- licences -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("MIT", "MIT"),
        ("mit", "MIT"),
        ("Apache-2.0", "Apache-2.0"),
        ("apache-2.0 or mit", "Apache-2.0 OR MIT"),
        ("Apache-2.0 OR MIT", "Apache-2.0 OR MIT"),
        ("mit OR (apache-2.0 AND bsd-3-clause)", "MIT OR (Apache-2.0 AND BSD-3-Clause)"),
        ("GPL-3.0-only WITH GCC-exception-3.1", "GPL-3.0-only WITH GCC-exception-3.1"),
        ("apache-2.0 with llvm-exception", "Apache-2.0 WITH LLVM-exception"),
        ("gpl-2.0+", "GPL-2.0-or-later"),
        ("LicenseRef-foo", "LicenseRef-foo"),
        ("LicenseRef-deepseek-model-1.0", "LicenseRef-deepseek-model-1.0"),
        ("LicenseRef-foo OR MIT", "LicenseRef-foo OR MIT"),
        ("  MIT  ", "MIT"),
    ],
)
def test_valid_spdx_expressions_are_normalised(expression: str, normalised: str) -> None:
    assert domain.normalise_license(expression) == normalised
    # Normal form is a fixed point.
    assert domain.normalise_license(normalised) == normalised


@pytest.mark.parametrize(
    ("expression", "unknown"),
    [
        ("FooBar", ["FooBar"]),
        ("proprietary", ["proprietary"]),
        ("MIT OR FooBar OR Baz", ["FooBar", "Baz"]),
        ("licenseref-foo", ["licenseref-foo"]),  # the prefix is case-sensitive
        ("LicenseRef-", ["LicenseRef-"]),
        ("LicenseRef-a_b", ["LicenseRef-a_b"]),
    ],
)
def test_unknown_licence_ids_are_refused_by_name(expression: str, unknown: list[str]) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_license(expression)
    fields = _fields(error)
    assert list(fields) == ["listing.license"]
    assert fields["listing.license"].startswith("unknown SPDX licence id")
    for name in unknown:
        assert name in fields["listing.license"]


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "MIT AND (",
        "(MIT",
        "MIT)",
        "MIT MIT",
        "AND",
        "MIT WITH MIT",
        "Classpath-exception-2.0",
    ],
)
def test_broken_licence_syntax_is_refused(expression: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_license(expression)
    assert _fields(error) == {"listing.license": "not a valid SPDX licence expression"}


def test_the_licence_field_path_is_the_callers() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_license("FooBar", "patch.license")
    assert list(_fields(error)) == ["patch.license"]


@pytest.mark.parametrize(
    "expression", ["MIT AND", "MIT, Apache-2.0", "MIT / Apache-2.0", "( OR Apache-2.0", "( )"]
)
def test_malformed_expressions_the_parser_chokes_on_are_refused(expression: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_license(expression)
    assert list(_fields(error)) == ["listing.license"]


# -- languages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "canonical"),
    [
        (["zh-hans-cn"], ["zh-Hans-CN"]),
        (["zh-hans"], ["zh-Hans"]),
        (["EN"], ["en"]),
        (["en-us", "EN-US"], ["en-US"]),
        (["en", "EN", "en", "fr", "en"], ["en", "fr"]),
        (["zh-Hans", "zh-hans", "ZH-HANS"], ["zh-Hans"]),
        (["iw"], ["he"]),  # deprecated subtag
        ([], []),
    ],
)
def test_languages_are_canonical_and_folded(tags: list[str], canonical: list[str]) -> None:
    assert domain.normalise_languages(tags) == canonical


def test_invalid_languages_are_refused_with_their_index() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_languages(["en", "xx", "zh-Hans", "klingon", "en-"])
    fields = _fields(error)
    assert set(fields) == {"listing.languages[1]", "listing.languages[3]", "listing.languages[4]"}
    assert "'xx'" in fields["listing.languages[1]"]
    assert "'klingon'" in fields["listing.languages[3]"]


def test_the_languages_field_path_is_the_callers() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.normalise_languages(["xx"], "filter.languages")
    assert list(_fields(error)) == ["filter.languages[0]"]


# -- what a listing may hold ------------------------------------------------------


@pytest.mark.parametrize(
    "make", [model_listing, dataset_listing, compute_listing], ids=["model", "dataset", "compute"]
)
def test_complete_listings_of_every_kind_pass(make: Callable[..., pb.Listing]) -> None:
    listing = make("ok")
    assert domain.check_listing(listing) == listing


def test_check_listing_normalises_without_touching_its_input() -> None:
    listing = model_listing("ok", license="apache-2.0 or mit", languages=["zh-hans", "EN", "en"])
    checked = domain.check_listing(listing)
    assert checked.license == "Apache-2.0 OR MIT"
    assert list(checked.languages) == ["zh-Hans", "en"]
    assert listing.license == "apache-2.0 or mit"
    assert list(listing.languages) == ["zh-hans", "EN", "en"]


@pytest.mark.parametrize(
    ("make", "attributes"),
    [
        (model_listing, "dataset"),
        (model_listing, "compute_product"),
        (dataset_listing, "model"),
        (dataset_listing, "compute_product"),
        (compute_listing, "model"),
        (compute_listing, "dataset"),
    ],
)
def test_attributes_must_fit_the_kind(make: Callable[..., pb.Listing], attributes: str) -> None:
    listing = make("x")
    getattr(listing, attributes).SetInParent()  # replaces the kind's own attributes
    with pytest.raises(InvalidArgument) as error:
        domain.check_listing(listing)
    assert list(_fields(error)) == [f"listing.{attributes}"]


@pytest.mark.parametrize(
    ("make", "price"),
    [
        (model_listing, "per_gpu_hour"),
        (model_listing, "per_dataset_access"),
        (dataset_listing, "input_per_million_tokens"),
        (dataset_listing, "output_per_million_tokens"),
        (dataset_listing, "cached_input_per_million_tokens"),
        (dataset_listing, "per_gpu_hour"),
        (compute_listing, "input_per_million_tokens"),
        (compute_listing, "per_dataset_access"),
    ],
)
def test_prices_must_fit_the_kind(make: Callable[..., pb.Listing], price: str) -> None:
    listing = make("x")
    setattr(listing.prices, price, 1)
    with pytest.raises(InvalidArgument) as error:
        domain.check_listing(listing)
    assert list(_fields(error)) == [f"listing.prices.{price}"]


@pytest.mark.parametrize(
    ("make", "price"),
    [
        (model_listing, "input_per_million_tokens"),
        (model_listing, "output_per_million_tokens"),
        (model_listing, "cached_input_per_million_tokens"),
        (dataset_listing, "per_dataset_access"),
        (compute_listing, "per_gpu_hour"),
    ],
)
def test_fitting_prices_pass(make: Callable[..., pb.Listing], price: str) -> None:
    listing = make("x")
    setattr(listing.prices, price, 1_000_000_000_000)
    domain.check_listing(listing)


def test_a_zero_price_of_another_kind_is_no_price() -> None:
    listing = model_listing("m")
    listing.prices.per_gpu_hour = 0
    domain.check_listing(listing)


def test_every_violation_is_reported_together() -> None:
    listing = model_listing("m", license="FooBar", languages=["en", "xx"])
    listing.dataset.CopyFrom(pb.DatasetAttributes(format="jsonl"))
    listing.prices.per_gpu_hour = 5
    listing.prices.per_dataset_access = 7
    with pytest.raises(InvalidArgument) as error:
        domain.check_listing(listing)
    assert set(_fields(error)) == {
        "listing.dataset",
        "listing.prices.per_gpu_hour",
        "listing.prices.per_dataset_access",
        "listing.license",
        "listing.languages[1]",
    }


def test_check_listing_uses_the_callers_prefix() -> None:
    listing = model_listing("m", license="FooBar")
    with pytest.raises(InvalidArgument) as error:
        domain.check_listing(listing, prefix="patch")
    assert list(_fields(error)) == ["patch.license"]


def test_an_empty_licence_waits_for_publishing() -> None:
    assert domain.check_listing(model_listing("m", license="")).license == ""


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"kind": 0}, {"listing.kind"}),
        ({"slug": ""}, {"listing.slug"}),
        ({"name": ""}, {"listing.name"}),
        ({"name": "  \t "}, {"listing.name"}),
        ({"kind": 0, "slug": "", "name": ""}, {"listing.kind", "listing.slug", "listing.name"}),
    ],
)
def test_a_new_listing_needs_kind_slug_and_name(
    fields: dict[str, object], missing: set[str]
) -> None:
    listing = model_listing("m")
    for name, value in fields.items():
        setattr(listing, name, value)
    with pytest.raises(InvalidArgument) as error:
        domain.check_new(listing)
    assert set(_fields(error)) == missing
    assert all(description == "required" for description in _fields(error).values())


def test_a_new_listing_needs_nothing_else_yet() -> None:
    bare = pb.Listing(kind=pb.LISTING_KIND_DATASET, slug="bare", name="Bare")
    assert domain.check_new(bare) == bare


def test_check_new_checks_the_rest_too() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.check_new(model_listing("m", license="FooBar"))
    assert list(_fields(error)) == ["listing.license"]


# -- publishing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [model_listing, dataset_listing, compute_listing], ids=["model", "dataset", "compute"]
)
def test_complete_listings_have_no_gaps(make: Callable[..., pb.Listing]) -> None:
    assert domain.publish_gaps(make("ok")) == []
    domain.check_publishable(make("ok"))


def _gaps(listing: pb.Listing) -> set[str]:
    gaps = domain.publish_gaps(listing)
    assert all(gap.type == "REQUIRED_TO_PUBLISH" for gap in gaps)
    return {gap.subject for gap in gaps}


def test_a_bare_model_names_every_missing_field() -> None:
    bare = pb.Listing(kind=pb.LISTING_KIND_MODEL, slug="bare", name="Bare")
    assert _gaps(bare) == {
        "listing.provider",
        "listing.version",
        "listing.card",
        "listing.license",
        "listing.access_tier",
        "listing.languages",
        "listing.model",
        "listing.model.family",
        "listing.model.parameter_count",
        "listing.model.context_length",
        "listing.model.capabilities",
        "listing.model.input_modalities",
    }


def test_a_bare_dataset_names_every_missing_field() -> None:
    bare = pb.Listing(kind=pb.LISTING_KIND_DATASET, slug="bare", name="Bare")
    assert _gaps(bare) == {
        "listing.provider",
        "listing.version",
        "listing.card",
        "listing.license",
        "listing.access_tier",
        "listing.languages",
        "listing.dataset",
        "listing.dataset.format",
        "listing.dataset.modalities",
        "listing.dataset.provenance",
        "listing.dataset.collection_method",
        "listing.dataset.update_cadence",
        "listing.dataset.token_count",
    }


def test_a_bare_compute_product_names_every_missing_field() -> None:
    bare = pb.Listing(kind=pb.LISTING_KIND_COMPUTE_PRODUCT, slug="bare", name="Bare")
    gaps = _gaps(bare)
    assert gaps >= {
        "listing.provider",
        "listing.version",
        "listing.card",
        "listing.access_tier",
        "listing.compute_product",
        "listing.compute_product.gpu_type",
        "listing.compute_product.gpu_memory_gib",
        "listing.compute_product.region",
    }
    assert "listing.languages" not in gaps  # GPU hours speak no language
    assert all(gap.startswith("listing.") for gap in gaps)


@pytest.mark.parametrize(
    ("listing", "gap"),
    [
        (model_listing("m", model=pb.ModelAttributes()), "listing.model.context_length"),
        (model_listing("m", name=" "), "listing.name"),
        (model_listing("m", provider=""), "listing.provider"),
        (model_listing("m", version=""), "listing.version"),
        (model_listing("m", card="  \n\n  "), "listing.card"),
        (model_listing("m", license=""), "listing.license"),
        (model_listing("m", access_tier=pb.ACCESS_TIER_UNSPECIFIED), "listing.access_tier"),
        (model_listing("m", languages=[]), "listing.languages"),
        (dataset_listing("d", languages=[]), "listing.languages"),
        (dataset_listing("d", license=""), "listing.license"),
    ],
)
def test_a_missing_field_is_named(listing: pb.Listing, gap: str) -> None:
    assert gap in _gaps(listing)


def test_a_model_without_context_length_names_it() -> None:
    listing = model_listing("m")
    listing.model.context_length = 0
    assert _gaps(listing) == {"listing.model.context_length"}
    with pytest.raises(FailedPrecondition) as error:
        domain.check_publishable(listing)
    assert list(_subjects(error)) == ["listing.model.context_length"]


def test_an_embedding_model_needs_its_dimensions() -> None:
    listing = model_listing("m")
    listing.model.capabilities.append(pb.CAPABILITY_EMBEDDINGS)
    assert _gaps(listing) == {"listing.model.embedding_dimensions"}
    listing.model.embedding_dimensions = 1024
    assert _gaps(listing) == set()


def test_a_chat_model_needs_no_dimensions() -> None:
    assert "listing.model.embedding_dimensions" not in _gaps(model_listing("m"))


def test_a_dataset_needs_a_size_in_tokens_or_bytes() -> None:
    listing = dataset_listing("d")
    listing.dataset.token_count = 0
    assert _gaps(listing) == set()  # bytes are enough
    listing.dataset.byte_count = 0
    assert _gaps(listing) == {"listing.dataset.token_count"}


def test_a_compute_product_needs_its_gpu() -> None:
    listing = compute_listing("c")
    listing.compute_product.gpu_memory_gib = 0
    listing.compute_product.region = " "
    assert _gaps(listing) == {
        "listing.compute_product.gpu_memory_gib",
        "listing.compute_product.region",
    }


@pytest.mark.parametrize(("current", "target"), [(DRAFT, PUBLISHED), (PUBLISHED, DEPRECATED)])
def test_allowed_transitions(current: int, target: int) -> None:
    domain.check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (DRAFT, DRAFT),
        (DRAFT, DEPRECATED),
        (PUBLISHED, PUBLISHED),
        (PUBLISHED, DRAFT),
        (DEPRECATED, PUBLISHED),
        (DEPRECATED, DEPRECATED),
        (DEPRECATED, DRAFT),
    ],
)
def test_refused_transitions_name_the_state(current: int, target: int) -> None:
    with pytest.raises(FailedPrecondition) as error:
        domain.check_transition(current, target)
    subjects = _subjects(error)
    assert list(subjects) == ["listing.state"]
    assert domain.state_name(current) in subjects["listing.state"]
    assert error.value.violations[0].type == "STATE_TRANSITION"


# -- updates --------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths",
    [["name"], ["prices.per_gpu_hour"], ["model.family", "card"], ["name", "name"], ["model"]],
)
def test_mutable_masks_pass(paths: list[str]) -> None:
    assert domain.check_mask(FieldMask(paths=paths)) == list(dict.fromkeys(paths))


@pytest.mark.parametrize(
    "path",
    [
        "slug",
        "kind",
        "state",
        "id",
        "org_id",
        "revision",
        "create_time",
        "update_time",
        "publish_time",
        "deprecate_time",
        "deprecation_reason",
        "nope",
        "",
        "Name",
        "model.nope",
        "prices.nope",
        "name.first",
        "source_urls.x",
        "model..family",
        "model.family.x",
    ],
)
def test_immutable_and_unknown_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.check_mask(FieldMask(paths=["name", path]))
    assert list(_fields(error)) == ["update_mask"]


def test_an_empty_mask_is_refused() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.check_mask(FieldMask())
    assert list(_fields(error)) == ["update_mask"]


def test_update_changes_only_the_masked_fields() -> None:
    current = _stored(model_listing("m"))
    patch = pb.Listing(
        name="New Name", card="ignored", slug="ignored", kind=pb.LISTING_KIND_DATASET
    )
    updated, changed = domain.apply_update(current, patch, FieldMask(paths=["name"]))
    assert changed == ["name"]
    expected = pb.Listing()
    expected.CopyFrom(current)
    expected.name = "New Name"
    assert updated == expected


def test_a_sub_path_changes_one_price() -> None:
    current = _stored(compute_listing("c"))
    patch = pb.Listing(prices=pb.Prices(per_gpu_hour=9, per_dataset_access=123))
    updated, changed = domain.apply_update(current, patch, FieldMask(paths=["prices.per_gpu_hour"]))
    assert changed == ["prices.per_gpu_hour"]
    assert updated.prices.per_gpu_hour == 9
    assert updated.prices.per_dataset_access == 0


def test_a_sub_path_price_of_another_kind_is_refused() -> None:
    current = _stored(model_listing("m"))
    patch = pb.Listing(prices=pb.Prices(per_gpu_hour=9))
    with pytest.raises(InvalidArgument) as error:
        domain.apply_update(current, patch, FieldMask(paths=["prices.per_gpu_hour"]))
    assert list(_fields(error)) == ["listing.prices.per_gpu_hour"]


def test_the_changed_paths_leave_out_what_stayed_the_same() -> None:
    current = _stored(model_listing("m"))
    patch = pb.Listing(name=current.name, card="A new card", license="apache-2.0")
    _, changed = domain.apply_update(
        current, patch, FieldMask(paths=["name", "card", "license", "card"])
    )
    assert changed == ["card"]  # the licence normalises to what it was


def test_updates_are_checked_like_new_listings() -> None:
    current = _stored(model_listing("m"))
    patch = pb.Listing(license="FooBar", languages=["xx"], dataset=pb.DatasetAttributes())
    with pytest.raises(InvalidArgument) as error:
        domain.apply_update(current, patch, FieldMask(paths=["license", "languages", "dataset"]))
    assert set(_fields(error)) == {"listing.license", "listing.languages[0]", "listing.dataset"}


def test_updates_store_licence_and_languages_normalised() -> None:
    current = _stored(model_listing("m"))
    patch = pb.Listing(license="mit or apache-2.0", languages=["ZH-hans", "zh-Hans"])
    updated, changed = domain.apply_update(
        current, patch, FieldMask(paths=["license", "languages"])
    )
    assert updated.license == "MIT OR Apache-2.0"
    assert list(updated.languages) == ["zh-Hans"]
    assert changed == ["license", "languages"]


def test_a_deprecated_listing_is_frozen() -> None:
    current = _stored(model_listing("m"), state=DEPRECATED)
    with pytest.raises(FailedPrecondition) as error:
        domain.apply_update(current, pb.Listing(name="x"), FieldMask(paths=["name"]))
    assert list(_subjects(error)) == ["listing.state"]


@pytest.mark.parametrize("state", [DRAFT, PUBLISHED])
def test_no_listing_loses_its_name(state: int) -> None:
    current = _stored(model_listing("m"), state=state)
    with pytest.raises(InvalidArgument) as error:
        domain.apply_update(current, pb.Listing(name="   "), FieldMask(paths=["name"]))
    assert [v.field for v in error.value.violations] == ["listing.name"]


@pytest.mark.parametrize(
    ("paths", "patch", "gaps"),
    [
        (["card"], pb.Listing(), {"listing.card"}),
        (["license"], pb.Listing(), {"listing.license"}),
        (["access_tier"], pb.Listing(), {"listing.access_tier"}),
        (["languages"], pb.Listing(), {"listing.languages"}),
        (
            ["model.context_length"],
            pb.Listing(model=pb.ModelAttributes()),
            {"listing.model.context_length"},
        ),
        (
            ["model.capabilities"],
            pb.Listing(model=pb.ModelAttributes(capabilities=[pb.CAPABILITY_EMBEDDINGS])),
            {"listing.model.embedding_dimensions"},
        ),
        (
            ["model"],
            pb.Listing(),
            {
                "listing.model",
                "listing.model.family",
                "listing.model.parameter_count",
                "listing.model.context_length",
                "listing.model.capabilities",
                "listing.model.input_modalities",
            },
        ),
    ],
)
def test_a_published_listing_cannot_lose_a_field_it_needs(
    paths: list[str], patch: pb.Listing, gaps: set[str]
) -> None:
    current = _stored(model_listing("m"), state=PUBLISHED)
    with pytest.raises(FailedPrecondition) as error:
        domain.apply_update(current, patch, FieldMask(paths=paths))
    assert set(_subjects(error)) == gaps


def test_a_draft_may_lose_fields_until_publishing() -> None:
    current = _stored(model_listing("m"))
    updated, changed = domain.apply_update(
        current, pb.Listing(), FieldMask(paths=["card", "model"])
    )
    assert changed == ["card", "model"]
    assert not updated.card
    assert updated.WhichOneof("attributes") is None


def test_a_sub_path_without_its_parent_in_the_patch_clears_the_field() -> None:
    # The mask names model.context_length and the patch holds its default, 0:
    # the new value is 0, which a published model may not have.
    current = _stored(model_listing("m"), state=PUBLISHED)
    with pytest.raises(FailedPrecondition) as error:
        domain.apply_update(current, pb.Listing(), FieldMask(paths=["model.context_length"]))
    assert list(_subjects(error)) == ["listing.model.context_length"]


# -- who sees what ----------------------------------------------------------------


def test_viewer_of_a_principal() -> None:
    assert Viewer.of(None) == ANONYMOUS
    admin = Principal(org_id=ACME, subject="key:a", roles=frozenset({"org_admin"}))
    assert Viewer.of(admin) == Viewer(org_id=ACME, admin=True)
    developer = Principal(org_id=ACME, subject="key:d", roles=frozenset({"developer"}))
    assert Viewer.of(developer) == Viewer(org_id=ACME)
    operator = Principal(org_id=PLATFORM, subject="key:o", roles=frozenset({"operator"}))
    assert Viewer.of(operator) == Viewer(org_id=PLATFORM, operator=True, admin=True)


@pytest.mark.parametrize(
    ("viewer", "state", "tier", "reads"),
    [
        (ANONYMOUS, PUBLISHED, pb.ACCESS_TIER_OPEN, True),
        (ANONYMOUS, DEPRECATED, pb.ACCESS_TIER_OPEN, True),
        (ANONYMOUS, PUBLISHED, pb.ACCESS_TIER_REGISTERED, False),
        (ANONYMOUS, PUBLISHED, pb.ACCESS_TIER_RESTRICTED, False),
        (ANONYMOUS, DRAFT, pb.ACCESS_TIER_OPEN, False),
        (Viewer(org_id=GLOBEX), PUBLISHED, pb.ACCESS_TIER_RESTRICTED, True),
        (Viewer(org_id=GLOBEX), DRAFT, pb.ACCESS_TIER_OPEN, False),
        (MEMBER, DRAFT, pb.ACCESS_TIER_OPEN, True),
        (OPERATOR, DRAFT, pb.ACCESS_TIER_RESTRICTED, True),
    ],
)
def test_who_reads_a_listing(viewer: Viewer, state: int, tier: int, reads: bool) -> None:
    assert viewer.reads(org_id=ACME, state=state, access_tier=tier) is reads


def test_anonymous_callers_get_only_open_published_listings() -> None:
    query = domain.listing_query(ANONYMOUS, pb.ListingFilter())
    assert query == domain.ListingQuery(state=PUBLISHED, access_tier=pb.ACCESS_TIER_OPEN)
    query = domain.listing_query(ANONYMOUS, pb.ListingFilter(state=DEPRECATED))
    assert query == domain.ListingQuery(state=DEPRECATED, access_tier=pb.ACCESS_TIER_OPEN)
    query = domain.listing_query(ANONYMOUS, pb.ListingFilter(access_tier=pb.ACCESS_TIER_OPEN))
    assert query == domain.ListingQuery(state=PUBLISHED, access_tier=pb.ACCESS_TIER_OPEN)


@pytest.mark.parametrize(
    "listing_filter",
    [
        pb.ListingFilter(state=DRAFT),
        pb.ListingFilter(access_tier=pb.ACCESS_TIER_REGISTERED),
        pb.ListingFilter(access_tier=pb.ACCESS_TIER_VERIFIED),
        pb.ListingFilter(access_tier=pb.ACCESS_TIER_RESTRICTED),
        pb.ListingFilter(state=DRAFT, org_id=ACME),
    ],
)
def test_anonymous_callers_asking_for_more_see_nothing(listing_filter: pb.ListingFilter) -> None:
    assert domain.listing_query(ANONYMOUS, listing_filter) is None


def test_members_see_every_published_tier() -> None:
    query = domain.listing_query(MEMBER, pb.ListingFilter(access_tier=pb.ACCESS_TIER_RESTRICTED))
    assert query == domain.ListingQuery(state=PUBLISHED, access_tier=pb.ACCESS_TIER_RESTRICTED)
    query = domain.listing_query(MEMBER, pb.ListingFilter(org_id=GLOBEX))
    assert query == domain.ListingQuery(state=PUBLISHED, org_id=GLOBEX)


def test_drafts_of_a_non_operator_are_scoped_to_their_org() -> None:
    query = domain.listing_query(MEMBER, pb.ListingFilter(state=DRAFT))
    assert query == domain.ListingQuery(state=DRAFT, org_id=ACME)
    query = domain.listing_query(MEMBER, pb.ListingFilter(state=DRAFT, org_id=ACME))
    assert query == domain.ListingQuery(state=DRAFT, org_id=ACME)
    assert domain.listing_query(MEMBER, pb.ListingFilter(state=DRAFT, org_id=GLOBEX)) is None


def test_operators_see_every_draft() -> None:
    query = domain.listing_query(OPERATOR, pb.ListingFilter(state=DRAFT))
    assert query == domain.ListingQuery(state=DRAFT)
    query = domain.listing_query(OPERATOR, pb.ListingFilter(state=DRAFT, org_id=GLOBEX))
    assert query == domain.ListingQuery(state=DRAFT, org_id=GLOBEX)


@pytest.mark.parametrize(
    ("listing_filter", "facets"),
    [
        (pb.ListingFilter(language="zh"), ("lang:zh",)),
        (pb.ListingFilter(language="ZH-hans"), ("lang:zh-hans",)),
        (pb.ListingFilter(language="iw"), ("lang:he",)),
        (pb.ListingFilter(license="MIT"), ("lic:mit",)),
        (pb.ListingFilter(modality=pb.MODALITY_IMAGE), (f"mod:{pb.MODALITY_IMAGE}",)),
        (pb.ListingFilter(tag="chat"), ("tag:chat",)),
        (
            pb.ListingFilter(capability=pb.CAPABILITY_EMBEDDINGS),
            (f"cap:{pb.CAPABILITY_EMBEDDINGS}",),
        ),
        (
            pb.ListingFilter(
                language="en", license="Apache-2.0", tag="x", kind=pb.LISTING_KIND_MODEL
            ),
            ("lang:en", "lic:apache-2.0", "tag:x"),
        ),
    ],
)
def test_filters_become_facets(listing_filter: pb.ListingFilter, facets: tuple[str, ...]) -> None:
    query = domain.listing_query(MEMBER, listing_filter)
    assert query is not None
    assert query.facets == facets
    assert query.kind == listing_filter.kind


@pytest.mark.parametrize("language", ["xx", "klingon", "en-", "123", "zz"])
def test_an_invalid_language_filter_is_refused(language: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.listing_query(MEMBER, pb.ListingFilter(language=language))
    assert list(_fields(error)) == ["filter.language"]


# -- facets and search fields --------------------------------------------------------


def test_facets_of_a_model() -> None:
    listing = model_listing(
        "m",
        languages=["zh-Hans-CN", "en", "zh-Hant"],
        license="Apache-2.0 OR MIT",
        tags=["chat", "zh"],
        model=pb.ModelAttributes(
            input_modalities=[pb.MODALITY_TEXT, pb.MODALITY_IMAGE],
            output_modalities=[pb.MODALITY_TEXT],
            capabilities=[pb.CAPABILITY_CHAT, pb.CAPABILITY_EMBEDDINGS],
        ),
    )
    assert domain.facets(listing) == [
        "lang:zh-hans-cn",
        "lang:zh",
        "lang:en",
        "lang:zh-hant",
        "lic:apache-2.0",
        "lic:mit",
        f"cap:{pb.CAPABILITY_CHAT}",
        f"cap:{pb.CAPABILITY_EMBEDDINGS}",
        f"mod:{pb.MODALITY_TEXT}",
        f"mod:{pb.MODALITY_IMAGE}",
        "tag:chat",
        "tag:zh",
    ]


def test_facets_of_a_dataset_and_a_compute_product() -> None:
    dataset = dataset_listing(
        "d", languages=["en"], license="GPL-3.0-only WITH GCC-exception-3.1 AND LicenseRef-Foo"
    )
    dataset.dataset.modalities[:] = [pb.MODALITY_AUDIO]
    assert domain.facets(dataset) == [
        "lang:en",  # once, though it is its own primary language
        "lic:gpl-3.0-only",
        "lic:gcc-exception-3.1",
        "lic:licenseref-foo",
        f"mod:{pb.MODALITY_AUDIO}",
        "tag:chat",
        "tag:test",
    ]
    compute = compute_listing("c", license="", tags=["h100"])
    assert domain.facets(compute) == ["tag:h100"]


def test_a_language_filter_finds_what_facets_index() -> None:
    """A filter given in any case or alias matches the stored canonical tag."""
    stored = domain.check_listing(model_listing("m", languages=["zh-hans-cn", "iw"]))
    facets = domain.facets(stored)
    for language in ("zh", "ZH", "zh-Hans-CN", "zh-hans-cn", "he", "iw"):
        query = domain.listing_query(MEMBER, pb.ListingFilter(language=language))
        assert query is not None
        assert set(query.facets) <= set(facets), language


def test_search_fields_rank_name_and_slug_first() -> None:
    listing = pb.Listing(name="Orca", slug="orca-7b", tags=["a", "b"], provider="Lab", card="#")
    assert domain.search_fields(listing) == ("Orca orca-7b", "a b", "Lab", "#")


def test_the_basic_view_has_no_card() -> None:
    listing = model_listing("m")
    basic = domain.basic_view(listing)
    assert not basic.card
    basic.card = listing.card
    assert basic == listing
    assert listing.card  # the original keeps it


# -- access requests -----------------------------------------------------------------


def _restricted(state: int = PUBLISHED) -> pb.Listing:
    return _stored(dataset_listing("d", access_tier=pb.ACCESS_TIER_RESTRICTED), state=state)


def test_a_published_restricted_listing_takes_requests() -> None:
    domain.check_can_request(Viewer(org_id=GLOBEX), _restricted())


@pytest.mark.parametrize(
    ("viewer", "listing", "subject"),
    [
        (Viewer(org_id=GLOBEX), _restricted(DRAFT), "listing.state"),
        (Viewer(org_id=GLOBEX), _restricted(DEPRECATED), "listing.state"),
        (
            Viewer(org_id=GLOBEX),
            _stored(model_listing("m"), state=PUBLISHED),
            "listing.access_tier",
        ),
        (
            Viewer(org_id=GLOBEX),
            _stored(model_listing("m", access_tier=pb.ACCESS_TIER_VERIFIED), state=PUBLISHED),
            "listing.access_tier",
        ),
        (MEMBER, _restricted(), "listing.org_id"),
    ],
)
def test_requests_that_make_no_sense_are_refused(
    viewer: Viewer, listing: pb.Listing, subject: str
) -> None:
    with pytest.raises(FailedPrecondition) as error:
        domain.check_can_request(viewer, listing)
    assert list(_subjects(error)) == [subject]


@pytest.mark.parametrize(
    ("current", "target"), [(PENDING, ACCEPTED), (PENDING, REJECTED), (ACCEPTED, REVOKED)]
)
def test_allowed_decisions(current: int, target: int) -> None:
    domain.check_decision(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (REJECTED, ACCEPTED),
        (ACCEPTED, ACCEPTED),
        (REVOKED, ACCEPTED),
        (ACCEPTED, REJECTED),
        (REJECTED, REJECTED),
        (PENDING, REVOKED),
        (REJECTED, REVOKED),
        (REVOKED, REVOKED),
    ],
)
def test_refused_decisions_name_the_request_state(current: int, target: int) -> None:
    with pytest.raises(FailedPrecondition) as error:
        domain.check_decision(current, target)
    subjects = _subjects(error)
    assert list(subjects) == ["access_request.state"]
    state = pb.AccessRequestState.Name(current).removeprefix("ACCESS_REQUEST_STATE_").lower()  # type: ignore[arg-type]
    assert state in subjects["access_request.state"]


def test_not_found_says_what() -> None:
    assert domain.not_found().message == "listing not found"
    assert domain.not_found("access request").message == "access request not found"
