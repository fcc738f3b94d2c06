"""Helpers for identity's tests: the running service and how to call it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.grpc_client import bearer
from aisuper.platform.host import ServiceHost
from aisuper.platform.testing import TestBroker
from aisuper_identity.settings import IdentitySettings


@dataclass
class Identity:
    settings: IdentitySettings
    host: ServiceHost
    address: str
    stub: identity_pb2_grpc.IdentityServiceStub
    operator_key: str

    async def register(
        self, name: str = "Acme Robotics", **fields: object
    ) -> identity_pb2.RegisterOrganizationResponse:
        request = identity_pb2.RegisterOrganizationRequest(
            name=name,
            kind=fields.pop("kind", identity_pb2.ORGANIZATION_KIND_STARTUP),  # type: ignore[arg-type]
            country=fields.pop("country", "DE"),  # type: ignore[arg-type]
            admin_email=fields.pop("admin_email", "admin@acme.test"),  # type: ignore[arg-type]
            **fields,  # type: ignore[arg-type]
        )
        return await self.stub.RegisterOrganization(request)

    def as_(self, credential: str) -> tuple[tuple[str, str], ...]:
        return bearer(credential)


def identity_settings(
    broker: TestBroker, database_url: str, tmp_path: Path, **overrides: object
) -> IdentitySettings:
    return IdentitySettings(
        database_url=database_url,
        operator_key_file=tmp_path / "operator.key",
        kafka_bootstrap=broker.bootstrap,
        kafka_idempotence=broker.idempotence,
        kafka_fetch_max_wait_ms=50,
        grpc_port=0,
        **overrides,  # type: ignore[arg-type]
    )




def code_of(error: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> grpc.StatusCode:
    return error.value.code()
