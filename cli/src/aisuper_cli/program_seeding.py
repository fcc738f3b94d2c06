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

import shlex
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

import grpc

from aisuper.policy.v1 import policy_pb2 as pb
from aisuper.policy.v1 import policy_pb2_grpc
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
class ProgramSet(SeedFile[pb.Program]):
    @property
    def programs(self) -> tuple[pb.Program, ...]:
        return self.entries


def load_programs(path: Path | Traversable | None = None) -> ProgramSet:
    """Read and check a programs file (default: the packaged one)."""
    loaded = load_entries(
        path if path is not None else packaged_programs(),
        key="programs",
        message_type=pb.Program,
        what="the programs file",
        entry_name="program",
        unreadable="the programs",
    )
    return ProgramSet(entries=loaded.entries, source=loaded.source, sha256=loaded.sha256)


class ProgramSeedReport(SeedReport):
    """What one seeding of programs did, by slug: created, or already there (left alone)."""

    noun: ClassVar[str] = "programs"


async def _seed_one(
    stub: policy_pb2_grpc.PolicyServiceAsyncStub,
    program: pb.Program,
    metadata: Any,
    per_call: float,
) -> str:
    """Create `program` unless its slug is taken: CREATED, or PRESENT (left alone)."""
    try:
        await stub.GetProgram(
            pb.GetProgramRequest(slug=program.slug), metadata=metadata, timeout=per_call
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    else:
        return PRESENT
    try:
        await stub.CreateProgram(
            pb.CreateProgramRequest(program=program, request_id=f"seed-{program.slug}"),
            metadata=metadata,
            timeout=per_call,
        )
    except grpc.aio.AioRpcError as exc:
        # Another seed created it in between (under another request id): fine.
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            return PRESENT
        raise
    return CREATED


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
    await seed_entries(
        programs.programs,
        report,
        api_key=api_key,
        make_stub=policy_pb2_grpc.PolicyServiceStub,
        seed_one=_seed_one,
        service="policy",
        per_entry_codes=_PER_PROGRAM,
        halt_prefix="seeding the program",
        progress=progress,
        per_call=per_call,
    )
    return report


# --- the data dir's record ------------------------------------------------------------------------


def programs_seeded_already(layout: Layout, programs: ProgramSet) -> bool:
    return marked_with(layout.programs_seed_marker, "programs_sha256", programs.sha256)


def write_programs_marker(layout: Layout, programs: ProgramSet, report: ProgramSeedReport) -> None:
    record = {
        "file": programs.source,
        "programs_sha256": programs.sha256,
        "programs": report.total,
        "policy_target": report.target,
    }
    write_marker(layout.programs_seed_marker, record)


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
        failures = report.failures()
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
