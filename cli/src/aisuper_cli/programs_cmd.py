"""``aisuper programs list|eligibility``: the support programs of a running platform.

The target is --target, else the policy service of the platform running from --data-dir (its
state file), else policy's default address. The credential is --key-file, else
$AISUPER_API_KEY: policy answers authenticated callers only.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aisuper.policy.v1 import policy_pb2 as pb
from aisuper.policy.v1 import policy_pb2_grpc
from aisuper_cli.catalog_view import credits, enum_label, listing_json, print_json
from aisuper_cli.command_options import (
    AsJson,
    Connection,
    connect,
    data_dir_option,
    key_file_option,
    rpc_failed,
    target_option,
)
from aisuper_cli.rpc import CALL_TIMEOUT_S

programs_app = typer.Typer(
    name="programs",
    help="Support programs: list them, see which your organisation is eligible for.",
    no_args_is_help=True,
    add_completion=False,
)

#: ListPrograms answers at most this many per page.
_PAGE = 1000


class Kind(StrEnum):
    compute_voucher = "compute_voucher"
    model_voucher = "model_voucher"
    corpus_voucher = "corpus_voucher"
    open_data_access = "open_data_access"
    financing_referral = "financing_referral"
    grant = "grant"


Target = Annotated[
    str | None, target_option("policy", envvar="AISUPER_POLICY_TARGET", called="policy")
]
KeyFile = Annotated[Path | None, key_file_option()]
DataDir = Annotated[Path, data_dir_option(called="policy")]

_SERVICE = "policy"


def _connect(data_dir: Path, target: str | None, key_file: Path | None) -> Connection:
    return connect(data_dir, target, key_file, service="policy")


def kind_label(program: pb.Program) -> str:
    return enum_label(pb.ProgramKind, program.kind, "PROGRAM_KIND_", words=True)


def _percent(bps: int) -> str:
    whole, rest = divmod(bps, 100)
    return f"{whole}%" if not rest else f"{bps / 100:g}%"


def pays(program: pb.Program) -> str:
    """What the program pays: "30% of compute", "nothing (a referral)"."""
    if not program.share_bps:
        return "nothing (a referral)" if not program.covers else "0%"
    covers = ", ".join(
        enum_label(pb.CostKind, kind, "COST_KIND_", words=True) for kind in program.covers
    )
    text = f"{_percent(program.share_bps)} of {covers}"
    return text + (" (stacks)" if program.stackable else "")


def cap(program: pb.Program) -> str:
    if not program.per_org_cap:
        return "-"
    period = enum_label(pb.CapPeriod, program.cap_period, "CAP_PERIOD_", words=True)
    return f"{credits(program.per_org_cap)} / {'the program' if period == 'program' else period}"


def window(program: pb.Program) -> str:
    def day(field: str) -> str:
        if not program.HasField(field):  # type: ignore[arg-type]
            return ""
        stamp = getattr(program, field)
        return str(stamp.ToDatetime().date().isoformat())

    start, end = day("valid_from"), day("valid_until")
    if not start and not end:
        return "-"
    return f"{start or '…'} → {end or '…'}"


def program_json(program: pb.Program) -> dict[str, Any]:
    return listing_json(program)


def print_programs(console: Console, programs: list[pb.Program]) -> None:
    if not programs:
        console.print("No support programs.")
        return
    table = Table(title=f"{len(programs)} support programs (amounts in credits)")
    for column in ("slug", "kind", "title", "pays", "cap per org", "budget", "valid"):
        table.add_column(column, overflow="fold")
    for program in programs:
        table.add_row(
            escape(program.slug),
            kind_label(program),
            escape(program.title),
            pays(program),
            cap(program),
            credits(program.budget) if program.budget else "-",
            window(program),
        )
    console.print(table)


def print_eligibility(console: Console, reply: pb.CheckEligibilityResponse) -> None:
    org = reply.organization
    flags = [
        label
        for label, value in (
            ("verified", org.verified),
            ("incubator member", org.incubator_member),
            ("suspended", org.suspended),
        )
        if value
    ]
    facts = [
        org.kind or "?",
        f"{org.country or '?'} ({org.region or '?'})",
        f"{org.age_days} days old",
        f"{org.employee_count} employees",
        *flags,
    ]
    console.print(f"[bold]{escape(org.org_id)}[/]: {escape(', '.join(facts))}")
    eligible = [p for p in reply.programs if p.eligible]
    table = Table(title=f"eligible for {len(eligible)} of {len(reply.programs)} programs")
    for column in ("", "slug", "title", "pays", "cap left", "why"):
        table.add_column(column, overflow="fold")
    for entry in sorted(reply.programs, key=lambda e: (not e.eligible, e.program.slug)):
        program = entry.program
        table.add_row(
            "[green]✓[/]" if entry.eligible else "[red]✗[/]",
            escape(program.slug),
            escape(program.title),
            pays(program),
            credits(entry.cap_remaining) if program.per_org_cap else "-",
            escape(entry.reason),
        )
    console.print(table)


@programs_app.command("list")
def list_programs(
    kind: Annotated[Kind | None, typer.Option(help="Only programs of this kind.")] = None,
    active: Annotated[
        bool, typer.Option("--active", help="Only programs running now (their validity window).")
    ] = False,
    as_json: AsJson = False,
    target: Target = None,
    key_file: KeyFile = None,
    data_dir: DataDir = Path(".aisuper"),
) -> None:
    """Every support program (ListPrograms)."""
    connection = _connect(data_dir, target, key_file)
    found: list[pb.Program] = []
    token = ""
    kind_value = pb.ProgramKind.Value(f"PROGRAM_KIND_{kind.value.upper()}") if kind else 0
    try:
        with grpc.insecure_channel(connection.target) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            while True:
                reply = stub.ListPrograms(
                    pb.ListProgramsRequest(
                        kind=kind_value,  # type: ignore[arg-type]
                        active_only=active,
                        page_size=_PAGE,
                        page_token=token,
                    ),
                    metadata=connection.credential.metadata,
                    timeout=CALL_TIMEOUT_S,
                )
                found.extend(reply.programs)
                token = reply.next_page_token
                if not token:
                    break
    except grpc.RpcError as exc:
        rpc_failed(exc, connection, service=_SERVICE)
    found.sort(key=lambda program: (program.stack_order, program.slug))
    if as_json:
        print_json({"programs": [program_json(program) for program in found]})
        return
    print_programs(Console(), found)


@programs_app.command()
def eligibility(
    org_id: Annotated[
        str,
        typer.Option(
            "--org-id", help="Another organisation (operators only; default: the caller's)."
        ),
    ] = "",
    as_json: AsJson = False,
    target: Target = None,
    key_file: KeyFile = None,
    data_dir: DataDir = Path(".aisuper"),
) -> None:
    """Each program, eligible or not for your organisation, and why (CheckEligibility)."""
    connection = _connect(data_dir, target, key_file)
    try:
        with grpc.insecure_channel(connection.target) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            reply = stub.CheckEligibility(
                pb.CheckEligibilityRequest(org_id=org_id),
                metadata=connection.credential.metadata,
                timeout=CALL_TIMEOUT_S,
            )
    except grpc.RpcError as exc:
        rpc_failed(exc, connection, service=_SERVICE)
    if as_json:
        print_json(listing_json(reply))
        return
    print_eligibility(Console(), reply)
