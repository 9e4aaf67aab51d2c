"""HuJSON parser: comments, trailing commas, positions, and "a value or PolicyError, nothing else"."""

from __future__ import annotations

import json
import random

import pytest

from pyscale.policy import PolicyError, load_policy
from pyscale.policy.hujson import MAX_DEPTH, parse

SAMPLE = """// leading comment
{
  /* block
     comment */
  "groups": {"group:admins": ["alice@",],},  // trailing commas
  "acls": [
    {"action": "accept", "src": ["group:admins"], "dst": ["*:22"]},
  ],
}
"""


def test_comments_and_trailing_commas() -> None:
    value, _ = parse(SAMPLE, "p.hujson")
    assert value == {"groups": {"group:admins": ["alice@"]},
                     "acls": [{"action": "accept", "src": ["group:admins"], "dst": ["*:22"]}]}


def test_positions_of_values_and_keys() -> None:
    _, pos = parse(SAMPLE, "p.hujson")
    assert pos.values[("groups",)] == (5, 13)
    assert pos.keys[("groups",)] == (5, 3)
    assert pos.values[("acls", 0, "dst", 0)] == (7, 59)
    assert pos.at(("acls", 0, "dst", 0, "nonexistent")) == (7, 59)


def test_plain_json_roundtrip() -> None:
    doc = {"a": [1, 2.5, -3e2, True, False, None, "x\n\"y\" \u00e9 \U0001f680"], "b": {}}
    value, _ = parse(json.dumps(doc))
    assert value == doc
    value, _ = parse(json.dumps(doc, ensure_ascii=False))
    assert value == doc


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    ('{"a": 1,\n "a": 2}', 2, 2, "duplicate key"),
    ('{"a": [1, 2}', 1, 12, "expected ',' or ']'"),
    ("{\n  /* never closed", 2, 3, "unterminated /* comment"),
    ('{"a": "x', 1, 7, "unterminated string"),
    ('{"a": tru}', 1, 7, "unexpected character"),
    ('{"a": 1} x', 1, 10, "unexpected text"),
    ('{"a": 01.2.3}', 1, 7, "bad number"),
    ('{"a": "\\q"}', 1, 8, "bad escape"),
    ("", 1, 1, "unexpected end"),
])
def test_errors_name_file_line_column(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse(text, "bad.hujson")
    err = info.value
    assert (err.filename, err.line, err.column) == ("bad.hujson", line, col)
    assert fragment in err.message
    assert str(err).startswith(f"bad.hujson:{line}:{col}: ")


def test_nesting_limit() -> None:
    with pytest.raises(PolicyError, match="nesting deeper"):
        parse("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2))
    parse("[" * MAX_DEPTH + "]" * MAX_DEPTH)


def test_random_mutations_give_a_value_or_policy_error() -> None:
    """Invariant: the parser and the loader return a value or raise PolicyError, for any input."""
    rnd = random.Random(5)
    base = SAMPLE + '\n// {"tagOwners": {"tag:x": ["alice@"]}}'
    alphabet = '{}[]",:/*\n \\u0aZ@#-12'
    for _ in range(3000):
        chars = list(base)
        for _ in range(rnd.randrange(1, 6)):
            op = rnd.randrange(3)
            i = rnd.randrange(len(chars) + 1)
            if op == 0 and chars:
                del chars[min(i, len(chars) - 1)]
            elif op == 1:
                chars.insert(i, rnd.choice(alphabet))
            elif chars:
                chars[min(i, len(chars) - 1)] = rnd.choice(alphabet)
        text = "".join(chars)
        try:
            load_policy(text, "fuzz.hujson")
        except PolicyError as exc:
            assert exc.filename == "fuzz.hujson"
            assert exc.line >= 0 and exc.column >= 0
