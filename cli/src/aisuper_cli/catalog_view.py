"""How `aisuper catalog` shows listings: a table for a search, a card for one listing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console, Group
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from aisuper.catalog.v1 import catalog_pb2 as pb

MICRO_PER_CREDIT = 1_000_000


def credits(micro: int) -> str:
    """Micro-credits as credits, exactly: 2000000 -> "2", 500000 -> "0.5", 1 -> "0.000001"."""
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), MICRO_PER_CREDIT)
    text = f"{sign}{whole}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text


def count(value: int) -> str:
    """A large count the way model cards write it: 671000000000 -> "671B", 7610000000 ->
    "7.61B", 1500 -> "1.5K" (at most two decimals, exact arithmetic)."""
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(value) >= size:
            scaled = (Decimal(value) / size).quantize(Decimal("0.01"))
            text = format(scaled.normalize(), "f")
            return f"{text}{unit}"
    return str(value)


def enum_label(enum: Any, value: int, prefix: str, *, words: bool = False) -> str:
    """LISTING_KIND_COMPUTE_PRODUCT -> "compute_product" ("compute product" with `words`);
    "-" when unset."""
    if not value:
        return "-"
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    label = name.removeprefix(prefix).lower()
    return label.replace("_", " ") if words else label


def kind_label(listing: pb.Listing) -> str:
    return enum_label(pb.ListingKind, listing.kind, "LISTING_KIND_")


def tier_label(listing: pb.Listing) -> str:
    return enum_label(pb.AccessTier, listing.access_tier, "ACCESS_TIER_")


def price_parts(listing: pb.Listing) -> list[str]:
    """The prices that fit the listing's kind, in credits; ["free"] when they are all zero."""
    prices = listing.prices
    parts: list[str]
    if listing.kind == pb.LISTING_KIND_MODEL:
        parts = [
            f"in {credits(prices.input_per_million_tokens)}",
            f"out {credits(prices.output_per_million_tokens)}",
        ]
        if prices.cached_input_per_million_tokens:
            parts.append(f"cached {credits(prices.cached_input_per_million_tokens)}")
        if not (prices.input_per_million_tokens or prices.output_per_million_tokens):
            return ["free"]
        return [" / ".join(parts) + " per M tok"]
    if listing.kind == pb.LISTING_KIND_COMPUTE_PRODUCT:
        value = prices.per_gpu_hour
        return [f"{credits(value)} per GPU-hour"] if value else ["free"]
    if listing.kind == pb.LISTING_KIND_DATASET:
        value = prices.per_dataset_access
        return [f"{credits(value)} per access"] if value else ["free"]
    return ["-"]


def listing_json(listing: Message) -> dict[str, Any]:
    """Protobuf JSON (field names as in the proto, enum values by name)."""
    return MessageToDict(listing, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_search(
    console: Console, listings: list[pb.Listing], *, query: str, anonymous_hint: str | None
) -> None:
    if not listings:
        console.print(f"No listings match{f' {query!r}' if query else ''}.")
    else:
        title = f"{len(listings)} listing{'s' if len(listings) != 1 else ''}"
        title += f" for {query!r}" if query else ""
        table = Table(title=escape(title), title_justify="left")
        for column in ("slug", "kind", "name", "provider", "licence", "tier"):
            table.add_column(column)
        table.add_column("prices (credits)")
        for listing in listings:
            table.add_row(
                escape(listing.slug),
                kind_label(listing),
                escape(listing.name),
                escape(listing.provider),
                escape(listing.license or "-"),
                tier_label(listing),
                escape("\n".join(price_parts(listing))),
            )
        console.print(table)
    if anonymous_hint:
        console.print(f"[dim]{escape(anonymous_hint)}[/]", soft_wrap=True)


def _facts(listing: pb.Listing) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = [
        ("kind", kind_label(listing)),
        ("provider", listing.provider or "-"),
        ("version", listing.version or "-"),
        ("licence", listing.license or "-"),
        ("access tier", tier_label(listing)),
        ("state", enum_label(pb.ListingState, listing.state, "LISTING_STATE_")),
        ("revision", str(listing.revision)),
        ("prices (credits)", "\n".join(price_parts(listing))),
    ]
    if listing.languages:
        facts.append(("languages", ", ".join(listing.languages)))
    if listing.tags:
        facts.append(("tags", ", ".join(listing.tags)))
    which = listing.WhichOneof("attributes")
    if which == "model":
        model = listing.model
        modality = pb.Modality

        def modalities(values: Any) -> str:
            return ", ".join(enum_label(modality, v, "MODALITY_") for v in values) or "-"

        facts += [
            ("family", model.family or "-"),
            ("parameters", count(model.parameter_count) if model.parameter_count else "-"),
        ]
        if model.active_parameter_count:
            facts.append(("active parameters", count(model.active_parameter_count)))
        if model.context_length:
            facts.append(("context", f"{model.context_length:,} tokens"))
        facts += [
            ("input", modalities(model.input_modalities)),
            ("output", modalities(model.output_modalities)),
            (
                "serves",
                ", ".join(enum_label(pb.Capability, v, "CAPABILITY_") for v in model.capabilities)
                or "-",
            ),
        ]
        if model.base_model:
            facts.append(("base model", model.base_model))
        if model.embedding_dimensions:
            facts.append(("embedding dimensions", str(model.embedding_dimensions)))
    elif which == "dataset":
        dataset = listing.dataset
        if dataset.token_count:
            facts.append(("tokens", count(dataset.token_count)))
        if dataset.byte_count:
            facts.append(("size", f"{count(dataset.byte_count)}B"))
        if dataset.format:
            facts.append(("format", dataset.format))
        if dataset.modalities:
            facts.append(
                (
                    "modalities",
                    ", ".join(enum_label(pb.Modality, v, "MODALITY_") for v in dataset.modalities),
                )
            )
        if dataset.collection_method:
            facts.append(
                (
                    "collected",
                    enum_label(
                        pb.CollectionMethod,
                        dataset.collection_method,
                        "COLLECTION_METHOD_",
                        words=True,
                    ),
                )
            )
        if dataset.update_cadence:
            facts.append(
                (
                    "updated",
                    enum_label(pb.UpdateCadence, dataset.update_cadence, "UPDATE_CADENCE_"),
                )
            )
        if dataset.provenance:
            facts.append(("provenance", dataset.provenance))
    elif which == "compute_product":
        compute = listing.compute_product
        for label, value in (
            ("GPU", compute.gpu_type),
            ("vendor", compute.vendor),
            ("GPU memory", f"{compute.gpu_memory_gib} GiB" if compute.gpu_memory_gib else ""),
            ("interconnect", compute.interconnect),
            ("region", compute.region),
        ):
            if value:
                facts.append((label, value))
    if listing.HasField("publish_time"):
        facts.append(("published", listing.publish_time.ToJsonString()))
    if listing.state == pb.LISTING_STATE_DEPRECATED:
        facts.append(("deprecated", listing.deprecation_reason or "yes"))
    if listing.source_urls:
        facts.append(("sources", "\n".join(listing.source_urls)))
    facts.append(("id", listing.id))
    return facts


def print_listing(console: Console, listing: pb.Listing) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in _facts(listing):
        grid.add_row(escape(label), escape(value))
    title = f"{listing.name} ({listing.slug})" if listing.name else listing.slug
    console.print(Panel(grid, title=escape(title), title_align="left"))
    if listing.card.strip():
        console.print(Panel(Group(Markdown(listing.card)), title="card", title_align="left"))
    else:
        console.print("[dim](no card)[/]")
