"""`aisuper status`: what runs from a data dir, probed live, as a JSON-able report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aisuper_cli.health import SERVING, grpc_health_all, tcp_accepts
from aisuper_cli.platform_runner import broker_limits
from aisuper_cli.services import HEALTH_SERVICES
from aisuper_cli.state import Layout, load_state

DOWN = "DOWN"
ACCEPTING = "ACCEPTING"
UNREACHABLE = "UNREACHABLE"

# Exit codes of `aisuper status`.
EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_NOT_RUNNING = 3


async def collect_status(layout: Layout) -> dict[str, Any]:
    """The platform's state file, checked: which processes live and what their health says.

    ``running`` is true when any process of the platform lives, ``healthy`` when all do and
    answer (the broker accepts connections, every service's gRPC health says SERVING).
    """
    state = load_state(layout)
    report: dict[str, Any] = {"data_dir": str(layout.data_dir), "running": False, "healthy": False}
    if state is None:
        report["processes"] = {}
        return report

    processes: dict[str, dict[str, Any]] = {}
    broker = state.broker
    broker_alive = broker.process.alive()
    server_alive = broker.server.alive() if broker.server is not None else broker_alive
    accepting = await tcp_accepts(broker.bootstrap) if server_alive else False
    processes["broker"] = {
        "pid": broker.process.pid,
        "alive": broker_alive,
        "server_pid": broker.server.pid if broker.server is not None else None,
        "server_alive": server_alive,
        "health": DOWN if not server_alive else (ACCEPTING if accepting else UNREACHABLE),
        "endpoints": {"bootstrap": broker.bootstrap},
        "log_file": broker.log_file,
    }
    for service in state.services:
        alive = service.process.alive()
        main_service = HEALTH_SERVICES.get(service.name, "")
        checks = await grpc_health_all(service.grpc_target, ["", main_service]) if alive else {}
        processes[service.name] = {
            "pid": service.process.pid,
            "alive": alive,
            "health": checks.get(main_service, DOWN),
            "health_checks": checks,
            "endpoints": {"grpc": service.grpc_target, "metrics": service.metrics_url},
            "log_file": service.log_file,
            "database_url": service.database_url,
        }

    supervisor_alive = state.supervisor is not None and state.supervisor.alive()
    report.update(
        running=any(p["alive"] for p in processes.values()) or supervisor_alive,
        phase=state.phase,
        healthy=(
            state.phase == "running"
            and broker_alive
            and processes["broker"]["health"] == ACCEPTING
            and all(processes[s.name]["health"] == SERVING for s in state.services)
        ),
        started_at=state.started_at,
        detached=state.detached,
        supervisor_pid=state.supervisor.pid if supervisor_alive and state.supervisor else None,
        broker={
            "kind": broker.kind,
            "bootstrap": broker.bootstrap,
            "limits": list(broker_limits(broker.kind)),
        },
        processes=processes,
        operator_key_file=state.operator_key_file,
        shelf_seeded=_read_json(layout.seed_marker),
        programs_seeded=_read_json(layout.programs_seed_marker),
    )
    return report


def _read_json(marker: Path) -> dict[str, Any] | None:
    """What a seed marker (``catalog.seeded.json``, ``policy.seeded.json``) records (None: not
    seeded from here)."""
    try:
        raw = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def exit_code(report: dict[str, Any]) -> int:
    if not report["running"]:
        return EXIT_NOT_RUNNING
    return EXIT_HEALTHY if report["healthy"] else EXIT_DEGRADED
