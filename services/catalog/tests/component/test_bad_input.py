"""Missing, malformed, oversized and hostile input, for every catalog RPC.

Each case must be refused with the right status, naming the offending field
(`google.rpc.BadRequest`) or the unmet rule (`google.rpc.PreconditionFailure`);
must leave every stored listing and access request as it was; and must leave
the service serving. Cases run in tables against one catalog per test: each
test builds the same small shelf (`World`) first.
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
from catalog_harness import Catalog, Org, compute_listing, dataset_listing, model_listing
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.identity.v1 import identity_pb2
from aisuper.platform import pagination
from aisuper.platform.grpc_client import bearer
from aisuper.platform.grpc_errors import bad_request_of, precondition_failures_of

Metadata = tuple[tuple[str, str], ...]
Code = grpc.StatusCode

SERVICE = pb.DESCRIPTOR.services_by_name["CatalogService"]
PUBLIC_RPCS = {"GetListing", "ListListings", "SearchListings"}
MISSING_LISTING = "lst_" + "0" * 26
MISSING_REQUEST = "acr_" + "0" * 26
MISSING_ORG = "org_" + "0" * 26
TEN_KIB = 10 * 1024
INT64_MIN = -(2**63)
INT32_MIN = -(2**31)
PURPOSE = "Evaluating retrieval quality on Chinese legal text."


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- the shelf every test starts from ------------------------------------------------


@dataclass
class World:
    acme: Org  # manages every listing below but one
    globex: Org  # asks for access to acme's corpora
    initech: Org  # a bystander
    operator: Org
    developer: str  # an acme key with the developer role
    viewer: str  # a globex key with the viewer role
    draft: pb.Listing  # acme's complete model, not yet published
    bare: pb.Listing  # acme's model with kind, slug and name only
    corpus_draft: pb.Listing  # acme's data set, not yet published
    orca: pb.Listing  # acme's published open model
    retired: pb.Listing  # acme's deprecated open model
    corpora: list[pb.Listing]  # acme's published restricted data sets
    globex_draft: pb.Listing  # globex's compute product, not yet published
    pending: pb.AccessRequest  # globex on corpora[0]
    accepted: pb.AccessRequest  # globex on corpora[1]
    rejected: pb.AccessRequest  # globex on corpora[2]


async def _world(catalog: Catalog) -> World:
    stub = catalog.stub
    acme = await catalog.org("Acme Robotics")
    globex = await catalog.org("Globex Corporation")
    initech = await catalog.org("Initech")
    developer = await catalog.member_key(acme, identity_pb2.ROLE_DEVELOPER)
    viewer = await catalog.member_key(globex, identity_pb2.ROLE_VIEWER)
    draft = await catalog.create(acme, model_listing("acme-draft", name="Draft Model"))
    bare = await catalog.create(
        acme, pb.Listing(kind=pb.LISTING_KIND_MODEL, slug="acme-bare", name="Bare Model")
    )
    corpus_draft = await catalog.create(acme, dataset_listing("acme-corpus-draft"))
    orca = await catalog.published(
        acme,
        model_listing(
            "acme-orca",
            name="Orca Chat",
            provider="Acme Lab",
            card="# Orca Chat\n\nAnswers questions in English and Chinese.",
            tags=["chat", "assistant"],
        ),
    )
    retired = await catalog.published(
        acme, model_listing("acme-retired", name="Old Whale", card="# Old Whale", tags=["legacy"])
    )
    retired = (
        await stub.DeprecateListing(
            pb.DeprecateListingRequest(listing_id=retired.id, reason="superseded"),
            metadata=acme.auth,
        )
    ).listing
    corpora = [
        await catalog.published(
            acme,
            dataset_listing(
                f"acme-corpus-{label}",
                name=name,
                card=f"# {label}\n\nLegal text.",
                tags=["legal"],
                access_tier=pb.ACCESS_TIER_RESTRICTED,
            ),
        )
        for label, name in [
            ("alpha", "深度求索语料 Alpha"),
            ("beta", "Corpus Beta"),
            ("gamma", "Corpus Gamma"),
        ]
    ]
    globex_draft = await catalog.create(globex, compute_listing("globex-gpu"))
    requested = [
        (
            await stub.RequestAccess(
                pb.RequestAccessRequest(listing_id=corpus.id, purpose=PURPOSE),
                metadata=globex.auth,
            )
        ).access_request
        for corpus in corpora
    ]
    accepted = (
        await stub.ApproveAccessRequest(
            pb.ApproveAccessRequestRequest(access_request_id=requested[1].id, reason="ok"),
            metadata=acme.auth,
        )
    ).access_request
    rejected = (
        await stub.RejectAccessRequest(
            pb.RejectAccessRequestRequest(access_request_id=requested[2].id, reason="no"),
            metadata=acme.auth,
        )
    ).access_request
    return World(
        acme=acme,
        globex=globex,
        initech=initech,
        operator=catalog.operator,
        developer=developer,
        viewer=viewer,
        draft=draft,
        bare=bare,
        corpus_draft=corpus_draft,
        orca=orca,
        retired=retired,
        corpora=corpora,
        globex_draft=globex_draft,
        pending=requested[0],
        accepted=accepted,
        rejected=rejected,
    )


async def _snapshot(catalog: Catalog) -> dict[str, Message]:
    """Every listing (FULL, latest revision) and access request by id, read as the operator."""
    operator = catalog.operator.auth
    seen: dict[str, Message] = {}
    for state in (pb.LISTING_STATE_DRAFT, pb.LISTING_STATE_PUBLISHED, pb.LISTING_STATE_DEPRECATED):
        page = await catalog.stub.ListListings(
            pb.ListListingsRequest(
                filter=pb.ListingFilter(state=state),
                page_size=1000,
                view=pb.LISTING_VIEW_FULL,
            ),
            metadata=operator,
        )
        assert not page.next_page_token
        seen.update((listing.id, listing) for listing in page.listings)
    requests = await catalog.stub.ListAccessRequests(
        pb.ListAccessRequestsRequest(page_size=1000), metadata=operator
    )
    seen.update((request.id, request) for request in requests.access_requests)
    return seen


def _changes(before: dict[str, Message], after: dict[str, Message]) -> list[str]:
    """What differs between two snapshots, one line a listing or request."""

    def label(key: str, message: Message) -> str:
        return f"{key} ({getattr(message, 'slug', '') or getattr(message, 'state', '')})"

    found = [f"added {label(k, m)}" for k, m in after.items() if k not in before]
    found += [f"removed {label(k, m)}" for k, m in before.items() if k not in after]
    found += [f"changed {label(k, m)}" for k, m in after.items() if before.get(k, m) != m]
    return found


async def _still_serving(catalog: Catalog, world: World) -> None:
    """Reads answer as before (also full text), and a valid write works."""
    got = await catalog.stub.GetListing(pb.GetListingRequest(slug=world.orca.slug))
    assert got.listing == world.orca
    found = await catalog.stub.SearchListings(pb.SearchListingsRequest(query="Orca"))
    assert [listing.slug for listing in found.listings] == [world.orca.slug]
    listed = await catalog.stub.ListListings(pb.ListListingsRequest(), metadata=world.acme.auth)
    assert [listing.slug for listing in listed.listings] == [
        "acme-corpus-alpha",
        "acme-corpus-beta",
        "acme-corpus-gamma",
        "acme-orca",
    ]
    created = await catalog.create(world.acme, model_listing())
    assert created.state == pb.LISTING_STATE_DRAFT


# -- cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rpc: str
    request: Callable[[World], Message]
    code: grpc.StatusCode = Code.INVALID_ARGUMENT
    #: BadRequest fields (INVALID_ARGUMENT) or PreconditionFailure subjects
    #: (FAILED_PRECONDITION) the refusal must name; `x` also matches `x[3]`.
    names: tuple[str, ...] = ()
    #: Whose credential goes with the call (see `_metadata`).
    caller: str = "acme"


CREDENTIALS: dict[str, Metadata] = {
    "none": (),
    "garbage-word": bearer("garbage"),
    "garbage-api-key": bearer("ais_0000000000000000_notakeyatall"),
    "garbage-jwt": bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"),
    "basic-scheme": (("authorization", "Basic dXNlcjpwYXNz"),),
    "empty-bearer": (("authorization", "Bearer "),),
}


def _metadata(world: World, caller: str) -> Metadata:
    if caller in CREDENTIALS:
        return CREDENTIALS[caller]
    keys = {
        "acme": world.acme.key,
        "globex": world.globex.key,
        "initech": world.initech.key,
        "operator": world.operator.key,
        "developer": world.developer,
        "viewer": world.viewer,
    }
    return bearer(keys[caller])


def _with(listing: pb.Listing, **fields: Any) -> pb.Listing:
    """`listing` with `fields` set; a dotted name sets a nested field."""
    for path, value in fields.items():
        *parents, name = path.split(".")
        target: Any = listing
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, list):
            del getattr(target, name)[:]
            getattr(target, name).extend(value)
        elif isinstance(value, Message):
            getattr(target, name).CopyFrom(value)
        else:
            setattr(target, name, value)
    return listing


def _create(
    make: Callable[[], pb.Listing] = model_listing, /, **fields: Any
) -> Callable[[World], Message]:
    """A CreateListingRequest for `make()` with `fields` set (and `request_id`, if given)."""
    request_id = str(fields.pop("request_id", ""))

    def build(_: World) -> Message:
        return pb.CreateListingRequest(listing=_with(make(), **fields), request_id=request_id)

    return build


def _update(
    target: str = "draft",
    paths: tuple[str, ...] = ("name",),
    listing: pb.Listing | None = None,
    **request: Any,
) -> Callable[[World], Message]:
    def build(world: World) -> Message:
        return pb.UpdateListingRequest(
            listing_id=getattr(world, target).id,
            listing=listing if listing is not None else pb.Listing(name="Renamed"),
            update_mask=FieldMask(paths=list(paths)),
            **request,
        )

    return build


def _on(message: type[Message], target: str, **fields: Any) -> Callable[[World], Message]:
    """A request about one listing of the world (`target` names it)."""

    def build(world: World) -> Message:
        return message(listing_id=getattr(world, target).id, **fields)

    return build


def _on_corpus(index: int, **fields: Any) -> Callable[[World], Message]:
    def build(world: World) -> Message:
        return pb.RequestAccessRequest(listing_id=world.corpora[index].id, **fields)

    return build


def _decide(message: type[Message], target: str, **fields: Any) -> Callable[[World], Message]:
    """A request about one access request of the world (`target` names it)."""

    def build(world: World) -> Message:
        return message(access_request_id=getattr(world, target).id, **fields)

    return build


def _fixed(message: Message) -> Callable[[World], Message]:
    return lambda _: message


BAD_LISTING_IDS = {
    "empty": "",
    "no-prefix": "0" * 26,
    "upper-prefix": "LST_" + "0" * 26,
    "upper-ulid": "lst_" + "A" * 26,
    "too-long": MISSING_LISTING + "0",
    "too-short": MISSING_LISTING[:-1],
    "sql": "lst_' OR 1=1 --",
    "org-id": MISSING_ORG,
    "request-id": MISSING_REQUEST,
    "nul": MISSING_LISTING[:-1] + "\x00",
    "newline": MISSING_LISTING + "\n",
    "cyrillic-s": "l\u0455t_" + "0" * 26,
    "ten-kib": "lst_" + "0" * TEN_KIB,
}
BAD_REQUEST_IDS = {
    "empty": "",
    "listing-id": MISSING_LISTING,
    "upper": "ACR_" + "0" * 26,
    "sql": "acr_' OR '1'='1",
    "nul": MISSING_REQUEST[:-1] + "\x00",
    "ten-kib": "acr_" + "0" * TEN_KIB,
}
BAD_PAGE_TOKENS = {
    "bangs": "!!!",
    "random-b64": b64(bytes(range(7, 250, 5))),
    "b64-not-json": b64(b"definitely not json"),
    "b64-int-after": b64(json.dumps({"after": 5}).encode()),
    "b64-null-after": b64(json.dumps({"after": None}).encode()),
    "b64-list-after": b64(json.dumps({"after": ["acme-orca"]}).encode()),
    "b64-object-after": b64(json.dumps({"after": {"$gt": ""}}).encode()),
    "b64-no-after": b64(json.dumps({"before": "x"}).encode()),
    "b64-list": b64(json.dumps(["after", "x"]).encode()),
    "b64-string": b64(json.dumps("after").encode()),
    "b64-not-utf8": b64(b"\xff\xfe\xfd{"),
    "b64-nested": b64(b"[" * 300 + b"]" * 300),
    "b64-sql-after": b64(json.dumps({"after": "x' OR 1=1 --"}).encode()),
    "b64-nul-after": b64(json.dumps({"after": "\u0000"}).encode()),
    "b64-empty-after": b64(json.dumps({"after": ""}).encode()),
    "b64-long-after": b64(json.dumps({"after": "a" * 129}).encode()),
    "b64-other-query": b64(json.dumps({"after": "acme-orca", "q": "0" * 16}).encode()),
    "oversized": "a" * 513,
}


def _create_cases() -> list[Case]:
    cases = [
        Case("no-listing", "CreateListing", _fixed(pb.CreateListingRequest()), names=("listing",)),
        Case("kind-missing", "CreateListing", _create(kind=0), names=("listing.kind",)),
        Case("slug-missing", "CreateListing", _create(slug=""), names=("listing.slug",)),
        Case("name-missing", "CreateListing", _create(name=""), names=("listing.name",)),
        Case("name-blank", "CreateListing", _create(name="   "), names=("listing.name",)),
        Case(
            "kind-slug-name-missing",
            "CreateListing",
            _create(kind=0, slug="", name=""),
            names=("listing.kind", "listing.slug", "listing.name"),
        ),
        Case("kind-99", "CreateListing", _create(kind=99), names=("listing.kind",)),
        Case("kind-negative", "CreateListing", _create(kind=-1), names=("listing.kind",)),
        Case("tier-99", "CreateListing", _create(access_tier=99), names=("listing.access_tier",)),
        Case(
            "modality-99",
            "CreateListing",
            _create(**{"model.input_modalities": [99]}),
            names=("listing.model.input_modalities",),
        ),
        Case(
            "modality-duplicate",
            "CreateListing",
            _create(**{"model.input_modalities": [pb.MODALITY_TEXT, pb.MODALITY_TEXT]}),
            names=("listing.model.input_modalities",),
        ),
        Case(
            "capability-unspecified",
            "CreateListing",
            _create(**{"model.capabilities": [pb.CAPABILITY_UNSPECIFIED]}),
            names=("listing.model.capabilities",),
        ),
        Case(
            "collection-method-99",
            "CreateListing",
            _create(dataset_listing, **{"dataset.collection_method": 99}),
            names=("listing.dataset.collection_method",),
        ),
    ]
    for label, slug in {
        "space": "Has Space",
        "upper": "UPPER",
        "leading-dash": "-lead",
        "trailing-dash": "trail-",
        "leading-dot": ".hidden",
        "underscore-lead": "_under",
        "101-chars": "a" * 101,
        "ten-kib": "a" * TEN_KIB,
        "non-ascii": "m\u00fcnchen",
        "slash": "a/b",
        "path": "../etc/passwd",
        "nul": "a\x00b",
        "newline": "slug\n",
        "sql": "x'; DROP TABLE listings; --",
        "percent": "a%20b",
    }.items():
        cases.append(
            Case(f"slug-{label}", "CreateListing", _create(slug=slug), names=("listing.slug",))
        )
    for label, name in {
        "201-chars": "n" * 201,
        "ten-kib": "n" * TEN_KIB,
        "nul": "Orca\x00Chat",
        "newline": "Orca\nChat",
        "tab": "Orca\tChat",
        "escape-seq": "Orca\x1b[31mChat",
        "del": "Orca\x7fChat",
        "c1-control": "Orca\x85Chat",
    }.items():
        cases.append(
            Case(f"name-{label}", "CreateListing", _create(name=name), names=("listing.name",))
        )
    for path, value in {
        "provider": "Acme\x00Lab",
        "version": "v" * 65,
        "model.family": "qwen\x00",
        "model.base_model": "b" * 201,
        "model.parameter_count": -1,
        "model.context_length": 100_000_001,
        "model.embedding_dimensions": 65_537,
        "model.active_parameter_count": 100_000_000_000_001,
    }.items():
        cases.append(
            Case(
                f"{path.replace('.', '-')}-invalid",
                "CreateListing",
                _create(**{path: value}),
                names=(f"listing.{path}",),
            )
        )
    for path, value in {
        "dataset.token_count": -1,
        "dataset.byte_count": INT64_MIN,
        "dataset.format": "jsonl\n",
        "dataset.provenance": "p" * 4001,
    }.items():
        cases.append(
            Case(
                f"{path.replace('.', '-')}-invalid",
                "CreateListing",
                _create(dataset_listing, **{path: value}),
                names=(f"listing.{path}",),
            )
        )
    for path, value in {
        "compute_product.gpu_memory_gib": 4097,
        "compute_product.region": "eu\nwest",
        "compute_product.gpu_type": "H100\x00",
    }.items():
        cases.append(
            Case(
                f"{path.replace('.', '-')}-invalid",
                "CreateListing",
                _create(compute_listing, **{path: value}),
                names=(f"listing.{path}",),
            )
        )
    for label, card in {
        "65537-bytes": "x" * 65_537,
        "65538-bytes-in-two-byte-chars": "\u00e9" * 32_769,
        "nul": "# Card\x00hidden",
    }.items():
        cases.append(
            Case(f"card-{label}", "CreateListing", _create(card=card), names=("listing.card",))
        )
    for label, license in {
        "unknown-id": "NotALicense",
        "unknown-in-expression": "MIT OR FooBar",
        "lowercase-ref": "licenseref-foo",
        "broken-syntax": "MIT AND (",
        "unbalanced": "(MIT",
        "two-ids": "MIT MIT",
        "with-licence": "MIT WITH MIT",
        "blank": "   ",
        "newline": "MIT\nOR Apache-2.0",
        "nul": "MIT\x00",
        "501-chars": "MIT OR " * 71 + "MIT0",
    }.items():
        cases.append(
            Case(
                f"license-{label}",
                "CreateListing",
                _create(license=license),
                names=("listing.license",),
            )
        )
    for label, (languages, names) in {
        "xx": (["xx"], ("listing.languages[0]",)),
        "klingon": (["klingon"], ("listing.languages[0]",)),
        "not-a-tag": (["en", "not a tag!"], ("listing.languages[1]",)),
        "empty": ([""], ("listing.languages[0]",)),
        "underscore": (["en_US"], ("listing.languages[0]",)),
        "36-chars": (["a" * 36], ("listing.languages[0]",)),
        "trailing-dash": (["en-"], ("listing.languages[0]",)),
        "two-bad": (["en", "xx", "zz"], ("listing.languages[1]", "listing.languages[2]")),
        "201-items": (["en"] * 201, ("listing.languages",)),
    }.items():
        cases.append(
            Case(f"languages-{label}", "CreateListing", _create(languages=languages), names=names)
        )
    for label, tags in {
        "space": ["Bad Tag"],
        "upper": ["UPPER"],
        "leading-dash": ["-lead"],
        "41-chars": ["a" * 41],
        "empty": [""],
        "nul": ["ok\x00"],
        "33-tags": [f"t{i}" for i in range(33)],
        "duplicates": ["dup", "dup"],
    }.items():
        cases.append(
            Case(f"tags-{label}", "CreateListing", _create(tags=tags), names=("listing.tags",))
        )
    for label, (make, price, value) in {
        "negative-input": (model_listing, "input_per_million_tokens", -1),
        "negative-output": (model_listing, "output_per_million_tokens", -1_000_000),
        "int64-min-cached": (model_listing, "cached_input_per_million_tokens", INT64_MIN),
        "absurd-input": (model_listing, "input_per_million_tokens", 10**12 + 1),
        "int64-max-output": (model_listing, "output_per_million_tokens", 2**63 - 1),
        "negative-gpu-hour": (compute_listing, "per_gpu_hour", -1),
        "absurd-gpu-hour": (compute_listing, "per_gpu_hour", 10**15),
        "negative-access": (dataset_listing, "per_dataset_access", -5),
        "gpu-hour-on-model": (model_listing, "per_gpu_hour", 15_000_000),
        "access-on-model": (model_listing, "per_dataset_access", 1),
        "tokens-on-compute": (compute_listing, "input_per_million_tokens", 1),
        "gpu-hour-on-dataset": (dataset_listing, "per_gpu_hour", 1),
        "tokens-on-dataset": (dataset_listing, "output_per_million_tokens", 1),
    }.items():
        cases.append(
            Case(
                f"price-{label}",
                "CreateListing",
                _create(make, **{f"prices.{price}": value}),
                names=(f"listing.prices.{price}",),
            )
        )
    for label, (make, attributes) in {
        "dataset-on-model": (model_listing, pb.Listing(dataset=pb.DatasetAttributes(format="x"))),
        "compute-on-model": (
            model_listing,
            pb.Listing(compute_product=pb.ComputeProductAttributes(gpu_type="H100")),
        ),
        "model-on-dataset": (dataset_listing, pb.Listing(model=pb.ModelAttributes(family="x"))),
        "compute-on-dataset": (
            dataset_listing,
            pb.Listing(compute_product=pb.ComputeProductAttributes()),
        ),
        "model-on-compute": (compute_listing, pb.Listing(model=pb.ModelAttributes())),
    }.items():
        which = attributes.WhichOneof("attributes")
        assert which is not None
        cases.append(
            Case(
                f"attributes-{label}",
                "CreateListing",
                _create(make, **{which: getattr(attributes, which)}),
                names=(f"listing.{which}",),
            )
        )
    cases.append(
        Case(
            "every-violation-together",
            "CreateListing",
            _create(
                license="FooBar",
                languages=["en", "xx"],
                dataset=pb.DatasetAttributes(format="jsonl"),
                **{"prices.per_gpu_hour": 5},
            ),
            names=(
                "listing.dataset",
                "listing.prices.per_gpu_hour",
                "listing.license",
                "listing.languages[1]",
            ),
        )
    )
    for label, urls in {
        "not-a-url": ["not a url"],
        "relative": ["/relative/path"],
        "space-in-host": ["https://exa mple.org/"],
        "nul": ["https://example.org/\x00"],
        "newline": ["https://example.org/\nSet-Cookie: x"],
        "2001-chars": ["https://example.org/" + "a" * 1981],
        "17-urls": [f"https://example.org/{i}" for i in range(17)],
    }.items():
        cases.append(
            Case(
                f"source-urls-{label}",
                "CreateListing",
                _create(source_urls=urls),
                names=("listing.source_urls",),
            )
        )
    for label, request_id in {
        "space": "req 1",
        "129-chars": "r" * 129,
        "sql": "x'; DROP TABLE idempotency; --",
        "newline": "req-1\n",
        "nul": "req\x00",
    }.items():
        cases.append(
            Case(
                f"request-id-{label}",
                "CreateListing",
                _create(request_id=request_id),
                names=("request_id",),
            )
        )
    return [
        Case(f"create-{case.id}", case.rpc, case.request, case.code, case.names, case.caller)
        for case in cases
    ]


def _update_cases() -> list[Case]:
    cases: list[Case] = []
    for label, listing_id in BAD_LISTING_IDS.items():
        cases.append(
            Case(
                f"update-id-{label}",
                "UpdateListing",
                _fixed(
                    pb.UpdateListingRequest(
                        listing_id=listing_id,
                        listing=pb.Listing(name="x"),
                        update_mask=FieldMask(paths=["name"]),
                    )
                ),
                names=("listing_id",),
            )
        )
    cases += [
        Case(
            "update-no-listing",
            "UpdateListing",
            lambda w: pb.UpdateListingRequest(
                listing_id=w.draft.id, update_mask=FieldMask(paths=["name"])
            ),
            names=("listing",),
        ),
        Case(
            "update-no-mask",
            "UpdateListing",
            lambda w: pb.UpdateListingRequest(listing_id=w.draft.id, listing=pb.Listing(name="x")),
            names=("update_mask",),
        ),
        Case("update-empty-mask", "UpdateListing", _update(paths=()), names=("update_mask",)),
    ]
    for path in [
        "slug",
        "kind",
        "state",
        "id",
        "org_id",
        "revision",
        "create_time",
        "publish_time",
        "deprecation_reason",
    ]:
        cases.append(
            Case(
                f"update-immutable-{path}",
                "UpdateListing",
                _update(
                    paths=("name", path),
                    listing=pb.Listing(
                        name="x",
                        slug="hijacked",
                        kind=pb.LISTING_KIND_DATASET,
                        state=pb.LISTING_STATE_PUBLISHED,
                    ),
                ),
                names=("update_mask",),
            )
        )
    for label, path in {
        "nope": "nope",
        "empty": "",
        "capitalised": "Name",
        "model-nope": "model.nope",
        "prices-nope": "prices.nope",
        "name-sub-path": "name.first",
        "repeated-sub-path": "source_urls.x",
        "double-dot": "model..family",
        "too-deep": "model.family.x",
        "sql": "name; DROP TABLE listings",
        "200-chars": "n" * 200,
    }.items():
        cases.append(
            Case(
                f"update-unknown-path-{label}",
                "UpdateListing",
                _update(paths=(path,)),
                names=("update_mask",),
            )
        )
    refusals: dict[str, tuple[tuple[str, ...], pb.Listing, tuple[str, ...]]] = {
        "license-unknown": (("license",), pb.Listing(license="FooBar"), ("listing.license",)),
        "license-syntax": (("license",), pb.Listing(license="MIT AND ("), ("listing.license",)),
        "languages": (("languages",), pb.Listing(languages=["xx"]), ("listing.languages[0]",)),
        "dataset-on-model": (
            ("dataset",),
            pb.Listing(dataset=pb.DatasetAttributes(format="jsonl")),
            ("listing.dataset",),
        ),
        "gpu-hour-on-model": (
            ("prices.per_gpu_hour",),
            pb.Listing(prices=pb.Prices(per_gpu_hour=5)),
            ("listing.prices.per_gpu_hour",),
        ),
        "name-nul": (("name",), pb.Listing(name="x\x00"), ("listing.name",)),
        "card-too-big": (("card",), pb.Listing(card="x" * 65_537), ("listing.card",)),
        "tag-bad": (("tags",), pb.Listing(tags=["Bad Tag"]), ("listing.tags",)),
        "price-negative": (
            ("prices",),
            pb.Listing(prices=pb.Prices(input_per_million_tokens=-1)),
            ("listing.prices.input_per_million_tokens",),
        ),
        # Fields outside the mask are still validated: the request is malformed.
        "unmasked-slug-bad": (("name",), pb.Listing(name="x", slug="Bad Slug"), ("listing.slug",)),
    }
    for label, (paths, listing, names) in refusals.items():
        cases.append(
            Case(
                f"update-{label}",
                "UpdateListing",
                _update(paths=paths, listing=listing),
                names=names,
            )
        )
    cases += [
        Case(
            "update-model-on-dataset",
            "UpdateListing",
            _update(
                "corpus_draft",
                paths=("model.family",),
                listing=pb.Listing(model=pb.ModelAttributes(family="x")),
            ),
            names=("listing.model",),
        ),
        Case(
            "update-expected-revision-negative",
            "UpdateListing",
            _update(expected_revision=-1),
            names=("expected_revision",),
        ),
        Case(
            "update-expected-revision-stale-draft",
            "UpdateListing",
            _update(expected_revision=2),
            Code.ABORTED,
        ),
        Case(
            "update-expected-revision-stale-published",
            "UpdateListing",
            _update("orca", expected_revision=7),
            Code.ABORTED,
        ),
        Case(
            "update-deprecated",
            "UpdateListing",
            _update("retired"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "update-unknown-id",
            "UpdateListing",
            _fixed(
                pb.UpdateListingRequest(
                    listing_id=MISSING_LISTING,
                    listing=pb.Listing(name="x"),
                    update_mask=FieldMask(paths=["name"]),
                )
            ),
            Code.NOT_FOUND,
        ),
        Case(
            "update-other-orgs-draft",
            "UpdateListing",
            _update(),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "update-other-orgs-published",
            "UpdateListing",
            _update("orca"),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "update-as-developer",
            "UpdateListing",
            _update(),
            Code.PERMISSION_DENIED,
            caller="developer",
        ),
    ]
    losses: dict[str, tuple[tuple[str, ...], pb.Listing, tuple[str, ...]]] = {
        "card": (("card",), pb.Listing(), ("listing.card",)),
        "blank-card": (("card",), pb.Listing(card=" \n "), ("listing.card",)),
        "license": (("license",), pb.Listing(), ("listing.license",)),
        "access-tier": (("access_tier",), pb.Listing(), ("listing.access_tier",)),
        "languages": (("languages",), pb.Listing(), ("listing.languages",)),
        "model": (
            ("model",),
            pb.Listing(),
            ("listing.model", "listing.model.family", "listing.model.context_length"),
        ),
        "context-length": (
            ("model.context_length",),
            pb.Listing(model=pb.ModelAttributes()),
            ("listing.model.context_length",),
        ),
        "embeddings-without-dimensions": (
            ("model.capabilities",),
            pb.Listing(model=pb.ModelAttributes(capabilities=[pb.CAPABILITY_EMBEDDINGS])),
            ("listing.model.embedding_dimensions",),
        ),
    }
    for label, (paths, listing, names) in losses.items():
        cases.append(
            Case(
                f"update-published-loses-{label}",
                "UpdateListing",
                _update("orca", paths=paths, listing=listing),
                Code.FAILED_PRECONDITION,
                names,
            )
        )
    # A name is required of every listing, not only of published ones.
    for state in ("orca", "draft"):
        cases.append(
            Case(
                f"update-{state}-loses-name",
                "UpdateListing",
                _update(state, paths=("name",), listing=pb.Listing(name="  ")),
                Code.INVALID_ARGUMENT,
                ("listing.name",),
            )
        )
    return cases


def _lifecycle_cases() -> list[Case]:
    cases: list[Case] = []
    for label, listing_id in BAD_LISTING_IDS.items():
        cases += [
            Case(
                f"publish-id-{label}",
                "PublishListing",
                _fixed(pb.PublishListingRequest(listing_id=listing_id)),
                names=("listing_id",),
            ),
            Case(
                f"deprecate-id-{label}",
                "DeprecateListing",
                _fixed(pb.DeprecateListingRequest(listing_id=listing_id, reason="x")),
                names=("listing_id",),
            ),
        ]
    cases += [
        Case(
            "publish-unknown-id",
            "PublishListing",
            _fixed(pb.PublishListingRequest(listing_id=MISSING_LISTING)),
            Code.NOT_FOUND,
        ),
        Case(
            "publish-bare-draft",
            "PublishListing",
            _on(pb.PublishListingRequest, "bare"),
            Code.FAILED_PRECONDITION,
            ("listing.card", "listing.license", "listing.model", "listing.model.context_length"),
        ),
        Case(
            "publish-published",
            "PublishListing",
            _on(pb.PublishListingRequest, "orca"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "publish-deprecated",
            "PublishListing",
            _on(pb.PublishListingRequest, "retired"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "publish-other-orgs-draft",
            "PublishListing",
            _on(pb.PublishListingRequest, "draft"),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "publish-as-developer",
            "PublishListing",
            _on(pb.PublishListingRequest, "draft"),
            Code.PERMISSION_DENIED,
            caller="developer",
        ),
        Case(
            "deprecate-unknown-id",
            "DeprecateListing",
            _fixed(pb.DeprecateListingRequest(listing_id=MISSING_LISTING)),
            Code.NOT_FOUND,
        ),
        Case(
            "deprecate-draft",
            "DeprecateListing",
            _on(pb.DeprecateListingRequest, "draft"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "deprecate-bare-draft",
            "DeprecateListing",
            _on(pb.DeprecateListingRequest, "bare"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "deprecate-deprecated",
            "DeprecateListing",
            _on(pb.DeprecateListingRequest, "retired", reason="again"),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
        ),
        Case(
            "deprecate-other-orgs",
            "DeprecateListing",
            _on(pb.DeprecateListingRequest, "orca"),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "deprecate-as-developer",
            "DeprecateListing",
            _on(pb.DeprecateListingRequest, "orca"),
            Code.PERMISSION_DENIED,
            caller="developer",
        ),
    ]
    for label, reason in {
        "nul": "superseded\x00",
        "newline": "superseded\nby v2",
        "escape-seq": "\x1b[2J\x1b[H",
        "1001-chars": "r" * 1001,
        "ten-kib": "r" * TEN_KIB,
    }.items():
        cases.append(
            Case(
                f"deprecate-reason-{label}",
                "DeprecateListing",
                _on(pb.DeprecateListingRequest, "orca", reason=reason),
                names=("reason",),
            )
        )
    return cases


def _get_cases() -> list[Case]:
    cases = [
        Case(
            "get-neither-id-nor-slug",
            "GetListing",
            _fixed(pb.GetListingRequest()),
            names=("listing",),
        ),
        Case(
            "get-revision-negative",
            "GetListing",
            _on(pb.GetListingRequest, "orca", revision=-1),
            names=("revision",),
        ),
        Case(
            "get-revision-int32-min",
            "GetListing",
            _on(pb.GetListingRequest, "orca", revision=INT32_MIN),
            names=("revision",),
        ),
        Case(
            "get-view-99",
            "GetListing",
            _on(pb.GetListingRequest, "orca", view=99),
            names=("view",),
        ),
        Case(
            "get-revision-missing",
            "GetListing",
            _on(pb.GetListingRequest, "orca", revision=99),
            Code.NOT_FOUND,
        ),
        Case(
            "get-draft-revision-2",
            "GetListing",
            _on(pb.GetListingRequest, "draft", revision=2),
            Code.NOT_FOUND,
        ),
        Case(
            "get-unknown-id",
            "GetListing",
            _fixed(pb.GetListingRequest(listing_id=MISSING_LISTING)),
            Code.NOT_FOUND,
        ),
        Case(
            "get-unknown-slug",
            "GetListing",
            _fixed(pb.GetListingRequest(slug="no-such-listing")),
            Code.NOT_FOUND,
        ),
        Case(
            "get-other-orgs-draft",
            "GetListing",
            _on(pb.GetListingRequest, "draft"),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "get-draft-anonymously",
            "GetListing",
            _on(pb.GetListingRequest, "draft"),
            Code.NOT_FOUND,
            caller="none",
        ),
        Case(
            "get-restricted-anonymously",
            "GetListing",
            lambda w: pb.GetListingRequest(listing_id=w.corpora[0].id),
            Code.UNAUTHENTICATED,
            caller="none",
        ),
    ]
    for label, slug in {
        "empty": "",
        "space": "Has Space",
        "upper": "UPPER",
        "leading-dash": "-lead",
        "101-chars": "a" * 101,
        "nul": "acme-orca\x00",
        "sql": "x'; DROP TABLE listings; --",
        "wildcard": "acme-%",
    }.items():
        cases.append(
            Case(
                f"get-slug-{label}",
                "GetListing",
                _fixed(pb.GetListingRequest(slug=slug)),
                names=("slug",),
                caller="none",
            )
        )
    for label, listing_id in BAD_LISTING_IDS.items():
        if label == "empty":
            continue  # an empty id is a set oneof: the pattern refuses it below
        cases.append(
            Case(
                f"get-id-{label}",
                "GetListing",
                _fixed(pb.GetListingRequest(listing_id=listing_id)),
                names=("listing_id",),
            )
        )
    cases.append(
        Case(
            "get-id-empty",
            "GetListing",
            _fixed(pb.GetListingRequest(listing_id="")),
            names=("listing_id",),
        )
    )
    return cases


def _filter_cases(rpc: str, make: Callable[..., Message], max_page: int) -> list[Case]:
    prefix = "list" if rpc == "ListListings" else "search"
    cases: list[Case] = []
    bad_filters: dict[str, tuple[pb.ListingFilter, str]] = {
        "language-not-a-tag": (pb.ListingFilter(language="not a tag!"), "filter.language"),
        "language-xx": (pb.ListingFilter(language="xx"), "filter.language"),
        "language-klingon": (pb.ListingFilter(language="klingon"), "filter.language"),
        "language-underscore": (pb.ListingFilter(language="en_US"), "filter.language"),
        "language-36-chars": (pb.ListingFilter(language="a" * 36), "filter.language"),
        "language-nul": (pb.ListingFilter(language="en\x00"), "filter.language"),
        "tag-space": (pb.ListingFilter(tag="Bad Tag"), "filter.tag"),
        "tag-leading-dash": (pb.ListingFilter(tag="-x"), "filter.tag"),
        "tag-upper": (pb.ListingFilter(tag="UPPER"), "filter.tag"),
        "tag-41-chars": (pb.ListingFilter(tag="a" * 41), "filter.tag"),
        "org-id-short": (pb.ListingFilter(org_id="org_x"), "filter.org_id"),
        "org-id-sql": (pb.ListingFilter(org_id="org_' OR 1=1 --"), "filter.org_id"),
        "org-id-upper": (pb.ListingFilter(org_id=MISSING_ORG.upper()), "filter.org_id"),
        "org-id-listing-id": (pb.ListingFilter(org_id=MISSING_LISTING), "filter.org_id"),
        "license-expression": (pb.ListingFilter(license="MIT OR Apache-2.0"), "filter.license"),
        "license-quote": (pb.ListingFilter(license="MIT'"), "filter.license"),
        "license-101-chars": (pb.ListingFilter(license="a" * 101), "filter.license"),
        "kind-99": (pb.ListingFilter(kind=99), "filter.kind"),
        "state-99": (pb.ListingFilter(state=99), "filter.state"),
        "modality-99": (pb.ListingFilter(modality=99), "filter.modality"),
        "capability-negative": (pb.ListingFilter(capability=-1), "filter.capability"),
        "access-tier-99": (pb.ListingFilter(access_tier=99), "filter.access_tier"),
    }
    for label, (listing_filter, field) in bad_filters.items():
        for caller in ("acme", "none"):
            cases.append(
                Case(
                    f"{prefix}-filter-{label}-{caller}",
                    rpc,
                    _fixed(make(filter=listing_filter)),
                    names=(field,),
                    caller=caller,
                )
            )
    for label, size in {
        "negative": -1,
        "int32-min": INT32_MIN,
        "over-max": max_page + 1,
        "int32-max": 2**31 - 1,
    }.items():
        cases.append(
            Case(
                f"{prefix}-page-size-{label}",
                rpc,
                _fixed(make(page_size=size)),
                names=("page_size",),
            )
        )
    for label, token in BAD_PAGE_TOKENS.items():
        for caller in ("acme", "none"):
            cases.append(
                Case(
                    f"{prefix}-page-token-{label}-{caller}",
                    rpc,
                    _fixed(make(page_token=token)),
                    names=("page_token",),
                    caller=caller,
                )
            )
    cases.append(Case(f"{prefix}-view-99", rpc, _fixed(make(view=99)), names=("view",)))
    return cases


def _read_cases() -> list[Case]:
    cases = _get_cases()
    cases += _filter_cases("ListListings", pb.ListListingsRequest, 1000)
    cases += _filter_cases("SearchListings", pb.SearchListingsRequest, 100)
    cases += [
        Case(
            "search-query-16385-bytes",
            "SearchListings",
            _fixed(pb.SearchListingsRequest(query="x" * 16_385)),
            names=("query",),
        ),
        Case(
            "search-query-16386-bytes-of-two-byte-chars",
            "SearchListings",
            _fixed(pb.SearchListingsRequest(query="\u00e9" * 8_193)),
            names=("query",),
            caller="none",
        ),
    ]
    return cases


def _access_cases() -> list[Case]:
    cases: list[Case] = []
    for label, listing_id in BAD_LISTING_IDS.items():
        cases.append(
            Case(
                f"request-access-id-{label}",
                "RequestAccess",
                _fixed(pb.RequestAccessRequest(listing_id=listing_id, purpose=PURPOSE)),
                names=("listing_id",),
                caller="globex",
            )
        )
    for label, purpose in {
        "empty": "",
        "nine-chars": "too short",
        "nine-two-byte-chars": "\u00e9" * 9,
        "4001-chars": "p" * 4001,
        "nul": "We will\x00train on it.",
    }.items():
        cases.append(
            Case(
                f"request-access-purpose-{label}",
                "RequestAccess",
                _on_corpus(2, purpose=purpose),
                names=("purpose",),
                caller="globex",
            )
        )
    cases += [
        Case(
            "request-access-request-id-bad",
            "RequestAccess",
            _on_corpus(2, purpose=PURPOSE, request_id="a b"),
            names=("request_id",),
            caller="globex",
        ),
        Case(
            "request-access-open-listing",
            "RequestAccess",
            _on(pb.RequestAccessRequest, "orca", purpose=PURPOSE),
            Code.FAILED_PRECONDITION,
            ("listing.access_tier",),
            caller="globex",
        ),
        Case(
            "request-access-deprecated-listing",
            "RequestAccess",
            _on(pb.RequestAccessRequest, "retired", purpose=PURPOSE),
            Code.FAILED_PRECONDITION,
            ("listing.state",),
            caller="globex",
        ),
        Case(
            "request-access-own-listing",
            "RequestAccess",
            _on_corpus(2, purpose=PURPOSE),
            Code.FAILED_PRECONDITION,
            ("listing.org_id",),
            caller="acme",
        ),
        Case(
            "request-access-while-pending",
            "RequestAccess",
            _on_corpus(0, purpose=PURPOSE),
            Code.ALREADY_EXISTS,
            caller="globex",
        ),
        Case(
            "request-access-while-accepted",
            "RequestAccess",
            _on_corpus(1, purpose=PURPOSE),
            Code.ALREADY_EXISTS,
            caller="globex",
        ),
        Case(
            "request-access-other-orgs-draft",
            "RequestAccess",
            _on(pb.RequestAccessRequest, "corpus_draft", purpose=PURPOSE),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "request-access-unknown-listing",
            "RequestAccess",
            _fixed(pb.RequestAccessRequest(listing_id=MISSING_LISTING, purpose=PURPOSE)),
            Code.NOT_FOUND,
            caller="globex",
        ),
        Case(
            "request-access-as-viewer",
            "RequestAccess",
            _on_corpus(2, purpose=PURPOSE),
            Code.PERMISSION_DENIED,
            caller="viewer",
        ),
    ]
    decisions: dict[str, tuple[type[Message], str]] = {
        "approve": (pb.ApproveAccessRequestRequest, "ApproveAccessRequest"),
        "reject": (pb.RejectAccessRequestRequest, "RejectAccessRequest"),
        "revoke": (pb.RevokeAccessRequest, "RevokeAccess"),
        "get-request": (pb.GetAccessRequestRequest, "GetAccessRequest"),
    }
    for verb, (message, rpc) in decisions.items():
        extra = {} if verb == "get-request" else {"reason": "because"}
        for label, request_id in BAD_REQUEST_IDS.items():
            cases.append(
                Case(
                    f"{verb}-id-{label}",
                    rpc,
                    _fixed(message(access_request_id=request_id, **extra)),
                    names=("access_request_id",),
                )
            )
        cases.append(
            Case(
                f"{verb}-unknown-id",
                rpc,
                _fixed(message(access_request_id=MISSING_REQUEST, **extra)),
                Code.NOT_FOUND,
            )
        )
        cases.append(
            Case(
                f"{verb}-as-bystander",
                rpc,
                _decide(message, "pending", **extra),
                Code.NOT_FOUND,
                caller="initech",
            )
        )
    for verb, (message, rpc) in list(decisions.items())[:3]:
        for label, reason in {
            "nul": "no\x00",
            "newline": "no\nreally",
            "escape-seq": "\x1b[2J",
            "1001-chars": "r" * 1001,
        }.items():
            target = "accepted" if verb == "revoke" else "pending"
            cases.append(
                Case(
                    f"{verb}-reason-{label}",
                    rpc,
                    _decide(message, target, reason=reason),
                    names=("reason",),
                )
            )
        target = "accepted" if verb == "revoke" else "pending"
        cases += [
            Case(
                f"{verb}-by-requester",
                rpc,
                _decide(message, target, reason="mine"),
                Code.PERMISSION_DENIED,
                caller="globex",
            ),
            Case(
                f"{verb}-as-developer",
                rpc,
                _decide(message, target, reason="dev"),
                Code.PERMISSION_DENIED,
                caller="developer",
            ),
        ]
    for verb, target in [
        ("approve", "rejected"),
        ("approve", "accepted"),
        ("reject", "accepted"),
        ("reject", "rejected"),
        ("revoke", "pending"),
        ("revoke", "rejected"),
    ]:
        message, rpc = decisions[verb]
        cases.append(
            Case(
                f"{verb}-{target}",
                rpc,
                _decide(message, target, reason="again"),
                Code.FAILED_PRECONDITION,
                ("access_request.state",),
            )
        )
    cases += [
        Case(
            "reject-without-reason",
            "RejectAccessRequest",
            _decide(pb.RejectAccessRequestRequest, "pending"),
            names=("reason",),
        ),
        Case(
            "revoke-without-reason",
            "RevokeAccess",
            _decide(pb.RevokeAccessRequest, "accepted"),
            names=("reason",),
        ),
    ]
    for label, listing_id in BAD_LISTING_IDS.items():
        if label == "empty":
            continue  # empty means every listing the caller may see requests of
        cases.append(
            Case(
                f"list-requests-listing-id-{label}",
                "ListAccessRequests",
                _fixed(pb.ListAccessRequestsRequest(listing_id=listing_id)),
                names=("listing_id",),
            )
        )
    cases += [
        Case(
            "list-requests-state-99",
            "ListAccessRequests",
            _fixed(pb.ListAccessRequestsRequest(state=99)),
            names=("state",),
        ),
        Case(
            "list-requests-page-size-negative",
            "ListAccessRequests",
            _fixed(pb.ListAccessRequestsRequest(page_size=-1)),
            names=("page_size",),
        ),
        Case(
            "list-requests-page-size-1001",
            "ListAccessRequests",
            _fixed(pb.ListAccessRequestsRequest(page_size=1001)),
            names=("page_size",),
        ),
    ]
    for label, token in BAD_PAGE_TOKENS.items():
        cases.append(
            Case(
                f"list-requests-page-token-{label}",
                "ListAccessRequests",
                _fixed(pb.ListAccessRequestsRequest(page_token=token)),
                names=("page_token",),
            )
        )
    return cases


def _valid_requests() -> dict[str, Callable[[World], Message]]:
    """One request per RPC that its rightful caller could make."""
    return {
        "CreateListing": _create(),
        "UpdateListing": _update(),
        "PublishListing": _on(pb.PublishListingRequest, "draft"),
        "DeprecateListing": _on(pb.DeprecateListingRequest, "orca", reason="x"),
        "GetListing": _on(pb.GetListingRequest, "orca"),
        "ListListings": _fixed(pb.ListListingsRequest()),
        "SearchListings": _fixed(pb.SearchListingsRequest(query="orca")),
        "RequestAccess": _on_corpus(2, purpose=PURPOSE),
        "GetAccessRequest": _decide(pb.GetAccessRequestRequest, "pending"),
        "ListAccessRequests": _fixed(pb.ListAccessRequestsRequest()),
        "ApproveAccessRequest": _decide(pb.ApproveAccessRequestRequest, "pending"),
        "RejectAccessRequest": _decide(pb.RejectAccessRequestRequest, "pending", reason="no"),
        "RevokeAccess": _decide(pb.RevokeAccessRequest, "accepted", reason="no"),
    }


def _credential_cases() -> list[Case]:
    cases: list[Case] = []
    for rpc, request in _valid_requests().items():
        for caller in CREDENTIALS:
            if caller == "none" and rpc in PUBLIC_RPCS:
                continue  # open-tier reads need no credential
            cases.append(
                Case(
                    f"{rpc}-credential-{caller}", rpc, request, Code.UNAUTHENTICATED, caller=caller
                )
            )
    cases.append(
        Case(
            "CreateListing-as-developer",
            "CreateListing",
            _create(),
            Code.PERMISSION_DENIED,
            caller="developer",
        )
    )
    cases.append(
        Case(
            "CreateListing-as-viewer",
            "CreateListing",
            _create(),
            Code.PERMISSION_DENIED,
            caller="viewer",
        )
    )
    return cases


CREATE_CASES = _create_cases()
UPDATE_CASES = _update_cases()
LIFECYCLE_CASES = _lifecycle_cases()
READ_CASES = _read_cases()
ACCESS_CASES = _access_cases()
CREDENTIAL_CASES = _credential_cases()
CASES = [
    *CREATE_CASES,
    *UPDATE_CASES,
    *LIFECYCLE_CASES,
    *READ_CASES,
    *ACCESS_CASES,
    *CREDENTIAL_CASES,
]


# -- running cases ------------------------------------------------------------------


async def _outcome(catalog: Catalog, world: World, case: Case) -> grpc.aio.AioRpcError | None:
    call = getattr(catalog.stub, case.rpc)
    try:
        await call(case.request(world), metadata=_metadata(world, case.caller))
    except grpc.aio.AioRpcError as error:
        return error
    return None


def _problem(case: Case, error: grpc.aio.AioRpcError | None) -> str | None:
    """What is wrong with the way `case` was answered, if anything."""
    if error is None:
        return f"{case.id}: succeeded, expected {case.code.name}"
    if error.code() != case.code:
        return f"{case.id}: {error.code().name} ({error.details()}), expected {case.code.name}"
    named: dict[str, str] = {}
    if case.code == Code.INVALID_ARGUMENT:
        named = bad_request_of(error)
    elif case.code == Code.FAILED_PRECONDITION:
        named = precondition_failures_of(error)
    if case.code in (Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION) and not named:
        return f"{case.id}: {case.code.name} without details ({error.details()})"
    for name in case.names:
        if not any(found == name or found.startswith(f"{name}[") for found in named):
            return f"{case.id}: {sorted(named)} do not name {name!r}"
    if not all(named.values()):
        return f"{case.id}: a violation without a description: {named}"
    return None


async def _refuse_each(catalog: Catalog, cases: list[Case]) -> None:
    """Runs `cases` one by one on a fresh world: each refused, nothing changed."""
    world = await _world(catalog)
    before = await _snapshot(catalog)
    problems: list[str] = []
    for case in cases:
        problem = _problem(case, await _outcome(catalog, world, case))
        if problem is not None:
            problems.append(problem)
    problems += [f"stored data {change}" for change in _changes(before, await _snapshot(catalog))]
    assert not problems, "\n".join(problems)
    await _still_serving(catalog, world)


def test_every_rpc_is_covered() -> None:
    """Every RPC has hostile cases here, and case ids are unique."""
    rpcs = {method.name for method in SERVICE.methods}
    assert {case.rpc for case in CASES} == rpcs
    assert set(_valid_requests()) == rpcs
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.caller for case in CASES} <= {
        *CREDENTIALS,
        "acme",
        "globex",
        "initech",
        "operator",
        "developer",
        "viewer",
    }


async def test_create_listing_refuses_bad_input(catalog: Catalog) -> None:
    await _refuse_each(catalog, CREATE_CASES)


async def test_update_listing_refuses_bad_input(catalog: Catalog) -> None:
    await _refuse_each(catalog, UPDATE_CASES)


async def test_publish_and_deprecate_refuse_bad_input(catalog: Catalog) -> None:
    await _refuse_each(catalog, LIFECYCLE_CASES)


async def test_reads_refuse_bad_input(catalog: Catalog) -> None:
    await _refuse_each(catalog, READ_CASES)


async def test_access_requests_refuse_bad_input(catalog: Catalog) -> None:
    await _refuse_each(catalog, ACCESS_CASES)


async def test_missing_garbage_and_weak_credentials_are_refused(catalog: Catalog) -> None:
    await _refuse_each(catalog, CREDENTIAL_CASES)


async def test_service_keeps_serving_after_every_hostile_call_at_once(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)

    errors = await asyncio.gather(*(_outcome(catalog, world, case) for case in CASES))

    problems = [_problem(case, error) for case, error in zip(CASES, errors, strict=True)]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)


# -- CreateListing ---------------------------------------------------------------------


async def test_a_card_of_exactly_64_kib_is_accepted(catalog: Catalog) -> None:
    acme = await catalog.org()
    for slug, card in [
        ("ascii-card", "# Big\n\n" + "x" * (65_536 - len("# Big\n\n"))),
        ("two-byte-card", "\u00e9" * 32_768),
        ("cjk-card", "深" * 21_845 + "x"),  # 3 bytes each, plus one
    ]:
        assert len(card.encode()) == 65_536
        created = await catalog.create(acme, model_listing(slug, card=card))
        got = await catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=created.id), metadata=acme.auth
        )
        assert got.listing.card == card
        assert got.listing == created
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await catalog.create(acme, model_listing("one-byte-more", card="x" * 65_537))
    assert error.value.code() == Code.INVALID_ARGUMENT
    assert list(bad_request_of(error.value)) == ["listing.card"]
    # The big cards are indexed: their words are found.
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query="深", filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)),
        metadata=acme.auth,
    )
    assert [listing.slug for listing in found.listings] == ["cjk-card"]


async def test_a_taken_slug_is_already_exists_and_the_first_listing_unchanged(
    catalog: Catalog,
) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)
    for caller, slug, request_id in [
        (world.acme, "acme-orca", ""),  # own published listing
        (world.acme, "acme-draft", "retry-1"),  # own draft, with an idempotency key
        (world.globex, "acme-draft", ""),  # another org's draft: still taken
        (world.globex, "acme-retired", ""),  # deprecated listings keep their slug
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await catalog.create(
                caller, model_listing(slug, name="Impostor"), request_id=request_id
            )
        assert error.value.code() == Code.ALREADY_EXISTS, (slug, error.value.details())
        assert "listing.slug" in (error.value.details() or "")
    assert await _snapshot(catalog) == before
    got = await catalog.stub.GetListing(
        pb.GetListingRequest(slug="acme-draft"), metadata=world.acme.auth
    )
    assert got.listing == world.draft
    await _still_serving(catalog, world)


async def test_create_is_idempotent_by_request_id(catalog: Catalog) -> None:
    acme = await catalog.org()
    globex = await catalog.org("Globex Corporation")
    listing = model_listing("idem-7b")
    first = await catalog.create(acme, listing, request_id="create-idem-7b")
    again = await catalog.create(acme, listing, request_id="create-idem-7b")
    assert again == first
    drafts = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)),
        metadata=acme.auth,
    )
    assert [draft.id for draft in drafts.listings] == [first.id]

    # The same key with another request: refused, nothing more stored.
    before = await _snapshot(catalog)
    for other in [
        model_listing("idem-7b", name="Another Name"),
        model_listing("idem-8b"),
        dataset_listing("idem-7b"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await catalog.create(acme, other, request_id="create-idem-7b")
        assert error.value.code() == Code.INVALID_ARGUMENT
        assert list(bad_request_of(error.value)) == ["request_id"]
    assert await _snapshot(catalog) == before

    # Keys are per organisation: globex's use of the same key is its own request.
    theirs = await catalog.create(globex, model_listing("globex-7b"), request_id="create-idem-7b")
    assert theirs.id != first.id
    assert theirs.org_id == globex.id


async def test_output_only_fields_on_create_are_ignored(catalog: Catalog) -> None:
    acme = await catalog.org()
    globex = await catalog.org("Globex Corporation")
    forged = model_listing(
        "forged-7b",
        id=MISSING_LISTING,
        org_id=globex.id,
        state=pb.LISTING_STATE_PUBLISHED,
        revision=42,
        deprecation_reason="forged",
    )
    forged.publish_time.FromSeconds(1)
    forged.create_time.FromSeconds(1)
    created = await catalog.create(acme, forged)
    assert created.id != MISSING_LISTING
    assert created.org_id == acme.id
    assert created.state == pb.LISTING_STATE_DRAFT
    assert created.revision == 1
    assert not created.deprecation_reason
    assert not created.HasField("publish_time")
    assert created.create_time.seconds > 1
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await catalog.stub.GetListing(pb.GetListingRequest(slug="forged-7b"))
    assert error.value.code() == Code.NOT_FOUND  # still a draft: not on the shelf


async def test_malformed_licence_expressions_are_invalid_argument(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)
    problems: list[str] = []
    for expression in [
        "MIT AND",
        "MIT, Apache-2.0",
        "MIT / Apache-2.0",
        "( OR MIT",
        "( )",
        "MIT'; DROP TABLE listings; --",
    ]:
        for case in [
            Case(f"create {expression!r}", "CreateListing", _create(license=expression)),
            Case(
                f"update {expression!r}",
                "UpdateListing",
                _update(paths=("license",), listing=pb.Listing(license=expression)),
            ),
        ]:
            case = Case(case.id, case.rpc, case.request, names=("listing.license",))
            problem = _problem(case, await _outcome(catalog, world, case))
            if problem is not None:
                problems.append(problem)
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)
    assert not problems, "\n".join(problems)


async def test_a_long_licence_ref_is_stored_or_refused_never_internal(catalog: Catalog) -> None:
    world = await _world(catalog)
    license = "LicenseRef-" + "a" * 200
    case = Case("long-licence-ref", "CreateListing", _create(license=license))
    error = await _outcome(catalog, world, case)
    if error is not None:  # refusing it is fine, if it says why
        assert (
            _problem(Case(case.id, case.rpc, case.request, names=("listing.license",)), error)
            is None
        )
    else:
        listed = await catalog.stub.ListListings(
            pb.ListListingsRequest(filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)),
            metadata=world.acme.auth,
        )
        assert license in {listing.license for listing in listed.listings}
    await _still_serving(catalog, world)


async def test_refusals_with_many_or_long_violations_still_arrive(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)
    cases = [
        # protovalidate: one violation per item, each naming the pattern.
        Case(
            "create-200-unpatterned-languages",
            "CreateListing",
            _create(languages=["!"] * 200),
            names=("listing.languages",),
        ),
        # The domain: one violation per item, each quoting the tag.
        Case(
            "create-100-unknown-languages",
            "CreateListing",
            _create(languages=["a" * 35] * 100),
            names=("listing.languages",),
        ),
        # check_mask quotes the path it refuses, however long.
        Case(
            "update-ten-kib-mask-path",
            "UpdateListing",
            _update(paths=("n" * TEN_KIB,)),
            names=("update_mask",),
        ),
    ]
    problems = [_problem(case, await _outcome(catalog, world, case)) for case in cases]
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


# -- PublishListing ------------------------------------------------------------------


async def test_publishing_a_bare_draft_names_each_missing_field(catalog: Catalog) -> None:
    acme = await catalog.org()
    expected = {
        pb.LISTING_KIND_MODEL: {
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
        },
        pb.LISTING_KIND_DATASET: {
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
        },
        pb.LISTING_KIND_COMPUTE_PRODUCT: {
            "listing.provider",
            "listing.version",
            "listing.card",
            "listing.access_tier",
            "listing.compute_product",
            "listing.compute_product.gpu_type",
            "listing.compute_product.gpu_memory_gib",
            "listing.compute_product.region",
        },
    }
    for kind, missing in expected.items():
        bare = await catalog.create(acme, pb.Listing(kind=kind, slug=f"bare-{kind}", name="Bare"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await catalog.stub.PublishListing(
                pb.PublishListingRequest(listing_id=bare.id), metadata=acme.auth
            )
        assert error.value.code() == Code.FAILED_PRECONDITION
        named = precondition_failures_of(error.value)
        if kind == pb.LISTING_KIND_COMPUTE_PRODUCT:
            # Whether GPU hours need a licence is the catalog's call.
            named.pop("listing.license", None)
        assert set(named) == missing, kind
        got = await catalog.stub.GetListing(
            pb.GetListingRequest(listing_id=bare.id), metadata=acme.auth
        )
        assert got.listing == bare  # still the same draft


# -- UpdateListing -------------------------------------------------------------------


async def test_refused_updates_of_a_published_listing_make_no_revision(catalog: Catalog) -> None:
    world = await _world(catalog)
    orca = world.orca
    assert orca.revision == 1
    refusals: list[tuple[pb.UpdateListingRequest, grpc.StatusCode]] = [
        (
            pb.UpdateListingRequest(
                listing_id=orca.id,
                listing=pb.Listing(name="Stale Write"),
                update_mask=FieldMask(paths=["name"]),
                expected_revision=2,
            ),
            Code.ABORTED,
        ),
        (
            pb.UpdateListingRequest(
                listing_id=orca.id,
                listing=pb.Listing(name="Cardless"),
                update_mask=FieldMask(paths=["name", "card"]),
            ),
            Code.FAILED_PRECONDITION,
        ),
        (
            pb.UpdateListingRequest(
                listing_id=orca.id,
                listing=pb.Listing(name="Stale", license="FooBar"),
                update_mask=FieldMask(paths=["name", "license"]),
                expected_revision=1,
            ),
            Code.INVALID_ARGUMENT,
        ),
    ]
    for request, code in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await catalog.stub.UpdateListing(request, metadata=world.acme.auth)
        assert error.value.code() == code, error.value.details()
        got = await catalog.stub.GetListing(pb.GetListingRequest(listing_id=orca.id))
        assert got.listing == orca
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await catalog.stub.GetListing(pb.GetListingRequest(listing_id=orca.id, revision=2))
        assert missing.value.code() == Code.NOT_FOUND
    # The right revision goes through, and makes exactly one more.
    updated = await catalog.stub.UpdateListing(
        pb.UpdateListingRequest(
            listing_id=orca.id,
            listing=pb.Listing(name="Orca Chat 2"),
            update_mask=FieldMask(paths=["name"]),
            expected_revision=1,
        ),
        metadata=world.acme.auth,
    )
    assert updated.listing.revision == 2


async def test_a_sub_path_without_its_parent_message_is_not_silently_ignored(
    catalog: Catalog,
) -> None:
    world = await _world(catalog)
    # The patch holds context_length's default (0): a published model may not have it.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await catalog.stub.UpdateListing(
            pb.UpdateListingRequest(
                listing_id=world.orca.id,
                listing=pb.Listing(),
                update_mask=FieldMask(paths=["model.context_length"]),
            ),
            metadata=world.acme.auth,
        )
    assert error.value.code() == Code.FAILED_PRECONDITION
    assert list(precondition_failures_of(error.value)) == ["listing.model.context_length"]


# -- page tokens ---------------------------------------------------------------------


async def test_page_tokens_are_bound_to_their_filter_and_query(catalog: Catalog) -> None:
    world = await _world(catalog)
    auth = world.acme.auth
    stub = catalog.stub
    first = await stub.ListListings(pb.ListListingsRequest(page_size=1), metadata=auth)
    assert [listing.slug for listing in first.listings] == ["acme-corpus-alpha"]
    token = first.next_page_token
    assert token
    # The token goes on with its own filter.
    second = await stub.ListListings(
        pb.ListListingsRequest(page_size=1, page_token=token), metadata=auth
    )
    assert [listing.slug for listing in second.listings] == ["acme-corpus-beta"]
    searched = await stub.SearchListings(
        pb.SearchListingsRequest(query="legal", page_size=1), metadata=auth
    )
    search_token = searched.next_page_token
    assert search_token

    refusals: list[tuple[str, Message]] = [
        (
            "ListListings",
            pb.ListListingsRequest(
                filter=pb.ListingFilter(kind=pb.LISTING_KIND_MODEL), page_token=token
            ),
        ),
        (
            "ListListings",
            pb.ListListingsRequest(filter=pb.ListingFilter(language="en"), page_token=token),
        ),
        (
            "ListListings",
            pb.ListListingsRequest(
                filter=pb.ListingFilter(state=pb.LISTING_STATE_DRAFT), page_token=token
            ),
        ),
        ("ListListings", pb.ListListingsRequest(page_token=search_token)),
        ("SearchListings", pb.SearchListingsRequest(query="orca", page_token=search_token)),
        ("SearchListings", pb.SearchListingsRequest(page_token=search_token)),
        (
            "SearchListings",
            pb.SearchListingsRequest(
                query="legal", filter=pb.ListingFilter(tag="legal"), page_token=search_token
            ),
        ),
        ("SearchListings", pb.SearchListingsRequest(query="legal", page_token=token)),
        ("ListAccessRequests", pb.ListAccessRequestsRequest(page_token=token)),
    ]
    # A cursor forged for the right query is still checked: an offset is digits.
    search_key = pagination.query_key(
        pb.ListingFilter().SerializeToString(deterministic=True), "legal"
    )
    for after in ["abc", "-1", "1.5", "1e9", "٣"]:
        forged = pagination.encode_token(after, search_key)
        refusals.append(
            ("SearchListings", pb.SearchListingsRequest(query="legal", page_token=forged))
        )
    before = await _snapshot(catalog)
    for rpc, request in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await getattr(stub, rpc)(request, metadata=auth)
        assert error.value.code() == Code.INVALID_ARGUMENT, (rpc, request)
        assert list(bad_request_of(error.value)) == ["page_token"], (rpc, request)
    # A forged offset past the end is an empty page, not an error.
    far = pagination.encode_token("999999999999", search_key)
    beyond = await stub.SearchListings(
        pb.SearchListingsRequest(query="legal", page_token=far), metadata=auth
    )
    assert not beyond.listings
    assert not beyond.next_page_token
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)


# -- full text -----------------------------------------------------------------------

ALL_PUBLISHED = ["acme-corpus-alpha", "acme-corpus-beta", "acme-corpus-gamma", "acme-orca"]
OPEN_PUBLISHED = ["acme-orca"]

#: query -> (slugs found anonymously, slugs found by acme); None: what the
#: filter admits, by slug (a query without words).
HOSTILE_QUERIES: dict[str, tuple[list[str], list[str]] | None] = {
    "": None,
    "   ": None,
    "!!! ??? ... --- ***": None,
    '"': None,
    '""""': None,
    "'": None,
    "*": None,
    "-": None,
    "^": None,
    ":": None,
    "()": None,
    "&|!<->": None,
    "\x00": None,
    "\x00\x00\x00": None,
    "\u202e\u200f\u200e": None,
    "🤖🧠": None,
    "🤖" * 4096: None,  # 16 KiB
    "'" * TEN_KIB: None,
    '"' * TEN_KIB: None,
    "orca": (["acme-orca"], ["acme-orca"]),
    "ORCA": (["acme-orca"], ["acme-orca"]),
    "Órcâ": (["acme-orca"], ["acme-orca"]),
    "orc": (["acme-orca"], ["acme-orca"]),
    '"orca': (["acme-orca"], ["acme-orca"]),
    '"orca"': (["acme-orca"], ["acme-orca"]),
    '"orca*"': (["acme-orca"], ["acme-orca"]),
    "orca*": (["acme-orca"], ["acme-orca"]),
    "-orca": (["acme-orca"], ["acme-orca"]),
    "^orca": (["acme-orca"], ["acme-orca"]),
    "orca:*": (["acme-orca"], ["acme-orca"]),
    "!orca": (["acme-orca"], ["acme-orca"]),
    "(orca)": (["acme-orca"], ["acme-orca"]),
    "'orca'": (["acme-orca"], ["acme-orca"]),
    "\\orca\\": (["acme-orca"], ["acme-orca"]),
    "orca\x00": (["acme-orca"], ["acme-orca"]),
    "\x00orca\x00chat": (["acme-orca"], ["acme-orca"]),
    "\u202eorca\u202c": (["acme-orca"], ["acme-orca"]),
    "orca 🤖": (["acme-orca"], ["acme-orca"]),
    "orca | chat": (["acme-orca"], ["acme-orca"]),
    "orca & chat": (["acme-orca"], ["acme-orca"]),
    "orca <-> chat": (["acme-orca"], ["acme-orca"]),
    "NEAR(": ([], []),  # NEAR is a word here, and no listing has it
    "NEAR(orca chat)": ([], []),
    "name:orca": ([], []),
    "{name}: orca": ([], []),
    "orca " * 2_048: (["acme-orca"], ["acme-orca"]),  # 10 KiB, one word
    "'; DROP TABLE listings; --": ([], []),
    "'; DROP TABLE listing_search; --": ([], []),
    "1 OR 1=1": ([], []),
    "' OR '1'='1": ([], []),
    "x' UNION SELECT basic FROM listings --": ([], []),
    "a" * TEN_KIB: ([], []),
    "x" * 16_384: ([], []),
    " ".join(f"w{i}" for i in range(2_000)): ([], []),
    "深度": ([], ["acme-corpus-alpha"]),
    "求索": ([], ["acme-corpus-alpha"]),
    "索深": ([], []),
    "legal": ([], ["acme-corpus-alpha", "acme-corpus-beta", "acme-corpus-gamma"]),
}


