"""Who may bind a key to whom (no I/O)."""

from __future__ import annotations

import pytest

from aisuper.platform.auth import Principal
from aisuper.platform.errors import PermissionDenied
from aisuper_identity import domain


def caller(role: str, subject: str = "member:mem_me") -> Principal:
    return Principal(org_id="org_a", subject=subject, roles=frozenset({role}))


@pytest.mark.parametrize("member_id", ["", "mem_me"])
def test_a_developer_binds_keys_to_itself_or_to_nobody(member_id: str) -> None:
    domain.check_member_binding(caller("developer"), member_id)


def test_a_developer_cannot_mint_keys_that_speak_for_another_member() -> None:
    with pytest.raises(PermissionDenied, match="another member"):
        domain.check_member_binding(caller("developer"), "mem_admin")


@pytest.mark.parametrize("role", ["org_admin", "operator"])
def test_admins_bind_keys_to_any_member(role: str) -> None:
    domain.check_member_binding(caller(role, subject="key:abc"), "mem_other")
