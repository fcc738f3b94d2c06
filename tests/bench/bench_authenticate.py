"""Benchmark: identity's `Authenticate` RPC with a warm credential cache.

One identity server process (``python -m aisuper_identity``: SQLite in a temp dir, the embedded
broker) pinned to core 1; the load generator pinned to core 0; the broker's threads pinned to
core 0 too (it idles during the run). `CONCURRENCY` callers over one HTTP/2 connection call
``aisuper.identity.v1.IdentityService/Authenticate`` with the operator's API key for a warm-up,
then for a fixed duration. The same key on every call: after the first, the credential resolves
from the in-process AuthCache, so no call touches the database.

Each variant runs in a fresh server process: tracing as shipped (the SDK tracer provider with no
exporter: spans are made, sampled and dropped) and ``OTEL_TRACES_SAMPLER=always_off``.

The load generator is ghz (Go, github.com/bojand/ghz, installed with ``go install`` into
``.build/bench/bin`` when missing), else `bench_aio_client.py` (grpc.aio, pure Python).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import (
    BENCH_CACHE,
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

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.120.0"
METHOD = "aisuper.identity.v1.IdentityService/Authenticate"
CONCURRENCY = 32
GOAL_RPS = 4000.0

#: name -> extra environment of the server process
VARIANTS: dict[str, dict[str, str]] = {
    "tracing as shipped": {},
    "OTEL_TRACES_SAMPLER=always_off": {"OTEL_TRACES_SAMPLER": "always_off"},
}


@dataclass
class AuthResult:
    variant: str
    client: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    duration_s: float
    server_cores: float
    client_cores: float
    foreign_cores: float
    disturbed: bool
    attempts: int
    notes: list[str] = field(default_factory=list)
    #: req/s of every round, in order (the row shows the median round)
    rounds: list[float] = field(default_factory=list)


# --- the load generator -----------------------------------------------------------------------


def ghz_path(install: bool = True) -> Path | None:
    """ghz from ``$AISUPER_BENCH_GHZ``, the bench cache or PATH; installed with ``go install``
    into the cache when missing and Go is there. None when there is no way to get it."""
    override = os.environ.get("AISUPER_BENCH_GHZ")
    if override:
        return Path(override) if Path(override).is_file() else None
    cached = BENCH_CACHE / "bin" / "ghz"
    if cached.is_file():
        return cached
    on_path = shutil.which("ghz")
    if on_path:
        return Path(on_path)
    go = shutil.which("go")
    if not install or go is None:
        return None
    log(f"installing ghz {GHZ_VERSION} with go install into {cached.parent}")
    env = {**os.environ, "GOBIN": str(cached.parent), "GOFLAGS": "-mod=mod"}
    try:
        subprocess.run(
            [go, "install", f"{GHZ_MODULE}@{GHZ_VERSION}"],
            env=env,
            check=True,
            timeout=900,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", b"") or b""
        log(f"go install ghz failed: {stderr.decode(errors='replace')[-500:]}")
        return None
    return cached if cached.is_file() else None


def write_protoset(path: Path) -> Path:
    """A FileDescriptorSet with identity's API and everything it imports (for ghz)."""
    from google.protobuf import descriptor_pb2

    from aisuper.identity.v1 import identity_pb2

    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor) -> None:  # type: ignore[no-untyped-def]
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        out.file.append(proto)

    add(identity_pb2.DESCRIPTOR)
    path.write_bytes(out.SerializeToString())
    return path


@dataclass
class LoadRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    duration_s: float


