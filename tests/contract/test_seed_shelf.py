"""Contract tests of the catalog's seed shelf, ``aisuper_cli/seed/catalog.yaml``.

`aisuper up` creates every entry of the shelf with CatalogService.CreateListing and then
publishes it, so each entry must be a valid ``Listing`` in protobuf JSON form: it parses
with ``ParseDict`` (no unknown fields), passes the proto's protovalidate rules inside a
``CreateListingRequest``, fits its kind (attributes and prices), and has every field a
published listing needs. The shelf must also carry the items the product promises.

Licence expressions and language tags are checked with ``license_expression`` and
``langcodes`` where those packages are installed (the catalog service depends on them);
without them those two tests skip. Where the catalog service's own rules
(``aisuper_catalog.domain``) are importable, every entry is run through them as well.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import protovalidate
import pytest
import yaml
from google.protobuf.json_format import ParseDict

from aisuper.catalog.v1 import catalog_pb2 as pb

SHELF = "seed/catalog.yaml"
OUTPUT_ONLY = {
    "id",
    "org_id",
    "state",
    "revision",
    "create_time",
    "update_time",
    "publish_time",
    "deprecate_time",
    "deprecation_reason",
}
ATTRIBUTES_OF_KIND = {
    pb.LISTING_KIND_MODEL: "model",
    pb.LISTING_KIND_DATASET: "dataset",
    pb.LISTING_KIND_COMPUTE_PRODUCT: "compute_product",
}
PRICES_OF_KIND = {
    pb.LISTING_KIND_MODEL: {
        "input_per_million_tokens",
        "output_per_million_tokens",
        "cached_input_per_million_tokens",
    },
    pb.LISTING_KIND_DATASET: {"per_dataset_access"},
    pb.LISTING_KIND_COMPUTE_PRODUCT: {"per_gpu_hour"},
}
LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.-]+")
MAX_CARD_BYTES = 64 * 1024


@functools.cache
def shelf_text() -> str:
    return resources.files("aisuper_cli").joinpath(SHELF).read_text(encoding="utf-8")


@functools.cache
def entries() -> tuple[dict[str, Any], ...]:
    document = yaml.safe_load(shelf_text())
    assert isinstance(document, dict), "the shelf is a mapping with a `listings` key"
    assert set(document) == {"listings"}, f"unexpected top-level keys: {sorted(document)}"
    listings = document["listings"]
    assert isinstance(listings, list)
    assert listings, "the shelf is empty"
    for entry in listings:
        assert isinstance(entry, dict), f"not a mapping: {entry!r}"
    return tuple(listings)


def parse(entry: dict[str, Any]) -> pb.Listing:
    listing = pb.Listing()
    ParseDict(entry, listing, ignore_unknown_fields=False)
    return listing


@functools.cache
def listings() -> tuple[pb.Listing, ...]:
    return tuple(parse(entry) for entry in entries())


def slug_of(entry: dict[str, Any]) -> str:
    return str(entry.get("slug", "?"))


ENTRIES = entries()
IDS = [slug_of(entry) for entry in ENTRIES]


def test_shelf_resolves_as_package_data() -> None:
    resource = resources.files("aisuper_cli").joinpath(SHELF)
    assert resource.is_file(), f"{SHELF} is not packaged with aisuper_cli"
    assert shelf_text().startswith("#"), "the shelf opens with its header comment"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_is_a_valid_new_listing(entry: dict[str, Any]) -> None:
    leaked = OUTPUT_ONLY & set(entry)
    assert not leaked, f"output-only fields in the seed: {sorted(leaked)}"
    listing = parse(entry)
    protovalidate.validate(pb.CreateListingRequest(listing=listing))
    assert listing.kind != pb.LISTING_KIND_UNSPECIFIED
    assert listing.slug
    assert listing.name.strip()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_attributes_and_prices_fit_the_kind(entry: dict[str, Any]) -> None:
    listing = parse(entry)
    assert listing.WhichOneof("attributes") == ATTRIBUTES_OF_KIND[listing.kind]
    wrong = [
        field.name
        for field, value in listing.prices.ListFields()
        if value and field.name not in PRICES_OF_KIND[listing.kind]
    ]
    assert not wrong, f"prices that do not fit a {pb.ListingKind.Name(listing.kind)}: {wrong}"
    if listing.kind == pb.LISTING_KIND_MODEL:
        prices = listing.prices
        assert prices.input_per_million_tokens > 0, "a model on the shelf has an input price"
        # Zero means free: a cache-hit price, where set, is never above the input price.
        assert prices.cached_input_per_million_tokens <= prices.input_per_million_tokens
        if pb.CAPABILITY_EMBEDDINGS not in listing.model.capabilities:
            assert prices.output_per_million_tokens > 0
    if listing.kind == pb.LISTING_KIND_COMPUTE_PRODUCT:
        assert listing.prices.per_gpu_hour > 0, "compute is sold by the GPU-hour"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_names_its_sources(entry: dict[str, Any]) -> None:
    listing = parse(entry)
    assert listing.source_urls, "every fact needs a source"
    for url in listing.source_urls:
        assert url.startswith("https://"), url
    assert len(set(listing.source_urls)) == len(listing.source_urls), "duplicate source URL"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_card_is_a_real_card(entry: dict[str, Any]) -> None:
    card = parse(entry).card
    assert len(card.encode("utf-8")) < MAX_CARD_BYTES
    assert "\x00" not in card
    lines = [line for line in card.splitlines() if line.strip()]
    assert 5 <= len(lines) <= 25, f"a card has 5-25 lines of description, not {len(lines)}"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_can_be_published(entry: dict[str, Any]) -> None:
    """What PublishListing asks of a listing, so that `aisuper up` can publish the shelf."""
    listing = parse(entry)
    for name in ("name", "provider", "version", "card", "license"):
        assert getattr(listing, name).strip(), f"{name} is required to publish"
    assert listing.access_tier != pb.ACCESS_TIER_UNSPECIFIED
    if listing.kind in (pb.LISTING_KIND_MODEL, pb.LISTING_KIND_DATASET):
        assert listing.languages, "models and data sets name their languages"
    if listing.kind == pb.LISTING_KIND_MODEL:
        model = listing.model
        assert model.family.strip()
        assert model.parameter_count > 0
        assert 0 <= model.active_parameter_count < model.parameter_count
        assert model.context_length > 0
        assert model.input_modalities
        assert model.capabilities, "a model is served on at least one route"
        if pb.CAPABILITY_EMBEDDINGS in model.capabilities:
            assert model.embedding_dimensions > 0
        else:
            assert model.output_modalities
    elif listing.kind == pb.LISTING_KIND_DATASET:
        data = listing.dataset
        assert data.format.strip()
        assert data.modalities
        assert data.provenance.strip()
        assert data.collection_method != pb.COLLECTION_METHOD_UNSPECIFIED
        assert data.update_cadence != pb.UPDATE_CADENCE_UNSPECIFIED
        assert data.token_count > 0 or data.byte_count > 0, "a corpus states its size"
    else:
        product = listing.compute_product
        assert product.gpu_type.strip()
        assert product.gpu_memory_gib > 0
        assert product.region.strip()
        assert product.vendor.strip()
        assert product.interconnect.strip()


def test_slugs_are_unique() -> None:
    slugs = [listing.slug for listing in listings()]
    duplicates = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    assert not duplicates, f"duplicate slugs: {duplicates}"


def test_shelf_has_the_promised_items() -> None:
    by_kind: dict[int, list[str]] = {kind: [] for kind in ATTRIBUTES_OF_KIND}
    for listing in listings():
        by_kind[listing.kind].append(listing.slug)
    models = by_kind[pb.LISTING_KIND_MODEL]
    datasets = by_kind[pb.LISTING_KIND_DATASET]
    compute = by_kind[pb.LISTING_KIND_COMPUTE_PRODUCT]

    assert any(slug.startswith("deepseek-v3") for slug in models)
    assert "deepseek-r1" in models
    for size in ("1.5b", "7b", "14b", "32b"):
        assert f"deepseek-r1-distill-qwen-{size}" in models
    qwen_instruct = [s for s in models if s.startswith("qwen2.5-") and s.endswith("-instruct")]
    assert len(qwen_instruct) >= 2, qwen_instruct
    assert "bge-m3" in models
    assert any(slug.startswith("wanjuan") for slug in datasets)
    for gpu in ("h200", "h100", "ascend-910b"):
        assert any(gpu in slug for slug in compute), f"no {gpu} compute product"


def test_embedding_model_is_served_as_embeddings() -> None:
    (bge,) = [listing for listing in listings() if listing.slug == "bge-m3"]
    assert list(bge.model.capabilities) == [pb.CAPABILITY_EMBEDDINGS]
    assert bge.model.embedding_dimensions == 1024
    assert bge.model.context_length == 8192
    assert bge.license == "MIT"


def test_gated_access_has_something_to_gate() -> None:
    tiers = {listing.slug: listing.access_tier for listing in listings()}
    restricted = [slug for slug, tier in tiers.items() if tier == pb.ACCESS_TIER_RESTRICTED]
    assert restricted, "no restricted listing: the gated-access flow has nothing to gate"
    restricted_datasets = [
        listing.slug
        for listing in listings()
        if listing.kind == pb.LISTING_KIND_DATASET
        and listing.access_tier == pb.ACCESS_TIER_RESTRICTED
    ]
    assert restricted_datasets, "no restricted data set"
    assert pb.ACCESS_TIER_OPEN in tiers.values(), "no listing is open to everyone"


def test_license_expressions_are_spdx() -> None:
    license_expression = pytest.importorskip(
        "license_expression", reason="license-expression is not installed"
    )
    licensing = license_expression.get_spdx_licensing()
    for listing in listings():
        info = licensing.validate(listing.license, strict=True)
        unknown = [s for s in info.invalid_symbols if not LICENSE_REF.fullmatch(s)]
        other = [e for e in info.errors if not e.startswith("Unknown license key")]
        assert not unknown, f"{listing.slug}: unknown SPDX ids {unknown}"
        assert not other, f"{listing.slug}: {other}"


def test_language_tags_are_bcp47() -> None:
    langcodes = pytest.importorskip("langcodes", reason="langcodes is not installed")
    for listing in listings():
        invalid = [tag for tag in listing.languages if not langcodes.tag_is_valid(tag)]
        assert not invalid, f"{listing.slug}: not BCP-47: {invalid}"
        canonical = [langcodes.standardize_tag(tag) for tag in listing.languages]
        assert len(set(canonical)) == len(canonical), f"{listing.slug}: duplicate languages"


def test_catalog_domain_accepts_and_would_publish_every_entry() -> None:
    domain = pytest.importorskip(
        "aisuper_catalog.domain", reason="the catalog service is not installed here"
    )
    for listing in listings():
        checked = domain.check_new(listing)
        assert not domain.publish_gaps(checked), listing.slug
