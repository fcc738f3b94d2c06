"""Catalog on loopback for tests (a pytest plugin): a real gRPC server, its own
real database, a real broker, and a real identity service to authenticate
against; plus factories for listings and organisations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from identity_harness import Identity

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import catalog_pb2_grpc
from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import BrokerUnderTest, DatabaseFactory, unique
from aisuper_catalog.__main__ import serve
from aisuper_catalog.settings import CatalogSettings

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Org:
    """A registered organisation and its org_admin key."""

    id: str
    key: str

    @property
    def auth(self) -> Metadata:
        return bearer(self.key)


def model_listing(slug: str | None = None, **fields: Any) -> pb.Listing:
    """A model listing with every field publishing needs."""
    listing = pb.Listing(
        kind=pb.LISTING_KIND_MODEL,
        slug=slug or unique("model"),
        name="Test Model 7B",
        provider="Test Lab",
        version="1.0",
        card="# Test Model\n\nA model for tests.",
        license="Apache-2.0",
        languages=["en", "zh-Hans"],
        tags=["chat", "test"],
        access_tier=pb.ACCESS_TIER_OPEN,
        prices=pb.Prices(input_per_million_tokens=2_000_000, output_per_million_tokens=8_000_000),
        model=pb.ModelAttributes(
            family="test",
            parameter_count=7_000_000_000,
            context_length=32_768,
            input_modalities=[pb.MODALITY_TEXT],
            output_modalities=[pb.MODALITY_TEXT],
            capabilities=[pb.CAPABILITY_CHAT, pb.CAPABILITY_COMPLETIONS],
        ),
        source_urls=["https://example.org/model-card"],
    )
    for name, value in fields.items():
        if isinstance(value, list):
            field = getattr(listing, name)
            del field[:]
            field.extend(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(listing, name).CopyFrom(value)
        else:
            setattr(listing, name, value)
    return listing


def dataset_listing(slug: str | None = None, **fields: Any) -> pb.Listing:
    listing = model_listing(slug or unique("corpus"), **fields)
    listing.kind = pb.LISTING_KIND_DATASET
    listing.prices.Clear()
    listing.dataset.CopyFrom(
        pb.DatasetAttributes(
            token_count=1_000_000_000,
            byte_count=4_000_000_000,
            format="jsonl",
            modalities=[pb.MODALITY_TEXT],
            provenance="Crawled public web pages, 2023-2024.",
            collection_method=pb.COLLECTION_METHOD_WEB_CRAWL,
            update_cadence=pb.UPDATE_CADENCE_STATIC,
        )
    )
    return listing


def compute_listing(slug: str | None = None, **fields: Any) -> pb.Listing:
    listing = model_listing(slug or unique("gpu"), **fields)
    listing.kind = pb.LISTING_KIND_COMPUTE_PRODUCT
    listing.prices.Clear()
    listing.prices.per_gpu_hour = 15_000_000
    del listing.languages[:]
    listing.compute_product.CopyFrom(
        pb.ComputeProductAttributes(
            gpu_type="H100", gpu_memory_gib=80, interconnect="NVLink", region="test-1"
        )
    )
    return listing


@dataclass
class Catalog:
    settings: CatalogSettings
    host: ServiceHost
    address: str
    stub: catalog_pb2_grpc.CatalogServiceStub
    identity: Identity

    @property
    def operator(self) -> Org:
        return Org(id="", key=self.identity.operator_key)

    async def org(self, name: str = "Acme Robotics", **fields: Any) -> Org:
        registered = await self.identity.register(
            name, admin_email=f"{unique('admin')}@example.org", **fields
        )
        return Org(id=registered.organization.id, key=registered.api_key_secret)

    async def member_key(self, org: Org, role: int) -> str:
        """A key of `org` with `role` (e.g. identity_pb2.ROLE_DEVELOPER)."""
        created = await self.identity.stub.CreateApiKey(
            identity_pb2.CreateApiKeyRequest(org_id=org.id, name=unique("key"), role=role),
            metadata=org.auth,
        )
        return created.secret

    async def create(self, org: Org, listing: pb.Listing, **request: Any) -> pb.Listing:
        response = await self.stub.CreateListing(
            pb.CreateListingRequest(listing=listing, **request), metadata=org.auth
        )
        return response.listing

    async def published(self, org: Org, listing: pb.Listing) -> pb.Listing:
        created = await self.create(org, listing)
        response = await self.stub.PublishListing(
            pb.PublishListingRequest(listing_id=created.id), metadata=org.auth
        )
        return response.listing


def catalog_settings(
    broker: BrokerUnderTest, database_url: str, identity: Identity, **overrides: Any
) -> CatalogSettings:
    return CatalogSettings(
        database_url=database_url,
        identity_target=identity.address,
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        kafka_fetch_max_wait_ms=50,
        grpc_port=0,
        **overrides,
    )


@pytest.fixture
async def catalog(
    broker: BrokerUnderTest, make_database: DatabaseFactory, identity: Identity, tmp_path: Path
) -> AsyncIterator[Catalog]:
    settings = catalog_settings(broker, await make_database("catalog"), identity)
    host = ServiceHost(settings)
    task = asyncio.create_task(serve(settings, host))
    started = asyncio.create_task(host.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # surfaces the start-up error
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
