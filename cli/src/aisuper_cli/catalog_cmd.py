"""``aisuper catalog search|show``: browse the shelf of a running platform.

The target is --target, else the catalog of the platform running from --data-dir (its state
file), else the catalog's default address. The credential is --key-file, else
$AISUPER_API_KEY, else none: anonymous callers see open-tier listings only.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.catalog.v1 import catalog_pb2_grpc
from aisuper_cli.catalog_view import listing_json, print_json, print_listing, print_search
from aisuper_cli.command_options import (
    AsJson,
    connect,
    data_dir_option,
    key_file_option,
    rpc_failed,
    target_option,
)
from aisuper_cli.rpc import CALL_TIMEOUT_S

catalog_app = typer.Typer(
    name="catalog",
    help="Browse the shelf: search listings, show one.",
    no_args_is_help=True,
    add_completion=False,
)

#: SearchListings answers at most this many per page.
_SEARCH_PAGE = 100


class Kind(StrEnum):
    model = "model"
    dataset = "dataset"
    compute_product = "compute_product"


class Tier(StrEnum):
    open = "open"
    registered = "registered"
    verified = "verified"
    restricted = "restricted"


_KINDS = {
    Kind.model: pb.LISTING_KIND_MODEL,
    Kind.dataset: pb.LISTING_KIND_DATASET,
    Kind.compute_product: pb.LISTING_KIND_COMPUTE_PRODUCT,
}
_TIERS = {
    Tier.open: pb.ACCESS_TIER_OPEN,
    Tier.registered: pb.ACCESS_TIER_REGISTERED,
    Tier.verified: pb.ACCESS_TIER_VERIFIED,
    Tier.restricted: pb.ACCESS_TIER_RESTRICTED,
}

Target = Annotated[
    str | None,
    target_option("catalog", envvar="AISUPER_CATALOG_TARGET", called="the catalog"),
]
KeyFile = Annotated[Path | None, key_file_option(anonymous_sees="open listings only")]
DataDir = Annotated[Path, data_dir_option(called="catalog")]
_SERVICE = "the catalog"


@catalog_app.command()
def search(
    query: Annotated[
        str, typer.Argument(help="Words to look for (none: every listing, by slug).")
    ] = "",
    kind: Annotated[Kind | None, typer.Option(help="Only listings of this kind.")] = None,
    language: Annotated[
        str | None, typer.Option(help="A BCP-47 tag; 'zh' also matches 'zh-Hans'.")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only listings with this tag.")] = None,
    tier: Annotated[Tier | None, typer.Option(help="Only listings of this access tier.")] = None,
    license_id: Annotated[
        str | None,
        typer.Option("--license", help="A licence id in the listing's expression, e.g. MIT."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    as_json: AsJson = False,
    target: Target = None,
    key_file: KeyFile = None,
    data_dir: DataDir = Path(".aisuper"),
) -> None:
    """Search the shelf (SearchListings): best match first."""
    connection = connect(data_dir, target, key_file, service="catalog")
    listing_filter = pb.ListingFilter(
        kind=_KINDS[kind] if kind is not None else pb.LISTING_KIND_UNSPECIFIED,
        language=language or "",
        tag=tag or "",
        access_tier=_TIERS[tier] if tier is not None else pb.ACCESS_TIER_UNSPECIFIED,
        license=license_id or "",
    )
    found: list[pb.Listing] = []
    token = ""
    try:
        with grpc.insecure_channel(connection.target) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            while True:
                reply = stub.SearchListings(
                    pb.SearchListingsRequest(
                        query=query,
                        filter=listing_filter,
                        page_size=min(_SEARCH_PAGE, limit - len(found)),
                        page_token=token,
                    ),
                    metadata=connection.credential.metadata,
                    timeout=CALL_TIMEOUT_S,
                )
                found.extend(reply.listings)
                token = reply.next_page_token
                if not token or len(found) >= limit:
                    break
    except grpc.RpcError as exc:
        rpc_failed(exc, connection, service=_SERVICE)
    found = found[:limit]
    if as_json:
        print_json({"listings": [listing_json(listing) for listing in found], "more": bool(token)})
        return
    hint = None
    if connection.credential.key is None:
        hint = "anonymous: open listings only; pass --key-file"
        if connection.operator_key_file:
            hint += f" (this platform's operator key: {connection.operator_key_file})"
        hint += " or set $AISUPER_API_KEY to see more"
    print_search(Console(), found, query=query, anonymous_hint=hint)
    if token:
        Console().print(f"[dim]more listings match; raise --limit (now {limit}) to see them[/]")


@catalog_app.command()
def show(
    slug: Annotated[str, typer.Argument(help="The listing's slug, e.g. deepseek-r1.")],
    revision: Annotated[int, typer.Option(min=0, help="An earlier revision (0: the latest).")] = 0,
    as_json: AsJson = False,
    target: Target = None,
    key_file: KeyFile = None,
    data_dir: DataDir = Path(".aisuper"),
) -> None:
    """Show one listing (GetListing) with its card."""
    connection = connect(data_dir, target, key_file, service="catalog")
    try:
        with grpc.insecure_channel(connection.target) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            reply = stub.GetListing(
                pb.GetListingRequest(slug=slug, revision=revision, view=pb.LISTING_VIEW_FULL),
                metadata=connection.credential.metadata,
                timeout=CALL_TIMEOUT_S,
            )
    except grpc.RpcError as exc:
        rpc_failed(exc, connection, service=_SERVICE)
    if as_json:
        print_json(listing_json(reply.listing))
    else:
        print_listing(Console(), reply.listing)
