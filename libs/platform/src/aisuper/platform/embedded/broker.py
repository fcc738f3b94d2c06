"""The embedded broker handle and the entry point that picks Apache Kafka or Tansu.

`start_embedded_broker` starts a Kafka-protocol broker as a child process in its own process
group (so a test run or a CLI can stop it by PID), waits until a Kafka client really gets
metadata from it, writes ``broker.pid`` (and ``broker.json``) into the data dir and returns an
`EmbeddedBroker`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

log = logging.getLogger(__name__)

BrokerKind = Literal["apache-kafka", "tansu"]
BrokerPreference = Literal["auto", "apache-kafka", "tansu"]

PID_FILE_NAME = "broker.pid"
INFO_FILE_NAME = "broker.json"
DEFAULT_STOP_TIMEOUT_S = 20.0

_T = TypeVar("_T")


class BrokerStartError(RuntimeError):
    """The broker could not be started or did not become ready in time."""


@dataclass
class EmbeddedBroker:
    """A running embedded broker (a child process in its own process group)."""

    kind: BrokerKind
    bootstrap: str
    pid: int
    limits: list[str]
    data_dir: Path | None = None
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        if self._process is not None:
            return self._process.poll() is None
        return pid_alive(self.pid)

    def info(self) -> dict[str, Any]:
        """The JSON-able summary printed by the CLI and written to ``broker.json``."""
        return {"kind": self.kind, "bootstrap": self.bootstrap, "pid": self.pid}

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log file ("" when there is none)."""
        return log_tail(self.log_file, lines) if self.log_file is not None else ""

    def stop_sync(self, grace: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after `grace` seconds."""
        try:
            if self._process is not None:
                if self._process.poll() is not None:
                    return  # already exited (and reaped): its PID may belong to someone else now
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self._process.wait(grace)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "%s (pid %d) ignored SIGTERM for %.0fs: SIGKILL", self.kind, self.pid, grace
                    )
                    _signal_group(self.pid, signal.SIGKILL)
                    self._process.wait()
            else:
                stop_pid(self.pid, grace=grace)
        finally:
            _forget(self)
            self._remove_pid_files()

    async def stop(self, grace: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Async `stop_sync`: polls the process instead of blocking the event loop."""
        try:
            if not self.running:
                return  # already exited: its PID may belong to someone else now
            _signal_group(self.pid, signal.SIGTERM)
            if not await _poll_until(lambda: not self.running, grace):
                log.warning(
                    "%s (pid %d) ignored SIGTERM for %.0fs: SIGKILL", self.kind, self.pid, grace
                )
                _signal_group(self.pid, signal.SIGKILL)
                await _poll_until(lambda: not self.running, 10.0)
            if self._process is not None:
                self._process.wait(1.0)  # reap it (already exited)
        finally:
            _forget(self)
            self._remove_pid_files()

    def _remove_pid_files(self) -> None:
        if self.data_dir is None or read_pid_file(self.data_dir) != self.pid:
            return  # not ours (any more): leave another broker's files alone
        for name in (PID_FILE_NAME, INFO_FILE_NAME):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / name).unlink()

    @classmethod
    def attach(cls, data_dir: Path) -> EmbeddedBroker | None:
        """The broker running from `data_dir` (e.g. started by the CLI in the background), from
        its ``broker.json``; None when there is none or it is no longer running. Use it to
        stop a broker from another process: ``EmbeddedBroker.attach(d).stop_sync()``."""
        from aisuper.platform.embedded.kafka import APACHE_KAFKA_LIMITS
        from aisuper.platform.embedded.tansu import TANSU_LIMITS

        data_dir = Path(data_dir)
        try:
            info = json.loads((data_dir / INFO_FILE_NAME).read_text())
            kind, bootstrap, pid = info["kind"], str(info["bootstrap"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if kind not in ("apache-kafka", "tansu") or read_pid_file(data_dir) != pid:
            return None
        if not pid_alive(pid):
            return None
        limits = APACHE_KAFKA_LIMITS if kind == "apache-kafka" else TANSU_LIMITS
        log_name = "kafka.log" if kind == "apache-kafka" else "tansu.log"
        return cls(
            kind=kind,
            bootstrap=bootstrap,
            pid=pid,
            limits=list(limits),
            data_dir=data_dir,
            log_file=data_dir / log_name,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()


# --- starting -----------------------------------------------------------------------------------


async def start_embedded_broker(
    data_dir: Path,
    *,
    port: int | None = None,
    prefer: BrokerPreference = "auto",
    startup_timeout: float | None = None,
) -> EmbeddedBroker:
    """Start an embedded Kafka-protocol broker listening on ``127.0.0.1:port``.

    ``prefer="auto"`` picks Apache Kafka when a Java 17+ runtime and the classpath file written
    by ``infra/kafka/fetch.sh`` are present, else Tansu (see `select_broker_kind`).
    ``port=None`` picks a free loopback port. The broker is stopped automatically when this
    Python process exits normally; stop it earlier with ``await broker.stop()``.
    """
    from aisuper.platform.embedded.kafka import ApacheKafka, find_java, find_kafka_classpath
    from aisuper.platform.embedded.tansu import Tansu

    data_dir = absolute_path(data_dir)
    kind: BrokerKind
    if prefer == "auto":
        kind, reason = select_broker_kind()
        log.info("embedded broker: %s (%s)", kind, reason)
    else:
        kind = prefer
    if kind == "apache-kafka":
        java = find_java()
        classpath_file = find_kafka_classpath()
        if java is None:
            raise BrokerStartError(
                "Apache Kafka 4.x needs a Java 17+ runtime: none found "
                "(install a JDK 17+, or set JAVA_HOME)"
            )
        if classpath_file is None:
            raise BrokerStartError(
                "no Apache Kafka classpath: run infra/kafka/fetch.sh "
                "(or point AISUPER_KAFKA_CLASSPATH at a classpath file)"
            )
        kafka = ApacheKafka(data_dir=data_dir, port=port, java=java, classpath_file=classpath_file)
        if startup_timeout is not None:
            kafka.startup_timeout = startup_timeout
        return await kafka.start()
    tansu = Tansu(data_dir=data_dir, port=port)
    if startup_timeout is not None:
        tansu.startup_timeout = startup_timeout
    return await tansu.start()


def start_embedded_broker_sync(
    data_dir: Path,
    *,
    port: int | None = None,
    prefer: BrokerPreference = "auto",
    startup_timeout: float | None = None,
) -> EmbeddedBroker:
    """Blocking `start_embedded_broker`, usable from a CLI (or from inside a running loop)."""
    return run_coroutine_sync(
        start_embedded_broker(data_dir, port=port, prefer=prefer, startup_timeout=startup_timeout)
    )


def select_broker_kind() -> tuple[BrokerKind, str]:
    """What ``prefer="auto"`` starts, and why."""
    from aisuper.platform.embedded.kafka import find_java, find_kafka_classpath

    java = find_java()
    if java is None:
        return "tansu", "no Java 17+ runtime found"
    classpath_file = find_kafka_classpath()
    if classpath_file is None:
        return "tansu", (
            "no Apache Kafka classpath (run infra/kafka/fetch.sh or set AISUPER_KAFKA_CLASSPATH)"
        )
    return "apache-kafka", f"java {java}, classpath {classpath_file}"


def run_coroutine_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[_T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=runner, name="embedded-broker-start")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --- helpers shared by the Kafka and Tansu launchers ---------------------------------------------


def absolute_path(path: Path | str) -> Path:
    """`path` made absolute (against the current directory), without resolving links."""
    return Path(path).absolute()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a text file ("" when missing)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    *,
    output: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (own process group), stdout+stderr appended to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv is built by this package
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def wait_until_ready(
    process: subprocess.Popen[bytes],
    *,
    host: str,
    port: int,
    within: float,
    name: str,
    log_files: Sequence[Path],
) -> None:
    """Wait until a Kafka client gets metadata listing a broker from host:port.

    Raises `BrokerStartError` (with the tails of `log_files`) when the process exits or the
    broker is not ready `within` seconds.
    """
    deadline = time.monotonic() + within
    last_error = "no connection yet"
    while True:
        code = process.poll()
        if code is not None:
            raise BrokerStartError(
                f"{name} exited with code {code} before it was ready{_tails(log_files)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerStartError(
                f"{name} was not ready on {host}:{port} after {within:.0f}s "
                f"({last_error}){_tails(log_files)}"
            )
        if await _tcp_accepts(host, port, min(1.0, remaining)):
            try:
                brokers = await asyncio.wait_for(
                    _metadata_brokers(f"{host}:{port}"), min(10.0, max(remaining, 0.1))
                )
            except Exception as exc:  # any client error means "not yet"
                last_error = f"metadata request failed: {exc!r}"
            else:
                if brokers:
                    return
                last_error = "metadata lists no broker yet"
        else:
            last_error = "port not accepting connections yet"
        await asyncio.sleep(0.1)


def _tails(log_files: Sequence[Path]) -> str:
    parts = []
    for path in log_files:
        tail = log_tail(path)
        if tail.strip():
            parts.append(f"\n--- last lines of {path} ---\n{tail}")
    return "".join(parts) if parts else f" (nothing in {', '.join(map(str, log_files))})"


async def _tcp_accepts(host: str, port: int, within: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _metadata_brokers(bootstrap: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return len(cluster.get("brokers", []))


def write_pid_files(broker: EmbeddedBroker) -> None:
    """Write ``broker.pid`` and ``broker.json`` into the broker's data dir."""
    if broker.data_dir is None:
        return
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    (broker.data_dir / PID_FILE_NAME).write_text(f"{broker.pid}\n")
    (broker.data_dir / INFO_FILE_NAME).write_text(json.dumps(broker.info()) + "\n")


def read_pid_file(data_dir: Path) -> int | None:
    """The PID recorded in ``data_dir/broker.pid`` (None when absent or malformed)."""
    try:
        return int((Path(data_dir) / PID_FILE_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_pid(pid: int, *, grace: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
    """Stop a broker started elsewhere (e.g. from its pid file): SIGTERM its process group,
    SIGKILL after `grace` seconds. Returns False when it was not running."""
    if not pid_alive(pid):
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
        time.sleep(0.05)  # polling a condition, not a fixed wait
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by `pid` (brokers run in their own session, so their PID is
    also their process group id). A group that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


async def _poll_until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# Brokers started by this process are stopped when it exits (a crashed test run must not leave
# a JVM behind). Stopping explicitly removes them from this registry.
_live: dict[int, EmbeddedBroker] = {}
_live_lock = threading.Lock()


def register_for_exit(broker: EmbeddedBroker) -> None:
    with _live_lock:
        _live[broker.pid] = broker


def _forget(broker: EmbeddedBroker) -> None:
    with _live_lock:
        _live.pop(broker.pid, None)


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live.values())
    for broker in leftovers:
        with contextlib.suppress(Exception):
            broker.stop_sync(grace=10.0)
