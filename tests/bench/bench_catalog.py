"""Benchmark: the catalog's `ListListings` and `SearchListings` on a shelf of 100,000 listings.

A shelf of `LISTINGS` generated listings (`catalog_shelf_gen.py`: the rows the service writes,
made with its own functions, ANALYZEd) in SQLite and in PostgreSQL 15. One catalog server process
(``python -m aisuper_catalog``, exactly as shipped) pinned to core 1; the load generator, the
broker, the identity server (the catalog authenticates API keys through it and caches the answer)
and PostgreSQL pinned to core 0. `CONCURRENCY` callers over one HTTP/2 connection, each calling as
soon as its previous call returned: a warm-up, then a fixed duration.

Scenarios (`SCENARIOS`), all with ``page_size`` 20, first page:

- ``ListListings`` with three filters typical of the shelf (kind, language, access tier), and a
  selective combination (data sets in a rare language with a mid-frequency tag: few matches, so a
  scan in slug order reads far);
- ``SearchListings`` with a rotating set of realistic queries (a common word, two words, a rare
  word, a Chinese query, a query plus a language filter, a family name plus a size);

as a registered organisation's API key (the realistic case: it sees every published listing)
and anonymously (open tier only). Each search query is also measured alone (its own p50/p99 under
the same load, and its latency with one caller) to show which query limits the mix.

Besides the RPC figures, "query ms" is the cost of the scenario's SQL alone: the service's own
`store.list_listings` / `store.search_listings` on the same database from this process, one call
at a time (median), pinned to the server's core while nothing else runs.

Reported per row: successful calls/s, p50 and p99 (ghz's), errors, CPU of the server, the
database (PostgreSQL) and the client, and whether the p99 goal (`GOAL_P99_MS`) was met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_authenticate import (
    GHZ_VERSION,
    LoadRun,
    finish_py_spy,
    ghz_path,
    identity_server,
    start_py_spy,
)
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
from bench_outbox import postgres, postgres_available
from catalog_shelf_gen import ShelfCache, cached_sqlite_shelf, copy_sqlite, load_postgres

CONCURRENCY = 16
GOAL_P99_MS = 20.0
LISTINGS = 100_000
QUICK_LISTINGS = 10_000
PAGE_SIZE = 20
SERVICE = "aisuper.catalog.v1.CatalogService"
#: Longest timed run (slow searches get longer runs, see `measure`).
MAX_DURATION_S = 45.0
#: How long `wait_for_quiet` may wait before a run (the machine is shared).
QUIET_WAIT_S = 45.0
#: After this long, disturbed runs are no longer repeated nor waited for (a busy machine must
#: not stretch the benchmark to hours); such rows say DISTURBED.
TIME_BUDGET_S = 20 * 60.0
_deadline = float("inf")


def _over_budget() -> bool:
    return time.monotonic() > _deadline


# --- scenarios --------------------------------------------------------------------------------

Request = dict[str, Any]  # protobuf JSON of a ListListingsRequest / SearchListingsRequest


def _search(query: str, **filter_: str) -> Request:
    request: Request = {"query": query, "page_size": PAGE_SIZE}
    if filter_:
        request["filter"] = filter_
    return request


#: Typical: what a shelf page asks for. Selective: few matches (the generated shelf has ~40
#: published Swahili data sets, a handful of them tagged "legal").
LIST_TYPICAL: Request = {
    "filter": {"kind": "LISTING_KIND_MODEL", "language": "zh", "access_tier": "ACCESS_TIER_OPEN"},
    "page_size": PAGE_SIZE,
}
LIST_SELECTIVE: Request = {
    "filter": {"kind": "LISTING_KIND_DATASET", "language": "sw", "tag": "legal"},
    "page_size": PAGE_SIZE,
}
#: label -> request; the mix rotates through them (ghz sends an array round-robin).
SEARCH_QUERIES: dict[str, Request] = {
    "common word 'instruct'": _search("instruct"),
    "two words 'medical chat'": _search("medical chat"),
    "rare word 'graikas'": _search("graikas"),
    "Chinese '医疗'": _search("医疗"),
    "'reasoning' + language=zh": _search("reasoning", language="zh"),
    "'qwen 7b'": _search("qwen 7b"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str  # ListListings | SearchListings
    requests: tuple[Request, ...]
    anonymous: bool = False
    #: measured in every round (else once, as a breakdown of the search mix)
    main: bool = True


SCENARIOS: list[Scenario] = [
    Scenario("ListListings typical: kind=MODEL, language=zh, tier=OPEN", "ListListings",
             (LIST_TYPICAL,)),
    Scenario("ListListings selective: kind=DATASET, language=sw, tag=legal", "ListListings",
             (LIST_SELECTIVE,)),
    Scenario("SearchListings mix (6 queries, round-robin)", "SearchListings",
             tuple(SEARCH_QUERIES.values())),
    Scenario("ListListings typical: kind=MODEL, language=zh, tier=OPEN", "ListListings",
             (LIST_TYPICAL,), anonymous=True),
    Scenario("SearchListings mix (6 queries, round-robin)", "SearchListings",
             tuple(SEARCH_QUERIES.values()), anonymous=True),
    *(Scenario(f"SearchListings {label}", "SearchListings", (request,), main=False)
      for label, request in SEARCH_QUERIES.items()),
]  # fmt: skip


@dataclass
class CatalogResult:
    database: str
    scenario: str
    caller: str
    client: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    duration_s: float
    server_cores: float
    database_cores: float
    client_cores: float
    foreign_cores: float
    disturbed: bool
    attempts: int
    #: CPU the server (and PostgreSQL) spent per successful call, in ms: unlike latency, this
    #: barely moves when other load on the machine slows the run down
    server_cpu_ms: float = 0.0
    database_cpu_ms: float = 0.0
    #: p50 with one caller (service time without queueing); breakdown rows only
    single_p50_ms: float | None = None
    #: the scenario's SQL alone, one call at a time (median over its requests' medians)
    query_ms: float | None = None
    listings: int = 0
    notes: list[str] = field(default_factory=list)
    #: p99 of every round, in order (the row shows the median round)
    rounds: list[float] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        return self.p99_ms <= GOAL_P99_MS and self.errors == 0


# --- the load generator -----------------------------------------------------------------------


def write_catalog_protoset(path: Path) -> Path:
    """A FileDescriptorSet with the catalog's API and everything it imports (for ghz)."""
    from google.protobuf import descriptor_pb2

    from aisuper.catalog.v1 import catalog_pb2

    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor: Any) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        out.file.append(proto)

    add(catalog_pb2.DESCRIPTOR)
    path.write_bytes(out.SerializeToString())
    return path


