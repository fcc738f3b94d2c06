"""Words for full-text search, cut the same way for SQLite FTS5 and PostgreSQL.

Both engines get tokens we made here, never raw text: SQLite's FTS5 table
uses the `ascii` tokenizer (our tokens are separated by spaces, non-ASCII
characters are always part of a token), and PostgreSQL gets a `tsvector` /
`tsquery` literal, which bypasses its locale-dependent parser. So both index
and match exactly the same tokens, and a query can never carry either
engine's syntax: only letters and digits survive.

Text is NFKC-normalised, case-folded and stripped of diacritics. Chinese
and Japanese script has no spaces between words: each Han or Kana character
is a token of its own, and a run of them in a query is matched as a phrase.
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


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _words(text):
        if _CJK_CHAR.match(word):
            out.extend(word)
        else:
            out.append(word[:MAX_TOKEN_CHARS])
    return out


@dataclass(frozen=True)
class Term:
    """A query word (matched as a prefix) or a CJK run (matched as a phrase)."""

    tokens: tuple[str, ...]

    @property
    def is_phrase(self) -> bool:
        return len(self.tokens) > 1 or bool(_CJK_CHAR.match(self.tokens[0]))


def query_terms(query: str) -> list[Term]:
    terms: list[Term] = []
    seen: set[tuple[str, ...]] = set()
    for word in _words(query):
        if _CJK_CHAR.match(word):
            term = Term(tuple(word[:MAX_PHRASE_CHARS]))
        else:
            term = Term((word[:MAX_TOKEN_CHARS],))
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
        if term.is_phrase:
            parts.append('"' + " ".join(term.tokens) + '"')
        else:
            parts.append(f'"{term.tokens[0]}"*')
    return " ".join(parts)


# -- PostgreSQL -----------------------------------------------------------


def pg_document(weighted: Iterable[tuple[str, str]]) -> str:
    """A tsvector literal of (text, weight A-D) parts, positions running on."""
    positions: dict[str, list[str]] = {}
    position = 0
    for text, weight in weighted:
        for token in tokens(text):
            position = min(position + 1, _PG_MAX_POSITION)
            seen = positions.setdefault(token, [])
            if len(seen) < _PG_MAX_POSITIONS:
                seen.append(f"{position}{weight}")
    return " ".join(f"'{token}':{','.join(found)}" for token, found in positions.items())


def pg_query(terms: Iterable[Term]) -> str:
    """A tsquery literal: every term must match."""
    parts = []
    for term in terms:
        if term.is_phrase:
            parts.append("(" + " <-> ".join(f"'{t}'" for t in term.tokens) + ")")
        else:
            parts.append(f"'{term.tokens[0]}':*")
    return " & ".join(parts)
