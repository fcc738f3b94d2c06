"""Contract tests of the local stack: docker-compose.yml, .env, the Dockerfile of every aisuper
service image (services/<name>/Dockerfile), .dockerignore, the OpenTelemetry Collector
configuration and the PostgreSQL init script.

Nothing here needs a Docker engine. The compose file is checked against the official Compose
Specification JSON schema as vendored by check-jsonschema (a dev dependency of the workspace:
``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, Apache-2.0, licence text beside it
in ``licenses/LICENSE.compose-spec``; the same schema ``check-jsonschema --builtin-schema
vendor.compose-spec`` uses). When a Compose v2 CLI is installed (``docker compose`` plugin or a
v2 ``docker-compose`` binary) ``docker compose config`` is run too; otherwise that test skips.

The aisuper services are the compose services built from ``services/<name>/Dockerfile``; every
check of an image, its environment and its scaling runs once per such service.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

# jsonschema comes with check-jsonschema (no type stubs in the workspace: typed as Any here).
jsonschema: Any = importlib.import_module("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_FILE = ROOT / ".env"
ROOT_PYPROJECT = ROOT / "pyproject.toml"
DOCKERIGNORE = ROOT / ".dockerignore"
OTEL_DIR = ROOT / "infra" / "otel"
COLLECTOR_CONFIG = OTEL_DIR / "collector.yaml"
POSTGRES_INIT = ROOT / "infra" / "postgres" / "init-databases.sql"

SERVICE_DATABASES = {"identity", "catalog", "compute", "inference", "policy"}
HEALTHY_CONDITIONS = {"service_healthy", "service_completed_successfully"}
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}
# The infrastructure every aisuper service waits for.
INFRASTRUCTURE = {"kafka", "postgres", "otel-collector"}
YAML_MERGE_TAG = "tag:yaml.org,2002:merge"

# --------------------------------------------------------------------------------------------
# Loading and interpolation
# --------------------------------------------------------------------------------------------


@functools.cache
def env_file() -> dict[str, str]:
    """.env as compose reads it: KEY=VALUE lines, # comments, optional matching quotes."""
    values: dict[str, str] = {}
    for number, raw in enumerate(ENV_FILE.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env line {number} is not KEY=VALUE: {raw!r}"
        key = key.strip()
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f".env line {number}: bad name {key!r}"
        assert key not in values, f".env defines {key} twice"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


@functools.cache
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written (before interpolation)."""
    document = yaml.safe_load(compose_text())
    assert isinstance(document, dict)
    return document


# $$ (a literal $), ${NAME}, ${NAME:-default} and friends, $NAME.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def variables_in(text: str) -> set[str]:
    names = set()
    for match in _VARIABLE.finditer(text):
        if match["escaped"] is None:
            names.add(match["braced"] or match["named"])
    return names


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match["escaped"] is not None:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise AssertionError(f"required variable {name} is missing: {arg}")
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        assert value is not None, f"variable {name} is not defined in .env"
        return value

    return _VARIABLE.sub(substitute, text)


def _walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk_strings(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {_interpolate_tree(k, env): _interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    return node


def compose() -> dict[str, Any]:
    """docker-compose.yml after interpolation with the values of .env (what compose runs)."""
    result = _interpolate_tree(compose_raw(), env_file())
    assert isinstance(result, dict)
    return result


def services() -> dict[str, dict[str, Any]]:
    result = compose()["services"]
    assert isinstance(result, dict)
    return result


def service_names() -> list[str]:
    return sorted(yaml.safe_load(COMPOSE_FILE.read_text())["services"])


def aisuper_service_names() -> list[str]:
    """The compose services built from services/<name>/Dockerfile: aisuper's own images."""
    names = []
    for name, service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items():
        build = service.get("build")
        dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
        if str(dockerfile).startswith("services/"):
            names.append(name)
    return sorted(names)


AISUPER_SERVICES = aisuper_service_names()
# The services that authenticate their callers through identity.
IDENTITY_CLIENTS = [name for name in AISUPER_SERVICES if name != "identity"]


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list form."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def env_key(service: str, suffix: str) -> str:
    """The .env variable of a service's setting: ("catalog", "GRPC_PORT") -> CATALOG_GRPC_PORT."""
    return f"{service.upper().replace('-', '_')}_{suffix}"


# Composed (not constructed) YAML keeps aliases as references to the anchored node, and merge keys
# (`<<: *anchor`) as keys: what these helpers read to check that anchors are shared, not copied.


def composed_root(text: str) -> dict[str, yaml.Node]:
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    return {key.value: value for key, value in root.value}


def node_fields(node: yaml.Node) -> dict[str, yaml.Node]:
    """A mapping node's fields with YAML merge keys resolved, as the merge spec says: explicit keys
    win over merged ones, and among merged mappings the first one listed wins."""
    assert isinstance(node, yaml.MappingNode), f"not a mapping: {node.start_mark}"
    explicit: dict[str, yaml.Node] = {}
    merged: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.tag == YAML_MERGE_TAG:
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                for field, field_value in node_fields(source).items():
                    merged.setdefault(field, field_value)
        else:
            explicit[key.value] = value
    return {**merged, **explicit}


def merged_anchors(node: yaml.Node) -> list[yaml.Node]:
    """The nodes a mapping merges in with `<<`."""
    assert isinstance(node, yaml.MappingNode)
    anchors: list[yaml.Node] = []
    for key, value in node.value:
        if key.tag == YAML_MERGE_TAG:
            anchors.extend(value.value if isinstance(value, yaml.SequenceNode) else [value])
    return anchors


# --------------------------------------------------------------------------------------------
# (a) the Compose Specification schema
# --------------------------------------------------------------------------------------------


def compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    assert schema.get("title") == "Compose Specification"
    return schema


def _schema_errors(document: Any) -> list[str]:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


def test_compose_file_matches_the_compose_spec_schema_as_written() -> None:
    assert _schema_errors(compose_raw()) == []


def test_compose_file_matches_the_compose_spec_schema_after_interpolation() -> None:
    assert _schema_errors(compose()) == []


def test_schema_check_catches_a_broken_compose_file() -> None:
    broken = compose()
    broken["services"]["identity"]["restart"] = ["not", "a", "string"]
    broken["services"]["identity"]["helthcheck"] = {}
    errors = _schema_errors(broken)
    assert any("restart" in error for error in errors)
    assert any("helthcheck" in error for error in errors)


def _duplicate_keys(text: str) -> list[str]:
    """Keys repeated in one mapping: PyYAML keeps the last silently, Compose refuses the file
    (two `<<` keys included: several merges are written `<<: [*a, *b]`)."""
    duplicates = []
    root = yaml.compose(text)
    assert root is not None, "empty YAML document"
    pending: list[yaml.Node] = [root]
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
            duplicates += [
                f"line {node.start_mark.line + 1}: {key}"
                for key in sorted(set(keys))
                if keys.count(key) > 1
            ]
            pending += [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value
    return duplicates


def test_compose_file_repeats_no_key() -> None:
    assert _duplicate_keys(compose_text()) == []


def test_duplicate_key_check_catches_a_repeated_key() -> None:
    text = "x-a: &a {k: 1}\nx-b: &b {j: 2}\ns:\n  <<: *a\n  <<: *b\n  v: 1\n  v: 2\n"
    assert _duplicate_keys(text) == ["line 4: <<", "line 4: v"]


# --------------------------------------------------------------------------------------------
# (b) healthcheck, memory limit, restart policy, the shared logging anchor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", service_names())
def test_service_has_a_healthcheck(name: str) -> None:
    healthcheck = services()[name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False), f"{name} disables its healthcheck"
    test = healthcheck.get("test")
    assert test, f"{name}'s healthcheck has no test"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}'s healthcheck test is {test[0]}"
        assert len(test) > 1
    for key in ("interval", "timeout", "retries"):
        assert key in healthcheck, f"{name}'s healthcheck sets no {key}"


@pytest.mark.parametrize("name", service_names())
def test_service_has_a_memory_limit(name: str) -> None:
    service = services()[name]
    limit = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    limit = limit or service.get("mem_limit")
    assert limit, f"{name} has no memory limit (deploy.resources.limits.memory or mem_limit)"
    assert re.fullmatch(r"\d+(\.\d+)?[bkmg]?", str(limit).lower()), f"{name}: bad limit {limit}"


@pytest.mark.parametrize("name", service_names())
def test_service_has_a_restart_policy(name: str) -> None:
    service = services()[name]
    restart = service.get("restart") or service.get("deploy", {}).get("restart_policy", {}).get(
        "condition"
    )
    assert restart, f"{name} has no restart policy"
    assert str(restart).split(":")[0] in RESTART_POLICIES | {"any"}, f"{name}: restart {restart}"


def _logging_anchor_errors(text: str) -> list[str]:
    """Services whose logging is not the node anchored at x-logging, directly (`logging:
    *logging`) or through a merged extension field (`<<: *aisuper-service` holding it)."""
    top = composed_root(text)
    if "x-logging" not in top:
        return ["no top-level x-logging extension"]
    anchor = top["x-logging"]
    anchored = [
        event.anchor
        for event in yaml.parse(text)
        if isinstance(event, yaml.MappingStartEvent) and event.anchor
    ]
    errors = []
    if anchored.count("logging") != 1:
        errors.append("x-logging is not anchored as &logging")
    services_node = top["services"]
    assert isinstance(services_node, yaml.MappingNode)
    for name_node, service_node in services_node.value:
        fields = node_fields(service_node)
        if "logging" not in fields:
            errors.append(f"{name_node.value} has no logging")
        elif fields["logging"] is not anchor:
            errors.append(f"{name_node.value}: logging is not *logging")
    return errors


def test_every_service_uses_the_shared_logging_anchor() -> None:
    assert _logging_anchor_errors(compose_text()) == []
    logging = compose_raw()["x-logging"]
    assert logging["driver"] == "json-file"
    assert {"max-size", "max-file"} <= set(logging["options"]), "log files must rotate"


def test_logging_anchor_check_catches_a_service_with_its_own_logging() -> None:
    text = """
x-logging: &logging {driver: json-file, options: {max-size: 1m, max-file: "2"}}
x-base: &base {logging: *logging, restart: always}
services:
  direct: {image: a, logging: *logging}
  merged: {<<: *base, image: b}
  overridden: {<<: *base, image: c, logging: {driver: json-file}}
  copied: {image: d, logging: {driver: json-file, options: {max-size: 1m, max-file: "2"}}}
  missing: {image: e}
"""
    assert _logging_anchor_errors(text) == [
        "overridden: logging is not *logging",
        "copied: logging is not *logging",
        "missing has no logging",
    ]


def test_aisuper_services_share_the_extension_fields() -> None:
    top = composed_root(compose_text())
    shared = top["x-aisuper-service"]
    otel_env = top["x-otel-env"]
    services_node = top["services"]
    assert isinstance(services_node, yaml.MappingNode)
    nodes = {name.value: node for name, node in services_node.value}
    for name in AISUPER_SERVICES:
        assert any(node is shared for node in merged_anchors(nodes[name])), (
            f"{name} does not merge <<: *aisuper-service"
        )
        environment = node_fields(nodes[name])["environment"]
        assert any(node is otel_env for node in merged_anchors(environment)), (
            f"{name}'s environment does not merge <<: *otel-env"
        )
    # What the anchors hold, as written: the policies every aisuper service shares.
    raw = compose_raw()
    assert {"init", "restart", "logging", "stop_grace_period", "healthcheck"} <= set(
        raw["x-aisuper-service"]
    )
    assert all(key.startswith("OTEL_") for key in raw["x-otel-env"])
    # The service name is each service's own, never shared.
    assert "OTEL_SERVICE_NAME" not in raw["x-otel-env"]


def test_node_fields_resolves_merge_keys_like_yaml() -> None:
    text = "x-a: &a {k: 1, j: 1}\nx-b: &b {k: 2, i: 2}\ns: {<<: [*a, *b], j: 3}\n"
    fields = node_fields(composed_root(text)["s"])
    assert {key: node.value for key, node in fields.items()} == {"k": "1", "j": "3", "i": "2"}
    assert {key: str(node.value) for key, node in fields.items()} == {
        key: str(value) for key, value in yaml.safe_load(text)["s"].items()
    }


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_service_healthcheck_asks_grpc_health_on_its_own_port(name: str) -> None:
    service = services()[name]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"{name}: healthcheck is not a python probe"
    script = test[3]
    compile(script, f"{name} healthcheck", "exec")
    assert "grpc_health.v1" in script
    assert "HealthCheckResponse.SERVING" in script
    # The probe reads the port the server listens on from the container's environment.
    assert "os.environ['AISUPER_GRPC_PORT']" in script
    assert environment_of(service)["AISUPER_GRPC_PORT"]


# --------------------------------------------------------------------------------------------
# (c) depends_on
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", service_names())
def test_depends_on_uses_conditions(name: str) -> None:
    all_services = services()
    depends_on = all_services[name].get("depends_on")
    if depends_on is None:
        return
    assert isinstance(depends_on, dict), f"{name}: depends_on must be a mapping with conditions"
    for dependency, spec in depends_on.items():
        assert dependency in all_services, f"{name} depends on unknown service {dependency}"
        condition = (spec or {}).get("condition")
        assert condition in HEALTHY_CONDITIONS, f"{name} -> {dependency}: condition {condition}"
        if condition == "service_healthy":
            assert all_services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_service_waits_for_its_infrastructure(name: str) -> None:
    depends_on = services()[name]["depends_on"]
    assert set(depends_on) >= INFRASTRUCTURE, f"{name} starts before its infrastructure"
    for dependency in INFRASTRUCTURE:
        assert depends_on[dependency]["condition"] == "service_healthy"


def test_the_stack_runs_identity_and_catalog() -> None:
    assert {"identity", "catalog"} <= set(AISUPER_SERVICES)
    assert IDENTITY_CLIENTS, "no service authenticates through identity"
    # Every service image in the repository is part of the stack.
    dockerfiles = {path.parent.name for path in (ROOT / "services").glob("*/Dockerfile")}
    assert dockerfiles <= set(AISUPER_SERVICES), f"Dockerfiles outside the stack: {dockerfiles}"


@pytest.mark.parametrize("name", IDENTITY_CLIENTS)
def test_service_authenticates_through_identity(name: str) -> None:
    all_services = services()
    environment = environment_of(all_services[name])
    identity = environment_of(all_services["identity"])
    host, _, port = environment["AISUPER_IDENTITY_TARGET"].partition(":")
    assert host == "identity", f"{name}: AISUPER_IDENTITY_TARGET is not the identity service"
    assert port == identity["AISUPER_GRPC_PORT"] == env_file()["IDENTITY_GRPC_PORT"]
    # JWTs identity signs must carry the issuer this service expects.
    assert environment["AISUPER_JWT_ISSUER"] == identity["AISUPER_IDENTITY_JWT_ISSUER"]
    # Authentication needs identity up: start only once it answers its health check.
    depends_on = all_services[name]["depends_on"]
    assert depends_on.get("identity", {}).get("condition") == "service_healthy"


# --------------------------------------------------------------------------------------------
# (d) the services' settings and the variables of .env
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_service_environment_points_at_the_stack(name: str) -> None:
    all_services = services()
    environment = environment_of(all_services[name])
    database_key = env_key(f"aisuper_{name}", "DATABASE_URL")
    for key in ("AISUPER_KAFKA_BOOTSTRAP", database_key, "OTEL_SERVICE_NAME"):
        assert environment.get(key), f"{name}'s environment does not set {key}"
    assert environment["OTEL_SERVICE_NAME"] == name

    kafka_host, _, kafka_port = environment["AISUPER_KAFKA_BOOTSTRAP"].partition(":")
    assert kafka_host in all_services, "AISUPER_KAFKA_BOOTSTRAP names no compose service"
    assert kafka_port == "9092"

    database = urlsplit(environment[database_key])
    assert database.scheme == "postgresql+asyncpg"
    assert database.hostname in all_services
    assert database.path == f"/{name}"
    assert name in SERVICE_DATABASES, f"infra/postgres/init-databases.sql makes no {name} database"
    assert database.username == env_file()["POSTGRES_USER"]
    assert database.password == env_file()["POSTGRES_PASSWORD"]

    otlp = urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname in all_services, "OTEL_EXPORTER_OTLP_ENDPOINT names no compose service"
    assert environment["AISUPER_GRPC_PORT"] == env_file()[env_key(name, "GRPC_PORT")]
    assert environment["AISUPER_METRICS_PORT"] == env_file()[env_key(name, "METRICS_PORT")]
    # The settings default to the loopback interface; in a container that is unreachable.
    assert environment["AISUPER_GRPC_HOST"] == "0.0.0.0"
    assert environment["AISUPER_TOPICS_FILE"] in dockerfile_copy_destinations(name)
    assert environment["AISUPER_JWT_ISSUER"] == env_file()["AISUPER_JWT_ISSUER"]
    # Telemetry is configured through the standard variables only.
    assert not [key for key in environment if key.startswith("AISUPER_OTEL")]
    # The in-network ports are the ones the container exposes.
    expose = {str(port) for port in all_services[name].get("expose", [])}
    assert {environment["AISUPER_GRPC_PORT"], environment["AISUPER_METRICS_PORT"]} <= expose


def test_services_listen_on_distinct_ports() -> None:
    for suffix in ("GRPC_PORT", "METRICS_PORT"):
        ports = [env_file()[env_key(name, suffix)] for name in AISUPER_SERVICES]
        assert len(set(ports)) == len(ports), f"two services share a {suffix}: {ports}"


def test_every_compose_variable_is_defined_in_env() -> None:
    used: set[str] = set()
    for text in _walk_strings(compose_raw()):
        used |= variables_in(text)
    assert used, "the compose file uses no variable from .env"
    missing = sorted(used - set(env_file()))
    assert missing == [], f"docker-compose.yml uses variables missing from .env: {missing}"


def test_variable_helpers() -> None:
    assert variables_in("a ${A} $B $$C ${D:-x} ${E:?no}") == {"A", "B", "D", "E"}
    assert interpolate("$$X ${A}-${B:-d}-${C-e}", {"A": "1", "C": ""}) == "$X 1-d-"


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: image {image} has no tag"
        assert "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} is not pinned"
    for key, value in env_file().items():
        if key.endswith("_IMAGE"):
            assert ":" in value, f"{key}={value} has no tag"
            assert not value.endswith(":latest"), f"{key}={value} is not pinned"
    env = env_file()
    for name in AISUPER_SERVICES:
        image = services()[name]["image"]
        assert image == f"{env['AISUPER_IMAGE_PREFIX']}/{name}:{env['AISUPER_IMAGE_TAG']}"


def test_published_ports_bind_to_host_bind() -> None:
    for name, service in compose_raw()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short port syntax"
            assert port.startswith("${HOST_BIND}:"), f"{name}: {port} does not bind HOST_BIND"


def host_port_ranges(name: str) -> list[tuple[int, int]]:
    """The host port ranges a service publishes (low, high), after interpolation."""
    ranges = []
    for port in compose_raw()["services"][name].get("ports", []):
        published = interpolate(port, env_file()).split(":")[1]
        assert re.fullmatch(r"\d+-\d+", published), f"{name} publishes fixed host port {port}"
        low, high = (int(part) for part in published.split("-"))
        ranges.append((low, high))
    return ranges


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_service_can_scale(name: str) -> None:
    service = compose_raw()["services"][name]
    assert "container_name" not in service, "container_name prevents --scale"
    ranges = host_port_ranges(name)
    assert ranges, f"{name} publishes no gRPC port"
    for low, high in ranges:
        assert high > low, f"{name}: host port range {low}-{high} holds one replica"
    grpc_ranges = [port for port in service["ports"] if env_key(name, "GRPC_HOST_PORTS") in port]
    assert grpc_ranges, f"{name} does not publish ${{{env_key(name, 'GRPC_HOST_PORTS')}}}"


def test_host_port_ranges_do_not_overlap() -> None:
    ranges = sorted(
        (low, high, name) for name in AISUPER_SERVICES for low, high in host_port_ranges(name)
    )
    for (_, high, name), (low, _, other) in itertools.pairwise(ranges):
        assert high < low, f"the host port ranges of {name} and {other} overlap"
    fixed = {
        int(interpolate(port, env_file()).split(":")[1])
        for name in set(service_names()) - set(AISUPER_SERVICES)
        for port in compose_raw()["services"][name].get("ports", [])
    }
    for low, high, name in ranges:
        assert not [port for port in fixed if low <= port <= high], f"{name}'s range is taken"


# --------------------------------------------------------------------------------------------
# The other infrastructure services
# --------------------------------------------------------------------------------------------


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation() -> None:
    environment = environment_of(services()["kafka"])
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert environment["CLUSTER_ID"]
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]


