"""gRPC channels for calling other services (traced, with sane keepalives)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from aisuper.platform.telemetry import grpc_client_tracing


def channel(target: str, *, tracing: bool = True) -> grpc.aio.Channel:
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (
        list(grpc_client_tracing()) if tracing else []  # type: ignore[arg-type]
    )
    return grpc.aio.insecure_channel(
        target,
        interceptors=interceptors,
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.enable_retries", 1),
        ],
    )


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a credential."""
    return (("authorization", f"Bearer {credential}"),)
