"""Wiring only: settings -> telemetry -> store -> servers."""

from __future__ import annotations

from pathlib import Path

from aisuper.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from aisuper.platform.grpc_client import channel
from aisuper.platform.grpc_server import CallInterceptor, Service
from aisuper.platform.host import ServiceHost, run_service
from aisuper.platform.identity_client import remote_resolver
from aisuper_catalog import events
from aisuper_catalog.api import CatalogApi
from aisuper_catalog.settings import CatalogSettings

# services/catalog/migrations, beside src/ (copied into the image alongside).
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
# Open-tier listings are readable without a credential.
PUBLIC = {f"/{SERVICE}/{name}" for name in ("GetListing", "ListListings", "SearchListings")}


async def serve(settings: CatalogSettings, host: ServiceHost | None = None) -> None:
    host = host or ServiceHost(settings)
    db = await host.database(settings.database_url, migrations=MIGRATIONS)
    api = CatalogApi(
        db=db,
        outbox=host.outbox(db, events.CATALOG),
        search_max_results=settings.search_max_results,
    )
    async with channel(settings.identity_target) as identity:
        resolver = remote_resolver(identity, settings)
        host.subscribe(events.subscriptions(resolver.cache))
        interceptor = CallInterceptor(
            resolver, public_methods=PUBLIC, default_deadline_s=settings.default_deadline_s
        )
        service = Service(SERVICE, api, catalog_pb2_grpc.add_CatalogServiceServicer_to_server)
        await host.run([service], interceptor)


def main() -> None:
    run_service(CatalogSettings(), serve)


if __name__ == "__main__":
    main()