@dataclass
class Load:
    """How to call: the address, the credential (None: anonymous), the generator."""

    address: str
    credential: str | None
    workdir: Path
    ghz: Path | None
    client_core: int | None


def _ghz_run(
    load: Load, scenario: Scenario, duration_s: float, concurrency: int = CONCURRENCY
) -> LoadRun:
    assert load.ghz is not None
    workdir = load.workdir
    protoset = workdir / "catalog.protoset"
    if not protoset.is_file():
        write_catalog_protoset(protoset)
    data = workdir / "data.json"
    # An array: ghz sends its messages round-robin, one per call.
    data.write_text(json.dumps(list(scenario.requests), ensure_ascii=False))
    report = workdir / "ghz.json"
    command = [
        str(load.ghz), "--insecure", "--protoset", str(protoset),
        "--call", f"{SERVICE}/{scenario.method}", "--data-file", str(data),
        "--concurrency", str(concurrency), "--connections", "1", "--cpus", "1",
        # wait: calls in flight when the time is up are finished and counted (with queries
        # that take seconds under load, dropping them would hide the slowest calls)
        "--duration", f"{duration_s:.1f}s", "--duration-stop", "wait",
        "--timeout", "20s", "--format", "json", "--output", str(report),
    ]  # fmt: skip
    if load.credential is not None:
        metadata = workdir / "metadata.json"
        metadata.write_text(json.dumps({"authorization": f"Bearer {load.credential}"}))
        command += ["--metadata-file", str(metadata)]
    subprocess.run(
        pinned([*command, load.address], load.client_core),
        check=True,
        timeout=duration_s + 180,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result = json.loads(report.read_text())
    latency = {
        int(d["percentage"]): d["latency"] / 1e6 for d in result["latencyDistribution"] or []
    }
    statuses: dict[str, int] = result.get("statusCodeDistribution") or {}
    ok = statuses.get("OK", 0)
    errors = sum(n for code, n in statuses.items() if code != "OK")
    if errors:
        shown = dict(list((result.get("errorDistribution") or {}).items())[:3])
        log(f"{scenario.name}: {errors} errors, e.g. {shown}")
    return LoadRun(
        rps=ok / (result["total"] / 1e9),
        p50_ms=latency.get(50, float("nan")),
        p99_ms=latency.get(99, float("nan")),
        requests=ok,
        errors=errors,
        duration_s=result["total"] / 1e9,
    )


def _python_run(
    load: Load, scenario: Scenario, warmup_s: float, duration_s: float, concurrency: int
) -> LoadRun:
    """The pure-Python fallback (this file's ``client`` mode) in its own process."""
    requests = [_serialized(scenario.method, r) for r in scenario.requests]
    (load.workdir / "requests.json").write_text(json.dumps(requests))
    command = [
        sys.executable, str(Path(__file__)), "client", "--target", load.address,
        "--method", f"/{SERVICE}/{scenario.method}",
        "--requests", str(load.workdir / "requests.json"),
        "--concurrency", str(concurrency), "--warmup", str(warmup_s),
        "--duration", str(duration_s),
    ]  # fmt: skip
    done = subprocess.run(
        pinned(command, load.client_core),
        check=True,
        timeout=warmup_s + duration_s + 90,
        capture_output=True,
        env=clean_env(BENCH_CREDENTIAL=load.credential or ""),
    )
    data = json.loads(done.stdout)
    return LoadRun(
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        requests=data["count"],
        errors=data["errors"],
        duration_s=data["elapsed_s"],
    )


def _serialized(method: str, request: Request) -> str:
    from google.protobuf import json_format

    from aisuper.catalog.v1 import catalog_pb2 as pb

    message = pb.ListListingsRequest() if method == "ListListings" else pb.SearchListingsRequest()
    json_format.ParseDict(request, message)
    return base64.b64encode(message.SerializeToString()).decode()


def run_load(
    load: Load, scenario: Scenario, warmup_s: float, duration_s: float, concurrency: int
) -> LoadRun:
    if load.ghz is not None:
        if warmup_s > 0:
            _ghz_run(load, scenario, warmup_s, concurrency)
        return _ghz_run(load, scenario, duration_s, concurrency)
    return _python_run(load, scenario, warmup_s, duration_s, concurrency)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _client(args: argparse.Namespace, requests: list[bytes]) -> dict[str, float]:
    import grpc

    credential = os.environ.get("BENCH_CREDENTIAL", "")
    metadata = (("authorization", f"Bearer {credential}"),) if credential else None
    latencies: list[float] = []
    errors = 0
    sent = 0
    async with grpc.aio.insecure_channel(args.target) as channel:
        call = channel.unary_unary(
            args.method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        await call(requests[0], metadata=metadata, timeout=20)
        start = time.perf_counter() + args.warmup
        stop = start + args.duration

        async def caller() -> None:
            nonlocal errors, sent
            while (t0 := time.perf_counter()) < stop:
                request = requests[sent % len(requests)]
                sent += 1
                try:
                    await call(request, metadata=metadata, timeout=20)
                except grpc.aio.AioRpcError:
                    errors += t0 >= start
                    continue
                if t0 >= start:
                    latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(caller() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "count": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 50) * 1e3,
        "p99_ms": _percentile(latencies, 99) * 1e3,
    }


# --- the catalog server -----------------------------------------------------------------------


@dataclass
class CatalogServer:
    process: subprocess.Popen[bytes]
    address: str
    log_file: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def wait_serving(self, within_s: float = 120.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + within_s
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"catalog exited with {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(grpc.RpcError):
                    response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"catalog not serving within {within_s}s:\n{self.tail()}")
                time.sleep(0.1)


@contextlib.contextmanager
def catalog_server(
    workdir: Path,
    *,
    database_url: str,
    bootstrap: str,
    idempotence: bool,
    identity_target: str,
    core: int | None,
) -> Iterator[CatalogServer]:
    from aisuper.platform.embedded.broker import free_port

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_file = workdir / "catalog.log"
    environment = clean_env(
        AISUPER_CATALOG_DATABASE_URL=database_url,
        AISUPER_KAFKA_BOOTSTRAP=bootstrap,
        AISUPER_KAFKA_IDEMPOTENCE=str(idempotence).lower(),
        AISUPER_IDENTITY_TARGET=identity_target,
        AISUPER_GRPC_PORT=str(port),
        AISUPER_METRICS_PORT="0",
        AISUPER_LOG_LEVEL="INFO",
    )
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "aisuper_catalog"], core),
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = CatalogServer(process, f"127.0.0.1:{port}", log_file)
    try:
        server.wait_serving()
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def register_org(identity_address: str) -> tuple[str, str]:
    """A registered (not verified) organisation: (org id, its admin's API key)."""
    import grpc

    from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc

    with grpc.insecure_channel(identity_address) as channel:
        response = identity_pb2_grpc.IdentityServiceStub(channel).RegisterOrganization(
            identity_pb2.RegisterOrganizationRequest(
                name="Bench Shoppers Ltd",
                kind=identity_pb2.ORGANIZATION_KIND_STARTUP,
                country="CN",
                admin_email="admin@bench-shoppers.test",
            ),
            timeout=20,
        )
    return response.organization.id, response.api_key_secret


