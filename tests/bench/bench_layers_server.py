"""A stripped-down Authenticate server, one layer at a time, to see where identity's time goes.

    python tests/bench/bench_layers_server.py --mode MODE

prints ``{"port": N}`` once serving, then serves until SIGTERM. No database and no broker:
the credential resolves from a warm AuthCache, as in identity with a warm cache. Modes:

- ``echo``: grpc.aio with one generic handler returning fixed bytes (the grpcio anchor).
- ``servicer``: the generated IdentityService servicer; Authenticate builds the response with
  `principal_to_proto` as identity does. No interceptors.
- ``servicer+otel``: plus the OpenTelemetry server interceptor (tracer provider as shipped).
- ``platform``: the platform's `GrpcServer` (health, reflection, OTel interceptor,
  `CallInterceptor` with a `CredentialResolver`) around that servicer: identity without its
  database, broker, relay and consumers.
- ``platform-notrace``: the same with the OTel interceptor left out (``tracing=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import grpc

MODES = ("echo", "servicer", "servicer+otel", "platform", "platform-notrace")
SERVICE = "aisuper.identity.v1.IdentityService"
CREDENTIAL = "ais_benchkey_0123456789abcdef"


def _principal() -> Any:
    from aisuper.platform.auth import Principal

    return Principal(
        org_id="org_bench",
        subject="key:key_bench",
        roles=frozenset({"operator"}),
        scopes=frozenset(),
        credential_kind="api_key",
        key_id="key_bench",
    )


class _Keys:
    async def authenticate_api_key(self, credential: str) -> Any:
        return _principal()


def _servicer(fixed: bool) -> Any:
    from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
    from aisuper.platform.auth import current_principal
    from aisuper.platform.identity_client import principal_to_proto

    principal = _principal()

    class Servicer(identity_pb2_grpc.IdentityServiceServicer):
        async def Authenticate(self, request: Any, context: Any) -> Any:
            who = principal if fixed else current_principal()
            return identity_pb2.AuthenticateResponse(principal=principal_to_proto(who))

    return Servicer()


async def serve(mode: str) -> None:
    from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
    from aisuper.platform.telemetry import configure_telemetry

    telemetry = configure_telemetry("bench")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if mode.startswith("platform"):
        from aisuper.platform.auth import AuthCache, CredentialResolver, JwtVerifier
        from aisuper.platform.grpc_server import CallInterceptor, GrpcServer, Service

        async def no_jwks() -> list[dict[str, Any]]:
            return []

        resolver = CredentialResolver(
            api_keys=_Keys(),
            tokens=JwtVerifier(no_jwks, issuer="bench", audience="bench"),
            cache=AuthCache(ttl_s=3600),
        )
        register = identity_pb2_grpc.add_IdentityServiceServicer_to_server
        server = GrpcServer(
            [Service(SERVICE, _servicer(False), register)],
            interceptor=CallInterceptor(resolver),
            tracing=mode == "platform",
        )
        await server.start()
        port = server.port
    else:
        interceptors: list[Any] = []
        if mode == "servicer+otel":
            from aisuper.platform.telemetry import grpc_server_tracing

            interceptors.append(grpc_server_tracing())
        raw = grpc.aio.server(interceptors=interceptors)
        if mode == "echo":
            response = identity_pb2.AuthenticateResponse().SerializeToString()

            async def authenticate(request: bytes, context: Any) -> bytes:
                return response

            handler = grpc.method_handlers_generic_handler(
                SERVICE, {"Authenticate": grpc.unary_unary_rpc_method_handler(authenticate)}
            )
            raw.add_generic_rpc_handlers((handler,))
        else:
            identity_pb2_grpc.add_IdentityServiceServicer_to_server(_servicer(True), raw)
        port = raw.add_insecure_port("127.0.0.1:0")
        await raw.start()
    print(json.dumps({"port": port}), flush=True)
    await stop.wait()
    if mode.startswith("platform"):
        await server.stop(1)
    else:
        await raw.stop(1)
    telemetry.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=MODES, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.mode))


if __name__ == "__main__":
    sys.exit(main())