def test_postgres_creates_one_database_per_service() -> None:
    statements = re.findall(
        r"^\s*CREATE\s+DATABASE\s+(\w+)", POSTGRES_INIT.read_text(), re.I | re.M
    )
    assert set(statements) == SERVICE_DATABASES
    assert len(statements) == len(set(statements))
    mounts = services()["postgres"]["volumes"]
    assert any(
        str(mount).startswith("./infra/postgres/init-databases.sql:/docker-entrypoint-initdb.d/")
        for mount in mounts
    )


# --------------------------------------------------------------------------------------------
# (e) the aisuper service Dockerfiles and .dockerignore
# --------------------------------------------------------------------------------------------


def dockerfile(name: str) -> Path:
    return ROOT / "services" / name / "Dockerfile"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends with a continuation line"
    return instructions


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    return parse_dockerfile(dockerfile(name).read_text())


def split_stages(instructions: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def dockerfile_stages(name: str) -> list[list[tuple[str, str]]]:
    return split_stages(dockerfile_instructions(name))


@functools.cache
def service_project(name: str) -> dict[str, Any]:
    """[project] of services/<name>/pyproject.toml."""
    project = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())["project"]
    assert isinstance(project, dict)
    return project


def service_module(name: str) -> str:
    """The service's import package, run with `python -m` (aisuper-catalog -> aisuper_catalog)."""
    module = str(service_project(name)["name"]).replace("-", "_")
    assert (ROOT / "services" / name / "src" / module / "__main__.py").is_file(), module
    return module


