"""The operator account, created once, on the first start."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aisuper.identity.v1 import identity_pb2
from aisuper.platform.db import Database
from aisuper_identity import store
from aisuper_identity.api import IdentityApi

log = logging.getLogger(__name__)


async def ensure_operator(
    api: IdentityApi, db: Database, *, name: str, country: str, key_file: Path | None
) -> None:
    async with db.write() as session:
        if await store.platform_organization(session=session) is not None:
            return
        org, _, key, secret = await api.create_organization(
            session,
            name=name,
            kind=identity_pb2.ORGANIZATION_KIND_PUBLIC_SECTOR,
            country=country,
            incubator_member=False,
            employee_count=0,
            admin_email="operator@aisuper.local",
            key_role=identity_pb2.ROLE_OPERATOR,
            verified=True,
            is_platform=True,
        )
        if key_file is not None:
            # Written before the commit: a failed write leaves no operator
            # whose key nobody has.
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret + "\n")
    log.info(
        "created the operator organization %s (key %s%s)",
        org.id,
        key.id,
        f", written to {key_file}"
        if key_file
        else "; set AISUPER_IDENTITY_OPERATOR_KEY_FILE to keep its secret",
    )
