"""A pure-Python load generator for one unary gRPC method (the fallback when ghz is missing).

    BENCH_CREDENTIAL=KEY python tests/bench/bench_aio_client.py --target 127.0.0.1:50051 \
        --concurrency 32 --warmup 2 --duration 10

`concurrency` callers share one grpc.aio channel, each calling as soon as its previous call
returned. Prints one JSON object: count, errors, elapsed_s, rps and latency percentiles (ms)
of the calls that started inside the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import grpc

from aisuper.identity.v1 import identity_pb2

METHOD = "/aisuper.identity.v1.IdentityService/Authenticate"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(target: str, credential: str, concurrency: int, warmup: float, duration: float):
    request = identity_pb2.AuthenticateRequest().SerializeToString()
    metadata = (("authorization", f"Bearer {credential}"),)
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        await call(request, metadata=metadata, timeout=10)
        start = time.perf_counter() + warmup
        stop = start + duration

        async def caller() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                try:
                    await call(request, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError:
                    if t0 >= start:
                        errors += 1
                    continue
                if t0 >= start:
                    latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "count": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p90_ms": percentile(latencies, 90) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--credential-env",
        default="BENCH_CREDENTIAL",
        help="the environment variable holding the API key (kept off the command line)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.target,
            os.environ[args.credential_env],
            args.concurrency,
            args.warmup,
            args.duration,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
