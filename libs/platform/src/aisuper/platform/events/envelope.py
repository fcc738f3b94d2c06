"""The CloudEvents Kafka binding (binary mode) with protobuf payloads.

Headers: `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`,
`ce_subject`, `content-type`, `ce_dataschema`, W3C `traceparent` /
`tracestate`, and `aisuper_org` when the event belongs to an organisation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message

SPECVERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
ORG_HEADER = "aisuper_org"

M = TypeVar("M", bound=Message)


class EnvelopeError(ValueError):
    """A record that is not a well-formed aisuper event (poison: goes to the DLQ)."""


@dataclass(frozen=True)
class EventType:
    """One kind of event: its protobuf message, its topic and its `ce_type`."""

    message: type[Message]
    topic: str
    ce_type: str

    @property
    def dataschema(self) -> str:
        return str(self.message.DESCRIPTOR.full_name)


@dataclass(frozen=True)
class Event(Generic[M]):
    """A decoded event as a consumer sees it."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: M
    org_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class EventCatalog:
    """The events one service produces, by message class and by `ce_type`."""

    def __init__(self, source: str, types: Iterable[EventType]) -> None:
        self.source = source
        self._by_message: dict[type[Message], EventType] = {}
        self._by_type: dict[str, EventType] = {}
        for event_type in types:
            self._by_message[event_type.message] = event_type
            self._by_type[event_type.ce_type] = event_type

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._by_message.values())

    @property
    def topics(self) -> set[str]:
        return {t.topic for t in self._by_message.values()}

    def type_of(self, message: Message) -> EventType:
        try:
            return self._by_message[type(message)]
        except KeyError:
            raise KeyError(f"{type(message).__name__} is not an event of {self.source}") from None

    def by_ce_type(self, ce_type: str) -> EventType | None:
        return self._by_type.get(ce_type)


def encode_headers(
    event_type: EventType,
    *,
    source: str,
    subject: str,
    org_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    headers = {
        "ce_specversion": SPECVERSION,
        "ce_id": event_id or str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": event_type.ce_type,
        "ce_time": (time or datetime.now(UTC)).isoformat(),
        "ce_subject": subject,
        "content-type": CONTENT_TYPE,
        "ce_dataschema": event_type.dataschema,
    }
    if org_id:
        headers[ORG_HEADER] = org_id
    if extra:
        headers.update(extra)
    return headers


def decode(
    headers: Mapping[str, str], payload: bytes, known: Mapping[str, EventType]
) -> Event[Message] | None:
    """Decodes a record; None for a well-formed event of a type we do not handle."""
    for required in ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"):
        if not headers.get(required):
            raise EnvelopeError(f"missing CloudEvents header {required}")
    if headers["ce_specversion"] != SPECVERSION:
        raise EnvelopeError(f"unsupported ce_specversion {headers['ce_specversion']!r}")
    event_type = known.get(headers["ce_type"])
    if event_type is None:
        return None
    if headers.get("content-type", CONTENT_TYPE) != CONTENT_TYPE:
        raise EnvelopeError(f"unsupported content-type {headers.get('content-type')!r}")
    try:
        time = datetime.fromisoformat(headers["ce_time"])
    except ValueError as error:
        raise EnvelopeError(f"ce_time is not an RFC 3339 time: {error}") from None
    message = event_type.message()
    try:
        message.ParseFromString(payload)
    except DecodeError as error:
        raise EnvelopeError(f"payload is not a {event_type.dataschema}: {error}") from None
    return Event(
        id=headers["ce_id"],
        type=headers["ce_type"],
        source=headers["ce_source"],
        subject=headers.get("ce_subject", ""),
        time=time,
        data=message,
        org_id=headers.get(ORG_HEADER),
        headers=dict(headers),
    )


def headers_to_kafka(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


def headers_from_kafka(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    decoded: dict[str, str] = {}
    for key, value in headers or ():
        try:
            decoded[key] = value.decode() if value is not None else ""
        except UnicodeDecodeError as error:
            raise EnvelopeError(f"header {key} is not UTF-8") from error
    return decoded
