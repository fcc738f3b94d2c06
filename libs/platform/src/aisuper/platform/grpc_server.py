"""The gRPC server every service runs: health, reflection, tracing, auth,
validation, deadlines, error mapping and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import protovalidate
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.exc import IntegrityError

from aisuper.platform import errors
from aisuper.platform.auth import (
    CredentialResolver,
    bearer_credential,
    reset_principal,
    set_principal,
)
from aisuper.platform.grpc_errors import to_status, violations_error

log = logging.getLogger(__name__)

_validator = protovalidate.Validator()


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Authentication, validation, deadlines and error mapping, in one layer.

    One layer instead of five keeps the per-call cost low: this runs on every
    request of every service. It also makes the server span: the stock
    OpenTelemetry gRPC server interceptor cost a third of a warm `Authenticate`
    (measured, docs/benchmarks.md), most of it in wrapping the servicer
    context and filtering health checks on every call; we skip health and
    reflection before any of that. Spans keep the instrumentation's names and
    attributes (`/<service>/<method>`, `rpc.*`), so traces read the same.
    """

    def __init__(
        self,
        resolver: CredentialResolver | None,
        *,
        public_methods: Iterable[str] = (),
        default_deadline_s: float = 30.0,
    ) -> None:
        self._resolver = resolver
        self._public = frozenset(public_methods)
        self._default_deadline_s = default_deadline_s
        self._tracer = trace.get_tracer("aisuper.platform.grpc")
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}
        self._active = metrics.get_meter("aisuper.platform.grpc").create_up_down_counter(
            "aisuper.rpc.server.active_requests",
            unit="{request}",
            description="Calls being handled right now (what a graceful stop drains)",
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if method in self._handlers:
            return self._handlers[method]
        handler = await continuation(details)
        if handler is not None and not method.startswith(("/grpc.health.", "/grpc.reflection.")):
            handler = self._wrap(handler, method)
        self._handlers[method] = handler
        return handler

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        public = method in self._public
        deserialize = _lenient(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, public, method),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream, public, method),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any], public: bool) -> Any:
        # A credential, once presented, must be valid even on public calls:
        # silently ignoring a bad one would hide the caller's mistake.
        credential = bearer_credential(context.invocation_metadata())  # type: ignore[arg-type]
        if credential is None:
            if public:
                return set_principal(None)
            raise errors.Unauthenticated("this call needs a credential")
        if self._resolver is None:
            raise errors.Unauthenticated("this service accepts no credentials")
        return set_principal(await self._resolver.resolve(credential))

    def _validate(self, request: Any) -> None:
        try:
            _validator.validate(request)
        except protovalidate.ValidationError as error:
            raise violations_error(error.violations) from None

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
        if isinstance(error, errors.DomainError):
            status = to_status(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
        if isinstance(error, TimeoutError):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        if isinstance(error, IntegrityError):
            # A concurrent change won a uniqueness race: safe to retry.
            await context.abort(grpc.StatusCode.ABORTED, "conflicting concurrent change: retry")
        log.exception("unhandled error in %s", type(error).__name__, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    @contextlib.asynccontextmanager
    async def _call(
        self,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        public: bool,
        method: str,
    ) -> AsyncIterator[None]:
        """Everything around one call: who, whether the request is valid, errors."""
        token = None
        attributes = _attributes(method)
        self._active.add(1, attributes)
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        with self._tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            try:
                token = await self._authenticate(context, public)
                if isinstance(request, _Undecodable):
                    raise errors.InvalidArgument(
                        f"request is not a valid message: {request.reason}"
                    )
                self._validate(request)
                yield
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                await self._abort(context, error)
            finally:
                span.set_attribute("rpc.grpc.status_code", _code_of(context))
                self._active.add(-1, attributes)
                if token is not None:
                    reset_principal(token)

    def _unary(self, behavior: Any, public: bool, method: str) -> Any:
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._call(request, context, public, method):
                if context.time_remaining() is not None:
                    return await behavior(request, context)  # gRPC enforces the deadline
                async with asyncio.timeout(self._default_deadline_s):
                    return await behavior(request, context)

        return handle

    def _unary_stream(self, behavior: Any, public: bool, method: str) -> Any:
        async def handle(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with self._call(request, context, public, method):
                async for response in behavior(request, context):
                    yield response

        return handle


@functools.cache
def _attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code or 0)


@dataclass(frozen=True)
class _Undecodable:
    reason: str


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands bad bytes to the interceptor instead of failing.

    gRPC answers a failed deserialization with UNKNOWN and the parser's
    message; the caller deserves INVALID_ARGUMENT like any other bad input.
    """
    if deserialize is None:
        return None

    def lenient(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return _Undecodable(str(error) or "cannot be parsed")

    return lenient


@dataclass(frozen=True)
class Service:
    """A servicer and the generated function that registers it."""

    name: str  # full service name, e.g. aisuper.identity.v1.IdentityService
    servicer: object
    register: Callable[[Any, Any], None]


class GrpcServer:
    def __init__(
        self,
        services: Iterable[Service],
        *,
        interceptor: CallInterceptor,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        interceptors: list[Any] = [interceptor]
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._services = list(services)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        for service in self._services:
            service.register(service.servicer, self._server)
        reflection.enable_server_reflection(
            [s.name for s in self._services]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        for service in self._services:
            await self.health.set(service.name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        """Reports NOT_SERVING, refuses new calls, drains in-flight ones for `grace_s`."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_s)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