def check_pages(address: str, credential: str) -> dict[str, int]:
    """One call per request of every scenario (also warms the catalog's AuthCache): how many
    listings each first page holds, so that an empty page cannot pass for a fast one."""
    import grpc
    from google.protobuf import json_format

    from aisuper.catalog.v1 import catalog_pb2 as pb
    from aisuper.catalog.v1 import catalog_pb2_grpc

    found: dict[str, int] = {}
    with grpc.insecure_channel(address) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        metadata = (("authorization", f"Bearer {credential}"),)
        for scenario in SCENARIOS:
            if scenario.anonymous or not scenario.main:
                continue
            for request in scenario.requests:
                label = f"{scenario.method} {json.dumps(request, ensure_ascii=False)}"
                if scenario.method == "ListListings":
                    message = json_format.ParseDict(request, pb.ListListingsRequest())
                    found[label] = len(
                        stub.ListListings(message, metadata=metadata, timeout=60).listings
                    )
                else:
                    message = json_format.ParseDict(request, pb.SearchListingsRequest())
                    response = stub.SearchListings(message, metadata=metadata, timeout=60)
                    found[label] = len(response.listings)
    return found


# --- the SQL alone ----------------------------------------------------------------------------


async def _query_cost(url: str, org_id: str, repeat_s: float) -> dict[str, float]:
    """Median ms of each scenario request's SQL, through the service's own store functions."""
    from google.protobuf import json_format

    from aisuper.catalog.v1 import catalog_pb2 as pb
    from aisuper.platform.db import Database
    from aisuper_catalog import domain, search_text, store

    db = Database(url)
    out: dict[str, float] = {}
    try:
        for scenario in SCENARIOS:
            if scenario.anonymous:
                continue
            viewer = domain.Viewer(org_id=org_id)
            times: list[float] = []
            for request in scenario.requests:
                if scenario.method == "ListListings":
                    message = json_format.ParseDict(request, pb.ListListingsRequest())
                    query = domain.listing_query(viewer, message.filter)
                    terms: list[search_text.Term] | None = None
                else:
                    message = json_format.ParseDict(request, pb.SearchListingsRequest())
                    query = domain.listing_query(viewer, message.filter)
                    terms = search_text.query_terms(message.query)
                assert query is not None
                samples: list[float] = []
                deadline = time.monotonic() + repeat_s
                while len(samples) < 3 or (time.monotonic() < deadline and len(samples) < 200):
                    t0 = time.perf_counter()
                    async with db.read() as session:
                        if terms is None:
                            await store.list_listings(
                                session=session, query=query, after=None, limit=PAGE_SIZE + 1
                            )
                        else:
                            await store.search_listings(
                                session=session,
                                query=query,
                                terms=terms,
                                offset=0,
                                limit=PAGE_SIZE + 1,
                            )
                    samples.append((time.perf_counter() - t0) * 1e3)
                times.append(statistics.median(samples[1:]))
            out[scenario.name] = statistics.median(times)
    finally:
        await db.dispose()
    return out


