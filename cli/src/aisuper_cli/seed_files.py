"""What seeding the catalog's shelf and policy's support programs have in common.

Both read a packaged YAML file whose top-level list holds protobuf messages in JSON form, put
each message into a running service unless it is there already (one gRPC call each, as the
operator), report by slug what was created, found or refused, and record a complete seeding in
a marker file of the data dir (with the file's digest, so a changed file is seeded again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import grpc
import yaml
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import Message

from aisuper_cli.platform_runner import PlatformError
from aisuper_cli.rpc import CredentialError, describe_rpc_error, read_key_file


class SeedError(PlatformError):
    """A seed file could not be read, or a service not be seeded at all."""


EntryT = TypeVar("EntryT", bound=Message)
StubT = TypeVar("StubT")


@dataclass(frozen=True)
class SeedFile(Generic[EntryT]):
    """A checked seed file: its entries in file order, each with a slug of its own."""

    entries: tuple[EntryT, ...]
    #: Where it was read from.
    source: str
    sha256: str

    @property
    def slugs(self) -> list[str]:
        return [_slug(entry) for entry in self.entries]


def _slug(entry: Message) -> str:
    # Every seeded message type (Listing, Program) has a string `slug`; Message does not say so.
    slug: str = getattr(entry, "slug")  # noqa: B009
    return slug


def load_entries(
    resource: Path | Traversable,
    *,
    key: str,
    message_type: type[EntryT],
    what: str,
    entry_name: str,
    unreadable: str | None = None,
) -> SeedFile[EntryT]:
    """Read the `key:` list of the YAML file `resource` as `message_type` messages.

    `what` names the file in errors ("the shelf"), `entry_name` one entry ("listing");
    `unreadable` is how the file is named when it cannot be read at all (default: `what`).
    """
    source = str(resource)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        named = unreadable or what
        raise SeedError(f"cannot read {named} {source}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"{what} {source} is not valid YAML: {exc}") from None
    raw_entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(raw_entries, list):
        raise SeedError(f"{what} {source} has no `{key}:` list")
    entries: list[EntryT] = []
    seen: set[str] = set()
    for number, raw in enumerate(raw_entries, start=1):
        where = f"{what} {source}, {entry_name} {number}"
        if not isinstance(raw, dict):
            raise SeedError(f"{where} is not a mapping")
        entry = message_type()
        try:
            ParseDict(raw, entry)
        except ParseError as exc:
            raise SeedError(f"{where} ({raw.get('slug', '?')}): {exc}") from None
        slug = _slug(entry)
        if not slug:
            raise SeedError(f"{where} has no slug")
        if slug in seen:
            raise SeedError(f"{where}: the slug {slug!r} is there twice")
        seen.add(slug)
        entries.append(entry)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SeedFile(entries=tuple(entries), source=source, sha256=digest)


CREATED = "created"
PRESENT = "present"


@dataclass
class SeedReport:
    """What one seeding did, by slug."""

    #: What the entries are called in the summary ("listings").
    noun: ClassVar[str] = "entries"

    target: str
    total: int
    #: Created by this run.
    created: list[str] = field(default_factory=list)
    #: Already there: left alone.
    present: list[str] = field(default_factory=list)
    #: (slug, why) of the entries that could not be seeded.
    failed: list[tuple[str, str]] = field(default_factory=list)

    def outcomes(self) -> list[tuple[str, list[str], str]]:
        """(outcome, its slugs, how the summary says it), in the order they are shown; a
        subclass with more outcomes adds them here."""
        return [(CREATED, self.created, "added"), (PRESENT, self.present, "already there")]

    def record(self, outcome: str, slug: str) -> None:
        for name, slugs, _ in self.outcomes():
            if name == outcome:
                slugs.append(slug)
                return
        raise ValueError(f"unknown seeding outcome {outcome!r}")

    @property
    def complete(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        counts = ", ".join(f"{len(slugs)} {said}" for _, slugs, said in self.outcomes())
        text = f"{self.total} {self.noun}: {counts}"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text

    def failures(self) -> str:
        return "; ".join(f"{slug}: {why}" for slug, why in self.failed)

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"target": self.target, "total": self.total}
        raw.update((name, list(slugs)) for name, slugs, _ in self.outcomes())
        raw["failed"] = [{"slug": slug, "error": why} for slug, why in self.failed]
        return raw


#: Called after each entry: (entries done, total, slug).
Progress = Callable[[int, int, str], None]
#: Puts one entry into the service: (stub, entry, call metadata, per-call timeout) -> outcome.
SeedOne = Callable[[StubT, EntryT, Any, float], Awaitable[str]]


async def seed_entries(
    entries: Sequence[EntryT],
    report: SeedReport,
    *,
    api_key: str,
    make_stub: Callable[[grpc.aio.Channel], StubT],
    seed_one: SeedOne[StubT, EntryT],
    service: str,
    per_entry_codes: Collection[grpc.StatusCode],
    halt_prefix: str,
    progress: Progress | None,
    per_call: float,
) -> None:
    """Seed each entry at `report.target` with `seed_one`, recording its outcome in `report`.

    A failure whose status is in `per_entry_codes` concerns that entry only: it is recorded
    and the others still go on; any other (unreachable, bad credential) raises SeedError,
    saying "`halt_prefix` <slug>".
    """
    metadata = (("authorization", f"Bearer {api_key}"),)
    async with grpc.aio.insecure_channel(report.target) as channel:
        stub = make_stub(channel)
        for done, entry in enumerate(entries, start=1):
            slug = _slug(entry)
            try:
                outcome = await seed_one(stub, entry, metadata, per_call)
            except grpc.aio.AioRpcError as exc:
                why = describe_rpc_error(exc, service=service, target=report.target)
                if exc.code() not in per_entry_codes:
                    raise SeedError(f"{halt_prefix} {slug}: {why}") from None
                report.failed.append((slug, why))
            else:
                report.record(outcome, slug)
            if progress is not None:
                progress(done, report.total, slug)


def operator_key(path: Path) -> str:
    try:
        return read_key_file(path)
    except CredentialError as exc:
        raise SeedError(f"no operator API key to seed with: {exc}") from None


# --- the data dir's record ------------------------------------------------------------------------


def read_marker(path: Path) -> dict[str, Any] | None:
    """What a seed marker records (None: not seeded, or unreadable)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def marked_with(path: Path, digest_key: str, sha256: str) -> bool:
    """Whether the marker at `path` records a seeding of the file with digest `sha256`."""
    marker = read_marker(path)
    return marker is not None and marker.get(digest_key) == sha256


def write_marker(path: Path, record: dict[str, Any]) -> None:
    """Record a complete seeding (stamped with the time) at `path`; written aside and renamed,
    so a crash never leaves half a marker that a later start would misread."""
    marker = {"seeded_at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    tmp.replace(path)
