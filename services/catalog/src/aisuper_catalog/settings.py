from __future__ import annotations

from pydantic import AliasChoices, Field

from aisuper.platform.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: str = "catalog"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    database_url: str = Field(
        default="sqlite+aiosqlite:///.aisuper/catalog.db",
        validation_alias=AliasChoices("AISUPER_CATALOG_DATABASE_URL"),
    )
    #: Search pages go no deeper than this many results (ranked results past
    #: it are noise, and deep offsets cost the database).
    search_max_results: int = Field(default=10_000, ge=100, le=1_000_000)
