"""Contract tests of the local stack: docker-compose.yml, .env, the identity Dockerfile,
.dockerignore, the OpenTelemetry Collector configuration and the PostgreSQL init script.

Nothing here needs a Docker engine. The compose file is checked against the official Compose
Specification JSON schema as vendored by check-jsonschema (a dev dependency of the workspace:
``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, Apache-2.0, licence text beside it
in ``licenses/LICENSE.compose-spec``; the same schema ``check-jsonschema --builtin-schema
vendor.compose-spec`` uses). When a Compose v2 CLI is installed (``docker compose`` plugin or a
v2 ``docker-compose`` binary) ``docker compose config`` is run too; otherwise that test skips.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
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
DOCKERFILE = ROOT / "services" / "identity" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OTEL_DIR = ROOT / "infra" / "otel"
COLLECTOR_CONFIG = OTEL_DIR / "collector.yaml"
POSTGRES_INIT = ROOT / "infra" / "postgres" / "init-databases.sql"

SERVICE_DATABASES = {"identity", "catalog", "compute", "inference", "policy"}
HEALTHY_CONDITIONS = {"service_healthy", "service_completed_successfully"}
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


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


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list form."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


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


def test_every_service_uses_the_shared_logging_anchor() -> None:
    # Composed (not constructed) YAML keeps aliases as references to the anchored node.
    root = yaml.compose(compose_text())
    assert isinstance(root, yaml.MappingNode)
    top = {key.value: value for key, value in root.value}
    assert "x-logging" in top, "no top-level x-logging extension"
    anchor = top["x-logging"]
    anchored = [
        event.anchor
        for event in yaml.parse(compose_text())
        if isinstance(event, yaml.MappingStartEvent) and event.anchor
    ]
    assert anchored.count("logging") == 1, "x-logging is not anchored as &logging"
    services_node = top["services"]
    assert isinstance(services_node, yaml.MappingNode)
    for name_node, service_node in services_node.value:
        fields = {key.value: value for key, value in service_node.value}
        assert "logging" in fields, f"{name_node.value} has no logging"
        assert fields["logging"] is anchor, f"{name_node.value}: logging is not *logging"
    logging = compose_raw()["x-logging"]
    assert logging["driver"] == "json-file"
    assert {"max-size", "max-file"} <= set(logging["options"]), "log files must rotate"


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


def test_identity_waits_for_its_infrastructure() -> None:
    depends_on = services()["identity"]["depends_on"]
    assert {"kafka", "postgres", "otel-collector"} <= set(depends_on)


# --------------------------------------------------------------------------------------------
# (d) identity's settings and the variables of .env
# --------------------------------------------------------------------------------------------


def test_identity_environment_points_at_the_stack() -> None:
    all_services = services()
    environment = environment_of(all_services["identity"])
    for key in ("AISUPER_KAFKA_BOOTSTRAP", "AISUPER_IDENTITY_DATABASE_URL", "OTEL_SERVICE_NAME"):
        assert environment.get(key), f"identity's environment does not set {key}"
    assert environment["OTEL_SERVICE_NAME"] == "identity"

    kafka_host, _, kafka_port = environment["AISUPER_KAFKA_BOOTSTRAP"].partition(":")
    assert kafka_host in all_services, "AISUPER_KAFKA_BOOTSTRAP names no compose service"
    assert kafka_port == "9092"

    database = urlsplit(environment["AISUPER_IDENTITY_DATABASE_URL"])
    assert database.scheme == "postgresql+asyncpg"
    assert database.hostname in all_services
    assert database.path == "/identity"
    assert database.username == env_file()["POSTGRES_USER"]
    assert database.password == env_file()["POSTGRES_PASSWORD"]

    otlp = urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname in all_services, "OTEL_EXPORTER_OTLP_ENDPOINT names no compose service"
    assert environment["AISUPER_GRPC_PORT"] == "50051"
    # The settings default to the loopback interface; in a container that is unreachable.
    assert environment["AISUPER_GRPC_HOST"] == "0.0.0.0"
    assert environment["AISUPER_TOPICS_FILE"] in dockerfile_copy_destinations()
    assert environment["AISUPER_METRICS_PORT"] == "9451"
    # Telemetry is configured through the standard variables only.
    assert not [key for key in environment if key.startswith("AISUPER_OTEL")]


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


def test_published_ports_bind_to_host_bind_and_identity_can_scale() -> None:
    raw_services = compose_raw()["services"]
    for name, service in raw_services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short port syntax"
            assert port.startswith("${HOST_BIND}:"), f"{name}: {port} does not bind HOST_BIND"
    identity = raw_services["identity"]
    assert "container_name" not in identity, "container_name prevents --scale"
    for port in identity.get("ports", []):
        published = interpolate(port, env_file()).split(":")[1]
        assert re.fullmatch(r"\d+-\d+", published), f"identity publishes fixed host port {port}"
        low, high = (int(part) for part in published.split("-"))
        assert high > low


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
# (e) the identity Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
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


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    names = [re.split(r"\s+as\s+", stage[0][1], flags=re.I) for stage in stages]
    assert all(len(parts) == 2 for parts in names), "name every stage (FROM ... AS name)"
    builder = names[0][1]
    final = stages[-1]
    assert any(
        keyword == "COPY" and f"--from={builder}" in arguments for keyword, arguments in final
    ), "the final stage copies nothing from the builder"


def test_dockerfile_base_image_and_uv_are_pinned_like_env() -> None:
    arguments = {
        key: value
        for keyword, rest in dockerfile_instructions()
        if keyword == "ARG" and "=" in rest
        for key, _, value in [rest.partition("=")]
    }
    assert arguments["PYTHON_IMAGE"] == env_file()["PYTHON_IMAGE"]
    assert arguments["UV_VERSION"] == env_file()["UV_VERSION"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", arguments["PYTHON_IMAGE"])
    build_args = compose_raw()["services"]["identity"]["build"]["args"]
    assert build_args == {"PYTHON_IMAGE": "${PYTHON_IMAGE}", "UV_VERSION": "${UV_VERSION}"}


def test_dockerfile_installs_the_locked_environment_with_uv() -> None:
    runs = [arguments for keyword, arguments in dockerfile_stages()[0] if keyword == "RUN"]
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "the builder stage never runs uv sync"
    for sync in syncs:
        assert "--frozen" in sync, f"uv sync without --frozen: {sync}"
        assert "--no-dev" in sync, f"uv sync with dev dependencies: {sync}"
        assert "--package aisuper-identity" in sync
    assert any('pip install --no-cache-dir --disable-pip-version-check "uv==' in r for r in runs)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage never switches USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the final stage runs as {user}"
    last_user = max(index for index, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in final[last_user:]), "RUN after USER"


def test_dockerfile_exposes_the_ports_and_starts_the_module() -> None:
    final = dict(dockerfile_stages()[-1])
    assert set(final["EXPOSE"].split()) >= {"50051", "9451"}
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m", "aisuper_identity"]
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


def dockerfile_context_sources() -> list[str]:
    sources = []
    for keyword, arguments in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = [word for word in arguments.split() if not word.startswith("--")]
        if any(word.startswith("--from") for word in arguments.split()):
            continue
        sources.extend(words[:-1])
    return sources


def dockerfile_copy_destinations() -> set[str]:
    return {
        arguments.split()[-1]
        for keyword, arguments in dockerfile_stages()[-1]
        if keyword in ("COPY", "ADD")
    }


def test_dockerfile_points_the_service_at_the_copied_topics_file() -> None:
    final = dockerfile_stages()[-1]
    environment = " ".join(arguments for keyword, arguments in final if keyword == "ENV")
    match = re.search(r"AISUPER_TOPICS_FILE=(\S+)", environment)
    assert match, "the image does not set AISUPER_TOPICS_FILE"
    assert match[1] in dockerfile_copy_destinations()
    assert "AISUPER_GRPC_HOST=0.0.0.0" in environment


def test_dockerignore_keeps_every_copied_source() -> None:
    sources = dockerfile_context_sources()
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


def test_dockerfile_sources_exist() -> None:
    missing = [source for source in dockerfile_context_sources() if not (ROOT / source).exists()]
    assert missing == [], f"the Dockerfile COPYs files missing from the repository: {missing}"


def test_dockerignore_leaves_out_environments_and_secrets() -> None:
    for path in (
        ".env",
        ".venv/bin/python",
        ".git/config",
        "libs/platform/src/aisuper/platform/__pycache__/x.cpython-311.pyc",
        "services/identity/tests/test_x.py",
        "services/identity/.venv/bin/python",
        "tests/contract/test_compose.py",
        "docs/index.md",
    ):
        assert dockerignored(path), f".dockerignore lets {path} into the build context"
    for path in (
        "uv.lock",
        "libs/platform/src/aisuper/platform/__init__.py",
        "services/identity/src/aisuper_identity/__init__.py",
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
    assert environment_of(config["services"]["identity"]) == environment_of(services()["identity"])
