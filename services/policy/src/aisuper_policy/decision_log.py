"""The decision log: every Authorize decision, appended to a hash chain.

A record's hash is SHA-256 over its canonical encoding (sorted-key compact
JSON of every stored column, `prev_hash` included), so changing any stored
record, dropping one or reordering them breaks the chain at that record.
Appends lock the chain head (one row), so the chain stays linear under
concurrent Authorize calls; the `DecisionRecorded` event goes to the outbox
in the same transaction.

Inputs are masked before they are stored: context values under keys that
name a secret, and values that look like a credential, become "[masked]".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aisuper.platform.events.outbox import Outbox
from aisuper.policy.v1 import events_pb2
from aisuper.policy.v1 import policy_pb2 as pb
from aisuper_policy import governance_store as gstore

MASK = "[masked]"
_SECRET_KEY = re.compile(
    r"secret|token|passw|credential|api[_.-]?key|authori[sz]ation|bearer|private|cookie|session",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"^\s*(bearer\s+\S+|ais_\S+|[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})\s*$",
    re.IGNORECASE,
)


def mask_context(context: dict[str, str]) -> dict[str, str]:
    return {
        key: MASK if _SECRET_KEY.search(key) or _SECRET_VALUE.match(value) else value
        for key, value in context.items()
    }


def masked_input(message: events_pb2.DecisionInput) -> events_pb2.DecisionInput:
    masked = events_pb2.DecisionInput()
    masked.CopyFrom(message)
    masked.context.clear()
    masked.context.update(mask_context(dict(message.context)))
    return masked


def input_json(message: events_pb2.DecisionInput) -> str:
    """The input's canonical JSON (what is stored and hashed)."""
    return _canonical(
        {
            "caller": {"org_id": message.caller_org_id, "subject": message.caller_subject},
            "principal": {
                "org_id": message.principal.org_id,
                "member_id": message.principal.member_id,
                "api_key_id": message.principal.api_key_id,
            },
            "action": pb.AuthorizationAction.Name(message.action),
            "resource": {
                "kind": pb.ResourceKind.Name(message.resource.kind),
                "id": message.resource.id,
            },
            "context": dict(message.context),
        }
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(row: gstore.DecisionRow) -> str:
    encoded = _canonical(
        {
            "seq": row.seq,
            "id": row.id,
            "decided_at": _time(row.decided_at),
            "input": row.input,
            "allowed": bool(row.allowed),
            "policy_ids": row.policy_ids,
            "errors": row.errors,
            "policy_revision": row.policy_revision,
            "prev_hash": row.prev_hash,
        }
    )
    return hashlib.sha256(encoded.encode()).hexdigest()


async def append(
    session: AsyncSession,
    outbox: Outbox,
    *,
    decision_id: str,
    input: events_pb2.DecisionInput,
    allowed: bool,
    policy_ids: list[str],
    errors: list[str],
    policy_revision: int,
    now: datetime,
) -> gstore.DecisionRow:
    """Appends a record (its input masked here) and its DecisionRecorded event."""
    masked = masked_input(input)
    head = await gstore.chain_head(session=session, lock=True)
    row = gstore.DecisionRow(
        seq=head.seq + 1,
        id=decision_id,
        decided_at=now,
        input=input_json(masked),
        allowed=allowed,
        policy_ids=_canonical(policy_ids),
        errors=_canonical(errors),
        policy_revision=policy_revision,
        prev_hash=head.hash,
        hash="",
    )
    row.hash = record_hash(row)
    session.add(row)
    head.seq, head.hash = row.seq, row.hash
    await session.flush()
    event = events_pb2.DecisionRecorded(
        decision_id=row.id,
        sequence=row.seq,
        input=masked,
        allowed=allowed,
        determining_policy_ids=policy_ids,
        errors=errors,
        policy_revision=policy_revision,
        previous_hash=row.prev_hash,
        hash=row.hash,
    )
    event.decide_time.FromDatetime(now)
    outbox.add(session, event, subject=row.id, org_id=input.principal.org_id or None)
    return row


@dataclass(frozen=True)
class Verification:
    ok: bool
    #: Records checked (up to and including the broken one).
    checked: int
    #: The first broken record's id and sequence, and what is wrong with it.
    broken_id: str = ""
    broken_seq: int = 0
    reason: str = ""


async def verify(session: AsyncSession, *, batch: int = 1000) -> Verification:
    """Walks the chain from the first record; reports the first broken link."""
    previous, expected_seq, checked = gstore.GENESIS_HASH, 1, 0
    while True:
        rows = await gstore.decisions(session=session, after_seq=expected_seq - 1, limit=batch)
        for row in rows:
            checked += 1
            reason = ""
            if row.seq != expected_seq:
                reason = f"sequence {row.seq} follows {expected_seq - 1}: records are missing"
            elif row.prev_hash != previous:
                reason = "its previous hash is not the hash of the record before it"
            elif record_hash(row) != row.hash:
                reason = "its contents do not match its hash"
            if reason:
                return Verification(False, checked, row.id, row.seq, reason)
            previous, expected_seq = row.hash, expected_seq + 1
        if len(rows) < batch:
            break
    head = await gstore.chain_head(session=session)
    if head.seq != expected_seq - 1 or head.hash != previous:
        return Verification(
            False,
            checked,
            reason=f"the chain head is at {head.seq}, the log ends at {expected_seq - 1}",
        )
    return Verification(True, checked)