def query_cost(url: str, org_id: str, repeat_s: float, core: int | None) -> dict[str, float]:
    """`_query_cost` with this process pinned to `core` for the while."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        return asyncio.run(_query_cost(url, org_id, repeat_s))
    finally:
        os.sched_setaffinity(0, before)


# --- measuring --------------------------------------------------------------------------------


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Engine:
    """One database under test, with the processes whose CPU counts as ours."""

    label: str
    url: str
    database_pid: int | None
    listings: int


def measure(
    scenario: Scenario,
    *,
    engine: Engine,
    load: Load,
    server_pid: int,
    other_pids: list[int],
    warmup_s: float,
    duration_s: float,
    attempts: int,
    single_s: float = 0.0,
    py_spy_out: Path | None = None,
) -> CatalogResult:
    """Warm-up, then a timed run; repeated (up to `attempts`) while others disturb it. With
    `single_s`, first `single_s` seconds with one caller (its p50 goes into the row), and the
    timed run lasts long enough for every caller to finish about three calls even when one
    call takes seconds under load (at most `MAX_DURATION_S`)."""
    single_p50_ms: float | None = None
    if single_s > 0:
        single_p50_ms = run_load(load, scenario, 0.0, single_s, 1).p50_ms
        if single_p50_ms == single_p50_ms:  # not NaN
            wanted = 3 * CONCURRENCY * single_p50_ms / 1e3
            duration_s = min(MAX_DURATION_S, max(duration_s, wanted))
    watched = [server_pid, *other_pids]
    if engine.database_pid is not None:
        watched.append(engine.database_pid)
    tries: list[CatalogResult] = []
    for attempt in range(1, attempts + 1):
        if not _over_budget():
            wait_for_quiet(max_wait_s=QUIET_WAIT_S)
        if warmup_s > 0:
            run_load(load, scenario, 0.0, warmup_s, CONCURRENCY)
        spy = None
        if py_spy_out is not None and attempt == 1:
            # Its own CPU shows as "others": a profiled run is no result anyway.
            spy = start_py_spy(server_pid, py_spy_out, duration_s, load.client_core)
        watch = CpuWatch(watched)
        client0 = _client_cpu_s()
        with watch.measure():
            run = run_load(load, scenario, 0.0, duration_s, CONCURRENCY)
        client_s = _client_cpu_s() - client0
        if spy is not None and py_spy_out is not None:
            finish_py_spy(spy, py_spy_out)
        cpu = watch.report
        assert cpu is not None
        result = CatalogResult(
            database=engine.label,
            scenario=scenario.name,
            caller="anonymous" if scenario.anonymous else "org API key",
            client=f"ghz {GHZ_VERSION}" if load.ghz is not None else "grpc.aio (Python)",
            rps=run.rps,
            p50_ms=run.p50_ms,
            p99_ms=run.p99_ms,
            requests=run.requests,
            errors=run.errors,
            duration_s=run.duration_s,
            server_cores=cpu.cores_of(server_pid),
            database_cores=cpu.cores_of(engine.database_pid) if engine.database_pid else 0.0,
            client_cores=client_s / cpu.wall_s,
            foreign_cores=cpu.foreign_cores,
            disturbed=cpu.disturbed,
            attempts=attempt,
            listings=engine.listings,
        )
        calls = max(1, run.requests + run.errors)
        result.server_cpu_ms = cpu.per_pid_s.get(server_pid, 0.0) / calls * 1e3
        if engine.database_pid is not None:
            result.database_cpu_ms = cpu.per_pid_s.get(engine.database_pid, 0.0) / calls * 1e3
        log(
            f"catalog [{engine.label}, {result.caller}] {scenario.name} attempt {attempt}: "
            f"{run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
            f"errors {run.errors}, server {result.server_cores:.2f} cores "
            f"({result.server_cpu_ms:.2f} ms/call), db "
            f"{result.database_cores:.2f}, client {result.client_cores:.2f}, others "
            f"{result.foreign_cores:.2f}" + (" DISTURBED" if result.disturbed else "")
        )
        tries.append(result)
        if not result.disturbed or _over_budget():
            break
    best = pick_calm(tries, lambda r: r.foreign_cores)
    best.attempts = len(tries)
    best.single_p50_ms = single_p50_ms
    if load.client_core is None:
        best.notes.append("not pinned: taskset missing or cores 0-1 not both allowed")
    return best


def aggregate(runs: list[CatalogResult]) -> CatalogResult:
    """One row per configuration: its median round (by p99), with every round's p99."""
    row = median_run(runs, lambda r: r.p99_ms, lambda r: r.disturbed)
    row.rounds = [r.p99_ms for r in runs]
    row.attempts = sum(r.attempts for r in runs)
    return row


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()[:60]


