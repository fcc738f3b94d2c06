"""End to end: the seed shelf and ``aisuper catalog search|show`` / ``aisuper seed``, each a
real subprocess against a platform started with ``aisuper up --detach``.

One platform serves the whole module (starting one takes seconds); tests that add listings
add their own (fresh slugs), and the restart test leaves the platform running again.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.json_format import ParseDict

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper.platform.grpc_client import bearer

from .cli_platform import Platform, force_stop, free_ports, run_cli, started_platform

pytestmark = pytest.mark.slow

SHELF: list[dict[str, Any]] = yaml.safe_load(
    resources.files("aisuper_cli").joinpath("seed/catalog.yaml").read_text(encoding="utf-8")
)["listings"]
SLUGS = [entry["slug"] for entry in SHELF]
DEEPSEEK = [slug for slug in SLUGS if "deepseek" in slug]
OPEN_DEEPSEEK = [
    entry["slug"]
    for entry in SHELF
    if "deepseek" in entry["slug"] and entry.get("access_tier") == "ACCESS_TIER_OPEN"
]
OPEN_MODELS = [
    entry
    for entry in SHELF
    if entry.get("access_tier") == "ACCESS_TIER_OPEN" and entry["kind"] == "LISTING_KIND_MODEL"
]
NOT_OPEN = [entry["slug"] for entry in SHELF if entry.get("access_tier") != "ACCESS_TIER_OPEN"]


@pytest.fixture(scope="module")
def started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Platform, subprocess.CompletedProcess[str]]]:
    with started_platform(tmp_path_factory.mktemp("catalog") / "data") as (platform, up):
        yield platform, up


@pytest.fixture
def platform(started: tuple[Platform, subprocess.CompletedProcess[str]]) -> Platform:
    return started[0]


def as_operator(platform: Platform) -> list[str]:
    return ["--key-file", str(platform.operator_key_file)]


def search_json(platform: Platform, *args: str) -> list[dict[str, Any]]:
    result = platform.cli("catalog", "search", *args, "--json")
    assert result.returncode == 0, result.stderr
    listings: list[dict[str, Any]] = json.loads(result.stdout)["listings"]
    return listings


def shelf_by_slug(platform: Platform) -> dict[str, dict[str, Any]]:
    """Every published listing, as the operator sees them."""
    listings = search_json(platform, "--limit", "1000", *as_operator(platform))
    slugs = [listing["slug"] for listing in listings]
    assert len(slugs) == len(set(slugs)), "a slug is on the shelf twice"
    return {listing["slug"]: listing for listing in listings}


def show_json(platform: Platform, slug: str) -> dict[str, Any]:
    result = platform.cli("catalog", "show", slug, "--json")
    assert result.returncode == 0, result.stderr
    listing: dict[str, Any] = json.loads(result.stdout)
    return listing


def credits(micro: int) -> str:
    return format(Decimal(micro).scaleb(-6).normalize(), "f")


def write_shelf(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"listings": entries}, allow_unicode=True))
    return path


def new_entry(slug: str) -> dict[str, Any]:
    """A valid open model listing (a copy of the shelf's first) under another slug."""
    entry = copy.deepcopy(OPEN_MODELS[0])
    entry.update(slug=slug, name=f"Test {slug}")
    return entry


# --- the shelf after `up` -------------------------------------------------------------------------


def test_first_up_seeds_the_whole_shelf(
    started: tuple[Platform, subprocess.CompletedProcess[str]],
) -> None:
    platform, up = started
    assert f"shelf seeded: {len(SHELF)} listings: {len(SHELF)} added" in up.stdout
    marker = json.loads(platform.seed_marker.read_text())
    assert marker["listings"] == len(SHELF)
    assert marker["catalog_target"] == platform.catalog_target
    shelf = shelf_by_slug(platform)
    assert set(SLUGS) <= set(shelf)
    for slug in SLUGS:
        assert shelf[slug]["state"] == "LISTING_STATE_PUBLISHED"
        assert shelf[slug]["revision"] == 1
    code, status = platform.status()
    assert code == 0
    assert status["shelf_seeded"]["listings"] == len(SHELF)


def test_anonymous_search_finds_the_open_deepseek_listings(platform: Platform) -> None:
    assert OPEN_DEEPSEEK, "the shelf has no open DeepSeek listing"

    found = search_json(platform, "deepseek")

    assert found
    slugs = {listing["slug"] for listing in found}
    assert set(OPEN_DEEPSEEK) <= slugs
    assert all(listing["access_tier"] == "ACCESS_TIER_OPEN" for listing in found)


def test_search_as_the_operator_finds_every_deepseek_listing(platform: Platform) -> None:
    with_key_file = search_json(platform, "deepseek", *as_operator(platform))
    assert set(DEEPSEEK) <= {listing["slug"] for listing in with_key_file}

    result = platform.cli(
        "catalog", "search", "deepseek", "--json", env={"AISUPER_API_KEY": platform.operator_key}
    )
    assert result.returncode == 0, result.stderr
    with_env = json.loads(result.stdout)["listings"]
    assert [listing["slug"] for listing in with_env] == [
        listing["slug"] for listing in with_key_file
    ]


def test_search_filters(platform: Platform) -> None:
    key = as_operator(platform)
    datasets = search_json(platform, "--kind", "dataset", "--limit", "1000", *key)
    expected = {e["slug"] for e in SHELF if e["kind"] == "LISTING_KIND_DATASET"}
    assert expected <= {listing["slug"] for listing in datasets}
    assert all(listing["kind"] == "LISTING_KIND_DATASET" for listing in datasets)

    verified = search_json(platform, "--tier", "verified", "--limit", "1000", *key)
    assert verified
    assert all(listing["access_tier"] == "ACCESS_TIER_VERIFIED" for listing in verified)

    tag = SHELF[0]["tags"][0]
    tagged = search_json(platform, "--tag", tag, "--limit", "1000", *key)
    assert {e["slug"] for e in SHELF if tag in e.get("tags", [])} <= {t["slug"] for t in tagged}

    assert len(search_json(platform, "--limit", "2", *key)) == 2


def test_search_table_shows_prices_in_credits(platform: Platform) -> None:
    entry = OPEN_MODELS[0]
    result = platform.cli("catalog", "search", entry["slug"])

    assert result.returncode == 0, result.stderr
    assert entry["slug"] in result.stdout
    prices = entry["prices"]
    assert f"in {credits(int(prices['input_per_million_tokens']))} " in result.stdout
    assert f"out {credits(int(prices['output_per_million_tokens']))} " in result.stdout
    assert "anonymous: open listings only" in result.stdout


def test_show_renders_the_card(platform: Platform) -> None:
    entry = OPEN_MODELS[0]

    shown = platform.cli("catalog", "show", entry["slug"])

    assert shown.returncode == 0, shown.stderr
    assert entry["name"] in shown.stdout
    assert entry["provider"] in shown.stdout
    heading = next(line for line in entry["card"].splitlines() if line.startswith("# "))
    assert heading.removeprefix("# ").strip() in shown.stdout
    assert heading not in shown.stdout  # the markdown is rendered

    as_json = platform.cli("catalog", "show", entry["slug"], "--json", "--revision", "1")
    assert as_json.returncode == 0, as_json.stderr
    listing = json.loads(as_json.stdout)
    assert listing["slug"] == entry["slug"]
    assert listing["revision"] == 1
    assert listing["state"] == "LISTING_STATE_PUBLISHED"
    assert listing["card"] == entry["card"]


def test_show_a_listing_for_registered_callers_only(platform: Platform) -> None:
    slug = NOT_OPEN[0]

    anonymous = platform.cli("catalog", "show", slug)
    assert anonymous.returncode == 1
    assert "UNAUTHENTICATED" in anonymous.stderr
    assert "--key-file" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr

    operator = platform.cli("catalog", "show", slug, *as_operator(platform))
    assert operator.returncode == 0, operator.stderr
    assert slug in operator.stdout


# --- seeding again --------------------------------------------------------------------------------


def test_seed_again_changes_nothing(platform: Platform) -> None:
    before = shelf_by_slug(platform)

    result = platform.cli("seed", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["catalog"]
    assert report["created"] == []
    assert report["published"] == []
    assert report["failed"] == []
    assert report["present"] == SLUGS
    after = shelf_by_slug(platform)
    assert {slug: (after[slug]["id"], after[slug]["revision"]) for slug in SLUGS} == {
        slug: (before[slug]["id"], 1) for slug in SLUGS
    }
    assert len(after) == len(before)


def test_seed_publishes_a_left_over_draft_and_adds_what_is_new(
    platform: Platform, tmp_path: Path
) -> None:
    draft, new = new_entry("e2e-left-over-draft"), new_entry("e2e-new-listing")
    listing = ParseDict(draft, pb.Listing())
    with platform.catalog() as catalog:  # what an interrupted seed leaves: a draft
        created = catalog.CreateListing(
            pb.CreateListingRequest(listing=listing, request_id=f"seed-{draft['slug']}"),
            metadata=bearer(platform.operator_key),
            timeout=30,
        ).listing
    assert created.state == pb.LISTING_STATE_DRAFT
    shelf_file = write_shelf(tmp_path / "shelf.yaml", [draft, new])
    marker = platform.seed_marker.read_text()

    result = platform.cli("seed", "--only", "catalog", "--file", str(shelf_file), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["catalog"]
    assert json.loads(result.stdout)["programs"] is None
    assert report["created"] == [new["slug"]]
    assert report["published"] == [draft["slug"]]
    published = show_json(platform, draft["slug"])
    assert published["id"] == created.id  # published, not created again
    assert published["state"] == "LISTING_STATE_PUBLISHED"
    assert show_json(platform, new["slug"])["state"] == "LISTING_STATE_PUBLISHED"
    assert platform.seed_marker.read_text() == marker  # records the packaged shelf only

    again = platform.cli("seed", "--file", str(shelf_file), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["catalog"]["present"] == [draft["slug"], new["slug"]]


def test_seed_reports_a_listing_the_catalog_refuses_and_seeds_the_others(
    platform: Platform, tmp_path: Path
) -> None:
    bad = new_entry("e2e-bad-licence")
    bad["license"] = "Not-A-Licence-1.0"
    good = new_entry("e2e-good-next-to-a-bad-one")
    shelf_file = write_shelf(tmp_path / "shelf.yaml", [bad, good])

    result = platform.cli("seed", "--file", str(shelf_file), "--json")

    assert result.returncode == 1
    report = json.loads(result.stdout)["catalog"]
    assert report["created"] == [good["slug"]]
    assert [failure["slug"] for failure in report["failed"]] == [bad["slug"]]
    assert "listing.license" in report["failed"][0]["error"]
    assert "Traceback" not in result.stderr


def test_seed_rejects_a_broken_shelf_file(platform: Platform, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("listings:\n  - slug: x\n    no_such_field: 1\n")

    result = platform.cli("seed", "--file", str(broken))

    assert result.returncode == 1
    assert "no_such_field" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_against_a_named_catalog(platform: Platform, tmp_path: Path) -> None:
    result = run_cli(
        "seed",
        "--data-dir",
        str(tmp_path / "elsewhere"),
        "--catalog-target",
        platform.catalog_target,
        "--operator-key-file",
        str(platform.operator_key_file),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["catalog"]["present"] == SLUGS
    assert report["programs"] is None  # only what is named is seeded
    assert not (tmp_path / "elsewhere" / "catalog.seeded.json").exists()


def test_seed_without_a_platform_says_so(tmp_path: Path) -> None:
    result = run_cli("seed", "--data-dir", str(tmp_path / "data"))

    assert result.returncode == 1
    assert "no platform with a catalog or policy runs from" in result.stderr
    assert "--catalog-target" in result.stderr
    assert "--policy-target" in result.stderr


# --- restarts -------------------------------------------------------------------------------------


def test_up_after_down_does_not_seed_twice(platform: Platform) -> None:
    before = shelf_by_slug(platform)
    assert platform.down().returncode == 0

    again = platform.up()  # the data dir records that the shelf is there

    assert again.returncode == 0, again.stderr
    assert f"shelf seeded earlier ({len(SHELF)} listings)" in again.stdout
    assert shelf_by_slug(platform) == before

    # Without the record, the seeding runs and finds everything there.
    platform.seed_marker.unlink()
    assert platform.down().returncode == 0
    third = platform.up()
    assert third.returncode == 0, third.stderr
    assert f"{len(SHELF)} listings: 0 added, 0 drafts published, {len(SHELF)} already there" in (
        third.stdout
    )
    assert platform.seed_marker.is_file()
    assert shelf_by_slug(platform) == before


def test_up_no_seed_leaves_the_shelf_empty(tmp_path: Path) -> None:
    platform = Platform.on_free_ports(tmp_path / "data")
    try:
        result = platform.up("--no-seed")
        assert result.returncode == 0, result.stderr
        assert "shelf" not in result.stdout.split("aisuper endpoints")[0]
        assert search_json(platform, "--limit", "1000", *as_operator(platform)) == []
        assert not platform.seed_marker.exists()
    finally:
        platform.down()
        force_stop(platform.data_dir)


# --- bad input ------------------------------------------------------------------------------------


def test_search_rejects_an_unknown_kind(platform: Platform) -> None:
    result = platform.cli("catalog", "search", "--kind", "spaceship")

    assert result.returncode == 2  # a usage error, before any call
    assert "--kind" in result.stderr
    assert "spaceship" in result.stderr


def test_search_rejects_a_bad_language(platform: Platform) -> None:
    result = platform.cli("catalog", "search", "--language", "xx")

    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr
    assert "filter.language" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_an_unknown_slug(platform: Platform) -> None:
    result = platform.cli("catalog", "show", "no-such-listing")

    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr
    assert "not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_show_a_malformed_slug_names_the_field(platform: Platform) -> None:
    result = platform.cli("catalog", "show", "Not A Slug!")

    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr
    assert "slug" in result.stderr
    assert "Traceback" not in result.stderr


def test_catalog_commands_on_an_unreachable_target(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    for args in (["search", "deepseek"], ["show", "deepseek-r1"]):
        result = run_cli(
            "catalog", *args, "--target", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)
        )
        assert result.returncode == 1
        assert f"cannot reach the catalog at 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr


def test_catalog_commands_with_a_missing_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"

    result = run_cli("catalog", "search", "--key-file", str(missing), "--data-dir", str(tmp_path))

    assert result.returncode == 1
    assert f"cannot read the API key file {missing}" in result.stderr
