"""Search tokens and engine queries, without I/O: what reaches FTS5 and tsquery.

Both engines only ever see tokens cut here, so the properties that matter are
that tokens hold nothing but letters and digits, and that the query strings
built from them hold no syntax beyond what the builders add themselves.
"""

from __future__ import annotations

import random
import re

import pytest

from aisuper_catalog import search_text as st
from aisuper_catalog.search_text import Term

# Strings a caller may type into a search box, meaning harm or not.
HOSTILE = [
    "",
    " ",
    "\t\n\r",
    '"',
    '""',
    "'",
    "''",
    "\\",
    "\\'",
    "*",
    "orca*",
    '"orca"*',
    "NEAR(orca chat)",
    "NEAR(orca chat, 2)",
    "orca NEAR/3 chat",
    "-orca",
    "^orca",
    "name:orca",
    "{name tags}:orca",
    "orca AND chat OR NOT x",
    "orca:*",
    "orca:AB*",
    "orca & chat | !x",
    "orca <-> chat",
    "orca <2> chat",
    "(orca",
    "orca)",
    "((((((((((",
    "'; DROP TABLE listings; --",
    "1 OR 1=1",
    "' OR '1'='1",
    "x'); DELETE FROM listing_search; --",
    "%' UNION SELECT basic FROM listings --",
    "\x00",
    "orca\x00chat",
    "\x00' OR 1=1 --\x00",
    "\x1b[2J\x1b[H",
    "\x7f\x85\x9f",
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e",
    "\u202eacro\u202c",
    "\u200b\u200c\u200d\ufeff",
    "🤖",
    "🤖🧠👩‍👩‍👧‍👦 emoji 🇨🇳",
    "\u0301\u0301\u0301",
    "e\u0301",
    "Ⅻ ① ½ ²³",
    # fullwidth letters, quote, star and colon
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff02 \uff0a \uff1a",
    "深度求索",
    "qwen模型",
    "模" * 100,
    "ｱｲｳｴｵ",
    "한국어 모델",
    "ﷺ",
    "🄰🄱🄲",
    "a" * 10_240,
    "orca " * 2_048,
    "'" * 10_240,
    '"' * 10_240,
    "*" * 10_240,
    "\x00" * 10_240,
    "🤖" * 2_560,
    "\u202e" * 10_240,
    "word " * 40,
    " ".join(f"w{i}" for i in range(1_000)),
    "\ud800",  # a lone surrogate: not over gRPC, but must not crash the tokenizer
]

_TOKEN = r"[^\W_]+"
_FTS5_PART = re.compile(rf'"{_TOKEN}"\*?')
_PG_PART = re.compile(rf"'{_TOKEN}'(?::\*)?")
_FTS5_SYNTAX = set('"* ')
_PG_SYNTAX = set("'():*&<-> ")


def _random_text(rng: random.Random) -> str:
    pool = (
        [chr(c) for c in range(0x20, 0x7F)]
        + ["\x00", "\x1b", "\u200f", "\u202e", "\ufeff", "é", "ß", "İ", "ﬁ", "½"]
        + ["深", "度", "求", "索", "ア", "ｱ", "・", "ー", "한", "🤖", "\u0301"]
    )
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 80)))


def _hostile_and_random() -> list[str]:
    rng = random.Random(20261129)
    return HOSTILE + [_random_text(rng) for _ in range(500)]


# -- tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Orca Chat", ["orca", "chat"]),
        ("ORCA orca OrCa", ["orca", "orca", "orca"]),
        ("Café", ["cafe"]),
        ("CAFÉ au LAIT", ["cafe", "au", "lait"]),
        ("naïve résumé Ünïcödé", ["naive", "resume", "unicode"]),
        ("Straße", ["strasse"]),
        ("ﬁle", ["file"]),
        ("\uff57\uff49\uff44\uff45", ["wide"]),  # fullwidth
        ("x²", ["x2"]),
        ("DeepSeek-V3.1", ["deepseek", "v3", "1"]),
        ("snake_case", ["snake", "case"]),
        ("深度求索", ["深", "度", "求", "索", "深度", "度求", "求索"]),
        ("qwen模型", ["qwen", "模", "型", "模型"]),
        ("模型qwen2.5", ["模", "型", "模型", "qwen2", "5"]),
        (
            "日本語テキスト",
            [*"日本語テキスト", "日本", "本語", "語テ", "テキ", "キス", "スト"],
        ),
        ("emoji 🤖 bot", ["emoji", "bot"]),
        ("\u200forca\u200e", ["orca"]),
        ("orca\x00chat", ["orca", "chat"]),
        ("", []),
        ("!!! ??? --- ...", []),
    ],
)
def test_tokens_are_folded_letters_and_digits(text: str, expected: list[str]) -> None:
    assert st.tokens(text) == expected


def test_diacritics_and_case_fold_to_the_same_token() -> None:
    assert st.tokens("Café") == st.tokens("cafe") == st.tokens("CAFE") == st.tokens("cafe\u0301")


def test_long_words_are_cut_to_the_token_limit() -> None:
    assert st.tokens("a" * 10_000) == ["a" * st.MAX_TOKEN_CHARS]


def test_a_cjk_run_is_its_characters_and_their_pairs() -> None:
    assert st.tokens("模" * 100) == ["模"] * 100 + ["模模"] * 99


def test_tokens_hold_only_letters_and_digits() -> None:
    for text in _hostile_and_random():
        for token in st.tokens(text):
            assert token, text
            assert token.isalnum(), (text, token)
            assert len(token) <= st.MAX_TOKEN_CHARS
            assert token == token.casefold()


def test_fts5_text_is_the_tokens_space_separated() -> None:
    assert st.fts5_text("Orca, the CHAT model: 深度!") == "orca the chat model 深 度 深度"
    assert st.fts5_text("'; DROP TABLE x; --") == "drop table x"


