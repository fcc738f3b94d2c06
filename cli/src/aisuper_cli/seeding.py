"""Putting the seed shelf into the catalog.

The shelf is ``aisuper_cli/seed/catalog.yaml``: a ``listings:`` list, each entry one
``aisuper.catalog.v1.Listing`` in protobuf JSON form. Seeding creates every listing the catalog
does not have yet (``CreateListing`` with ``request_id = "seed-<slug>"``, so a retried call never
makes a second one) and publishes it, as the platform's operator. A listing already published
(or deprecated) is left alone; a draft, left by an interrupted seed, is published. So seeding is
idempotent: a second run changes nothing.

`aisuper up` seeds on its first start and then records that in ``<data-dir>/catalog.seeded.json``
(with the shelf's digest: a changed shelf is seeded again, which adds only what is new), so later
starts skip the calls; ``aisuper seed`` runs it on demand, also against a platform elsewhere.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

import grpc

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import catalog_pb2_grpc
from aisuper_cli.platform_runner import UpView
from aisuper_cli.rpc import CALL_TIMEOUT_S
from aisuper_cli.seed_files import (
    CREATED,
    PRESENT,
    Progress,
    SeedError,
    SeedFile,
    SeedReport,
    load_entries,
    marked_with,
    operator_key,
    seed_entries,
    write_marker,
)
from aisuper_cli.state import Layout, PlatformState, load_state

SHELF_RESOURCE = "seed/catalog.yaml"
#: Failures that concern one listing; any other status stops the seeding.
_PER_LISTING = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
}

PUBLISHED = "published"


def packaged_shelf() -> Traversable:
    """The shelf shipped with the CLI."""
    return resources.files("aisuper_cli").joinpath(SHELF_RESOURCE)


@dataclass(frozen=True)
class Shelf(SeedFile[pb.Listing]):
    @property
    def listings(self) -> tuple[pb.Listing, ...]:
        return self.entries


def load_shelf(path: Path | Traversable | None = None) -> Shelf:
    """Read and check a shelf file (default: the packaged one)."""
    loaded = load_entries(
        path if path is not None else packaged_shelf(),
        key="listings",
        message_type=pb.Listing,
        what="the shelf",
        entry_name="listing",
    )
    return Shelf(entries=loaded.entries, source=loaded.source, sha256=loaded.sha256)


@dataclass
class ShelfSeedReport(SeedReport):
    """What one seeding of the shelf did, by slug."""

    noun: ClassVar[str] = "listings"

    #: Drafts (of an interrupted run) published by this run.
    published: list[str] = field(default_factory=list)

    def outcomes(self) -> list[tuple[str, list[str], str]]:
        created, present = super().outcomes()
        return [created, (PUBLISHED, self.published, "drafts published"), present]


async def _get(
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub,
    slug: str,
    metadata: Any,
    per_call: float,
) -> pb.Listing | None:
    try:
        reply = await stub.GetListing(
            pb.GetListingRequest(slug=slug, view=pb.LISTING_VIEW_BASIC),
            metadata=metadata,
            timeout=per_call,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    listing: pb.Listing = reply.listing
    return listing


async def _seed_one(
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub,
    listing: pb.Listing,
    metadata: Any,
    per_call: float,
) -> str:
    """Put one listing on the shelf; CREATED, PUBLISHED (a draft was there) or PRESENT."""
    found = await _get(stub, listing.slug, metadata, per_call)
    outcome = PUBLISHED
    if found is None:
        created = await stub.CreateListing(
            pb.CreateListingRequest(listing=listing, request_id=f"seed-{listing.slug}"),
            metadata=metadata,
            timeout=per_call,
        )
        found, outcome = created.listing, CREATED
    if found.state != pb.LISTING_STATE_DRAFT:
        return PRESENT
    try:
        await stub.PublishListing(
            pb.PublishListingRequest(listing_id=found.id), metadata=metadata, timeout=per_call
        )
    except grpc.aio.AioRpcError as exc:
        # Someone (another seed) published it in between: fine.
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        again = await _get(stub, listing.slug, metadata, per_call)
        if again is None or again.state == pb.LISTING_STATE_DRAFT:
            raise
        return PRESENT
    return outcome


async def seed_catalog(
    target: str,
    api_key: str,
    shelf: Shelf,
    *,
    progress: Progress | None = None,
    per_call: float = CALL_TIMEOUT_S,
) -> ShelfSeedReport:
    """Put every listing of `shelf` on the catalog at `target` (idempotent, see the module).

    A listing the catalog refuses is reported in `ShelfSeedReport.failed` and the others still
    go on; a failure that is not about one listing (unreachable, bad credential) raises
    SeedError.
    """
    report = ShelfSeedReport(target=target, total=len(shelf.listings))
    await seed_entries(
        shelf.listings,
        report,
        api_key=api_key,
        make_stub=catalog_pb2_grpc.CatalogServiceStub,
        seed_one=_seed_one,
        service="the catalog",
        per_entry_codes=_PER_LISTING,
        halt_prefix="seeding",
        progress=progress,
        per_call=per_call,
    )
    return report


# --- the data dir's record ------------------------------------------------------------------------


def seeded_already(layout: Layout, shelf: Shelf) -> bool:
    """Whether this very shelf was seeded into the data dir's catalog."""
    return marked_with(layout.seed_marker, "shelf_sha256", shelf.sha256)