async def test_hostile_search_queries_never_fail_and_find_what_they_say(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)
    problems: list[str] = []
    for caller, everything in [("none", OPEN_PUBLISHED), ("acme", ALL_PUBLISHED)]:
        for query, expected in HOSTILE_QUERIES.items():
            wanted = everything if expected is None else expected[caller == "acme"]
            try:
                found = await catalog.stub.SearchListings(
                    pb.SearchListingsRequest(query=query, page_size=100),
                    metadata=_metadata(world, caller),
                )
            except grpc.aio.AioRpcError as error:
                problems.append(f"{caller} {query[:40]!r}: {error.code().name} {error.details()}")
                continue
            slugs = [listing.slug for listing in found.listings]
            # Without words: by slug. With words: ranked, so the order is the engine's.
            if (slugs if expected is None else sorted(slugs)) != wanted or len(set(slugs)) < len(
                slugs
            ):
                problems.append(f"{caller} {query[:40]!r}: found {slugs}, expected {wanted}")
            if any(listing.card for listing in found.listings):
                problems.append(f"{caller} {query[:40]!r}: BASIC view carries the card")
        # The same queries with a filter: the filter still holds.
        for query in ["", "!!!", "'; DROP TABLE listings; --", "orca", "legal"]:
            found = await catalog.stub.SearchListings(
                pb.SearchListingsRequest(
                    query=query, filter=pb.ListingFilter(kind=pb.LISTING_KIND_MODEL)
                ),
                metadata=_metadata(world, caller),
            )
            if any(listing.kind != pb.LISTING_KIND_MODEL for listing in found.listings):
                problems.append(f"{caller} {query!r}: the kind filter let a non-model through")
    assert not problems, "\n".join(problems)
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)