def workspace_members() -> list[str]:
    """The uv workspace members (paths from the root), globs of the root pyproject.toml expanded."""
    workspace = tomllib.loads(ROOT_PYPROJECT.read_text())["tool"]["uv"]["workspace"]
    excluded = {
        path.relative_to(ROOT).as_posix()
        for pattern in workspace.get("exclude", [])
        for path in ROOT.glob(pattern)
    }
    members = set()
    for pattern in workspace["members"]:
        matches = [path for path in ROOT.glob(pattern) if (path / "pyproject.toml").is_file()]
        assert matches, f"workspace member pattern {pattern!r} matches no project"
        members |= {path.relative_to(ROOT).as_posix() for path in matches}
    return sorted(members - excluded)


def test_workspace_members_expand_the_globs() -> None:
    members = workspace_members()
    assert {"libs/protos", "libs/platform", "services/identity", "services/catalog", "cli"} <= set(
        members
    )
    assert not [member for member in members if "*" in member]


def _missing_member_metadata(
    instructions: Sequence[tuple[str, str]], members: Sequence[str]
) -> list[str]:
    """The pyproject.toml files the builder lacks when it first runs `uv sync` (uv loads the
    whole workspace, so every member's must be there, the root's and the lock file too)."""
    builder = split_stages(instructions)[0]
    copied: set[str] = set()
    for keyword, arguments in builder:
        if keyword == "RUN" and "uv sync" in arguments:
            break
        if keyword in ("COPY", "ADD") and "--from" not in arguments:
            words = [word for word in arguments.split() if not word.startswith("--")]
            sources, destination = words[:-1], words[-1]
            for source in sources:
                # `COPY a b ./` keeps the names; `COPY a/pyproject.toml a/pyproject.toml` too.
                if destination.endswith("/") or len(sources) > 1:
                    target = (PurePosixPath(destination) / PurePosixPath(source).name).as_posix()
                else:
                    target = destination
                if target == PurePosixPath(source).as_posix():
                    copied.add(source)
    wanted = ["pyproject.toml", "uv.lock", *(f"{member}/pyproject.toml" for member in members)]
    return [path for path in wanted if path not in copied]


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_copies_every_workspace_members_metadata(name: str) -> None:
    missing = _missing_member_metadata(dockerfile_instructions(name), workspace_members())
    assert missing == [], f"{name}'s builder runs uv sync without {missing}"


