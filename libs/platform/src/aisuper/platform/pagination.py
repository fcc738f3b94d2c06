"""Opaque page tokens for List RPCs.

A token only says where the previous page ended. The tenant filter always
comes from the caller's principal, never from the token, so a forged token
can skip rows of the caller's own listing but never reveal anybody else's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from aisuper.platform.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_CURSOR = re.compile(r"[0-9A-Za-z_.:-]{1,128}")


def page_size(requested: int) -> int:
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def query_key(*parts: bytes | str) -> str:
    """A short fingerprint of a query's filters, to bind its page tokens to it."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def encode_token(after: str, query: str = "") -> str:
    body: dict[str, str] = {"after": after}
    if query:
        body["q"] = query
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode_token(token: str, query: str = "") -> str | None:
    """The cursor of `token`, which must have been issued for the same `query`."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        after, issued_for = body["after"], body.get("q", "")
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise InvalidArgument.field("page_token", "not a token this service issued") from None
    if not isinstance(after, str) or not _CURSOR.fullmatch(after):
        raise InvalidArgument.field("page_token", "not a token this service issued")
    if issued_for != query:
        raise InvalidArgument.field(
            "page_token", "issued for a different query: start again without a token"
        )
    return after


def page(
    rows: Sequence[T], size: int, cursor: Callable[[T], str], query: str = ""
) -> tuple[list[T], str]:
    """Splits `size + 1` fetched rows into one page and the token of the next."""
    shown = list(rows[:size])
    return shown, encode_token(cursor(shown[-1]), query) if len(rows) > size else ""
