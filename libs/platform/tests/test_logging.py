"""Logs are JSON lines that carry the current trace and span ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aisuper.platform.logging import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_log_lines_carry_trace_and_span_ids(
    spans: InMemorySpanExporter, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("identity", level="INFO", json=True)
    log = logging.getLogger("aisuper.test")
    with trace.get_tracer("test").start_as_current_span("work") as span:
        log.info("inside %s", "a span", extra={"org_id": "org_1"})
    log.info("outside")
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    context = span.get_span_context()
    assert inside["message"] == "inside a span"
    assert inside["level"] == "INFO"
    assert inside["service"] == "identity"
    assert inside["org_id"] == "org_1"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_noisy_libraries_log_warnings_only(restore_logging: None) -> None:
    configure_logging("identity", level="DEBUG", json=False)
    assert logging.getLogger("faststream").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aisuper").getEffectiveLevel() == logging.DEBUG
