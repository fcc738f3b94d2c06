"""Policy on loopback for tests (a pytest plugin): a real gRPC server, its own real
database, a real broker, and a real identity service whose organisation events
policy consumes; plus factories for programs and organisations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.grpc_client import bearer, channel
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import BrokerUnderTest, DatabaseFactory, eventually, unique
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper.policy.v1 import policy_pb2_grpc
from aisuper_policy.__main__ import serve
from aisuper_policy.settings import PolicySettings

Metadata = tuple[tuple[str, str], ...]
CREDIT = 1_000_000


@dataclass(frozen=True)
class Org:
    """A registered organisation and its org_admin key."""

    id: str
    key: str

    @property
    def auth(self) -> Metadata:
        return bearer(self.key)


def program(slug: str | None = None, **fields: Any) -> pb.Program:
    """A running compute voucher: 30% of the cost, 1,000 credits per org a month."""
    values: dict[str, Any] = {
        "kind": pb.PROGRAM_KIND_COMPUTE_VOUCHER,
        "slug": slug or unique("program"),
        "title": "Compute voucher",
        "description": "Pays part of the GPU bill.",
        "eligibility": "",
        "covers": [pb.COST_KIND_COMPUTE],
        "share_bps": 3_000,
        "per_org_cap": 1_000 * CREDIT,
        "cap_period": pb.CAP_PERIOD_MONTH,
        "budget": 100_000 * CREDIT,
        "stackable": False,
        "stack_order": 10,
    }
    values.update(fields)
    return pb.Program(**values)


@dataclass
class Policy:
    settings: PolicySettings
    host: ServiceHost
    address: str
    stub: policy_pb2_grpc.PolicyServiceStub
    identity: Identity

    @property
    def operator(self) -> Org:
        return Org(id="", key=self.identity.operator_key)

    async def org(self, name: str = "Acme Robotics", **fields: Any) -> Org:
        """A registered organisation, once policy has learnt of it."""
        registered = await self.identity.register(
            name, admin_email=f"{unique('admin')}@example.org", **fields
        )
        org = Org(id=registered.organization.id, key=registered.api_key_secret)
        await self.knows(org)
        return org

    async def knows(self, org: Org) -> None:
        async def known() -> bool:
            try:
                await self.stub.CheckEligibility(pb.CheckEligibilityRequest(), metadata=org.auth)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return False
                raise
            return True

        await eventually(known, within_s=60, every_s=0.05)

    async def verify(self, org: Org) -> None:
        await self.identity.stub.VerifyOrganization(
            identity_pb2.VerifyOrganizationRequest(org_id=org.id),
            metadata=self.operator.auth,
        )

    async def create(self, value: pb.Program) -> pb.Program:
        response = await self.stub.CreateProgram(
            pb.CreateProgramRequest(program=value), metadata=self.operator.auth
        )
        return response.program

    async def reserve(
        self, org: Org, cost: int, request_id: str | None = None, **fields: Any
    ) -> pb.Reservation:
        response = await self.stub.ReserveSubsidy(
            pb.ReserveSubsidyRequest(
                kind=fields.pop("kind", pb.COST_KIND_COMPUTE),
                cost=cost,
                reference=fields.pop("reference", unique("alloc")),
                request_id=request_id or unique("rq"),
                **fields,
            ),
            metadata=org.auth,
        )
        return response.reservation

    async def budget(self, program_id: str) -> pb.Budget:
        response = await self.stub.GetBudget(
            pb.GetBudgetRequest(program_id=program_id), metadata=self.operator.auth
        )
        return response.budget


def policy_settings(
    broker: BrokerUnderTest, database_url: str, identity: Identity, **overrides: Any
) -> PolicySettings:
    return PolicySettings(
        # Its own consumer group per test: Tansu is slow to let a new member into
        # a group that earlier tests' instances left.
        service_name=unique("policy"),
        database_url=database_url,
        identity_target=identity.address,
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        kafka_fetch_max_wait_ms=50,
        # Tansu takes half the session timeout to (re)join a group: keep joins short.
        kafka_session_timeout_ms=2000,
        grpc_port=0,
        **overrides,
    )


@pytest.fixture
async def policy(
    broker: BrokerUnderTest, make_database: DatabaseFactory, identity: Identity
) -> AsyncIterator[Policy]:
    settings = policy_settings(broker, await make_database("policy"), identity)
    host = ServiceHost(settings)
    task = asyncio.create_task(serve(settings, host))
    started = asyncio.create_task(host.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # surfaces the start-up error
    assert started in done, "policy did not start within 60s"
    assert host.server is not None
    async with channel(host.server.address) as chan:
        yield Policy(
            settings=settings,
            host=host,
            address=host.server.address,
            stub=policy_pb2_grpc.PolicyServiceStub(chan),
            identity=identity,
        )
    host.stop()
    await asyncio.wait_for(task, 30)
