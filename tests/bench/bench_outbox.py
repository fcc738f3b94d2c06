"""Benchmark: the outbox relay, events/s from commit to broker ack.

A worker process (pinned to core 1, like a one-core service) commits `events` realistic identity
events into the outbox of a fresh database through `Outbox.add`, one transaction per RPC-like
change, each under its own sampled span (so every row carries a ``traceparent``, as rows written
by a traced RPC do). Then, timed: `OutboxRelay.publish_batch()` in a loop until it returns 0,
against a real broker (Apache Kafka when its jars were fetched, else Tansu) with the platform's
`kafka_producer` (acks=all). The time runs from the first batch's read to the last batch's
marking: commit -> broker ack -> marked published. Tracing is as shipped (SDK tracer provider
without exporter, SQLAlchemy instrumented), unless the variant turns the sampler off.

Between runs with other batch sizes the same rows are marked unpublished again (and the database
checkpointed / vacuumed), so every run publishes the same `events` rows.

The broker and PostgreSQL (when used) are pinned to core 0.

    python tests/bench/bench_outbox.py --url URL --bootstrap HOST:PORT --broker-kind KIND \
        --events 20000 --batch-sizes 500,2000 [--profile-dir DIR]

runs the worker alone and prints one JSON list; `bench_outbox` below starts everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import (
    CLIENT_CORE,
    DEFAULT_ROUNDS,
    MAX_ATTEMPTS,
    SERVER_CORE,
    CpuWatch,
    broker_preference,
    can_pin,
    clean_env,
    log,
    median_run,
    pick_calm,
    pin_all_threads,
    pinned,
    wait_for_quiet,
)

GOAL_EVENTS_PER_S = 10_000.0
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


@dataclass
class OutboxResult:
    database: str
    batch_size: int
    events: int
    seconds: float
    events_per_s: float
    batches: int
    worker_cores: float
    broker_cores: float
    database_cores: float
    foreign_cores: float
    disturbed: bool
    attempts: int
    tracing: str = "as shipped"
    broker: str = ""
    notes: list[str] = field(default_factory=list)
    #: events/s of every round, in order (the row shows the median round)
    rounds: list[float] = field(default_factory=list)


# --- the worker (runs in its own process) -----------------------------------------------------


def identity_changes(orgs: int) -> Iterator[list[tuple[object, str, str | None]]]:
    """Transactions as identity commits them: (message, subject, org_id) per event.

    Per organisation: register (registered + admin member + admin's API key), verify, and a
    developer joining with a key of their own: 6 events in 3 transactions.
    """
    from google.protobuf.timestamp_pb2 import Timestamp

    from aisuper.identity.v1 import events_pb2, identity_pb2
    from aisuper.platform.ids import new_id

    def now() -> Timestamp:
        stamp = Timestamp()
        stamp.GetCurrentTime()
        return stamp

    for n in range(orgs):
        org, admin, admin_key = new_id("org"), new_id("mem"), new_id("key")
        yield [
            (
                events_pb2.OrganizationRegistered(
                    org_id=org,
                    name=f"Robotics Startup {n}",
                    kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
                    country="DE",
                    incubator_member=n % 3 == 0,
                    employee_count=12,
                    register_time=now(),
                ),
                org,
                org,
            ),
            (
                events_pb2.MemberAdded(
                    org_id=org, member_id=admin, role=identity_pb2.ROLE_ORG_ADMIN, add_time=now()
                ),
                org,
                org,
            ),
            (
                events_pb2.ApiKeyCreated(
                    key_id=admin_key,
                    org_id=org,
                    member_id=admin,
                    role=identity_pb2.ROLE_ORG_ADMIN,
                    scopes=["catalog:read", "compute:write"],
                    create_time=now(),
                ),
                admin_key,
                org,
            ),
        ]
        yield [(events_pb2.OrganizationVerified(org_id=org, verify_time=now()), org, org)]
        developer, developer_key = new_id("mem"), new_id("key")
        yield [
            (
                events_pb2.MemberAdded(
                    org_id=org,
                    member_id=developer,
                    role=identity_pb2.ROLE_DEVELOPER,
                    add_time=now(),
                ),
                org,
                org,
            ),
            (
                events_pb2.ApiKeyCreated(
                    key_id=developer_key,
                    org_id=org,
                    member_id=developer,
                    role=identity_pb2.ROLE_DEVELOPER,
                    scopes=["inference:invoke"],
                    create_time=now(),
                ),
                developer_key,
                org,
            ),
        ]


async def _seed(db, outbox, events: int) -> int:  # type: ignore[no-untyped-def]
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("bench.identity")
    written = 0
    for transaction in identity_changes(-(-events // 6)):
        if written >= events:
            break
        with tracer.start_as_current_span("IdentityService/Change", kind=SpanKind.SERVER):
            async with db.write() as session:
                for message, subject, org_id in transaction[: events - written]:
                    outbox.add(session, message, subject=subject, org_id=org_id)
                    written += 1
    return written


async def _unpublish(db) -> None:  # type: ignore[no-untyped-def]
    """Marks every row unpublished again and tidies up, so the next run starts alike."""
    import sqlalchemy as sa

    async with db.write() as session:
        await session.execute(sa.text("UPDATE outbox SET published_at = NULL"))
    if db.is_sqlite:
        import sqlite3

        # Outside SQLAlchemy: its connections always open a transaction first.
        with contextlib.closing(sqlite3.connect(db.url.database)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        async with db.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE outbox")


async def _timed_run(
    relay,  # type: ignore[no-untyped-def]
    batch_size: int,
    watch_pids: list[int],
    args: argparse.Namespace,
    round_: int,
) -> dict[str, object]:
    """`publish_batch()` until the outbox is empty: commit -> broker ack -> marked."""
    watch = CpuWatch(watch_pids)
    profiler = None
    if args.profile_dir and round_ == 0:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    with watch.measure():
        start = time.perf_counter()
        published = batches = 0
        while n := await relay.publish_batch():
            published += n
            batches += 1
        seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.stop()
        out = Path(args.profile_dir) / f"outbox-{args.label}-{batch_size}.txt"
        out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        out.with_suffix(".html").write_text(profiler.output_html())
    cpu = watch.report
    assert cpu is not None
    broker_pid = watch_pids[0] if watch_pids else 0
    return {
        "batch_size": batch_size,
        "events": published,
        "seconds": seconds,
        "events_per_s": published / seconds,
        "batches": batches,
        "worker_cores": (cpu.ours_s - sum(cpu.per_pid_s.values())) / cpu.wall_s,
        "broker_cores": cpu.cores_of(broker_pid),
        "database_cores": sum(cpu.cores_of(p) for p in watch_pids[1:]),
        "foreign_cores": cpu.foreign_cores,
        "disturbed": cpu.disturbed and not args.profile_dir,
        "attempts": 1,
    }


async def worker(args: argparse.Namespace) -> list[dict[str, object]]:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from sqlmodel import SQLModel

    from aisuper.platform.db import Database
    from aisuper.platform.events.outbox import Outbox, OutboxRelay, kafka_producer
    from aisuper.platform.tables import PLATFORM_TABLES
    from aisuper.platform.telemetry import instrument_sqlalchemy
    from aisuper.platform.topics import apply_topics, find_topics_file, load_topics
    from aisuper_identity import events as identity_events

    # As the service configures it (aisuper.platform.telemetry): a provider, no exporter.
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": "bench"})))
    instrument_sqlalchemy()
    db = Database(args.url)
    async with db.engine.begin() as connection:
        await connection.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=list(PLATFORM_TABLES))
        )
    outbox = Outbox(identity_events.CATALOG)
    topics = outbox.catalog.topics
    await apply_topics(
        args.bootstrap, [t for t in load_topics(find_topics_file()) if t.name in topics]
    )
    t0 = time.perf_counter()
    seeded = await _seed(db, outbox, args.events)
    print(
        f"seeded {seeded} events in {time.perf_counter() - t0:.1f}s ({args.url.split(':')[0]})",
        file=sys.stderr,
        flush=True,
    )
    producer = kafka_producer(args.bootstrap, idempotence=args.broker_kind != "tansu")
    await producer.start()
    watch_pids = [int(p) for p in args.watch_pids.split(",") if p]
    results: list[dict[str, object]] = []
    try:
        for topic in topics:  # metadata first: the timed loop measures steady publishing
            await producer.partitions_for(topic)
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        runs: dict[int, list[dict[str, object]]] = {size: [] for size in sizes}
        first_run = True
        for round_ in range(args.rounds):
            for batch_size in sizes:
                tries: list[dict[str, object]] = []
                for attempt in range(1, args.attempts + 1):
                    if not first_run:
                        await _unpublish(db)
                    first_run = False
                    relay = OutboxRelay(db, outbox, producer, batch_size=batch_size)
                    result = await _timed_run(relay, batch_size, watch_pids, args, round_)
                    print(
                        f"outbox [{args.label} batch {batch_size}] round {round_ + 1} attempt "
                        f"{attempt}: {result['events']} events in {result['seconds']:.2f}s = "
                        f"{result['events_per_s']:,.0f}/s, worker {result['worker_cores']:.2f} "
                        f"cores, broker {result['broker_cores']:.2f}, db "
                        f"{result['database_cores']:.2f}, others {result['foreign_cores']:.2f}"
                        + (" DISTURBED" if result["disturbed"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
                    tries.append(result)
                    if not result["disturbed"]:
                        break
                    await asyncio.to_thread(wait_for_quiet)
                best = pick_calm(tries, lambda r: float(r["foreign_cores"]))  # type: ignore[arg-type]
                best["attempts"] = len(tries)
                runs[batch_size].append(best)
        for size in sizes:
            row = median_run(
                runs[size],
                lambda r: float(r["events_per_s"]),  # type: ignore[arg-type]
                lambda r: bool(r["disturbed"]),
            )
            row["rounds"] = [r["events_per_s"] for r in runs[size]]
            row["attempts"] = sum(int(r["attempts"]) for r in runs[size])  # type: ignore[call-overload]
            results.append(row)
    finally:
        await producer.stop()
        await db.dispose()
    return results


def worker_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the outbox benchmark's worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--broker-kind", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="500,2000")
    parser.add_argument("--attempts", type=int, default=MAX_ATTEMPTS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--watch-pids", default="", help="broker pid, then database pids")
    parser.add_argument("--label", default="sqlite")
    parser.add_argument("--profile-dir", default="")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(worker(args))))


# --- PostgreSQL -------------------------------------------------------------------------------


@dataclass
class Postgres:
    data_dir: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/bench"


def postgres_available() -> str | None:
    """None when PostgreSQL 15 can be started here, else why not."""
    if not (PG_BIN / "initdb").is_file():
        return f"no PostgreSQL binaries in {PG_BIN}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"no {PG_USER} user"
    return None


def _as_pg(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres(root: Path, core: int | None) -> Iterator[Postgres]:
    """A throw-away PostgreSQL 15 cluster on loopback (fsync and synchronous_commit on, as
    shipped), pinned to `core`; stopped and deleted afterwards."""
    from aisuper.platform.embedded.broker import free_port

    data = root / "pg"
    data.mkdir(parents=True)
    for directory in (root, *root.parents):  # the postgres user must reach its data dir
        if directory == Path(tempfile.gettempdir()):
            break
        directory.chmod(directory.stat().st_mode | 0o755)
    if os.geteuid() == 0:
        shutil.chown(data, PG_USER)
    port = free_port()
    subprocess.run(
        _as_pg([str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E",
                "UTF8"]),
        check=True,
        capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run(
        pinned(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
                    "-w", "-t", "60", "-o", options, "start"]),
            core,
        ),
        check=True,
        capture_output=True,
    )  # fmt: skip
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        subprocess.run(
            _as_pg([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER,
                    "bench"]),
            check=True,
            capture_output=True,
        )  # fmt: skip
        yield Postgres(data, port, pid)
    finally:
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )  # fmt: skip


# --- the benchmark ----------------------------------------------------------------------------


def _run_worker(
    *,
    label: str,
    url: str,
    broker,  # type: ignore[no-untyped-def]
    events: int,
    batch_sizes: list[int],
    attempts: int,
    rounds: int,
    watch_pids: list[int],
    env: dict[str, str],
    profile_dir: Path | None,
) -> list[OutboxResult]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--url",
        url,
        "--bootstrap",
        broker.bootstrap,
        "--broker-kind",
        broker.kind,
        "--events",
        str(events),
        "--batch-sizes",
        ",".join(str(b) for b in batch_sizes),
        "--attempts",
        str(attempts),
        "--rounds",
        str(rounds),
        "--watch-pids",
        ",".join(str(p) for p in watch_pids),
        "--label",
        label,
    ]
    if profile_dir is not None:
        command += ["--profile-dir", str(profile_dir)]
    done = subprocess.run(
        pinned(command, SERVER_CORE if can_pin() else None),
        check=False,
        stdout=subprocess.PIPE,
        env=clean_env(PYTHONPATH=str(Path(__file__).parent), **env),
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"outbox worker ({label}) failed with exit code {done.returncode}")
    tracing = "sampler always_off" if env.get("OTEL_TRACES_SAMPLER") == "always_off" else None
    results = []
    for data in json.loads(done.stdout):
        result = OutboxResult(database=label, broker=broker.kind, **data)
        if tracing:
            result.tracing = tracing
        results.append(result)
    return results


def bench_outbox(
    *,
    quick: bool = False,
    events: int | None = None,
    batch_sizes: list[int] | None = None,
    databases: list[str] | None = None,
    sampler_off: bool = True,
    profile_dir: Path | None = None,
    rounds: int = DEFAULT_ROUNDS,
) -> tuple[list[OutboxResult], list[str]]:
    """Runs the worker per database (and, on SQLite, once more with the sampler off)."""
    from aisuper.platform.embedded.broker import start_embedded_broker_sync

    events = events or (5_000 if quick else 20_000)
    batch_sizes = batch_sizes or [500, 2000]
    databases = databases or ["sqlite", "postgresql"]
    attempts = 1 if quick or profile_dir is not None else MAX_ATTEMPTS
    rounds = 1 if quick or profile_dir is not None else rounds
    pin = can_pin()
    notes: list[str] = []
    results: list[OutboxResult] = []
    with tempfile.TemporaryDirectory(prefix="aisuper-bench-outbox-") as tmp:
        root = Path(tmp)
        kind = broker_preference()
        log(f"starting the embedded broker ({kind})")
        broker = start_embedded_broker_sync(root / "broker", prefer=kind)  # type: ignore[arg-type]
        try:
            pin_all_threads(broker.pid, CLIENT_CORE if pin else None)
            common = {
                "broker": broker,
                "events": events,
                "batch_sizes": batch_sizes,
                "attempts": attempts,
                "rounds": rounds,
                "profile_dir": profile_dir,
            }
            if "sqlite" in databases:
                url = f"sqlite+aiosqlite:///{root / 'outbox.db'}"
                wait_for_quiet()
                log(f"outbox on SQLite: {events} events, batch sizes {batch_sizes}")
                results += _run_worker(
                    label="sqlite", url=url, watch_pids=[broker.pid], env={}, **common
                )
                if sampler_off and profile_dir is None:
                    url = f"sqlite+aiosqlite:///{root / 'outbox-nosampling.db'}"
                    wait_for_quiet()
                    log("outbox on SQLite with OTEL_TRACES_SAMPLER=always_off")
                    results += _run_worker(
                        label="sqlite",
                        url=url,
                        watch_pids=[broker.pid],
                        env={"OTEL_TRACES_SAMPLER": "always_off"},
                        **common,
                    )
            if "postgresql" in databases:
                why_not = postgres_available()
                if why_not is not None:
                    notes.append(f"PostgreSQL skipped: {why_not}")
                    log(notes[-1])
                else:
                    try:
                        with postgres(root / "pgroot", CLIENT_CORE if pin else None) as pg:
                            wait_for_quiet()
                            log(
                                f"outbox on PostgreSQL 15: {events} events, "
                                f"batch sizes {batch_sizes}"
                            )
                            results += _run_worker(
                                label="postgresql",
                                url=pg.url,
                                watch_pids=[broker.pid, pg.pid],
                                env={},
                                **common,
                            )
                    except subprocess.CalledProcessError as error:
                        stderr = (error.stderr or b"").decode(errors="replace").strip()
                        notes.append(f"PostgreSQL skipped: {error.cmd[-1]} failed: {stderr[-300:]}")
                        log(notes[-1])
        finally:
            broker.stop_sync()
    return results, notes


if __name__ == "__main__":
    worker_main()
