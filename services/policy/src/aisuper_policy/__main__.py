"""Wiring only: settings -> telemetry -> store -> servers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from aisuper.platform.grpc_client import channel
from aisuper.platform.grpc_server import CallInterceptor, Service
from aisuper.platform.host import ServiceHost, run_service
from aisuper.platform.identity_client import remote_resolver
from aisuper.policy.v1 import policy_pb2, policy_pb2_grpc
from aisuper_policy import events, store
from aisuper_policy.api import PolicyApi
from aisuper_policy.settings import PolicySettings

# services/policy/migrations, beside src/ (copied into the image alongside).
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
log = logging.getLogger(__name__)


async def serve(settings: PolicySettings, host: ServiceHost | None = None) -> None:
    host = host or ServiceHost(settings)
    db = await host.database(settings.database_url, migrations=MIGRATIONS)
    api = PolicyApi(
        db=db,
        outbox=host.outbox(db, events.CATALOG),
        reservation_ttl_s=settings.reservation_ttl_s,
    )

    async def expire_reservations() -> None:
        while True:
            async with db.read() as session:
                due = await store.expired_reservations(
                    session=session,
                    now=datetime.now(UTC),
                    state=policy_pb2.RESERVATION_STATE_RESERVED,
                    limit=100,
                )
            for reservation_id in due:
                try:
                    await api.expire(reservation_id, datetime.now(UTC))
                except Exception:  # the next sweep tries again
                    log.exception("could not expire reservation %s", reservation_id)
            if len(due) < 100:
                await asyncio.sleep(settings.expiry_sweep_interval_s)

    host.background(expire_reservations)
    async with channel(settings.identity_target) as identity:
        resolver = remote_resolver(identity, settings)
        host.subscribe(events.subscriptions(db, api, resolver.cache, settings.service_name))
        interceptor = CallInterceptor(resolver, default_deadline_s=settings.default_deadline_s)
        service = Service(SERVICE, api, policy_pb2_grpc.add_PolicyServiceServicer_to_server)
        await host.run([service], interceptor)


def main() -> None:
    run_service(PolicySettings(), serve)


if __name__ == "__main__":
    main()
