"""aisuper's Kafka topic definitions (``infra/kafka/topics.yaml``) and their idempotent creation.

    specs = load_topics(find_topics_file())
    await apply_topics(bootstrap, specs)

`load_topics` validates the file and expands each topic's dead-letter topic
(``<service>.<aggregate>.dlq``). `apply_topics` creates the topics that are missing with
aiokafka's admin client; it works against Apache Kafka and Tansu (configs a broker rejects are
dropped with a warning rather than failing the whole run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

TOPICS_FILE_ENV = "AISUPER_TOPICS_FILE"
TOPICS_FILE_RELATIVE = Path("infra/kafka/topics.yaml")
DLQ_SUFFIX = ".dlq"

_SEGMENT = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
#: ``<service>.<aggregate>``, optionally followed by ``.dlq``.
TOPIC_NAME_PATTERN = re.compile(rf"^{_SEGMENT}\.{_SEGMENT}(?:\.dlq)?$")

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

# Kafka error codes handled by apply_topics.
_TOPIC_ALREADY_EXISTS = 36
_CONFIG_ERRORS = frozenset(
    {
        -1,  # UnknownServerError: what a broker without config support may answer
        35,  # UnsupportedVersion
        40,  # InvalidConfig
        44,  # PolicyViolation
    }
)


class TopicsFileError(ValueError):
    """The topics file is missing, not YAML, or does not describe valid topics."""


class TopicApplyError(RuntimeError):
    """The broker refused to create one or more topics."""


class TopicSpec(BaseModel):
    """One Kafka topic: its name, partition count and topic-level configs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    partitions: int = Field(ge=1)
    retention_ms: int = Field(ge=-1)
    cleanup_policy: CleanupPolicy = "delete"
    configs: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not TOPIC_NAME_PATTERN.match(name):
            raise ValueError(
                f"topic name {name!r} is not <service>.<aggregate> "
                "(lowercase letters, digits and '-', e.g. 'identity.api-keys')"
            )
        return name

    @property
    def is_dlq(self) -> bool:
        return self.name.endswith(DLQ_SUFFIX)

    def topic_configs(self) -> dict[str, str]:
        """The topic-level configs sent when creating the topic."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **self.configs,
        }


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int | None = Field(default=None, ge=1)
    retention_ms: int | None = Field(default=None, ge=-1)
    cleanup_policy: CleanupPolicy | None = None
    configs: dict[str, str] = Field(default_factory=dict)


class _TopicEntry(_Settings):
    name: str
    dlq: bool | _Settings = True


class _TopicsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _Settings = Field(default_factory=_Settings)
    dlq: _Settings = Field(default_factory=_Settings)
    topics: list[_TopicEntry] = Field(min_length=1)


_BUILTIN_DEFAULTS = _Settings(
    partitions=3, retention_ms=7 * 24 * 3600 * 1000, cleanup_policy="delete"
)
_BUILTIN_DLQ = _Settings(partitions=1, retention_ms=30 * 24 * 3600 * 1000, cleanup_policy="delete")


def _merge(*layers: _Settings) -> dict[str, Any]:
    merged: dict[str, Any] = {"configs": {}}
    for layer in layers:
        for key in ("partitions", "retention_ms", "cleanup_policy"):
            value = getattr(layer, key)
            if value is not None:
                merged[key] = value
        merged["configs"] = {**merged["configs"], **layer.configs}
    return merged


def _format_validation_error(where: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"  {loc}: {error['msg']}")
    return f"{where}: invalid topics file:\n" + "\n".join(problems)


def parse_topics(data: Any, *, source: str = "<topics>") -> list[TopicSpec]:
    """Validate already-parsed YAML (see `load_topics`)."""
    if not isinstance(data, Mapping):
        raise TopicsFileError(
            f"{source}: expected a mapping with a 'topics' list, got {type(data).__name__}"
        )
    try:
        parsed = _TopicsFile.model_validate(data)
    except ValidationError as exc:
        raise TopicsFileError(_format_validation_error(source, exc)) from None

    defaults = _merge(_BUILTIN_DEFAULTS, parsed.defaults)
    dlq_defaults = _merge(_BUILTIN_DLQ, parsed.dlq)
    specs: list[TopicSpec] = []
    for index, entry in enumerate(parsed.topics):
        where = f"{source}: topics.{index} ({entry.name!r})"
        if entry.name.endswith(DLQ_SUFFIX):
            raise TopicsFileError(
                f"{where}: do not list .dlq topics; they are made from the "
                "'dlq' section (override with 'dlq: {...}' on the topic)"
            )
        try:
            specs.append(TopicSpec(name=entry.name, **_merge(_Settings(**defaults), entry)))
            if entry.dlq is not False:
                override = entry.dlq if isinstance(entry.dlq, _Settings) else _Settings()
                specs.append(
                    TopicSpec(
                        name=entry.name + DLQ_SUFFIX, **_merge(_Settings(**dlq_defaults), override)
                    )
                )
        except ValidationError as exc:
            raise TopicsFileError(_format_validation_error(where, exc)) from None

    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise TopicsFileError(f"{source}: topic {spec.name!r} is defined twice")
        seen.add(spec.name)
    return specs


def load_topics(path: Path | str) -> list[TopicSpec]:
    """Read and validate a topics YAML file; returns main topics each followed by its DLQ.

    Raises `TopicsFileError` (a `ValueError`) naming the file and the bad entry.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopicsFileError(f"cannot read topics file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopicsFileError(f"{path}: not valid YAML: {exc}") from exc
    return parse_topics(data, source=str(path))


def find_topics_file(start: Path | None = None) -> Path:
    """``$AISUPER_TOPICS_FILE`` when set, else ``infra/kafka/topics.yaml`` in the repo root
    (found by walking up from `start`, default the current directory)."""
    override = os.environ.get(TOPICS_FILE_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{TOPICS_FILE_ENV}={override!r} is not a file")
        return path
    from aisuper.platform.embedded.kafka import find_repo_root

    root = find_repo_root(start)
    if root is None or not (root / TOPICS_FILE_RELATIVE).is_file():
        raise FileNotFoundError(
            f"cannot find {TOPICS_FILE_RELATIVE} above {start or Path.cwd()} "
            f"(set {TOPICS_FILE_ENV} to the topics file)"
        )
    return root / TOPICS_FILE_RELATIVE


async def apply_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    wait_s: float = 30.0,
) -> None:
    """Create the topics of `specs` that do not exist yet, then wait until they have leaders.

    Idempotent: existing topics are left alone (a partition count that differs from the spec
    is logged, not changed). When the broker rejects a topic's configs (Tansu or an older Kafka
    may), it retries with only retention.ms and cleanup.policy, then with the broker's
    defaults, and logs a warning naming the topic and the broker's error.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    wanted = {spec.name: spec for spec in specs}
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = await _describe(admin, list(wanted))
        for name, partitions in existing.items():
            if name in wanted and partitions and partitions != wanted[name].partitions:
                log.warning(
                    "topic %s exists with %d partitions (spec says %d): left as is",
                    name,
                    partitions,
                    wanted[name].partitions,
                )
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            log.info("topics: all %d present on %s", len(wanted), bootstrap)
            return

        async def create(
            batch: list[tuple[TopicSpec, dict[str, str]]],
        ) -> dict[str, tuple[int, str]]:
            response = await admin.create_topics(
                [
                    NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=configs)
                    for spec, configs in batch
                ]
            )
            errors: dict[str, tuple[int, str]] = {}
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                message = topic_error[2] if len(topic_error) > 2 else None
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    errors[name] = (code, message or for_code(code).__name__)
            return errors

        # Rejected configs degrade step by step: all configs, then only retention.ms and
        # cleanup.policy, then none (the broker's defaults).
        attempts: list[tuple[str, Callable[[TopicSpec], dict[str, str]]]] = [
            ("its configs", lambda spec: spec.topic_configs()),
            ("only retention.ms and cleanup.policy", _core_configs),
            ("the broker's default configs", lambda spec: {}),
        ]
        pending = missing
        errors: dict[str, tuple[int, str]] = {}
        for step, (label, configs_of) in enumerate(attempts):
            if step > 0:
                log.warning(
                    "broker %s rejected the configs of %s; retrying with %s",
                    bootstrap,
                    "; ".join(
                        f"{s.name} ({errors[s.name][0]}: {errors[s.name][1]})" for s in pending
                    ),
                    label,
                )
                for spec in pending:
                    errors.pop(spec.name)
            errors.update(await create([(spec, configs_of(spec)) for spec in pending]))
            pending = [
                wanted[name]
                for name, (code, _) in errors.items()
                if code in _CONFIG_ERRORS and wanted[name] in pending
            ]
            if not pending:
                break
        if errors:
            details = "; ".join(
                f"{name}: error {code} {message}"
                for name, (code, message) in sorted(errors.items())
            )
            raise TopicApplyError(f"could not create topics on {bootstrap}: {details}")
        log.info("topics: created %s on %s", ", ".join(spec.name for spec in missing), bootstrap)
        await _wait_for_leaders(admin, [spec.name for spec in missing], wait_s)
    finally:
        await admin.close()


def _core_configs(spec: TopicSpec) -> dict[str, str]:
    configs = spec.topic_configs()
    return {key: configs[key] for key in ("retention.ms", "cleanup.policy")}


async def _all_topics(admin: Any) -> list[dict[str, Any]]:
    # Metadata for *all* topics: asking for named topics would auto-create missing ones on a
    # broker with auto.create.topics.enable=true (aiokafka sets allow_auto_topic_creation).
    topics: list[dict[str, Any]] = await admin.describe_topics(None)
    return topics


async def _describe(admin: Any, names: list[str]) -> dict[str, int]:
    """Existing topics among `names`, with their partition counts (0 = not ready yet)."""
    wanted = set(names)
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in await _all_topics(admin)
        if topic["topic"] in wanted and topic["error_code"] == 0
    }


async def _wait_for_leaders(admin: Any, names: list[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    pending = set(names)
    while pending:
        for topic in await _all_topics(admin):
            partitions = topic["partitions"]
            if (
                topic["topic"] in pending
                and topic["error_code"] == 0
                and partitions
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions)
            ):
                pending.discard(topic["topic"])
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicApplyError(
                f"topics without a leader after {wait_s:.0f}s: {', '.join(sorted(pending))}"
            )
        await asyncio.sleep(0.1)
