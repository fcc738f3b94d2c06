"""The FastStream Kafka broker every service consumes (and dead-letters) with."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

from aisuper.platform.settings import ServiceSettings


def kafka_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        # Consumer spans are `<topic> process`, children of the producer's span.
        middlewares=(KafkaTelemetryMiddleware(),),
        logger=logging.getLogger("faststream"),
        # Per-message logs at DEBUG: FastStream's INFO default costs ~13% and
        # can block a process whose stdout nobody reads.
        log_level=logging.DEBUG,
        description=f"Events of aisuper's {settings.service_name} service",
    )
