"""Words for full-text search, cut the same way for SQLite FTS5 and PostgreSQL.

Both engines get tokens we made here, never raw text: SQLite's FTS5 table
uses the `ascii` tokenizer (our tokens are separated by spaces, non-ASCII
characters are always part of a token), and PostgreSQL gets a `tsvector` /
`tsquery` literal, which bypasses its locale-dependent parser. So both index
and match exactly the same tokens, and a query can never carry either
engine's syntax: only letters and digits survive.

Text is NFKC-normalised, case-folded and stripped of diacritics. Chinese
and Japanese script has no spaces between words: a run of Han or Kana
characters is indexed as its characters and its overlapping character pairs
(`深度求索`: 深 度 求 索 深度 度求 求索), and a run in a query must match all
of its pairs (one character: that character). So `深度` and `求索` find
`深度求索` but `索深` does not, with no reliance on word positions (which
PostgreSQL caps at 16383, well inside a long Chinese card).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_RUN = re.compile(f"([{_CJK}]+)")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(r"[^\W_]+")

MAX_TOKEN_CHARS = 64
MAX_QUERY_TERMS = 16
MAX_PHRASE_CHARS = 16
#: PostgreSQL keeps at most 256 positions per lexeme, positions up to 16383.
_PG_MAX_POSITIONS = 256
_PG_MAX_POSITION = 16383


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def _words(text: str) -> list[str]:
    """Letter-and-digit runs of folded text, with CJK runs set apart."""
    return _WORD.findall(_CJK_RUN.sub(r" \1 ", _fold(text)))


def _pairs(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _words(text):
        if _CJK_CHAR.match(word):
            out.extend(word)
            out.extend(_pairs(word))
        else:
            out.append(word[:MAX_TOKEN_CHARS])
    return out


@dataclass(frozen=True)
class Term:
    """A query word (matched as a prefix) or a CJK run (all of its tokens must match)."""

    tokens: tuple[str, ...]
    prefix: bool


def query_terms(query: str) -> list[Term]:
    terms: list[Term] = []
    seen: set[tuple[str, ...]] = set()
    for word in _words(query):
        if _CJK_CHAR.match(word):
            run = word[:MAX_PHRASE_CHARS]
            term = Term(tuple(_pairs(run)) if len(run) > 1 else (run,), prefix=False)
        else:
            term = Term((word[:MAX_TOKEN_CHARS],), prefix=True)
        if term.tokens not in seen:
            seen.add(term.tokens)
            terms.append(term)
        if len(terms) == MAX_QUERY_TERMS:
            break
    return terms


# -- SQLite FTS5 ----------------------------------------------------------


def fts5_text(text: str) -> str:
    return " ".join(tokens(text))


def fts5_match(terms: Iterable[Term]) -> str:
    """An FTS5 query: every term must match (tokens hold no quotes)."""
    parts = []
    for term in terms:
        if term.prefix:
            parts.append(f'"{term.tokens[0]}"*')
        else:
            parts.extend(f'"{token}"' for token in term.tokens)
    return " ".join(parts)


# -- PostgreSQL -----------------------------------------------------------


def pg_document(weighted: Iterable[tuple[str, str]]) -> str:
    """A tsvector literal of (text, weight A-D) parts."""
    positions: dict[str, list[str]] = {}
    position = 0
    for text, weight in weighted:
        for token in tokens(text):
            position = min(position + 1, _PG_MAX_POSITION)
            seen = positions.setdefault(token, [])
            if len(seen) < _PG_MAX_POSITIONS:
                seen.append(f"{position}{weight}")
        position += 1  # no adjacency across fields
    return " ".join(f"'{token}':{','.join(found)}" for token, found in positions.items())


def pg_query(terms: Iterable[Term]) -> str:
    """A tsquery literal: every term must match."""
    parts = []
    for term in terms:
        if term.prefix:
            parts.append(f"'{term.tokens[0]}':*")
        else:
            parts.extend(f"'{token}'" for token in term.tokens)
    return " & ".join(parts)
