from identity_harness import Identity

from aisuper.identity.v1 import identity_pb2


async def test_register_then_read_own_organization(identity: Identity) -> None:
    registered = await identity.register()
    assert registered.api_key_secret.startswith(f"ais_{registered.api_key.id}_")
    got = await identity.stub.GetOrganization(
        identity_pb2.GetOrganizationRequest(org_id=registered.organization.id),
        metadata=identity.as_(registered.api_key_secret),
    )
    assert got.organization.name == "Acme Robotics"
    assert not got.organization.verified
