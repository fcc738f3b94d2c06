from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from aisuper.platform.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    database_url: str = Field(
        default="sqlite+aiosqlite:///.aisuper/identity.db",
        validation_alias=AliasChoices("AISUPER_IDENTITY_DATABASE_URL"),
    )
    #: Where the bootstrap operator's API key is written on first start.
    operator_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("AISUPER_IDENTITY_OPERATOR_KEY_FILE")
    )
    operator_org_name: str = "aisuper operators"
    operator_org_country: str = "CN"
    #: A new signing key is made when the newest is older than this.
    signing_key_rotation_days: int = Field(default=30, ge=1)
    default_token_ttl_s: int = Field(default=900, ge=10, le=3600)
