"""One trace from a gRPC call, through the outbox and Kafka, to the consumer."""

from __future__ import annotations

from identity_harness import Identity
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.testing import eventually


def named(spans: InMemorySpanExporter, name: str, trace_id: int) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if s.name == name and s.context is not None and s.context.trace_id == trace_id
    ]


async def test_revocation_is_one_trace_from_grpc_through_kafka_to_the_consumer(
    spans: InMemorySpanExporter, identity: Identity
) -> None:
    registered = await identity.register()
    org, key = registered.organization.id, registered.api_key
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("developer revokes a key") as root:
        await identity.stub.RevokeApiKey(
            identity_pb2.RevokeApiKeyRequest(org_id=org, key_id=key.id),
            metadata=identity.as_(identity.operator_key),
        )
    trace_id = root.get_span_context().trace_id

    process = await eventually(
        lambda: named(spans, "identity.api-keys process", trace_id), within_s=15
    )
    [server] = [
        s
        for s in named(spans, "/aisuper.identity.v1.IdentityService/RevokeApiKey", trace_id)
        if s.kind == SpanKind.SERVER
    ]
    assert server.attributes is not None
    assert server.attributes["rpc.service"] == "aisuper.identity.v1.IdentityService"
    assert server.attributes["rpc.grpc.status_code"] == 0
    [publish] = named(spans, "identity.api-keys publish", trace_id)
    assert publish.kind == SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == server.context.span_id
    assert process[0].kind == SpanKind.CONSUMER
    assert process[0].parent is not None
    assert process[0].parent.span_id == publish.context.span_id
    # The database work of the call is in the same trace too.
    assert any(
        s.attributes and s.attributes.get("db.system") in ("sqlite", "postgresql")
        for s in spans.get_finished_spans()
        if s.context.trace_id == trace_id
    )
