"""Publishing a listing is one trace: the catalog's gRPC span, its publish span, and the
Kafka record's traceparent (which every consumer's span will continue)."""

from __future__ import annotations

from catalog_harness import Catalog, model_listing
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.platform.testing import BrokerUnderTest, header, read_topic


async def test_publishing_a_listing_is_one_trace_into_kafka(
    spans: InMemorySpanExporter, catalog: Catalog, broker: BrokerUnderTest
) -> None:
    lab = await catalog.org("Trace Lab")
    draft = await catalog.create(lab, model_listing())
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("provider publishes a model") as root:
        await catalog.stub.PublishListing(
            pb.PublishListingRequest(listing_id=draft.id), metadata=lab.auth
        )
    trace_id = root.get_span_context().trace_id

    in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    [server] = [
        s
        for s in in_trace
        if s.name == "/aisuper.catalog.v1.CatalogService/PublishListing"
        and s.kind == SpanKind.SERVER
    ]
    [publish] = [s for s in in_trace if s.name == "catalog.listings publish"]
    assert publish.kind == SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == server.context.span_id

    records = await read_topic(
        broker,
        "catalog.listings",
        until=lambda got: any(r.key == draft.id.encode() for r in got),
    )
    [record] = [r for r in records if r.key == draft.id.encode()]
    traceparent = header(record, "traceparent")
    assert traceparent is not None
    _version, record_trace, record_span, _flags = traceparent.split("-")
    assert int(record_trace, 16) == trace_id
    assert int(record_span, 16) == publish.context.span_id
