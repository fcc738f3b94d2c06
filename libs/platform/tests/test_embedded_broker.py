"""The embedded brokers (Tansu always, Apache Kafka when its jars are fetched) and topics.yaml."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from aisuper.platform.embedded import (
    EmbeddedBroker,
    find_java,
    find_kafka_classpath,
    read_pid_file,
    select_broker_kind,
    start_embedded_broker,
)
from aisuper.platform.embedded.broker import pid_alive
from aisuper.platform.topics import (
    TopicsFileError,
    TopicSpec,
    apply_topics,
    find_topics_file,
    load_topics,
)

MAIN_TOPICS = [
    "identity.organizations",
    "identity.api-keys",
    "catalog.listings",
    "compute.allocations",
    "compute.usage",
    "inference.usage",
    "policy.programs",
    "policy.subsidies",
    "policy.decisions",
]


def _kafka_skip_reason() -> str | None:
    if find_java() is None:
        return "Apache Kafka needs a Java 17+ runtime (none found)"
    if find_kafka_classpath() is None:
        return "Apache Kafka jars not fetched: run infra/kafka/fetch.sh"
    return None


async def _eventually(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {within}s: {what}")
        await asyncio.sleep(0.05)


async def _roundtrip(broker: EmbeddedBroker, topic: str, *, idempotent: bool) -> None:
    """Produce with acks=all and read the message back in a consumer group."""
    key, value = b"org-1", f"hello {uuid.uuid4()}".encode()
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=idempotent
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    assert meta.topic == topic
    assert meta.offset >= 0

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                message = await consumer.getone()
                if message.value == value:
                    break
        assert message.key == key
        await consumer.commit()
    finally:
        await consumer.stop()


async def _check_broker(broker: EmbeddedBroker, data_dir: Path, *, idempotent: bool) -> None:
    assert broker.running
    assert read_pid_file(data_dir) == broker.pid
    assert json.loads((data_dir / "broker.json").read_text())["bootstrap"] == broker.bootstrap

    specs = load_topics(find_topics_file())
    await apply_topics(broker.bootstrap, specs)
    await apply_topics(broker.bootstrap, specs)  # idempotent

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(None)}
    finally:
        await admin.close()
    for name in MAIN_TOPICS:
        assert len(described[name]["partitions"]) == 3, name
        assert len(described[f"{name}.dlq"]["partitions"]) == 1, name

    await _roundtrip(broker, "identity.organizations", idempotent=idempotent)


async def _stop_and_check_gone(broker: EmbeddedBroker, data_dir: Path) -> None:
    await broker.stop()
    assert not broker.running
    assert not pid_alive(broker.pid)
    assert read_pid_file(data_dir) is None


# --- Tansu ---------------------------------------------------------------------------------------


async def test_tansu_roundtrip(tmp_path: Path) -> None:
    started = time.monotonic()
    broker = await start_embedded_broker(tmp_path, prefer="tansu")
    try:
        assert broker.kind == "tansu"
        assert broker.bootstrap.startswith("127.0.0.1:")
        assert any("memory" in limit for limit in broker.limits)
        assert time.monotonic() - started < 15
        # Tansu answers the idempotent producer with UnknownError.
        await _check_broker(broker, tmp_path, idempotent=False)
    finally:
        await _stop_and_check_gone(broker, tmp_path)


# --- Apache Kafka --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_apache_kafka_roundtrip_and_restart(tmp_path: Path) -> None:
    reason = _kafka_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    started = time.monotonic()
    broker = await start_embedded_broker(tmp_path, prefer="apache-kafka")
    try:
        assert broker.kind == "apache-kafka"
        assert time.monotonic() - started < 60
        assert (tmp_path / "kafka.log").is_file()
        await _check_broker(broker, tmp_path, idempotent=True)

        # A config the broker rejects degrades to the core configs instead of failing.
        odd = TopicSpec(
            name="demo.odd-configs",
            partitions=2,
            retention_ms=3_600_000,
            configs={"no.such.config": "x"},
        )
        await apply_topics(broker.bootstrap, [odd])
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, odd.name, {"retention.ms": None})]
            )
        finally:
            await admin.close()
        entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert entries["retention.ms"] == "3600000"
    finally:
        await _stop_and_check_gone(broker, tmp_path)

    # The data dir is already formatted: a restart (on a new port) keeps the events.
    broker = await start_embedded_broker(tmp_path, prefer="apache-kafka")
    try:
        consumer = AIOKafkaConsumer(
            "identity.organizations",
            bootstrap_servers=broker.bootstrap,
            group_id="after-restart",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                message = await consumer.getone()
            assert message.value is not None
            assert message.value.startswith(b"hello ")
        finally:
            await consumer.stop()
    finally:
        await _stop_and_check_gone(broker, tmp_path)


async def test_auto_picks_what_is_available() -> None:
    kind, reason = select_broker_kind()
    assert reason
    assert kind == ("apache-kafka" if _kafka_skip_reason() is None else "tansu")


async def test_auto_falls_back_to_tansu_without_classpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISUPER_KAFKA_CLASSPATH", str(tmp_path / "missing-classpath.txt"))
    kind, reason = select_broker_kind()
    assert kind == "tansu"
    if find_java() is not None:
        assert "fetch.sh" in reason


# --- the CLI entry point -------------------------------------------------------------------------


async def test_module_entry_point_runs_until_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aisuper.platform.embedded",
        "--data-dir",
        str(tmp_path),
        "--kind",
        "tansu",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()  # the JSON line, once the broker is ready
        assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
        info = json.loads(line)
        assert info["kind"] == "tansu"
        assert info["bootstrap"].startswith("127.0.0.1:")
        assert pid_alive(info["pid"])
        assert read_pid_file(tmp_path) == info["pid"]
        attached = EmbeddedBroker.attach(tmp_path)
        assert attached is not None
        assert attached.info() == info

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        await _eventually(lambda: not pid_alive(info["pid"]), 10, "broker gone after the CLI")
        assert read_pid_file(tmp_path) is None
        assert EmbeddedBroker.attach(tmp_path) is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- topics.yaml ---------------------------------------------------------------------------------


def test_topics_file_defines_every_topic_and_its_dlq() -> None:
    specs = {spec.name: spec for spec in load_topics(find_topics_file())}
    assert set(specs) == set(MAIN_TOPICS) | {f"{name}.dlq" for name in MAIN_TOPICS}
    for name in MAIN_TOPICS:
        main, dlq = specs[name], specs[f"{name}.dlq"]
        assert main.partitions == 3
        assert dlq.partitions == 1
        assert dlq.retention_ms > main.retention_ms > 0
        assert main.topic_configs()["cleanup.policy"] == "delete"


def test_topics_file_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = tmp_path / "topics.yaml"
    custom.write_text("topics:\n  - name: demo.things\n    partitions: 2\n    dlq: false\n")
    monkeypatch.setenv("AISUPER_TOPICS_FILE", str(custom))
    assert find_topics_file() == custom
    [spec] = load_topics(find_topics_file())
    assert (spec.name, spec.partitions) == ("demo.things", 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topics:\n  - name: Identity_Orgs\n", r"topic name 'Identity_Orgs' is not"),
        ("topics:\n  - name: identity\n", r"topic name 'identity' is not <service>.<aggregate>"),
        (
            "topics:\n  - name: a.b\n    partitions: 0\n",
            r"topics\.0\.partitions: .*than or equal to 1",
        ),
        ("defaults:\n  partitions: 0\ntopics:\n  - name: a.b\n", r"defaults\.partitions"),
        ("topics:\n  - name: a.b\n  - name: a.b\n", r"'a\.b' is defined twice"),
        ("topics:\n  - name: a.b.dlq\n", r"do not list \.dlq topics"),
        ("topics:\n  - name: a.b\n    partition: 3\n", r"topics\.0\.partition: Extra inputs"),
        ("topics: []\n", r"topics: List should have at least 1 item"),
        ("- a.b\n", r"expected a mapping"),
        ("topics: [a.b\n", r"not valid YAML"),
    ],
)
def test_load_topics_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises(TopicsFileError, match=message) as excinfo:
        load_topics(path)
    assert str(path) in str(excinfo.value)


def test_cluster_ids_never_look_like_options() -> None:
    from aisuper.platform.embedded.kafka import random_cluster_id

    ids = [random_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