def bench_engine(
    engine: Engine,
    *,
    root: Path,
    broker: Any,
    identity_address: str,
    identity_pid: int,
    org_id: str,
    credential: str,
    ghz: Path | None,
    rounds: int,
    quick: bool,
    profile_dir: Path | None,
) -> list[CatalogResult]:
    pin = can_pin()
    server_core = SERVER_CORE if pin else None
    client_core = CLIENT_CORE if pin else None
    warmup_s, duration_s, single_s = (1.0, 3.0, 1.0) if quick else (2.0, 8.0, 3.0)
    attempts = 1 if quick or profile_dir is not None else MAX_ATTEMPTS

    log(f"catalog [{engine.label}]: the SQL alone, one call at a time")
    costs = query_cost(engine.url, org_id, 0.5 if quick else 2.0, server_core)
    main_runs: dict[str, list[CatalogResult]] = {}
    breakdown: list[CatalogResult] = []
    for round_ in range(rounds):
        workdir = root / f"{engine.label}-{round_}"
        with catalog_server(
            workdir,
            database_url=engine.url,
            bootstrap=broker.bootstrap,
            idempotence=broker.kind != "tansu",
            identity_target=identity_address,
            core=server_core,
        ) as server:
            pages = check_pages(server.address, credential)
            if round_ == 0:
                for label, count in pages.items():
                    log(f"catalog [{engine.label}]: {count:>3} listings on page 1 of {label}")
            for n, scenario in enumerate(SCENARIOS):
                if not scenario.main and round_ > 0:
                    continue
                key = f"{scenario.name}|{scenario.anonymous}"
                load = Load(
                    address=server.address,
                    credential=None if scenario.anonymous else credential,
                    workdir=workdir / f"load-{n}",
                    ghz=ghz,
                    client_core=client_core,
                )
                load.workdir.mkdir(parents=True, exist_ok=True)
                profile = None
                if profile_dir is not None and round_ == 0 and scenario.main:
                    caller = "anon" if scenario.anonymous else "org"
                    name = f"catalog-{engine.label}-{caller}-{_slug(scenario.name)}.raw"
                    profile = profile_dir / name
                result = measure(
                    scenario,
                    engine=engine,
                    load=load,
                    server_pid=server.process.pid,
                    other_pids=[identity_pid, broker.pid],
                    warmup_s=warmup_s,
                    duration_s=duration_s if scenario.main else duration_s * 0.6,
                    attempts=attempts,
                    single_s=0.0 if scenario.main else single_s,
                    py_spy_out=profile,
                )
                result.query_ms = costs.get(scenario.name) if not scenario.anonymous else None
                if scenario.main:
                    main_runs.setdefault(key, []).append(result)
                else:
                    result.rounds = [result.p99_ms]
                    breakdown.append(result)
    return [aggregate(runs) for runs in main_runs.values()] + breakdown


