from __future__ import annotations

from pydantic import AliasChoices, Field

from aisuper.platform.settings import ServiceSettings


class PolicySettings(ServiceSettings):
    service_name: str = "policy"
    grpc_port: int = Field(default=50055, ge=0, le=65535)
    database_url: str = Field(
        default="sqlite+aiosqlite:///.aisuper/policy.db",
        validation_alias=AliasChoices("AISUPER_POLICY_DATABASE_URL"),
    )
    #: A reservation without its own ttl is released after this long.
    reservation_ttl_s: float = Field(default=900.0, ge=1, le=31 * 86400)
    #: How often expired reservations are looked for.
    expiry_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
