"""aisuper's benchmarks: identity's Authenticate RPC, the outbox relay, the catalog's reads.

    uv run --frozen python tests/bench/run.py [--only authenticate|outbox|catalog] [--quick]

Prints a results table and a markdown block (for docs/benchmarks.md). What each benchmark
measures is in its module (bench_authenticate.py, bench_outbox.py, bench_catalog.py) and in
docs/benchmarks.md.
Progress goes to stderr. Exits 0 when the benchmarks ran, whether or not they met their goals;
runs disturbed by other load on the machine are repeated, and flagged when they stay disturbed.

Profile (into .build/bench/profiles): the outbox relay with pyinstrument (text and HTML), and
the identity server under load with py-spy (raw stacks and a summary; py-spy through uvx):

    uv run --with pyinstrument python tests/bench/run.py --profile --quick --no-layers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_authenticate import CONCURRENCY, GOAL_RPS, AuthResult, bench_authenticate, bench_layers
from bench_catalog import CONCURRENCY as CATALOG_CONCURRENCY
from bench_catalog import GOAL_P99_MS, CatalogResult, bench_catalog
from bench_common import (
    BENCH_CACHE,
    DEFAULT_ROUNDS,
    FOREIGN_LIMIT_CORES,
    load_average,
    log,
    machine_info,
)
from bench_outbox import GOAL_EVENTS_PER_S, OutboxResult, bench_outbox


def _flag(result: AuthResult | OutboxResult | CatalogResult) -> str:
    """Whether the reported (median) round was clean, and how many runs it took."""
    rounds = max(1, len(result.rounds))
    retried = f", {result.attempts - rounds} rerun" if result.attempts > rounds else ""
    return ("DISTURBED" if result.disturbed else "ok") + retried


def auth_rows(results: list[AuthResult]) -> tuple[list[str], list[list[str]]]:
    header = [
        "variant",
        "client",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server cores",
        "client cores",
        "others",
        "run",
        "req/s of each round",
    ]
    rows = [
        [
            r.variant,
            r.client,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            f"{r.server_cores:.2f}",
            f"{r.client_cores:.2f}",
            f"{r.foreign_cores:.2f}",
            _flag(r),
            " / ".join(f"{v:,.0f}" for v in r.rounds),
        ]
        for r in results
    ]
    return header, rows


def outbox_rows(results: list[OutboxResult]) -> tuple[list[str], list[list[str]]]:
    header = [
        "database",
        "tracing",
        "batch",
        "events",
        "seconds",
        "events/s",
        "relay cores",
        "broker cores",
        "db cores",
        "others",
        "run",
        "events/s of each round",
    ]
    rows = [
        [
            r.database,
            r.tracing,
            str(r.batch_size),
            f"{r.events:,}",
            f"{r.seconds:.2f}",
            f"{r.events_per_s:,.0f}",
            f"{r.worker_cores:.2f}",
            f"{r.broker_cores:.2f}",
            f"{r.database_cores:.2f}" if r.database != "sqlite" else "(in relay)",
            f"{r.foreign_cores:.2f}",
            _flag(r),
            " / ".join(f"{v:,.0f}" for v in r.rounds),
        ]
        for r in results
    ]
    return header, rows


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def catalog_rows(results: list[CatalogResult]) -> tuple[list[str], list[list[str]]]:
    header = [
        "database",
        "caller",
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "goal",
        "calls",
        "errors",
        "1-caller p50 ms",
        "query ms",
        "server ms/call",
        "db ms/call",
        "server cores",
        "db cores",
        "client cores",
        "others",
        "run",
        "p99 ms of each round",
    ]
    rows = [
        [
            r.database,
            r.caller,
            r.scenario,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            "met" if r.goal_met else "missed",
            f"{r.requests:,}",
            str(r.errors),
            _ms(r.single_p50_ms),
            _ms(r.query_ms),
            f"{r.server_cpu_ms:.2f}",
            f"{r.database_cpu_ms:.2f}" if r.database != "sqlite" else "(in server)",
            f"{r.server_cores:.2f}",
            f"{r.database_cores:.2f}" if r.database != "sqlite" else "(in server)",
            f"{r.client_cores:.2f}",
            f"{r.foreign_cores:.2f}",
            _flag(r),
            " / ".join(f"{v:.1f}" for v in r.rounds),
        ]
        for r in results
    ]
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    right = {
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "events",
        "seconds",
        "events/s",
        "batch",
        "calls",
        "1-caller p50 ms",
        "query ms",
        "server ms/call",
        "db ms/call",
    }
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---:" if h in right else "---" for h in header) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tests/bench/run.py",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "--only", choices=["authenticate", "outbox", "catalog"], help="run one benchmark"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, fewer events, no repeats (a smoke test)"
    )
    parser.add_argument(
        "--client",
        choices=["auto", "ghz", "python"],
        default="auto",
        help="Authenticate's and the catalog's load generator: ghz (installed when missing), "
        "else grpc.aio",
    )
    parser.add_argument(
        "--no-layers",
        action="store_true",
        help="skip the layer-by-layer Authenticate runs (bench_layers_server.py)",
    )
    parser.add_argument("--events", type=int, help="outbox rows (default 20000; quick 5000)")
    parser.add_argument(
        "--batch-sizes", default="500,2000", help="outbox relay batch sizes, comma-separated"
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="outbox and catalog on SQLite only"
    )
    parser.add_argument(
        "--listings", type=int, help="catalog shelf size (default 100000; quick 10000)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile: the outbox relay with pyinstrument (uv run --with pyinstrument ...), "
        "identity's and catalog's servers with py-spy (via uvx); into .build/bench/profiles",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"measured rounds per configuration, the median is reported (default "
        f"{DEFAULT_ROUNDS}; --quick: 1)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    args = parser.parse_args(argv)

    rounds = 1 if args.quick else args.rounds
    info = machine_info()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    log(f"machine: {info['nproc']} cores, {info['cpu']}, load {load_average():.2f}")
    auth: list[AuthResult] = []
    layers: list[AuthResult] = []
    outbox: list[OutboxResult] = []
    catalog: list[CatalogResult] = []
    notes: list[str] = []
    if args.only in (None, "authenticate"):
        auth = bench_authenticate(
            quick=args.quick,
            client=args.client,
            rounds=rounds,
            profile_dir=BENCH_CACHE / "profiles" if args.profile else None,
        )
        if not args.no_layers:
            layers = bench_layers(quick=args.quick, client=args.client, rounds=rounds)
    if args.only in (None, "outbox"):
        profile_dir = None
        if args.profile:
            profile_dir = BENCH_CACHE / "profiles"
            profile_dir.mkdir(parents=True, exist_ok=True)
        outbox, notes = bench_outbox(
            quick=args.quick,
            events=args.events,
            batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
            databases=["sqlite"] if args.no_postgres else None,
            profile_dir=profile_dir,
            rounds=rounds,
        )
        if profile_dir is not None:
            notes.append(f"pyinstrument profiles (text, HTML) in {profile_dir}")
    if args.only in (None, "catalog"):
        profile_dir = None
        if args.profile:
            profile_dir = BENCH_CACHE / "profiles"
            profile_dir.mkdir(parents=True, exist_ok=True)
        catalog, catalog_notes = bench_catalog(
            quick=args.quick,
            listings=args.listings,
            client=args.client,
            rounds=rounds,
            databases=["sqlite"] if args.no_postgres else None,
            profile_dir=profile_dir,
        )
        notes += catalog_notes
    if args.profile:
        notes.append(
            "profiled run: the profilers slow the measured processes down, so these figures "
            f"are not results; the profiles are in {BENCH_CACHE / 'profiles'}"
        )

    out = sys.stdout
    versions = (
        f"Python {info['python']}, grpcio {info['grpcio']}, aiokafka {info['aiokafka']}, "
        f"SQLAlchemy {info['sqlalchemy']}, opentelemetry-sdk {info['opentelemetry-sdk']}"
    )
    print(f"\naisuper benchmarks, {started}", file=out)
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}", file=out)
    print(f"versions: {versions}; pinning: {info['pinning']}", file=out)
    print(f"source: {info['revision']}", file=out)
    print(
        f"'others' = cores used by processes not started by the benchmark, averaged over the "
        f"run; above {FOREIGN_LIMIT_CORES} a run counts as disturbed and is repeated",
        file=out,
    )
    print(
        f"each row: the median of {rounds} round(s), configurations taking turns; "
        "'run' says whether that round was clean",
        file=out,
    )
    markdown: list[str] = [
        f"Run {started} on {info['nproc']} cores, {info['cpu']}; {versions}; "
        f"source {info['revision']}. Each row is the median of {rounds} round(s).",
    ]
    if auth:
        header, rows = auth_rows(auth)
        title = (
            f"Authenticate, warm cache: {CONCURRENCY} concurrent callers, one server process "
            f"(goal ≥ {GOAL_RPS:,.0f} req/s); {', '.join(sorted(set(auth[0].notes)))}"
        )
        print(f"\n{title}\n{text_table(header, rows)}", file=out)
        markdown += ["", f"**{title}**", "", markdown_table(header, rows)]
    if layers:
        header, rows = auth_rows(layers)
        title = (
            "Authenticate, layer by layer: the same load against bench_layers_server.py "
            "(no database, no broker, warm AuthCache)"
        )
        print(f"\n{title}\n{text_table(header, rows)}", file=out)
        markdown += ["", f"**{title}**", "", markdown_table(header, rows)]
    if outbox:
        header, rows = outbox_rows(outbox)
        title = (
            f"Outbox relay, commit → broker ack → marked (goal ≥ {GOAL_EVENTS_PER_S:,.0f} "
            f"events/s); broker: {outbox[0].broker}"
        )
        print(f"\n{title}\n{text_table(header, rows)}", file=out)
        markdown += ["", f"**{title}**", "", markdown_table(header, rows)]
    if catalog:
        header, rows = catalog_rows(catalog)
        title = (
            f"Catalog reads on {catalog[0].listings:,} listings: {CATALOG_CONCURRENCY} "
            f"concurrent callers, one server process, page_size 20 (goal p99 ≤ {GOAL_P99_MS:g} "
            f"ms); {', '.join(sorted(set(catalog[0].notes)))}"
        )
        print(f"\n{title}\n{text_table(header, rows)}", file=out)
        markdown += ["", f"**{title}**", "", markdown_table(header, rows)]
    for note in notes:
        print(f"note: {note}", file=out)
        markdown.append(f"\nNote: {note}")
    print("\nmarkdown:\n", file=out)
    print("\n".join(markdown), file=out)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started,
                    "machine": info,
                    "authenticate": [asdict(r) for r in auth],
                    "authenticate_layers": [asdict(r) for r in layers],
                    "outbox": [asdict(r) for r in outbox],
                    "catalog": [asdict(r) for r in catalog],
                    "notes": notes,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