def _ghz(
    ghz: Path, workdir: Path, address: str, duration_s: float, client_core: int | None
) -> LoadRun:
    report = workdir / "ghz.json"
    command = [
        str(ghz),
        "--insecure",
        "--protoset",
        str(workdir / "identity.protoset"),
        "--call",
        METHOD,
        "--data",
        "{}",
        "--metadata-file",
        str(workdir / "metadata.json"),
        "--concurrency",
        str(CONCURRENCY),
        "--connections",
        "1",
        "--cpus",
        "1",
        "--duration",
        f"{duration_s}s",
        "--duration-stop",
        "ignore",  # calls cut off by the end of the run are not errors
        "--timeout",
        "10s",
        "--format",
        "json",
        "--output",
        str(report),
        address,
    ]
    subprocess.run(
        pinned(command, client_core),
        check=True,
        timeout=duration_s + 60,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    data = json.loads(report.read_text())
    latency = {int(d["percentage"]): d["latency"] / 1e6 for d in data["latencyDistribution"] or []}
    statuses: dict[str, int] = data.get("statusCodeDistribution") or {}
    ok = statuses.get("OK", 0)
    return LoadRun(
        rps=ok / (data["total"] / 1e9),
        p50_ms=latency.get(50, float("nan")),
        p99_ms=latency.get(99, float("nan")),
        requests=ok,
        errors=sum(n for code, n in statuses.items() if code != "OK"),
        duration_s=data["total"] / 1e9,
    )


def _python_client(
    credential: str, address: str, warmup_s: float, duration_s: float, client_core: int | None
) -> LoadRun:
    script = Path(__file__).with_name("bench_aio_client.py")
    command = [
        sys.executable,
        str(script),
        "--target",
        address,
        "--credential-env",
        "BENCH_CREDENTIAL",
        "--concurrency",
        str(CONCURRENCY),
        "--warmup",
        str(warmup_s),
        "--duration",
        str(duration_s),
    ]
    done = subprocess.run(
        pinned(command, client_core),
        check=True,
        timeout=warmup_s + duration_s + 60,
        capture_output=True,
        env=clean_env(BENCH_CREDENTIAL=credential),
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


# --- the server -------------------------------------------------------------------------------


@dataclass
class IdentityServer:
    process: subprocess.Popen[bytes]
    address: str
    workdir: Path
    log_file: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def wait_serving(self, within_s: float = 90.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + within_s
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"identity exited with {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(grpc.RpcError):
                    response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"identity not serving within {within_s}s:\n{self.tail()}")
                time.sleep(0.1)

    def authenticate_once(self, credential: str) -> None:
        """One call: fills the AuthCache (the only one that reads the database)."""
        import grpc

        from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            stub.Authenticate(
                identity_pb2.AuthenticateRequest(),
                metadata=(("authorization", f"Bearer {credential}"),),
                timeout=10,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def identity_server(
    workdir: Path, bootstrap: str, idempotence: bool, server_core: int | None, env: dict[str, str]
) -> Iterator[IdentityServer]:
    from aisuper.platform.embedded.broker import free_port

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_file = workdir / "identity.log"
    environment = clean_env(
        AISUPER_KAFKA_BOOTSTRAP=bootstrap,
        AISUPER_KAFKA_IDEMPOTENCE=str(idempotence).lower(),
        AISUPER_IDENTITY_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'identity.db'}",
        AISUPER_IDENTITY_OPERATOR_KEY_FILE=str(workdir / "operator.key"),
        AISUPER_GRPC_PORT=str(port),
        AISUPER_METRICS_PORT="0",
        AISUPER_LOG_LEVEL="INFO",
        **env,
    )
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "aisuper_identity"], server_core),
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = IdentityServer(process, f"127.0.0.1:{port}", workdir, log_file)
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