# -- bytes that are no request at all --------------------------------------------------


async def test_undecodable_request_bodies_are_invalid_argument(catalog: Catalog) -> None:
    world = await _world(catalog)
    before = await _snapshot(catalog)
    valid = pb.CreateListingRequest(listing=model_listing(name="XNAMEX")).SerializeToString()
    bodies = {
        "ff-ff-ff": b"\xff\xff\xff",
        "truncated-length": b"\x0a\xff\xff\xff\xff\x0f",
        "length-past-end": b"\x0a\x10abc",
        "bad-wire-type": b"\x0f",
        "field-zero": b"\x00\x01",
    }
    problems: list[str] = []
    async with grpc.aio.insecure_channel(catalog.address) as raw:
        for method in SERVICE.methods:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = raw.unary_unary(
                f"/{SERVICE.full_name}/{method.name}",
                request_serializer=None,
                response_deserializer=None,
            )
            cases = dict(bodies)
            if method.name == "CreateListing":
                # A string field that is not UTF-8.
                cases["bad-utf8"] = valid.replace(b"XNAMEX", b"X\xff\xfeAMX")
            for label, body in cases.items():
                for caller in ("acme", "none") if method.name in PUBLIC_RPCS else ("acme",):
                    try:
                        await call(body, metadata=_metadata(world, caller))
                    except grpc.aio.AioRpcError as error:
                        if error.code() != Code.INVALID_ARGUMENT or "not a valid message" not in (
                            error.details() or ""
                        ):
                            problems.append(
                                f"{method.name} {label} {caller}: "
                                f"{error.code().name} {error.details()}"
                            )
                    else:
                        problems.append(f"{method.name} {label} {caller}: accepted")
    assert not problems, "\n".join(problems)
    assert await _snapshot(catalog) == before
    await _still_serving(catalog, world)