def write_shelf_marker(layout: Layout, shelf: Shelf, report: ShelfSeedReport) -> None:
    record = {
        "shelf": shelf.source,
        "shelf_sha256": shelf.sha256,
        "listings": report.total,
        "catalog_target": report.target,
    }
    write_marker(layout.seed_marker, record)


async def seed_platform(
    layout: Layout,
    state: PlatformState,
    *,
    shelf: Shelf | None = None,
    progress: Progress | None = None,
) -> tuple[Shelf, ShelfSeedReport]:
    """Seed the catalog of the platform running from `layout` as its operator; record it in
    the data dir when every listing is there."""
    catalog = state.service("catalog")
    if catalog is None:
        raise SeedError(f"the platform running from {layout.data_dir} has no catalog")
    shelf = shelf if shelf is not None else load_shelf()
    key = operator_key(Path(state.operator_key_file or layout.operator_key_file))
    report = await seed_catalog(catalog.grpc_target, key, shelf, progress=progress)
    if report.complete:
        write_shelf_marker(layout, shelf, report)
    return shelf, report


async def seed_on_first_start(layout: Layout, state: PlatformState, view: UpView) -> None:
    """`aisuper up`'s seeding: skipped when the data dir's catalog has this shelf already.

    Never fails `up` (the platform serves either way): a problem is shown, with how to retry.
    """
    retry = f"retry with `aisuper seed --data-dir {shlex.quote(str(layout.data_dir))}`"
    try:
        shelf = load_shelf()
    except SeedError as exc:
        view.step("seed", "seeding the shelf")
        view.failed("seed", f"shelf not seeded: {exc}")
        return
    count = len(shelf.listings)
    if seeded_already(layout, shelf):
        view.step("seed", "the shelf")
        view.done("seed", f"shelf seeded earlier ({count} listings)")
        return
    view.step("seed", f"seeding the shelf: {count} listings")

    def progress(done: int, total: int, slug: str) -> None:
        view.update("seed", f"seeding the shelf: {done}/{total} listings ({slug})")

    try:
        _, report = await seed_platform(layout, state, shelf=shelf, progress=progress)
    except SeedError as exc:
        view.failed("seed", f"shelf not seeded: {exc}; {retry}")
        return
    if report.complete:
        view.done("seed", f"shelf seeded: {report.summary()}")
    else:
        failures = report.failures()
        view.failed("seed", f"shelf partly seeded ({report.summary()}): {failures}; {retry}")


async def seed_running(
    layout: Layout,
    view: UpView,
    *,
    catalog_target: str | None = None,
    operator_key_file: Path | None = None,
    shelf_file: Path | None = None,
) -> ShelfSeedReport:
    """`aisuper seed`: seed the catalog at `catalog_target` (default: the one of the platform
    running from `layout`) with the operator key in `operator_key_file` (default: that
    platform's). Seeding the data dir's own platform with the packaged shelf is recorded
    there."""
    shelf = load_shelf(shelf_file)
    state = load_state(layout)
    catalog = state.service("catalog") if state is not None else None
    target = catalog_target or (catalog.grpc_target if catalog is not None else None)
    if target is None:
        raise SeedError(
            f"no platform with a catalog runs from {layout.data_dir}: start one with "
            "`aisuper up`, or name a catalog with --catalog-target and --operator-key-file"
        )
    if operator_key_file is None and state is not None and state.operator_key_file:
        operator_key_file = Path(state.operator_key_file)
    if operator_key_file is None:
        raise SeedError("no operator API key to seed with: pass --operator-key-file")
    key = operator_key(operator_key_file)
    view.step("seed", f"seeding the shelf: {len(shelf.listings)} listings into {target}")

    def progress(done: int, total: int, slug: str) -> None:
        view.update("seed", f"seeding the shelf: {done}/{total} listings ({slug})")

    report = await seed_catalog(target, key, shelf, progress=progress)
    if report.complete:
        if shelf_file is None and catalog is not None and target == catalog.grpc_target:
            write_shelf_marker(layout, shelf, report)  # later `up`s need not seed this catalog
        view.done("seed", f"shelf seeded into {target}: {report.summary()}")
    else:
        view.failed("seed", f"shelf partly seeded into {target}: {report.summary()}")
    return report