# --- the benchmark ----------------------------------------------------------------------------


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_py_spy(
    pid: int, out: Path, duration_s: float, core: int | None
) -> subprocess.Popen[bytes] | None:
    """py-spy (from PATH, else through uvx) sampling `pid` for `duration_s`; None without it."""
    command = ["py-spy"] if shutil.which("py-spy") else ["uvx", "py-spy"]
    if shutil.which(command[0]) is None:
        log("py-spy not available (neither py-spy nor uvx on PATH): no profile")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    # Blocking mode (the default): consistent stacks, at the price of brief pauses.
    spy = subprocess.Popen(
        pinned(
            [*command, "record", "--pid", str(pid), "--rate", "150", "--duration",
             str(int(duration_s)), "--threads", "--format", "raw", "-o", str(out)],
            core,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)  # let it attach
    return spy


def finish_py_spy(spy: subprocess.Popen[bytes], out: Path) -> None:
    _, stderr = spy.communicate(timeout=120)
    if spy.returncode != 0 or not out.is_file():
        log(f"py-spy failed ({spy.returncode}): {stderr.decode(errors='replace')[-300:]}")
        return
    summary = out.with_suffix(".txt")
    summary.write_text(summarize_py_spy(out))
    log(f"py-spy profile: {out} (summary {summary})")


def summarize_py_spy(raw: Path, top: int = 40) -> str:
    """Inclusive and self shares of the main thread's functions in a py-spy raw profile."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or "MainThread" not in frames[0]:
            continue
        n = int(count)
        total += n
        names = [frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame for frame in frames[1:]]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + n
        if names:
            own[names[-1]] = own.get(names[-1], 0) + n
    lines = [f"main thread: {total} samples", "", "inclusive:"]
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{n / max(total, 1):6.1%}  {name}")
    lines += ["", "self:"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{n / max(total, 1):6.1%}  {name}")
    return "\n".join(lines) + "\n"


def measure(
    name: str,
    *,
    server_pid: int,
    address: str,
    credential: str,
    workdir: Path,
    ghz: Path | None,
    warmup_s: float,
    duration_s: float,
    attempts: int,
    other_pids: tuple[int, ...] = (),
    py_spy_out: Path | None = None,
) -> AuthResult:
    """Warm-up, then a timed run; repeated (up to `attempts`) while others disturb it.

    With `py_spy_out`, py-spy samples the server during the (first) timed run (raw format).
    """
    pin = can_pin()
    client_core = CLIENT_CORE if pin else None
    (workdir / "metadata.json").write_text(json.dumps({"authorization": f"Bearer {credential}"}))
    if ghz is not None:
        write_protoset(workdir / "identity.protoset")
    tries: list[AuthResult] = []
    for attempt in range(1, attempts + 1):
        if ghz is not None:
            _ghz(ghz, workdir, address, warmup_s, client_core)
        spy = None
        if py_spy_out is not None and attempt == 1:
            # Its own CPU shows as "others": a profiled run is no result anyway.
            spy = start_py_spy(server_pid, py_spy_out, duration_s, client_core)
        watch = CpuWatch([server_pid, *other_pids])
        client0 = _client_cpu_s()
        with watch.measure():
            if ghz is not None:
                run = _ghz(ghz, workdir, address, duration_s, client_core)
            else:
                run = _python_client(credential, address, warmup_s, duration_s, client_core)
        if spy is not None:
            finish_py_spy(spy, py_spy_out)  # type: ignore[arg-type]
        client_s = _client_cpu_s() - client0
        cpu = watch.report
        assert cpu is not None
        result = AuthResult(
            variant=name,
            client=f"ghz {GHZ_VERSION}" if ghz is not None else "grpc.aio (Python)",
            rps=run.rps,
            p50_ms=run.p50_ms,
            p99_ms=run.p99_ms,
            requests=run.requests,
            errors=run.errors,
            duration_s=run.duration_s,
            server_cores=cpu.cores_of(server_pid),
            client_cores=client_s / cpu.wall_s,
            foreign_cores=cpu.foreign_cores,
            disturbed=cpu.disturbed,
            attempts=attempt,
        )
        log(
            f"authenticate [{name}] attempt {attempt}: {run.rps:,.0f} req/s, "
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, errors {run.errors}, "
            f"server {result.server_cores:.2f} cores, client {result.client_cores:.2f}, "
            f"others {result.foreign_cores:.2f}" + (" DISTURBED" if result.disturbed else "")
        )
        tries.append(result)
        if not result.disturbed:
            break
        wait_for_quiet()
    best = pick_calm(tries, lambda r: r.foreign_cores)
    best.attempts = len(tries)
    if not pin:
        best.notes.append("not pinned: taskset missing or cores 0-1 not both allowed")
    return best


def aggregate(runs: list[AuthResult]) -> AuthResult:
    """One row per configuration: its median round, with every round's req/s."""
    row = median_run(runs, lambda r: r.rps, lambda r: r.disturbed)
    row.rounds = [r.rps for r in runs]
    row.attempts = sum(r.attempts for r in runs)
    return row


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()


def run_variant(
    name: str,
    env: dict[str, str],
    *,
    root: Path,
    bootstrap: str,
    idempotence: bool,
    broker_pid: int,
    ghz: Path | None,
    warmup_s: float,
    duration_s: float,
    attempts: int,
    py_spy_out: Path | None = None,
) -> AuthResult:
    server_core = SERVER_CORE if can_pin() else None
    slug = _slug(name)
    with identity_server(root / slug, bootstrap, idempotence, server_core, env) as server:
        credential = (server.workdir / "operator.key").read_text().strip()
        server.authenticate_once(credential)
        return measure(
            name,
            server_pid=server.process.pid,
            address=server.address,
            credential=credential,
            workdir=server.workdir,
            ghz=ghz,
            warmup_s=warmup_s,
            duration_s=duration_s,
            attempts=attempts,
            other_pids=(broker_pid,),
            py_spy_out=py_spy_out,
        )


@contextlib.contextmanager
def layers_server(mode: str, workdir: Path, env: dict[str, str]) -> Iterator[tuple[int, str]]:
    """`bench_layers_server.py --mode MODE` pinned like identity: (pid, address)."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("bench_layers_server.py")
    process = subprocess.Popen(
        pinned([sys.executable, str(script), "--mode", mode], SERVER_CORE if can_pin() else None),
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=(workdir / "server.log").open("wb"),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"layers server ({mode}) exited: {process.wait()}")
        yield process.pid, f"127.0.0.1:{json.loads(line)['port']}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


#: label -> (mode of bench_layers_server.py, extra environment)
LAYERS: dict[str, tuple[str, dict[str, str]]] = {
    "grpcio echo (anchor)": ("echo", {}),
    "+ generated servicer, principal_to_proto": ("servicer", {}),
    "+ OTel server interceptor": ("servicer+otel", {}),
    "platform GrpcServer (OTel + CallInterceptor)": ("platform", {}),
    "platform GrpcServer, sampler always_off": (
        "platform",
        {"OTEL_TRACES_SAMPLER": "always_off"},
    ),
    "platform GrpcServer, tracing=False": ("platform-notrace", {}),
}


def bench_layers(
    *, quick: bool = False, client: str = "auto", rounds: int = DEFAULT_ROUNDS
) -> list[AuthResult]:
    """The same load against `bench_layers_server.py`, one layer more at a time."""
    from bench_layers_server import CREDENTIAL

    warmup_s, duration_s = (1.0, 3.0) if quick else (2.0, 10.0)
    attempts = 1 if quick else MAX_ATTEMPTS
    ghz = None if client == "python" else ghz_path()
    runs: dict[str, list[AuthResult]] = {label: [] for label in LAYERS}
    with tempfile.TemporaryDirectory(prefix="aisuper-bench-layers-") as tmp:
        for round_ in range(rounds):
            for n, (label, (mode, env)) in enumerate(LAYERS.items()):
                workdir = Path(tmp) / f"{round_}-{n}"
                wait_for_quiet()
                with layers_server(mode, workdir, env) as (pid, address):
                    runs[label].append(
                        measure(
                            label,
                            server_pid=pid,
                            address=address,
                            credential=CREDENTIAL,
                            workdir=workdir,
                            ghz=ghz,
                            warmup_s=warmup_s,
                            duration_s=duration_s,
                            attempts=attempts,
                        )
                    )
    return [aggregate(r) for r in runs.values()]


def bench_authenticate(
    *,
    quick: bool = False,
    client: str = "auto",
    rounds: int = DEFAULT_ROUNDS,
    profile_dir: Path | None = None,
) -> list[AuthResult]:
    """Identity itself, per variant; the variants take turns, `rounds` times."""
    from aisuper.platform.embedded.broker import start_embedded_broker_sync

    warmup_s, duration_s = (1.0, 3.0) if quick else (2.0, 10.0)
    attempts = 1 if quick else MAX_ATTEMPTS
    ghz = None if client == "python" else ghz_path()
    if ghz is None and client == "ghz":
        raise RuntimeError("ghz is not available (no Go toolchain to install it with)")
    if ghz is None:
        log("ghz not available: using the pure-Python grpc.aio client")
    runs: dict[str, list[AuthResult]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="aisuper-bench-auth-") as tmp:
        root = Path(tmp)
        kind = broker_preference()
        log(f"starting the embedded broker ({kind})")
        broker = start_embedded_broker_sync(root / "broker", prefer=kind)  # type: ignore[arg-type]
        try:
            pin_all_threads(broker.pid, CLIENT_CORE if can_pin() else None)
            for round_ in range(rounds):
                for name, env in VARIANTS.items():
                    wait_for_quiet()
                    result = run_variant(
                        name,
                        env,
                        root=root / str(round_),
                        bootstrap=broker.bootstrap,
                        idempotence=broker.kind != "tansu",
                        broker_pid=broker.pid,
                        ghz=ghz,
                        warmup_s=warmup_s,
                        duration_s=duration_s,
                        attempts=attempts,
                        py_spy_out=(
                            profile_dir / f"authenticate-{_slug(name)}.raw"
                            if profile_dir is not None and round_ == 0
                            else None
                        ),
                    )
                    result.notes.append(f"broker: {broker.kind}")
                    runs[name].append(result)
        finally:
            broker.stop_sync()
    return [aggregate(r) for r in runs.values()]