def bench_catalog(
    *,
    quick: bool = False,
    listings: int | None = None,
    client: str = "auto",
    rounds: int = DEFAULT_ROUNDS,
    databases: list[str] | None = None,
    profile_dir: Path | None = None,
) -> tuple[list[CatalogResult], list[str]]:
    """Every scenario on every database; returns the rows and notes (e.g. a skipped engine)."""
    n = listings or (QUICK_LISTINGS if quick else LISTINGS)
    databases = databases or ["sqlite", "postgresql"]
    notes: list[str] = []
    ghz = None if client == "python" else ghz_path()
    if ghz is None and client == "ghz":
        raise RuntimeError("ghz is not available (no Go toolchain to install it with)")
    if ghz is None:
        why = "--client python" if client == "python" else "ghz not available"
        log(f"{why}: using the pure-Python grpc.aio client")
        notes.append(f"catalog: {why}: the pure-Python client measured (it is the limit)")
    cache = cached_sqlite_shelf(n)
    global _deadline
    _deadline = time.monotonic() + TIME_BUDGET_S
    pin = can_pin()
    results: list[CatalogResult] = []
    # A SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so that the servers, the broker and
    # PostgreSQL started below are stopped instead of left behind.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        results = _bench_all(cache, n, databases, notes, ghz, rounds, quick, profile_dir, pin)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return results, notes


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _bench_all(
    cache: ShelfCache,
    n: int,
    databases: list[str],
    notes: list[str],
    ghz: Path | None,
    rounds: int,
    quick: bool,
    profile_dir: Path | None,
    pin: bool,
) -> list[CatalogResult]:
    from aisuper.platform.embedded.broker import start_embedded_broker_sync

    results: list[CatalogResult] = []
    with tempfile.TemporaryDirectory(prefix="aisuper-bench-catalog-") as tmp:
        root = Path(tmp)
        kind = broker_preference()
        log(f"starting the embedded broker ({kind})")
        broker = start_embedded_broker_sync(root / "broker", prefer=kind)  # type: ignore[arg-type]
        try:
            pin_all_threads(broker.pid, CLIENT_CORE if pin else None)
            with identity_server(
                root / "identity",
                broker.bootstrap,
                broker.kind != "tansu",
                CLIENT_CORE if pin else None,
                {},
            ) as identity:
                org_id, credential = register_org(identity.address)
                common = {
                    "root": root,
                    "broker": broker,
                    "identity_address": identity.address,
                    "identity_pid": identity.process.pid,
                    "org_id": org_id,
                    "credential": credential,
                    "ghz": ghz,
                    "rounds": rounds,
                    "quick": quick,
                    "profile_dir": profile_dir,
                }
                if "sqlite" in databases:
                    path = copy_sqlite(cache, root / "sqlite" / "catalog.db")
                    engine = Engine("sqlite", f"sqlite+aiosqlite:///{path}", None, n)
                    results += bench_engine(engine, **common)  # type: ignore[arg-type]
                if "postgresql" in databases:
                    results += _bench_postgres(cache, n, notes, common)
        finally:
            broker.stop_sync()
    for result in results:
        result.notes.append(f"broker: {broker.kind}")
    if _over_budget() and any(r.disturbed for r in results):
        notes.append(
            f"catalog: after {TIME_BUDGET_S / 60:.0f} min, disturbed runs were no longer repeated"
        )
    return results


