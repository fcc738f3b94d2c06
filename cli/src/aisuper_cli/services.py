"""The services `aisuper up` runs, as one table: adding a service is adding an entry.

`aisuper up` starts them in this order, each once the one before says SERVING (every later
service authenticates its callers through identity, so identity comes first). Service ``i``
listens on ``--grpc-port-base + port_offset`` and ``--metrics-port-base + port_offset``, which
with the default bases are the ports of the contract (identity 50051, catalog 50052, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"
DEFAULT_GRPC_PORT_BASE = 50051
DEFAULT_METRICS_PORT_BASE = 9451


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the local platform."""

    #: The service's lowercase noun: process name, log file ``logs/<name>.log``, database
    #: ``<name>.db``.
    name: str
    #: Run as ``python -m <module>``.
    module: str
    #: The gRPC service it registers with the health service (and serves).
    grpc_service: str
    #: Its ports: the bases plus this.
    port_offset: int
    #: The environment variable that takes its database URL.
    database_env: str
    #: More environment, as ``(name, template)``; a template may use ``{data_dir}``,
    #: ``{operator_key_file}`` and ``{<service>_target}`` (e.g. ``{identity_target}``).
    extra_env: tuple[tuple[str, str], ...] = ()


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="identity",
        module="aisuper_identity",
        grpc_service="aisuper.identity.v1.IdentityService",
        port_offset=0,
        database_env="AISUPER_IDENTITY_DATABASE_URL",
        extra_env=(("AISUPER_IDENTITY_OPERATOR_KEY_FILE", "{operator_key_file}"),),
    ),
    ServiceSpec(
        name="catalog",
        module="aisuper_catalog",
        grpc_service="aisuper.catalog.v1.CatalogService",
        port_offset=1,
        database_env="AISUPER_CATALOG_DATABASE_URL",
    ),
)

#: Every service's main gRPC service, by service name.
HEALTH_SERVICES: dict[str, str] = {spec.name: spec.grpc_service for spec in SERVICES}


def spec_of(name: str) -> ServiceSpec | None:
    return next((spec for spec in SERVICES if spec.name == name), None)


def default_target(name: str) -> str:
    """Where service `name` answers on a platform started with the default port base."""
    spec = spec_of(name)
    offset = spec.port_offset if spec is not None else 0
    return f"{HOST}:{DEFAULT_GRPC_PORT_BASE + offset}"
