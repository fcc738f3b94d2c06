"""``python -m aisuper.platform.embedded --data-dir D [--port P] [--kind auto|apache-kafka|tansu]``

Starts an embedded broker, prints one JSON line ``{"kind": ..., "bootstrap": ..., "pid": ...}``
on stdout and stays in the foreground until SIGTERM or SIGINT, then stops the broker. Exits 1
when the broker cannot start or dies on its own (the log tail goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import cast

from aisuper.platform.embedded.broker import (
    BrokerPreference,
    BrokerStartError,
    EmbeddedBroker,
    start_embedded_broker,
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aisuper.platform.embedded",
        description="Run an embedded Kafka-protocol broker (Apache Kafka or Tansu) in the "
        "foreground until SIGTERM/SIGINT.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="directory for the broker's data, config, logs and pid file",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="loopback port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--kind",
        choices=["auto", "apache-kafka", "tansu"],
        default="auto",
        help="auto = Apache Kafka when Java 17+ and the classpath from "
        "infra/kafka/fetch.sh are present, else Tansu",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=None,
        help="seconds to wait for the broker to be ready",
    )
    parser.add_argument(
        "--print-limits", action="store_true", help="also print the broker's known limits to stderr"
    )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(
        start_embedded_broker(
            args.data_dir,
            port=args.port,
            prefer=cast(BrokerPreference, args.kind),
            startup_timeout=args.startup_timeout,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # SIGTERM/SIGINT while starting: cancel (kills the child)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, BrokerStartError):
            await starting
        print("embedded broker: stopped before it was ready", file=sys.stderr)
        return 0
    stopping.cancel()
    try:
        broker: EmbeddedBroker = starting.result()
    except BrokerStartError as exc:
        print(f"embedded broker: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(broker.info()), flush=True)
    if args.print_limits:
        for limit in broker.limits:
            print(f"{broker.kind} limit: {limit}", file=sys.stderr)
    try:
        while not stop.is_set():
            if not broker.running:
                print(
                    f"embedded broker: {broker.kind} (pid {broker.pid}) exited on its own; "
                    f"log tail:\n{broker.log_tail()}",
                    file=sys.stderr,
                )
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(_run(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
