"""Reading the shelf: filters, ordering, pages, views; and search (ranking,
prefixes, Chinese, accents, filters, pages, the result cap). Every assertion
holds on SQLite (FTS5) and on PostgreSQL (tsvector) alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from catalog_harness import (
    Catalog,
    Metadata,
    Org,
    catalog_settings,
    compute_listing,
    dataset_listing,
    model_listing,
)
from identity_harness import Identity

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import catalog_pb2_grpc
from aisuper.platform.grpc_client import channel
from aisuper.platform.grpc_errors import bad_request_of
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import BrokerUnderTest, DatabaseFactory
from aisuper_catalog.__main__ import serve

ON_POSTGRES = bool(os.environ.get("AISUPER_TEST_POSTGRES_URL"))

MODEL = pb.LISTING_KIND_MODEL
DATASET = pb.LISTING_KIND_DATASET
COMPUTE = pb.LISTING_KIND_COMPUTE_PRODUCT
OPEN = pb.ACCESS_TIER_OPEN
REGISTERED = pb.ACCESS_TIER_REGISTERED
VERIFIED = pb.ACCESS_TIER_VERIFIED
RESTRICTED = pb.ACCESS_TIER_RESTRICTED
TEXT = pb.MODALITY_TEXT
IMAGE = pb.MODALITY_IMAGE
AUDIO = pb.MODALITY_AUDIO
CHAT = pb.CAPABILITY_CHAT
COMPLETIONS = pb.CAPABILITY_COMPLETIONS
EMBEDDINGS = pb.CAPABILITY_EMBEDDINGS
COMPUTE_TERMS = "LicenseRef-aisuper-compute-terms"


def _item(
    kind: int,
    slug: str,
    name: str,
    *,
    languages: tuple[str, ...],
    license: str,
    tags: tuple[str, ...],
    tier: int = OPEN,
    provider: str = "Shelf Lab",
    card: str = "",
    capabilities: tuple[int, ...] = (CHAT,),
    inputs: tuple[int, ...] = (TEXT,),
    outputs: tuple[int, ...] = (TEXT,),
    modalities: tuple[int, ...] = (TEXT,),
) -> pb.Listing:
    make = {MODEL: model_listing, DATASET: dataset_listing, COMPUTE: compute_listing}[kind]
    listing = make(
        slug,
        name=name,
        provider=provider,
        license=license,
        access_tier=tier,
        card=f"# {name}\n\nA shelf item. {card}",
    )
    for field, values in (("languages", languages), ("tags", tags)):
        del getattr(listing, field)[:]
        getattr(listing, field).extend(values)
    if kind == MODEL:
        for field, values in (
            ("capabilities", capabilities),
            ("input_modalities", inputs),
            ("output_modalities", outputs),
        ):
            del getattr(listing.model, field)[:]
            getattr(listing.model, field).extend(values)
        if EMBEDDINGS in capabilities:
            listing.model.embedding_dimensions = 1024
    elif kind == DATASET:
        del listing.dataset.modalities[:]
        listing.dataset.modalities.extend(modalities)
    return listing


@dataclass
class Shelf:
    a: Org
    b: Org
    listings: dict[str, pb.Listing]  # by slug, as created (with cards)

    @property
    def published(self) -> list[str]:
        return sorted(
            slug
            for slug, listing in self.listings.items()
            if listing.state == pb.LISTING_STATE_PUBLISHED
        )


async def _shelf(catalog: Catalog) -> Shelf:
    a, b = await asyncio.gather(catalog.org("Alpha GmbH"), catalog.org("Beta SAS"))
    zh_en = ("zh-Hans", "en")
    items: list[tuple[Org, pb.Listing]] = [
        (
            a,
            _item(
                MODEL,
                "deepseek-r1",
                "DeepSeek R1",
                provider="DeepSeek",
                languages=zh_en,
                license="MIT",
                tags=("chat", "reasoning"),
                capabilities=(CHAT, COMPLETIONS),
                card="深度求索 发布的推理模型。",
            ),
        ),
        (
            a,
            _item(
                MODEL,
                "qwen-embed",
                "Qwen3 Embedding",
                provider="Alibaba Cloud",
                languages=zh_en,
                license="Apache-2.0",
                tags=("embeddings", "retrieval"),
                tier=REGISTERED,
                capabilities=(EMBEDDINGS,),
            ),
        ),
        (
            b,
            _item(
                MODEL,
                "jambo-chat",
                "Jambo Chat",
                provider="Nairobi AI",
                languages=("sw", "en"),
                license="Apache-2.0 OR MIT",
                tags=("chat", "african-languages"),
            ),
        ),
        (
            b,
            _item(
                MODEL,
                "pixel-captioner",
                "Pixel Captioner",
                languages=("en",),
                license="CC-BY-4.0",
                tags=("vision",),
                tier=VERIFIED,
                inputs=(IMAGE, TEXT),
            ),
        ),
        (
            a,
            _item(
                MODEL,
                "pixel-painter",
                "Pixel Painter",
                languages=("en",),
                license="MIT",
                tags=("image-generation",),
                capabilities=(COMPLETIONS,),
                outputs=(IMAGE,),
            ),
        ),
        (
            b,
            _item(
                MODEL,
                "e5-multilingual",
                "E5 Multilingual",
                languages=("en", "sw", "zh-Hans"),
                license="MIT",
                tags=("embeddings",),
                capabilities=(EMBEDDINGS,),
            ),
        ),
        (
            a,
            _item(
                MODEL,
                "sauti-asr",
                "Sauti Speech Recognition",
                languages=("sw",),
                license="MIT",
                tags=("speech",),
                capabilities=(COMPLETIONS,),
                inputs=(AUDIO,),
            ),
        ),
        (
            a,
            _item(
                DATASET,
                "cafe-reviews",
                "Café Reviews",
                languages=("en",),
                license="CC-BY-4.0",
                tags=("reviews",),
            ),
        ),
        (
            a,
            _item(
                DATASET,
                "chinese-web",
                "Chinese Web Corpus",
                languages=("zh-Hans",),
                license="CC-BY-4.0",
                tags=("web", "pretraining"),
                tier=RESTRICTED,
                card="中文网页语料。",
            ),
        ),
        (
            b,
            _item(
                DATASET,
                "kiswahili-news",
                "Kiswahili News",
                languages=("sw",),
                license="Apache-2.0 OR MIT",
                tags=("news",),
                tier=REGISTERED,
            ),
        ),
        (
            b,
            _item(
                DATASET,
                "image-pairs",
                "Image Pairs",
                languages=("en",),
                license="CC-BY-4.0",
                tags=("vision",),
                modalities=(IMAGE, TEXT),
            ),
        ),
        (
            b,
            _item(
                DATASET,
                "deep-learning-texts",
                "Deep Learning Textbooks",
                languages=("en",),
                license="CC-BY-4.0",
                tags=("books",),
            ),
        ),
        (
            a,
            _item(
                COMPUTE,
                "h100-cluster",
                "H100 Cluster",
                languages=(),
                license=COMPUTE_TERMS,
                tags=("gpu",),
                tier=REGISTERED,
            ),
        ),
        (
            b,
            _item(
                COMPUTE,
                "ascend-910b",
                "Ascend 910B Pods",
                provider="Huawei",
                languages=(),
                license=COMPUTE_TERMS,
                tags=("gpu", "npu"),
            ),
        ),
    ]
    listings: dict[str, pb.Listing] = {}
    for org, listing in items:
        listings[listing.slug] = await catalog.published(org, listing)
    for org, listing in (
        (a, _item(MODEL, "old-model", "Old Model", languages=("en",), license="MIT", tags=())),
        (
            b,
            _item(DATASET, "old-corpus", "Old Corpus", languages=("sw",), license="MIT", tags=()),
        ),
    ):
        published = await catalog.published(org, listing)
        deprecated = await catalog.stub.DeprecateListing(
            pb.DeprecateListingRequest(listing_id=published.id), metadata=org.auth
        )
        listings[listing.slug] = deprecated.listing
    draft = _item(MODEL, "draft-model", "Draft Model", languages=("en",), license="MIT", tags=())
    listings["draft-model"] = await catalog.create(a, draft)
    return Shelf(a, b, listings)


@pytest.fixture
async def shelf(catalog: Catalog) -> Shelf:
    return await _shelf(catalog)


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _pages(
    catalog: Catalog, metadata: Metadata, page_size: int, **filter_: Any
) -> list[list[str]]:
    """The slugs of every page of ListListings with this filter."""
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await catalog.stub.ListListings(
            pb.ListListingsRequest(
                filter=pb.ListingFilter(**filter_), page_size=page_size, page_token=token
            ),
            metadata=metadata,
        )
        pages.append([listing.slug for listing in page.listings])
        token = page.next_page_token
        if not token:
            return pages


async def _listed(catalog: Catalog, metadata: Metadata, **filter_: Any) -> list[str]:
    [page] = await _pages(catalog, metadata, 1000, **filter_)
    return page


# (filter, the slugs it selects, by slug): A's shelf seen by A's admin.
FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"kind": MODEL},
        [
            "deepseek-r1",
            "e5-multilingual",
            "jambo-chat",
            "pixel-captioner",
            "pixel-painter",
            "qwen-embed",
            "sauti-asr",
        ],
    ),
    (
        {"kind": DATASET},
        ["cafe-reviews", "chinese-web", "deep-learning-texts", "image-pairs", "kiswahili-news"],
    ),
    ({"kind": COMPUTE}, ["ascend-910b", "h100-cluster"]),
    ({"language": "zh"}, ["chinese-web", "deepseek-r1", "e5-multilingual", "qwen-embed"]),
    ({"language": "zh-Hans"}, ["chinese-web", "deepseek-r1", "e5-multilingual", "qwen-embed"]),
    ({"language": "zh-hans"}, ["chinese-web", "deepseek-r1", "e5-multilingual", "qwen-embed"]),
    ({"language": "sw"}, ["e5-multilingual", "jambo-chat", "kiswahili-news", "sauti-asr"]),
    (
        {"language": "en"},
        [
            "cafe-reviews",
            "deep-learning-texts",
            "deepseek-r1",
            "e5-multilingual",
            "image-pairs",
            "jambo-chat",
            "pixel-captioner",
            "pixel-painter",
            "qwen-embed",
        ],
    ),
    ({"language": "fr"}, []),
    (
        {"license": "MIT"},
        [
            "deepseek-r1",
            "e5-multilingual",
            "jambo-chat",
            "kiswahili-news",
            "pixel-painter",
            "sauti-asr",
        ],
    ),
    ({"license": "Apache-2.0"}, ["jambo-chat", "kiswahili-news", "qwen-embed"]),
    (
        {"license": "CC-BY-4.0"},
        ["cafe-reviews", "chinese-web", "deep-learning-texts", "image-pairs", "pixel-captioner"],
    ),
    ({"license": "GPL-3.0-only"}, []),
    ({"license": COMPUTE_TERMS}, ["ascend-910b", "h100-cluster"]),
    ({"capability": EMBEDDINGS}, ["e5-multilingual", "qwen-embed"]),
    ({"capability": CHAT}, ["deepseek-r1", "jambo-chat", "pixel-captioner"]),
    # A model's input or output, or a data set's modalities.
    ({"modality": IMAGE}, ["image-pairs", "pixel-captioner", "pixel-painter"]),
    ({"modality": AUDIO}, ["sauti-asr"]),
    ({"modality": pb.MODALITY_VIDEO}, []),
    ({"tag": "gpu"}, ["ascend-910b", "h100-cluster"]),
    ({"tag": "chat"}, ["deepseek-r1", "jambo-chat"]),
    ({"tag": "vision"}, ["image-pairs", "pixel-captioner"]),
    (
        {"access_tier": OPEN},
        [
            "ascend-910b",
            "cafe-reviews",
            "deep-learning-texts",
            "deepseek-r1",
            "e5-multilingual",
            "image-pairs",
            "jambo-chat",
            "pixel-painter",
            "sauti-asr",
        ],
    ),
    ({"access_tier": REGISTERED}, ["h100-cluster", "kiswahili-news", "qwen-embed"]),
    ({"access_tier": VERIFIED}, ["pixel-captioner"]),
    ({"access_tier": RESTRICTED}, ["chinese-web"]),
    # Combined: every condition holds.
    (
        {"kind": MODEL, "language": "sw", "access_tier": OPEN},
        ["e5-multilingual", "jambo-chat", "sauti-asr"],
    ),
    ({"kind": DATASET, "language": "sw", "access_tier": REGISTERED}, ["kiswahili-news"]),
    ({"kind": MODEL, "language": "zh", "access_tier": OPEN}, ["deepseek-r1", "e5-multilingual"]),
    ({"kind": MODEL, "capability": EMBEDDINGS, "language": "sw"}, ["e5-multilingual"]),
    ({"license": "MIT", "modality": IMAGE}, ["pixel-painter"]),
    ({"license": "MIT", "tag": "chat", "language": "zh"}, ["deepseek-r1"]),
    ({"kind": COMPUTE, "language": "en"}, []),
    ({"state": pb.LISTING_STATE_DEPRECATED}, ["old-corpus", "old-model"]),
    ({"state": pb.LISTING_STATE_DEPRECATED, "kind": MODEL}, ["old-model"]),
    ({"state": pb.LISTING_STATE_DEPRECATED, "language": "sw"}, ["old-corpus"]),
    ({"state": pb.LISTING_STATE_DRAFT}, ["draft-model"]),
    (
        {"state": pb.LISTING_STATE_PUBLISHED, "language": "zh"},
        ["chinese-web", "deepseek-r1", "e5-multilingual", "qwen-embed"],
    ),
]


async def test_each_filter_alone_and_combined(catalog: Catalog, shelf: Shelf) -> None:
    a = shelf.a.auth
    # Unset state: published only, every kind and tier, by slug.
    everything = await _listed(catalog, a)
    assert everything == shelf.published
    assert len(everything) == 14
    assert await _listed(catalog, a) == everything  # stable
    wrong: list[str] = []
    for filter_, expected in FILTERS:
        got = await _listed(catalog, a, **filter_)
        if got != expected:
            wrong.append(f"{filter_}: {got} != {expected}")
        paged = await _pages(catalog, a, 2, **filter_)
        if [slug for page in paged for slug in page] != expected:
            wrong.append(f"{filter_} in pages of 2: {paged}")
    assert not wrong, "\n".join(wrong)

    # The managing organisation.
    a_slugs = sorted(s for s in shelf.published if shelf.listings[s].org_id == shelf.a.id)
    b_slugs = sorted(s for s in shelf.published if shelf.listings[s].org_id == shelf.b.id)
    assert a_slugs == [
        "cafe-reviews",
        "chinese-web",
        "deepseek-r1",
        "h100-cluster",
        "pixel-painter",
        "qwen-embed",
        "sauti-asr",
    ]
    assert await _listed(catalog, a, org_id=shelf.a.id) == a_slugs
    assert await _listed(catalog, a, org_id=shelf.b.id) == b_slugs
    assert await _listed(catalog, a, org_id=shelf.b.id, kind=DATASET) == [
        "deep-learning-texts",
        "image-pairs",
        "kiswahili-news",
    ]
    assert await _listed(catalog, a, org_id="org_" + "0" * 26) == []

    # Every listing a filter returns really has what was asked for.
    for listing in (
        await catalog.stub.ListListings(
            pb.ListListingsRequest(filter=pb.ListingFilter(language="zh", kind=MODEL)),
            metadata=a,
        )
    ).listings:
        assert any(tag.startswith("zh") for tag in listing.languages)
        assert listing.kind == MODEL
        assert listing.state == pb.LISTING_STATE_PUBLISHED


async def test_a_bad_language_filter_is_refused(catalog: Catalog) -> None:
    acme = await catalog.org()
    error = await _error(
        catalog.stub.ListListings(
            pb.ListListingsRequest(filter=pb.ListingFilter(language="e")), metadata=acme.auth
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.language" in bad_request_of(error)


async def test_pages_give_every_listing_once_in_slug_order(catalog: Catalog, shelf: Shelf) -> None:
    a = shelf.a.auth
    [everything] = await _pages(catalog, a, 1000)
    for size in (1, 3, 7, 14, 50):
        pages = await _pages(catalog, a, size)
        assert [slug for page in pages for slug in page] == everything, size
        assert all(len(page) == size for page in pages[:-1])
        # The last page says so itself: no empty page after it.
        assert len(pages) == -(-len(everything) // size), (size, pages)
        assert pages[-1]
    # Default page size: everything fits in one.
    page = await catalog.stub.ListListings(pb.ListListingsRequest(), metadata=a)
    assert [listing.slug for listing in page.listings] == everything
    assert not page.next_page_token

    # A token belongs to its filter.
    first = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=pb.ListingFilter(kind=MODEL), page_size=3), metadata=a
    )
    assert first.next_page_token
    for other in (
        pb.ListingFilter(kind=DATASET),
        pb.ListingFilter(kind=MODEL, language="en"),
        pb.ListingFilter(),
        pb.ListingFilter(kind=MODEL, state=pb.LISTING_STATE_DEPRECATED),
    ):
        error = await _error(
            catalog.stub.ListListings(
                pb.ListListingsRequest(filter=other, page_token=first.next_page_token),
                metadata=a,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in bad_request_of(error)
    # ...nor is a list token a search token.
    error = await _error(
        catalog.stub.SearchListings(
            pb.SearchListingsRequest(
                filter=pb.ListingFilter(kind=MODEL), page_token=first.next_page_token
            ),
            metadata=a,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for garbage in ("not-a-token", "eyJ4IjogMX0", "%%%"):
        error = await _error(
            catalog.stub.ListListings(pb.ListListingsRequest(page_token=garbage), metadata=a)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in bad_request_of(error)
    # The same token with the same filter goes on, also with another page size or view.
    rest = await catalog.stub.ListListings(
        pb.ListListingsRequest(
            filter=pb.ListingFilter(kind=MODEL),
            page_token=first.next_page_token,
            page_size=100,
            view=pb.LISTING_VIEW_FULL,
        ),
        metadata=a,
    )
    models = [listing.slug for listing in first.listings] + [x.slug for x in rest.listings]
    assert models == sorted(s for s in everything if shelf.listings[s].kind == MODEL)


async def test_views_decide_whether_the_card_comes_along(catalog: Catalog, shelf: Shelf) -> None:
    a = shelf.a.auth
    for view in (pb.LISTING_VIEW_UNSPECIFIED, pb.LISTING_VIEW_BASIC):
        listed = await catalog.stub.ListListings(pb.ListListingsRequest(view=view), metadata=a)
        assert len(listed.listings) == 14
        assert all(not listing.card for listing in listed.listings)
        assert all(listing.name and listing.license for listing in listed.listings)
        found = await catalog.stub.SearchListings(
            pb.SearchListingsRequest(query="shelf", view=view), metadata=a
        )
        assert len(found.listings) == 14
        assert all(not listing.card for listing in found.listings)
    listed = await catalog.stub.ListListings(
        pb.ListListingsRequest(view=pb.LISTING_VIEW_FULL), metadata=a
    )
    assert {x.slug: x for x in listed.listings} == {
        slug: shelf.listings[slug] for slug in shelf.published
    }
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query="深度", view=pb.LISTING_VIEW_FULL), metadata=a
    )
    assert [listing.card for listing in found.listings] == [shelf.listings["deepseek-r1"].card]

    listing = shelf.listings["deepseek-r1"]
    got = await catalog.stub.GetListing(pb.GetListingRequest(slug="deepseek-r1"), metadata=a)
    assert got.listing == listing  # FULL by default
    got = await catalog.stub.GetListing(
        pb.GetListingRequest(slug="deepseek-r1", view=pb.LISTING_VIEW_BASIC), metadata=a
    )
    assert not got.listing.card
    assert got.listing.model == listing.model


async def _found(
    catalog: Catalog, metadata: Metadata, query: str, page_size: int = 100, **filter_: Any
) -> list[str]:
    found = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(
            query=query, filter=pb.ListingFilter(**filter_), page_size=page_size
        ),
        metadata=metadata,
    )
    return [listing.slug for listing in found.listings]


async def test_search_matches_prefixes_words_scripts_and_accents(
    catalog: Catalog, shelf: Shelf
) -> None:
    a = shelf.a.auth

    async def found(query: str, **filter_: Any) -> set[str]:
        return set(await _found(catalog, a, query, **filter_))

    # A word also matches as a prefix, in any case.
    assert await found("deep") == {"deepseek-r1", "deep-learning-texts"}
    assert await found("DeepSeek") == {"deepseek-r1"}
    assert await found("DEEPS") == {"deepseek-r1"}
    assert await found("huawei") == {"ascend-910b"}  # the provider
    assert await found("npu") == {"ascend-910b"}  # a tag
    assert await found("qwen-embed") == {"qwen-embed"}  # the slug
    # Several words: all of them.
    assert await found("deep learning") == {"deep-learning-texts"}
    assert await found("learning deep") == {"deep-learning-texts"}
    assert await found("deep seek") == set()
    assert await found("pixel") == {"pixel-captioner", "pixel-painter"}
    assert await found("pixel paint") == {"pixel-painter"}
    # Chinese has no spaces: a run of characters is a phrase.
    assert await found("深度") == {"deepseek-r1"}
    assert await found("求索") == {"deepseek-r1"}
    assert await found("深度求索") == {"deepseek-r1"}
    assert await found("索深") == set()
    assert await found("深求") == set()
    assert await found("中文") == {"chinese-web"}
    assert await found("深度 模型") == {"deepseek-r1"}
    assert await found("deepseek 推理") == {"deepseek-r1"}
    # Accents and case fold away, both ways.
    assert await found("cafe") == {"cafe-reviews"}
    assert await found("café") == {"cafe-reviews"}
    assert await found("CAFÉ REVIEWS") == {"cafe-reviews"}
    # Punctuation and query syntax are only separators.
    assert await found('"deep" (learning*') == {"deep-learning-texts"}
    assert await found("-deep") == {"deepseek-r1", "deep-learning-texts"}
    assert await found("nothing-matches-this") == set()
    assert await found("...") == set(shelf.published)  # no words: everything, by slug
    # Drafts and deprecated listings only when asked for.
    assert await found("draft") == set()
    assert await found("draft", state=pb.LISTING_STATE_DRAFT) == {"draft-model"}
    assert await found("old") == set()
    assert await found("old", state=pb.LISTING_STATE_DEPRECATED) == {"old-model", "old-corpus"}

    # With the filters of ListListings.
    assert await found("chat", kind=MODEL, language="sw") == {"jambo-chat"}
    assert await found("chat", language="zh") == {"deepseek-r1"}
    assert await found("embedding", capability=EMBEDDINGS) == {"e5-multilingual", "qwen-embed"}
    assert await found("embeddings", access_tier=OPEN) == {"e5-multilingual"}
    assert await found("pixel", modality=IMAGE, license="MIT") == {"pixel-painter"}
    assert await found("shelf", kind=COMPUTE, org_id=shelf.b.id) == {"ascend-910b"}
    assert await found("shelf", language="sw", kind=DATASET) == {"kiswahili-news"}
    assert await found("shelf", tag="vision") == {"image-pairs", "pixel-captioner"}
    assert await found("", kind=COMPUTE) == {"ascend-910b", "h100-cluster"}
    # An empty query lists by slug.
    assert await _found(catalog, a, "", kind=DATASET) == [
        "cafe-reviews",
        "chinese-web",
        "deep-learning-texts",
        "image-pairs",
        "kiswahili-news",
    ]


async def test_search_pages_by_offset(catalog: Catalog, shelf: Shelf) -> None:
    a = shelf.a.auth
    everything = await _found(catalog, a, "shelf item")
    assert sorted(everything) == shelf.published

    for query, filter_, expected in (
        ("shelf item", pb.ListingFilter(), everything),
        ("shelf", pb.ListingFilter(kind=MODEL), await _found(catalog, a, "shelf", kind=MODEL)),
        ("", pb.ListingFilter(), shelf.published),
    ):
        for size in (1, 3, 5, 14):
            slugs: list[str] = []
            token = ""
            pages = 0
            while True:
                page = await catalog.stub.SearchListings(
                    pb.SearchListingsRequest(
                        query=query, filter=filter_, page_size=size, page_token=token
                    ),
                    metadata=a,
                )
                assert len(page.listings) <= size
                slugs += [listing.slug for listing in page.listings]
                pages += 1
                token = page.next_page_token
                if not token:
                    break
            assert slugs == expected, (query, size)
            assert len(slugs) == len(set(slugs))
            assert pages == -(-len(expected) // size), (query, size)

    # A token belongs to its query and filter.
    by_shelf = await _found(catalog, a, "shelf")
    first = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query="shelf", page_size=3), metadata=a
    )
    for query, filter_ in (
        ("shelf item", pb.ListingFilter()),
        ("deep", pb.ListingFilter()),
        ("shelf", pb.ListingFilter(kind=MODEL)),
    ):
        error = await _error(
            catalog.stub.SearchListings(
                pb.SearchListingsRequest(
                    query=query, filter=filter_, page_token=first.next_page_token
                ),
                metadata=a,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in bad_request_of(error)
    # Words are what count: case and punctuation make the same query.
    again = await catalog.stub.SearchListings(
        pb.SearchListingsRequest(query="SHELF!", page_size=3, page_token=first.next_page_token),
        metadata=a,
    )
    assert [x.slug for x in again.listings] == by_shelf[3:6]


async def _ranking_shelf(catalog: Catalog, word: str, card_mentions: int) -> Org:
    """Listings that each hold `word` in one place only; slugs sort against the rank."""
    acme = await catalog.org()
    card = " ".join(f"Note {i}: the {word} is mentioned here." for i in range(card_mentions))
    for listing in (
        model_listing("a-in-card", name="Ocean Notes", tags=["notes"], card=card),
        model_listing(
            "b-in-provider", name="Whale Song", tags=["song"], provider=f"{word.title()} Labs"
        ),
        model_listing("c-in-tags", name="Sea Model", tags=[word, "ocean"]),
        model_listing("d-in-name", name=f"{word.title()} Chat", tags=["chat"]),
        model_listing("e-nowhere", name="Unrelated", tags=["other"]),
    ):
        await catalog.published(acme, listing)
    return acme


async def test_search_ranks_name_then_tags_and_provider_then_card(catalog: Catalog) -> None:
    acme = await _ranking_shelf(catalog, "orca", card_mentions=1)
    found = await _found(catalog, acme.auth, "orca")
    assert found[0] == "d-in-name"
    assert set(found[1:3]) == {"c-in-tags", "b-in-provider"}
    assert found[3:] == ["a-in-card"]
    # The same with a prefix of the word.
    assert await _found(catalog, acme.auth, "orc") == found


async def test_a_card_repeating_a_word_does_not_outrank_a_name(catalog: Catalog) -> None:
    acme = await _ranking_shelf(catalog, "orca", card_mentions=25)
    found = await _found(catalog, acme.auth, "orca")
    # (Against the provider, enough repetitions may win: its weight is lower.)
    assert found.index("d-in-name") < found.index("c-in-tags") < found.index("a-in-card"), found


async def test_a_phrase_never_spans_two_fields(catalog: Catalog) -> None:
    acme = await catalog.org()
    # The provider ends with 索 and the card starts with 深: "索深" is in neither.
    await catalog.published(
        acme, model_listing("deepseek-v3", provider="深度求索", card="深度学习模型。")
    )
    assert await _found(catalog, acme.auth, "求索") == ["deepseek-v3"]
    assert await _found(catalog, acme.auth, "深度学习") == ["deepseek-v3"]
    assert await _found(catalog, acme.auth, "索深") == []


async def test_chinese_phrases_are_found_anywhere_in_a_long_card(catalog: Catalog) -> None:
    acme = await catalog.org()
    # 20,000 Han characters (60 kB, within the 64 KiB card limit) before the phrase.
    filler = "模型数据训练评测" * 2_500
    await catalog.published(acme, model_listing("long-card", card=f"{filler}\n\n深度求索"))
    assert await _found(catalog, acme.auth, "深度求索") == ["long-card"]
    assert await _found(catalog, acme.auth, "求索") == ["long-card"]


# -- the result cap -------------------------------------------------------------


@pytest.fixture
async def capped_catalog(
    broker: BrokerUnderTest, make_database: DatabaseFactory, identity: Identity
) -> AsyncIterator[Catalog]:
    """A catalog whose search goes no deeper than 100 results (the smallest cap)."""
    settings = catalog_settings(
        broker, await make_database("catalog"), identity, search_max_results=100
    )
    host = ServiceHost(settings)
    task = asyncio.create_task(serve(settings, host))
    started = asyncio.create_task(host.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert started in done, "catalog did not start within 60s"
    assert host.server is not None
    async with channel(host.server.address) as chan:
        yield Catalog(
            settings=settings,
            host=host,
            address=host.server.address,
            stub=catalog_pb2_grpc.CatalogServiceStub(chan),
            identity=identity,
        )
    host.stop()
    await asyncio.wait_for(task, 30)


async def test_search_stops_at_search_max_results(capped_catalog: Catalog) -> None:
    catalog = capped_catalog
    acme = await catalog.org()
    # Drafts are searchable by their own organisation, and cheaper to make.
    await asyncio.gather(
        *(
            catalog.create(acme, model_listing(f"bulk-{i:03}", name=f"Bulk Model {i}"))
            for i in range(105)
        )
    )
    drafts = pb.ListingFilter(state=pb.LISTING_STATE_DRAFT)
    listed = await catalog.stub.ListListings(
        pb.ListListingsRequest(filter=drafts, page_size=1000), metadata=acme.auth
    )
    assert len(listed.listings) == 105  # listing is not capped

    for query in ("bulk", ""):
        top = await catalog.stub.SearchListings(
            pb.SearchListingsRequest(query=query, filter=drafts, page_size=100),
            metadata=acme.auth,
        )
        assert len(top.listings) == 100
        assert not top.next_page_token
        slugs: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await catalog.stub.SearchListings(
                pb.SearchListingsRequest(
                    query=query, filter=drafts, page_size=30, page_token=token
                ),
                metadata=acme.auth,
            )
            slugs += [listing.slug for listing in page.listings]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert pages == 4  # 30 + 30 + 30 + 10
        assert slugs == [listing.slug for listing in top.listings]
        assert len(set(slugs)) == 100
