"""The authentication cache and credential parsing (no I/O)."""

from __future__ import annotations

import time

import pytest

from aisuper.platform import pagination
from aisuper.platform.auth import AuthCache, Principal, bearer_credential, kind_of
from aisuper.platform.errors import InvalidArgument, Unauthenticated


def principal(org: str = "org_a", key: str = "k1", expires_at: float | None = None) -> Principal:
    return Principal(
        org_id=org,
        subject=f"key:{key}",
        roles=frozenset({"developer"}),
        key_id=key,
        expires_at=expires_at,
    )


def test_cache_returns_what_it_was_given_and_never_keeps_the_secret() -> None:
    cache = AuthCache()
    cache.put("ais_k1_secret", principal())
    assert cache.get("ais_k1_secret") == principal()
    assert cache.get("ais_k1_other") is None
    assert not any(b"secret" in digest for digest in cache._entries)


def test_dropping_a_key_or_an_org_forgets_and_denies_it() -> None:
    cache = AuthCache()
    cache.put("a", principal(key="k1"))
    cache.put("b", principal(key="k2"))
    cache.put("c", principal(org="org_b", key="k3"))
    cache.drop_key("k1")
    assert cache.get("a") is None
    assert cache.get("b") is not None
    assert cache.is_denied(principal(key="k1"))
    cache.drop_org("org_b")
    assert cache.get("c") is None
    assert cache.is_denied(principal(org="org_b", key="k9"))
    assert not cache.is_denied(principal(key="k2"))


def test_entries_expire_with_the_ttl_and_with_the_credential() -> None:
    assert AuthCache(ttl_s=0).get("x") is None
    stale = AuthCache(ttl_s=0)
    stale.put("x", principal())
    assert stale.get("x") is None
    short = AuthCache(ttl_s=60)
    short.put("x", principal(expires_at=time.time() - 1))
    assert short.get("x") is None


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer "),),
        (("authorization", "Bearer"),),
        (("authorization", "token abc"),),
    ],
)
def test_malformed_authorization_headers_are_unauthenticated(
    metadata: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(Unauthenticated):
        bearer_credential(metadata)


def test_bearer_credentials_are_found_and_classified() -> None:
    assert bearer_credential((("x-other", "1"), ("authorization", "Bearer ais_k_s"))) == "ais_k_s"
    assert bearer_credential(()) is None
    assert kind_of("ais_abc_def") == "api_key"
    assert kind_of("a.b.c") == "jwt"
    with pytest.raises(Unauthenticated):
        kind_of("plain")


def test_page_tokens_round_trip_and_forged_ones_are_refused() -> None:
    assert pagination.decode_token(pagination.encode_token("org_01abc")) == "org_01abc"
    assert pagination.decode_token("") is None
    for forged in ("!!!", "e30", pagination.encode_token("x\x00y"), "eyJhZnRlciI6IDF9"):
        with pytest.raises(InvalidArgument, match="page_token"):
            pagination.decode_token(forged)
    assert pagination.page_size(0) == pagination.DEFAULT_PAGE_SIZE
    assert pagination.page_size(10**6) == pagination.MAX_PAGE_SIZE
