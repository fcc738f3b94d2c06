"""The services `aisuper up` runs, as one table: adding a service is adding an entry.

`aisuper up` starts each service once every service it ``needs`` says SERVING (every later
service authenticates its callers through identity, so identity comes first); services whose
needs are met together start together (catalog and policy both need only identity). A service
listens on ``--grpc-port-base + port_offset`` and ``--metrics-port-base + port_offset``, which
with the default bases are the ports of the contract (identity 50051, catalog 50052, policy
50055, ...).
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
    #: The services that must say SERVING before this one starts.
    needs: tuple[str, ...] = ()


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
        needs=("identity",),
    ),
    ServiceSpec(
        name="policy",
        module="aisuper_policy",
        grpc_service="aisuper.policy.v1.PolicyService",
        port_offset=4,
        database_env="AISUPER_POLICY_DATABASE_URL",
        needs=("identity",),
    ),
)

#: Every service's main gRPC service, by service name.
HEALTH_SERVICES: dict[str, str] = {spec.name: spec.grpc_service for spec in SERVICES}


def start_waves(specs: tuple[ServiceSpec, ...] = SERVICES) -> list[tuple[ServiceSpec, ...]]:
    """`specs` in groups that start together: each group once every earlier one is SERVING.

    A need that is not among `specs` is taken as met (it runs elsewhere).
    """
    names = {spec.name for spec in specs}
    started: set[str] = set()
    left = list(specs)
    waves: list[tuple[ServiceSpec, ...]] = []
    while left:
        wave = tuple(
            spec for spec in left if all(n in started or n not in names for n in spec.needs)
        )
        if not wave:
            raise ValueError(f"the services' needs form a cycle: {[s.name for s in left]}")
        waves.append(wave)
        started.update(spec.name for spec in wave)
        left = [spec for spec in left if spec not in wave]
    return waves


def spec_of(name: str) -> ServiceSpec | None:
    return next((spec for spec in SERVICES if spec.name == name), None)


def default_target(name: str) -> str:
    """Where service `name` answers on a platform started with the default port base."""
    spec = spec_of(name)
    offset = spec.port_offset if spec is not None else 0
    return f"{HOST}:{DEFAULT_GRPC_PORT_BASE + offset}"