def _bench_postgres(
    cache: ShelfCache, n: int, notes: list[str], common: dict[str, Any]
) -> list[CatalogResult]:
    given = os.environ.get("AISUPER_BENCH_POSTGRES_URL")
    if given:
        with _database_on(given) as url:
            log(f"loading {n:,} listings into {url.rsplit('@', 1)[-1]}")
            seconds = load_postgres(cache, url)
            log(f"PostgreSQL loaded in {seconds:.0f} s")
            engine = Engine("postgresql", url, None, n)
            notes.append("catalog on PostgreSQL: AISUPER_BENCH_POSTGRES_URL (its CPU not counted)")
            return bench_engine(engine, **common)
    why_not = postgres_available()
    if why_not is not None:
        log(f"skipping the catalog on PostgreSQL: {why_not}")
        notes.append(
            f"catalog on PostgreSQL skipped: {why_not} (or set AISUPER_BENCH_POSTGRES_URL)"
        )
        return []
    pin = can_pin()
    with postgres(Path(common["root"]) / "pgroot", CLIENT_CORE if pin else None) as pg:
        log(f"loading {n:,} listings into PostgreSQL on port {pg.port}")
        seconds = load_postgres(cache, pg.url)
        log(f"PostgreSQL loaded in {seconds:.0f} s")
        engine = Engine("postgresql", pg.url, pg.pid, n)
        return bench_engine(engine, **common)


@contextlib.contextmanager
def _database_on(url: str) -> Iterator[str]:
    """A fresh database on the server of `url` (dropped afterwards): its URL."""
    import asyncpg

    name = f"aisuper_bench_catalog_{os.getpid()}"
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        base, _, _ = url.rpartition("/")
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="the pure-Python load generator")
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--requests", required=True, help="JSON list of base64 requests")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args(argv)
    requests = [base64.b64decode(r) for r in json.loads(Path(args.requests).read_text())]
    print(json.dumps(asyncio.run(_client(args, requests))))


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])
    else:
        sys.exit("run tests/bench/run.py --only catalog (or this file's 'client' mode)")
