"""Putting the seed support programs into policy.

The programs are ``aisuper_cli/seed/programs.yaml``: a ``programs:`` list, each entry one
``aisuper.policy.v1.Program`` in protobuf JSON form. Seeding creates every program policy does
not have yet (looked up by slug with ``GetProgram``; ``CreateProgram`` with
``request_id = "seed-<slug>"``, so a retried call never makes a second one), as the platform's
operator. A program already there is left alone (never updated), so seeding is idempotent: a
second run changes nothing.

`aisuper up` seeds on its first start and records that in ``<data-dir>/policy.seeded.json``
(with the file's digest: a changed file is seeded again, which adds only what is new), so later
starts skip the calls; ``aisuper seed`` runs it on demand, also against a policy elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf.json_format import ParseDict, ParseError

from aisuper.policy.v1 import policy_pb2 as pb
from aisuper.policy.v1 import policy_pb2_grpc
from aisuper_cli.platform_runner import UpView
from aisuper_cli.rpc import CALL_TIMEOUT_S, describe_rpc_error
from aisuper_cli.seeding import SeedError, operator_key
from aisuper_cli.state import Layout, PlatformState

PROGRAMS_RESOURCE = "seed/programs.yaml"
#: Failures that concern one program; any other status stops the seeding.
_PER_PROGRAM = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}


def packaged_programs() -> Traversable:
    """The programs shipped with the CLI."""
    return resources.files("aisuper_cli").joinpath(PROGRAMS_RESOURCE)


@dataclass(frozen=True)
class ProgramSet:
    programs: tuple[pb.Program, ...]
    #: Where it was read from.
    source: str
    sha256: str

    @property
    def slugs(self) -> list[str]:
        return [program.slug for program in self.programs]


def load_programs(path: Path | Traversable | None = None) -> ProgramSet:
    """Read and check a programs file (default: the packaged one)."""
    resource = path if path is not None else packaged_programs()
    source = str(resource)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read the programs {source}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"the programs file {source} is not valid YAML: {exc}") from None
    entries = document.get("programs") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SeedError(f"the programs file {source} has no `programs:` list")
    programs: list[pb.Program] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"the programs file {source}, program {number}"
        if not isinstance(entry, dict):
            raise SeedError(f"{where} is not a mapping")
        program = pb.Program()
        try:
            ParseDict(entry, program)
        except ParseError as exc:
            raise SeedError(f"{where} ({entry.get('slug', '?')}): {exc}") from None
        if not program.slug:
            raise SeedError(f"{where} has no slug")
        if program.slug in seen:
            raise SeedError(f"{where}: the slug {program.slug!r} is there twice")
        seen.add(program.slug)
        programs.append(program)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return ProgramSet(programs=tuple(programs), source=source, sha256=digest)


@dataclass
class ProgramSeedReport:
    """What one seeding of programs did, by slug."""

    target: str
    total: int
    #: Created by this run.
    created: list[str] = field(default_factory=list)
    #: Already there: left alone.
    present: list[str] = field(default_factory=list)
    #: (slug, why) of the programs that could not be seeded.
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (
            f"{self.total} programs: {len(self.created)} added, {len(self.present)} already there"
        )
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["failed"] = [{"slug": slug, "error": why} for slug, why in self.failed]
        return raw


#: Called after each program: (programs done, total, slug).
Progress = Callable[[int, int, str], None]


async def _seed_one(
    stub: policy_pb2_grpc.PolicyServiceAsyncStub,
    program: pb.Program,
    metadata: Any,
    per_call: float,
) -> bool:
    """Create `program` unless its slug is taken; True when created."""
    try:
        await stub.GetProgram(
            pb.GetProgramRequest(slug=program.slug), metadata=metadata, timeout=per_call
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    else:
        return False
    try:
        await stub.CreateProgram(
            pb.CreateProgramRequest(program=program, request_id=f"seed-{program.slug}"),
            metadata=metadata,
            timeout=per_call,
        )
    except grpc.aio.AioRpcError as exc:
        # Another seed created it in between (under another request id): fine.
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False
        raise
    return True


async def seed_programs(
    target: str,
    api_key: str,
    programs: ProgramSet,
    *,
    progress: Progress | None = None,
    per_call: float = CALL_TIMEOUT_S,
) -> ProgramSeedReport:
    """Create every program of `programs` that policy at `target` lacks (idempotent).

    A program policy refuses is reported in `failed` and the others still go on; a failure
    that is not about one program (unreachable, bad credential) raises SeedError.
    """
    report = ProgramSeedReport(target=target, total=len(programs.programs))
    metadata = (("authorization", f"Bearer {api_key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        for done, program in enumerate(programs.programs, start=1):
            try:
                created = await _seed_one(stub, program, metadata, per_call)
            except grpc.aio.AioRpcError as exc:
                why = describe_rpc_error(exc, service="policy", target=target)
                if exc.code() not in _PER_PROGRAM:
                    raise SeedError(f"seeding the program {program.slug}: {why}") from None
                report.failed.append((program.slug, why))
            else:
                (report.created if created else report.present).append(program.slug)
            if progress is not None:
                progress(done, report.total, program.slug)
    return report


# --- the data dir's record ------------------------------------------------------------------------


def read_programs_marker(layout: Layout) -> dict[str, Any] | None:
    """What ``policy.seeded.json`` says (None: not seeded, or unreadable)."""
    try:
        raw = json.loads(layout.programs_seed_marker.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def programs_seeded_already(layout: Layout, programs: ProgramSet) -> bool:
    marker = read_programs_marker(layout)
    return marker is not None and marker.get("programs_sha256") == programs.sha256


def write_programs_marker(layout: Layout, programs: ProgramSet, report: ProgramSeedReport) -> None:
    marker = {
        "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "file": programs.source,
        "programs_sha256": programs.sha256,
        "programs": report.total,
        "policy_target": report.target,
    }
    path = layout.programs_seed_marker
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    tmp.replace(path)


async def seed_programs_on_first_start(layout: Layout, state: PlatformState, view: UpView) -> None:
    """`aisuper up`'s seeding of programs: skipped when the data dir's policy has them.

    Never fails `up` (the platform serves either way): a problem is shown, with how to retry.
    """
    retry = f"retry with `aisuper seed --data-dir {shlex.quote(str(layout.data_dir))}`"
    policy = state.service("policy")
    if policy is None:
        return
    try:
        programs = load_programs()
    except SeedError as exc:
        view.step("programs", "seeding the support programs")
        view.failed("programs", f"programs not seeded: {exc}")
        return
    count = len(programs.programs)
    if programs_seeded_already(layout, programs):
        view.step("programs", "the support programs")
        view.done("programs", f"programs seeded earlier ({count} programs)")
        return
    view.step("programs", f"seeding the support programs: {count} programs")

    def progress(done: int, total: int, slug: str) -> None:
        view.update("programs", f"seeding the support programs: {done}/{total} ({slug})")

    try:
        key = operator_key(Path(state.operator_key_file or layout.operator_key_file))
        report = await seed_programs(policy.grpc_target, key, programs, progress=progress)
    except SeedError as exc:
        view.failed("programs", f"programs not seeded: {exc}; {retry}")
        return
    if report.complete:
        write_programs_marker(layout, programs, report)
        view.done("programs", f"programs seeded: {report.summary()}")
    else:
        failures = "; ".join(f"{slug}: {why}" for slug, why in report.failed)
        view.failed("programs", f"programs partly seeded ({report.summary()}): {failures}; {retry}")


async def seed_programs_running(
    layout: Layout,
    view: UpView,
    *,
    target: str,
    operator_key_file: Path,
    programs_file: Path | None = None,
    local: bool = False,
) -> ProgramSeedReport:
    """`aisuper seed`'s programs: seed policy at `target` with the operator key in
    `operator_key_file`. With `local` (the data dir's own policy) and the packaged file, the
    seeding is recorded in the data dir."""
    programs = load_programs(programs_file)
    key = operator_key(operator_key_file)
    view.step("programs", f"seeding the support programs: {len(programs.programs)} into {target}")

    def progress(done: int, total: int, slug: str) -> None:
        view.update("programs", f"seeding the support programs: {done}/{total} ({slug})")

    report = await seed_programs(target, key, programs, progress=progress)
    if report.complete:
        if programs_file is None and local:
            write_programs_marker(layout, programs, report)
        view.done("programs", f"programs seeded into {target}: {report.summary()}")
    else:
        view.failed("programs", f"programs partly seeded into {target}: {report.summary()}")
    return report
