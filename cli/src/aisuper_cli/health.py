"""Probing what runs: gRPC health (``grpc.health.v1.Health/Check``) and TCP reachability."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aisuper.identity.v1 import identity_pb2

#: The gRPC service identity registers with the health service (next to the overall "").
IDENTITY_SERVICE: str = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name

SERVING = "SERVING"
#: Reported when the health RPC itself fails (nothing listens, or not a gRPC server).
UNREACHABLE = "UNREACHABLE"


async def grpc_health(target: str, service: str = "", *, within: float = 2.0) -> str:
    """The serving status of `service` ("" = the whole server) at `target`:
    ``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``, ``UNKNOWN`` or ``UNREACHABLE (<code>)``.

    A fresh channel per probe: a channel reused across failed probes would wait out gRPC's
    reconnect backoff instead of noticing the server as soon as it listens.
    """
    from aisuper.platform.grpc_client import channel  # imports OpenTelemetry: only when used

    async with channel(target, tracing=False) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=within)
        except grpc.aio.AioRpcError as exc:
            return f"{UNREACHABLE} ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def grpc_health_all(
    target: str, services: Iterable[str], *, within: float = 2.0
) -> dict[str, str]:
    """`grpc_health` of each service, keyed by service name."""
    names = list(services)
    statuses = await asyncio.gather(*(grpc_health(target, s, within=within) for s in names))
    return dict(zip(names, statuses, strict=True))


async def tcp_accepts(address: str, *, within: float = 1.0) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), within)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