# -- query terms ------------------------------------------------------------------


def test_query_words_are_prefix_terms_and_cjk_runs_need_all_their_pairs() -> None:
    assert st.query_terms("qwen模型") == [Term(("qwen",), True), Term(("模型",), False)]
    assert st.query_terms("深度求索") == [Term(("深度", "度求", "求索"), False)]
    # A single Han character is matched exactly.
    assert st.query_terms("模") == [Term(("模",), False)]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ('"orca*" -(^', ["orca"]),
        ("NEAR(orca chat, 2)", ["near", "orca", "chat", "2"]),
        ("name:orca", ["name", "orca"]),
        ("orca:* & chat | !x <-> y", ["orca", "chat", "x", "y"]),
        ("'; DROP TABLE listings; --", ["drop", "table", "listings"]),
        ("1 OR 1=1", ["1", "or"]),
        ("' OR '1'='1", ["or", "1"]),
    ],
)
def test_query_syntax_and_sql_are_reduced_to_words(query: str, words: list[str]) -> None:
    assert st.query_terms(query) == [Term((word,), True) for word in words]


@pytest.mark.parametrize("query", ["", "   ", "!!! ??? ...", '"" * () : & | <->', "🤖🧠", "\x00"])
def test_a_query_without_words_has_no_terms(query: str) -> None:
    assert st.query_terms(query) == []


def test_repeated_words_are_one_term() -> None:
    assert st.query_terms("orca ORCA Orca órca orca* 'orca'") == [Term(("orca",), True)]
    assert st.query_terms("深度 深度") == [Term(("深度",), False)]


def test_at_most_sixteen_terms_first_come_first_kept() -> None:
    terms = st.query_terms(" ".join(f"w{i}" for i in range(1_000)))
    assert len(terms) == st.MAX_QUERY_TERMS == 16
    assert terms == [Term((f"w{i}",), True) for i in range(16)]
    # Repeats do not use up the budget.
    terms = st.query_terms("a a a a a a a a a a a a a a a a a b c")
    assert terms == [Term(("a",), True), Term(("b",), True), Term(("c",), True)]


def test_long_words_and_phrases_are_cut() -> None:
    assert st.query_terms("a" * 10_000) == [Term(("a" * st.MAX_TOKEN_CHARS,), True)]
    assert st.query_terms("模" * 100) == [Term(("模模",) * (st.MAX_PHRASE_CHARS - 1), False)]


# -- engine queries -----------------------------------------------------------------


def test_fts5_match_quotes_each_term() -> None:
    terms = st.query_terms("Orca 深度 chat")
    assert st.fts5_match(terms) == '"orca"* "深度" "chat"*'
    assert st.fts5_match([]) == ""


def test_pg_query_ands_the_terms() -> None:
    terms = st.query_terms("Orca 深度 chat")
    assert st.pg_query(terms) == "'orca':* & '深度' & 'chat':*"
    assert st.pg_query([]) == ""


def test_fts5_match_holds_no_syntax_but_its_own() -> None:
    for query in _hostile_and_random():
        terms = st.query_terms(query)
        match = st.fts5_match(terms)
        assert len(terms) <= st.MAX_QUERY_TERMS
        # Each token is quoted, a word's as a prefix.
        parts = re.findall(r'"[^"]*"\*?', match)
        assert len(parts) == sum(len(term.tokens) for term in terms), (query, match)
        assert " ".join(parts) == match, (query, match)
        for part in parts:
            assert _FTS5_PART.fullmatch(part), (query, part)
        leftover = {c for c in match if not c.isalnum()} - _FTS5_SYNTAX
        assert not leftover, (query, match)


def test_pg_query_holds_no_syntax_but_its_own() -> None:
    for query in _hostile_and_random():
        terms = st.query_terms(query)
        tsquery = st.pg_query(terms)
        parts = tsquery.split(" & ") if tsquery else []
        assert len(parts) == sum(len(term.tokens) for term in terms), (query, tsquery)
        for part in parts:
            assert _PG_PART.fullmatch(part), (query, part)
        leftover = {c for c in tsquery if not c.isalnum()} - _PG_SYNTAX
        assert not leftover, (query, tsquery)
        # A quote only ever opens or closes a token: none is escaped or doubled.
        assert "''" not in tsquery
        assert "\\" not in tsquery


# -- the PostgreSQL document ----------------------------------------------------------


def test_pg_document_weights_and_positions_leave_a_gap_between_fields() -> None:
    document = st.pg_document([("Orca Chat", "A"), ("chat", "B"), ("", "B"), ("Café", "D")])
    assert document == "'orca':1A 'chat':2A,4B 'cafe':7D"


def test_pg_document_keeps_at_most_256_positions_per_word() -> None:
    document = st.pg_document([("orca " * 1_000, "D")])
    lexeme, positions = document.split(":", 1)
    assert lexeme == "'orca'"
    assert len(positions.split(",")) == 256


def test_pg_document_positions_stop_at_16383() -> None:
    words = " ".join(f"w{i}" for i in range(20_000))
    document = st.pg_document([(words, "D")])
    positions = [int(entry.rsplit(":", 1)[1][:-1]) for entry in document.split(" ")]
    assert max(positions) == 16_383
    assert positions[:3] == [1, 2, 3]


def test_pg_document_holds_only_quoted_tokens() -> None:
    entry = re.compile(rf"'{_TOKEN}':\d+[A-D](?:,\d+[A-D])*")
    for text in _hostile_and_random():
        document = st.pg_document([(text, "A"), (text, "D")])
        for part in document.split(" ") if document else []:
            assert entry.fullmatch(part), (text, part)
