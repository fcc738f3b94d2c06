"""End to end: the seed support programs and ``aisuper programs list|eligibility`` /
``aisuper seed``, each a real subprocess against a platform started with ``aisuper up
--detach``.

One platform serves the whole module (starting one takes seconds).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer
from aisuper.policy.v1 import policy_pb2 as pb

from .cli_platform import Platform, poll_until, run_cli, started_platform

pytestmark = pytest.mark.slow

PROGRAMS: list[dict[str, Any]] = yaml.safe_load(
    resources.files("aisuper_cli").joinpath("seed/programs.yaml").read_text(encoding="utf-8")
)["programs"]
SLUGS = [entry["slug"] for entry in PROGRAMS]


@pytest.fixture(scope="module")
def started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Platform, subprocess.CompletedProcess[str]]]:
    with started_platform(tmp_path_factory.mktemp("programs") / "data") as (platform, up):
        yield platform, up


@pytest.fixture
def platform(started: tuple[Platform, subprocess.CompletedProcess[str]]) -> Platform:
    return started[0]


def as_operator(platform: Platform) -> list[str]:
    return ["--key-file", str(platform.operator_key_file)]


def listed(platform: Platform, *args: str) -> list[dict[str, Any]]:
    result = platform.cli("programs", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    programs: list[dict[str, Any]] = json.loads(result.stdout)["programs"]
    return programs


def register_with_key(platform: Platform, tmp_path: Path, **fields: Any) -> tuple[str, Path]:
    """A new organisation (a Kenyan incubator start-up unless told) and its admin key file."""
    request = {
        "name": "Nairobi Vision Labs",
        "kind": identity_pb2.ORGANIZATION_KIND_STARTUP,
        "country": "KE",
        "admin_email": "admin@nairobi-vision.test",
        "incubator_member": True,
        "employee_count": 8,
        **fields,
    }
    with platform.identity() as identity:
        reply = identity.RegisterOrganization(
            identity_pb2.RegisterOrganizationRequest(**request), timeout=30
        )
    key_file = tmp_path / f"{reply.organization.id}.key"
    key_file.write_text(reply.api_key_secret)
    return reply.organization.id, key_file


def test_first_up_seeds_every_program(
    started: tuple[Platform, subprocess.CompletedProcess[str]],
) -> None:
    platform, up = started
    assert len(SLUGS) == 18
    assert f"programs seeded: {len(SLUGS)} programs: {len(SLUGS)} added" in up.stdout
    marker = json.loads(platform.programs_seed_marker.read_text())
    assert marker["programs"] == len(SLUGS)
    assert marker["policy_target"] == platform.policy_target
    code, status = platform.status()
    assert code == 0
    assert status["programs_seeded"]["programs"] == len(SLUGS)


def test_every_program_is_there_by_slug(platform: Platform) -> None:
    with platform.policy() as policy:
        for entry in PROGRAMS:
            program = policy.GetProgram(
                pb.GetProgramRequest(slug=entry["slug"]),
                metadata=bearer(platform.operator_key),
                timeout=30,
            ).program
            assert program.id.startswith("prg_")
            assert program.revision == 1
            assert pb.ProgramKind.Name(program.kind) == entry["kind"]
            assert program.budget == int(entry.get("budget", 0))


def test_programs_list(platform: Platform) -> None:
    programs = listed(platform, *as_operator(platform))

    assert sorted(program["slug"] for program in programs) == sorted(SLUGS)
    compute = next(p for p in programs if p["slug"] == "shanghai-compute-voucher")
    assert compute["budget"] == str(600_000_000 * 1_000_000)
    assert compute["share_bps"] == 3000

    vouchers = listed(platform, "--kind", "model_voucher", *as_operator(platform))
    assert vouchers
    assert all(p["kind"] == "PROGRAM_KIND_MODEL_VOUCHER" for p in vouchers)

    table = platform.cli("programs", "list", *as_operator(platform))
    assert table.returncode == 0, table.stderr
    assert "18 support programs" in table.stdout
    assert "shanghai-model-voucher" in table.stdout
    assert "50% of model tokens" in table.stdout


def test_programs_list_needs_a_credential(platform: Platform) -> None:
    result = platform.cli("programs", "list")

    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr
    assert "--key-file" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_again_changes_nothing(platform: Platform) -> None:
    before = {p["slug"]: (p["id"], p["revision"]) for p in listed(platform, *as_operator(platform))}

    result = platform.cli("seed", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["programs"]
    assert report["created"] == []
    assert report["failed"] == []
    assert report["present"] == SLUGS
    after = {p["slug"]: (p["id"], p["revision"]) for p in listed(platform, *as_operator(platform))}
    assert after == before

    only = platform.cli("seed", "--only", "programs", "--json")
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["catalog"] is None
    assert json.loads(only.stdout)["programs"]["present"] == SLUGS


def test_seed_against_a_named_policy(platform: Platform, tmp_path: Path) -> None:
    result = run_cli(
        "seed",
        "--data-dir",
        str(tmp_path / "elsewhere"),
        "--policy-target",
        platform.policy_target,
        "--operator-key-file",
        str(platform.operator_key_file),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["catalog"] is None
    assert report["programs"]["present"] == SLUGS
    assert not (tmp_path / "elsewhere" / "policy.seeded.json").exists()


def test_a_new_organisation_sees_its_eligibility_with_reasons(
    platform: Platform, tmp_path: Path
) -> None:
    org_id, key_file = register_with_key(platform, tmp_path)
    results: list[subprocess.CompletedProcess[str]] = []

    def answered() -> bool:  # policy learns the organisation from identity's events
        results.append(
            platform.cli("programs", "eligibility", "--json", "--key-file", str(key_file))
        )
        return results[-1].returncode == 0

    assert poll_until(answered, 60), results[-1].stderr
    reply = json.loads(results[-1].stdout)
    assert reply["organization"]["org_id"] == org_id
    assert reply["organization"]["country"] == "KE"
    assert reply["organization"]["region"] == "africa"
    entries = {entry["program"]["slug"]: entry for entry in reply["programs"]}
    assert set(entries) == set(SLUGS)
    assert all(entry["reason"] for entry in entries.values())
    eligible = {slug for slug, entry in entries.items() if entry.get("eligible")}
    # An unverified incubator start-up, days old, outside China:
    assert {"public-data-open-access", "incubator-token-credits"} <= eligible
    assert "shanghai-compute-voucher" not in eligible
    assert "global-south-partner-program" not in eligible  # not verified yet
    assert entries["public-data-open-access"]["reason"] == "eligible"
    assert entries["shanghai-model-voucher"]["reason"] != "eligible"

    table = platform.cli("programs", "eligibility", "--key-file", str(key_file))
    assert table.returncode == 0, table.stderr
    assert org_id in table.stdout
    assert f"eligible for {len(eligible)} of {len(SLUGS)} programs" in table.stdout


def test_eligibility_of_an_unknown_target(tmp_path: Path) -> None:
    result = run_cli(
        "programs",
        "eligibility",
        "--target",
        "127.0.0.1:1",
        "--data-dir",
        str(tmp_path),
        env={"AISUPER_API_KEY": "ais_x_y"},
    )
    assert result.returncode == 1
    assert "cannot reach policy at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_restart_does_not_seed_programs_twice(platform: Platform) -> None:
    assert platform.down().returncode == 0

    again = platform.up()

    assert again.returncode == 0, again.stderr
    assert f"programs seeded earlier ({len(SLUGS)} programs)" in again.stdout
    assert len(listed(platform, *as_operator(platform))) == len(SLUGS)