def test_member_metadata_check_catches_a_missing_member() -> None:
    members = ["libs/a", "services/b", "cli"]

    def builder(copies: str, after: str = "") -> list[tuple[str, str]]:
        return parse_dockerfile(
            f"FROM python:3.11 AS builder\n{copies}RUN uv sync --frozen\n{after}"
            "FROM python:3.11 AS runtime\nCOPY --from=builder /app/cli/pyproject.toml cli/\n"
        )

    complete = (
        "COPY pyproject.toml uv.lock ./\n"
        "COPY libs/a/pyproject.toml libs/a/pyproject.toml\n"
        "COPY services/b/pyproject.toml services/b/pyproject.toml\n"
        "COPY cli/pyproject.toml cli/pyproject.toml\n"
    )
    assert _missing_member_metadata(builder(complete), members) == []
    cli = "COPY cli/pyproject.toml cli/pyproject.toml\n"
    without_cli = complete.replace(cli, "")
    assert _missing_member_metadata(builder(without_cli), members) == ["cli/pyproject.toml"]
    # A pyproject.toml copied to another place does not count, nor one copied after uv sync.
    moved = without_cli + "COPY cli/pyproject.toml x/\n"
    assert _missing_member_metadata(builder(moved), members) == ["cli/pyproject.toml"]
    late = builder(without_cli, after=cli)
    assert _missing_member_metadata(late, members) == ["cli/pyproject.toml"]
    no_lock = complete.replace("COPY pyproject.toml uv.lock ./", "COPY pyproject.toml ./")
    assert _missing_member_metadata(builder(no_lock), members) == ["uv.lock"]


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_is_multi_stage(name: str) -> None:
    stages = dockerfile_stages(name)
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    names = [re.split(r"\s+as\s+", stage[0][1], flags=re.I) for stage in stages]
    assert all(len(parts) == 2 for parts in names), "name every stage (FROM ... AS name)"
    builder = names[0][1]
    final = stages[-1]
    assert any(
        keyword == "COPY" and f"--from={builder}" in arguments for keyword, arguments in final
    ), "the final stage copies nothing from the builder"
    # The venv's editable installs point at the service's sources: they must come along.
    assert ("COPY", f"--from={builder} /app/services/{name} /app/services/{name}") in final


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_base_image_and_uv_are_pinned_like_env(name: str) -> None:
    arguments = {
        key: value
        for keyword, rest in dockerfile_instructions(name)
        if keyword == "ARG" and "=" in rest
        for key, _, value in [rest.partition("=")]
    }
    assert arguments["PYTHON_IMAGE"] == env_file()["PYTHON_IMAGE"]
    assert arguments["UV_VERSION"] == env_file()["UV_VERSION"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", arguments["PYTHON_IMAGE"])
    build = compose_raw()["services"][name]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == f"services/{name}/Dockerfile"
    assert build["args"] == {"PYTHON_IMAGE": "${PYTHON_IMAGE}", "UV_VERSION": "${UV_VERSION}"}


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_installs_the_locked_environment_with_uv(name: str) -> None:
    runs = [arguments for keyword, arguments in dockerfile_stages(name)[0] if keyword == "RUN"]
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "the builder stage never runs uv sync"
    package = service_project(name)["name"]
    assert package == f"aisuper-{name}"
    for sync in syncs:
        assert "--frozen" in sync, f"uv sync without --frozen: {sync}"
        assert "--no-dev" in sync, f"uv sync with dev dependencies: {sync}"
        assert re.search(rf"--package {re.escape(package)}(\s|$)", sync), sync
    assert any('pip install --no-cache-dir --disable-pip-version-check "uv==' in r for r in runs)


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_runs_as_a_non_root_user(name: str) -> None:
    final = dockerfile_stages(name)[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage never switches USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the final stage runs as {user}"
    last_user = max(index for index, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in final[last_user:]), "RUN after USER"


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_exposes_the_ports_and_starts_the_module(name: str) -> None:
    final = dict(dockerfile_stages(name)[-1])
    ports = {env_file()[env_key(name, "GRPC_PORT")], env_file()[env_key(name, "METRICS_PORT")]}
    assert set(final["EXPOSE"].split()) >= ports
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m", service_module(name)]
    assert "HEALTHCHECK" not in final


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as moby's patternmatcher reads it: (is_exclusion, regex) in file order."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = line[1:].strip() if exclusion else line
        line = str(PurePosixPath(line.lstrip("/"))) if line not in ("", ".") else "."
        regex = ""
        index = 0
        while index < len(line):
            char = line[index]
            if line.startswith("**/", index):
                regex += "(.*/)?"
                index += 3
                continue
            if line.startswith("**", index):
                regex += ".*"
                index += 2
                continue
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif char == "[":
                end = line.index("]", index)
                regex += line[index : end + 1]
                index = end
            else:
                regex += re.escape(char)
            index += 1
        patterns.append((exclusion, re.compile(regex + r"\Z")))
    return patterns


def dockerignored(path: str) -> bool:
    """Whether the build context leaves out `path` (relative to the repository root)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for exclusion, pattern in _dockerignore_patterns():
        if any(pattern.match(candidate) for candidate in candidates):
            ignored = not exclusion
    return ignored


def dockerfile_context_sources(name: str) -> list[str]:
    sources = []
    for keyword, arguments in dockerfile_instructions(name):
        if keyword not in ("COPY", "ADD"):
            continue
        words = [word for word in arguments.split() if not word.startswith("--")]
        if any(word.startswith("--from") for word in arguments.split()):
            continue
        sources.extend(words[:-1])
    return sources


def dockerfile_copy_destinations(name: str) -> set[str]:
    return {
        arguments.split()[-1]
        for keyword, arguments in dockerfile_stages(name)[-1]
        if keyword in ("COPY", "ADD")
    }


def dockerfile_environment(name: str) -> dict[str, str]:
    """ENV of the final stage (KEY=VALUE form), what the image runs with."""
    final = dockerfile_stages(name)[-1]
    text = " ".join(arguments for keyword, arguments in final if keyword == "ENV")
    return {key: value.strip('"') for key, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", text)}


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_points_the_service_at_the_copied_topics_file(name: str) -> None:
    environment = dockerfile_environment(name)
    assert "AISUPER_TOPICS_FILE" in environment, "the image does not set AISUPER_TOPICS_FILE"
    assert environment["AISUPER_TOPICS_FILE"] in dockerfile_copy_destinations(name)
    assert environment["AISUPER_GRPC_HOST"] == "0.0.0.0"
    assert environment["OTEL_SERVICE_NAME"] == name


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerignore_keeps_every_copied_source(name: str) -> None:
    sources = dockerfile_context_sources(name)
    assert "uv.lock" in sources
    assert "pyproject.toml" in sources
    for source in sources:
        assert not dockerignored(source), f".dockerignore leaves out {source}"
        path = ROOT / source
        if path.is_dir():
            kept = [
                file
                for file in path.rglob("*")
                if file.is_file() and not dockerignored(file.relative_to(ROOT).as_posix())
            ]
            assert kept, f"{source}: .dockerignore leaves nothing of it"
    # The service's migrations (beside src/, where it looks for them) go into the image.
    for migration in (ROOT / "services" / name / "migrations").rglob("*.py"):
        assert not dockerignored(migration.relative_to(ROOT).as_posix()), migration


@pytest.mark.parametrize("name", AISUPER_SERVICES)
def test_dockerfile_sources_exist(name: str) -> None:
    sources = dockerfile_context_sources(name)
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert missing == [], f"the Dockerfile COPYs files missing from the repository: {missing}"


def test_dockerignore_leaves_out_environments_and_secrets() -> None:
    for path in (
        ".env",
        ".venv/bin/python",
        ".git/config",
        "libs/platform/src/aisuper/platform/__pycache__/x.cpython-311.pyc",
        "services/identity/tests/test_x.py",
        "services/identity/.venv/bin/python",
        "services/catalog/tests/unit/test_x.py",
        "services/catalog/migrations/__pycache__/env.cpython-311.pyc",
        "tests/contract/test_compose.py",
        "docs/index.md",
    ):
        assert dockerignored(path), f".dockerignore lets {path} into the build context"
    for path in (
        "uv.lock",
        "libs/platform/src/aisuper/platform/__init__.py",
        "services/identity/src/aisuper_identity/__init__.py",
        "services/catalog/src/aisuper_catalog/__init__.py",
        "services/catalog/migrations/env.py",
        "infra/kafka/topics.yaml",
    ):
        assert not dockerignored(path), f".dockerignore leaves out {path}"


# --------------------------------------------------------------------------------------------
# (f) the OpenTelemetry Collector configuration
# --------------------------------------------------------------------------------------------


def _merge(base: Any, overlay: Any) -> Any:
    """The collector's merge of several --config files: maps deep-merged, the rest replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return overlay


def collector_config_files() -> list[str]:
    """The --config files of the otel-collector service, as paths inside infra/otel."""
    service = services()["otel-collector"]
    mounts = [str(mount) for mount in service["volumes"]]
    assert "./infra/otel:/etc/otelcol-contrib:ro" in mounts
    files = []
    for argument in service["command"]:
        assert argument.startswith("--config=/etc/otelcol-contrib/"), argument
        files.append(argument.removeprefix("--config=/etc/otelcol-contrib/"))
    assert files[0] == "collector.yaml"
    return files


def collector_config(*files: str) -> dict[str, Any]:
    merged: Any = {}
    for name in files:
        loaded = yaml.safe_load((OTEL_DIR / name).read_text())
        assert isinstance(loaded, dict), f"{name} is not a mapping"
        merged = _merge(merged, loaded)
    assert isinstance(merged, dict)
    return merged


@pytest.mark.parametrize("debug", ["off", "on"])
def test_collector_pipelines_reference_defined_components(debug: str) -> None:
    config = collector_config("collector.yaml", f"debug-{debug}.yaml")
    service = config["service"]
    for extension in service.get("extensions", []):
        assert extension in (config.get("extensions") or {}), f"undefined extension {extension}"
    pipelines = service["pipelines"]
    assert pipelines
    for pipeline_name, pipeline in pipelines.items():
        assert pipeline.get("receivers"), f"{pipeline_name} has no receivers"
        assert pipeline.get("exporters"), f"{pipeline_name} has no exporters"
        for kind in ("receivers", "processors", "exporters"):
            defined = config.get(kind) or {}
            for component in pipeline.get(kind, []):
                assert component in defined, f"{pipeline_name} uses undefined {kind}: {component}"
    traces = pipelines["traces"]
    assert traces["processors"][0] == "memory_limiter", "memory_limiter must come first"
    assert "batch" in traces["processors"]
    assert ("debug" in traces["exporters"]) == (debug == "on")


def test_collector_receives_otlp_and_exports_to_jaeger() -> None:
    config = collector_config(*collector_config_files())
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    jaeger = [
        settings
        for name, settings in config["exporters"].items()
        if name.split("/")[0] == "otlp" and settings["endpoint"].split(":")[0] == "jaeger"
    ]
    assert jaeger, "no OTLP exporter to jaeger"
    assert "jaeger" in services()
    assert "debug" in config["exporters"]
    # .env turns the debug exporter off by default.
    assert env_file()["OTEL_COLLECTOR_DEBUG"] == "off"
    assert "debug" not in config["service"]["pipelines"]["traces"]["exporters"]


# --------------------------------------------------------------------------------------------
# docker compose config (when a Compose v2 CLI is installed; no engine needed)
# --------------------------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            done = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        # Compose v1 (docker-compose 1.x) does not implement the Compose Specification.
        if done.returncode == 0 and not re.search(r"version 1\.", done.stdout):
            return command
    return None


def _compose_environment() -> dict[str, str]:
    """The caller's environment without anything that would override .env or pick other files."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in env_file() and not key.startswith("COMPOSE_")
    }


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no Compose v2 CLI here (neither the `docker compose` plugin nor a v2 "
            "`docker-compose` on PATH); schema and contract checks above still ran"
        )
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    environment = _compose_environment()
    quiet = subprocess.run(
        [*base, "config", "--quiet"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert quiet.returncode == 0, quiet.stderr
    rendered = subprocess.run(
        [*base, "config", "--format", "json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    config = json.loads(rendered.stdout)
    # Compose's own interpolation agrees with the one these tests check.
    assert set(config["services"]) == set(services())
    for name in AISUPER_SERVICES:
        rendered_environment = environment_of(config["services"][name])
        assert rendered_environment == environment_of(services()[name]), name
