"""Wiring only: settings -> telemetry -> store -> servers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from aisuper.identity.v1 import identity_pb2, identity_pb2_grpc
from aisuper.platform.auth import AuthCache, CredentialResolver, JwtVerifier
from aisuper.platform.grpc_server import CallInterceptor, Service
from aisuper.platform.host import ServiceHost, run_service
from aisuper_identity import events
from aisuper_identity.api import IdentityApi
from aisuper_identity.authn import LocalApiKeys
from aisuper_identity.bootstrap import ensure_operator
from aisuper_identity.settings import IdentitySettings
from aisuper_identity.tokens import TokenIssuer

# services/identity/migrations, beside src/ (copied into the image alongside).
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
SERVICE = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
PUBLIC = {f"/{SERVICE}/RegisterOrganization", f"/{SERVICE}/GetJwks"}


async def serve(settings: IdentitySettings, host: ServiceHost | None = None) -> None:
    host = host or ServiceHost(settings)
    db = await host.database(settings.database_url, migrations=MIGRATIONS)
    tokens = TokenIssuer(
        db, settings.jwt_issuer, timedelta(days=settings.signing_key_rotation_days)
    )
    await tokens.ensure_key()
    cache = AuthCache(ttl_s=settings.auth_cache_ttl_s)
    api = IdentityApi(
        db=db,
        outbox=host.outbox(db, events.CATALOG),
        tokens=tokens,
        cache=cache,
        audience=settings.jwt_audience,
    )
    await ensure_operator(
        api,
        db,
        name=settings.operator_org_name,
        country=settings.operator_org_country,
        key_file=settings.operator_key_file,
    )
    host.subscribe(events.subscriptions(cache))
    api_keys = LocalApiKeys(db)
    resolver = CredentialResolver(
        api_keys=api_keys,
        tokens=JwtVerifier(tokens.jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        cache=cache,
        check_token=api_keys.check_token,
    )
    interceptor = CallInterceptor(
        resolver, public_methods=PUBLIC, default_deadline_s=settings.default_deadline_s
    )
    service = Service(SERVICE, api, identity_pb2_grpc.add_IdentityServiceServicer_to_server)
    await host.run([service], interceptor)


def main() -> None:
    run_service(IdentitySettings(), serve)


if __name__ == "__main__":
    main()
