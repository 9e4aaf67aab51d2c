"""HuJSON ("human JSON"): JSON plus `//` and `/* */` comments and trailing commas, with source positions.

A small recursive-descent parser. Besides the plain Python value it returns a `Positions` table mapping the
path of every value (a tuple of object keys and list indexes) to its 1-based line and column, and the path of
every object member to the position of its key, so later validation can name the exact spot of a mistake.
Duplicate object keys are refused (as Go's JSON v2 decoder does). Input that is not valid HuJSON raises
`PolicyError`; nothing else escapes.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import PolicyError

Path = tuple[str | int, ...]

MAX_DEPTH = 64  # nesting limit: a policy is at most ~5 deep; this only stops runaway recursion
_WS = " \t\r\n"
_NUMBER_CHARS = set("+-0123456789.eE")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class Positions:
    """Where each value and each object key starts; `at()` falls back to the nearest known parent."""

    filename: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path, key: bool = False) -> tuple[int, int]:
        table = self.keys if key else self.values
        p = path
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def error(self, message: str, path: Path, key: bool = False) -> PolicyError:
        line, col = self.at(path, key)
        return PolicyError(message, self.filename, line, col)


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.s = text
        self.i = 0
        self.filename = filename
        self.newlines = [k for k, ch in enumerate(text) if ch == "\n"]
        self.pos = Positions(filename)

    def linecol(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_left(self.newlines, offset)
        start = self.newlines[line - 1] + 1 if line else 0
        return line + 1, offset - start + 1

    def fail(self, message: str, offset: int | None = None) -> PolicyError:
        line, col = self.linecol(self.i if offset is None else offset)
        return PolicyError(message, self.filename, line, col)

    def skip(self) -> None:
        """Skip whitespace and comments."""
        s, n = self.s, len(self.s)
        while self.i < n:
            ch = s[self.i]
            if ch in _WS:
                self.i += 1
            elif s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.i = end + 2
            else:
                return

    def value(self, path: Path, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        self.skip()
        if self.i >= len(self.s):
            raise self.fail("unexpected end of input")
        self.pos.values[path] = self.linecol(self.i)
        ch = self.s[self.i]
        if ch == "{":
            return self.obj(path, depth)
        if ch == "[":
            return self.arr(path, depth)
        if ch == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        if ch in _NUMBER_CHARS:
            return self.number()
        raise self.fail(f"unexpected character {ch!r}")

    def obj(self, path: Path, depth: int) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        while True:
            self.skip()
            if self.s.startswith("}", self.i):
                self.i += 1
                return out
            if not self.s.startswith('"', self.i):
                raise self.fail("expected a quoted object key or '}'")
            key_at = self.i
            key = self.string()
            if key in out:
                raise self.fail(f"duplicate key {key!r}", key_at)
            self.pos.keys[path + (key,)] = self.linecol(key_at)
            self.skip()
            if not self.s.startswith(":", self.i):
                raise self.fail("expected ':' after object key")
            self.i += 1
            out[key] = self.value(path + (key,), depth + 1)
            if not self.separator("}"):
                raise self.fail("expected ',' or '}' in object")

    def arr(self, path: Path, depth: int) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        while True:
            self.skip()
            if self.s.startswith("]", self.i):
                self.i += 1
                return out
            out.append(self.value(path + (len(out),), depth + 1))
            if not self.separator("]"):
                raise self.fail("expected ',' or ']' in array")

    def separator(self, close: str) -> bool:
        """After a member: accept ',' (a trailing one too) or peek the closing bracket."""
        self.skip()
        if self.s.startswith(",", self.i):
            self.i += 1
            return True
        return self.s.startswith(close, self.i)

    def string(self) -> str:
        start = self.i
        self.i += 1
        parts: list[str] = []
        s, n = self.s, len(self.s)
        while True:
            j = self.i
            while j < n and s[j] not in '"\\' and s[j] >= " ":
                j += 1
            parts.append(s[self.i : j])
            self.i = j
            if j >= n:
                raise self.fail("unterminated string", start)
            ch = s[j]
            if ch == '"':
                self.i += 1
                return "".join(parts)
            if ch != "\\":
                raise self.fail("control character in string")
            parts.append(self.escape())

    def escape(self) -> str:
        esc = self.s[self.i + 1 : self.i + 2]
        if esc in _ESCAPES:
            self.i += 2
            return _ESCAPES[esc]
        if esc == "u":
            digits = self.s[self.i + 2 : self.i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise self.fail("bad \\u escape")
            self.i += 6
            code = int(digits, 16)
            low = self.s[self.i : self.i + 6]
            if 0xD800 <= code < 0xDC00 and low.startswith("\\u") and _is_low_surrogate(low[2:]):
                self.i += 6  # a UTF-16 surrogate pair spelled as two escapes
                return chr(0x10000 + ((code - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00))
            return chr(code)
        raise self.fail("bad escape in string")

    def number(self) -> int | float:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in _NUMBER_CHARS:
            self.i += 1
        token = self.s[start : self.i]
        try:
            val = json.loads(token)
        except ValueError:
            raise self.fail(f"bad number {token!r}", start) from None
        if not isinstance(val, int | float) or isinstance(val, bool):
            raise self.fail(f"bad number {token!r}", start)
        return val


def _is_low_surrogate(hex4: str) -> bool:
    try:
        return len(hex4) == 4 and 0xDC00 <= int(hex4, 16) < 0xE000
    except ValueError:
        return False


def is_blank(text: str) -> bool:
    """Only whitespace and comments (an empty policy file)."""
    p = _Parser(text, "")
    try:
        p.skip()
    except PolicyError:
        return False
    return p.i == len(text)


def parse(text: str, filename: str = "<policy>") -> tuple[Any, Positions]:
    """Parse HuJSON text into (value, positions). Raises PolicyError naming file, line and column."""
    p = _Parser(text, filename)
    val = p.value((), 0)
    p.skip()
    if p.i != len(p.s):
        raise p.fail("unexpected text after the top-level value")
    return val, p.pos
