"""Request decoding as grpc-gateway does it for Headscale v0.27.1, and its error body.

grpc-gateway decodes bodies with protojson (``DiscardUnknown``): a field may be spelled in
lowerCamelCase or in the proto's snake_case, unknown fields are ignored, uint64 accepts a JSON
number or a decimal string, Timestamps are RFC 3339 strings, and a JSON ``null`` means unset.
A wrongly typed value is an InvalidArgument (HTTP 400). Path and query parameters are strings
converted to the field's type the same way. Every failure is ``{"code", "message", "details"}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pyscale.errors import Invalid
from pyscale.tailcfg.timefmt import TimeFormatError, parse_time

UINT64_MAX = 2**64 - 1

# gRPC status codes and the HTTP status grpc-gateway maps each to (runtime.HTTPStatusFromCode).
GRPC_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409,
             11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}


def status_body(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": []}


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


class Body:
    """A decoded request message: fields by their JSON (camelCase) name, snake_case also accepted."""

    def __init__(self, raw: bytes) -> None:
        if not raw.strip():
            self.fields: dict[str, Any] = {}
            return
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise Invalid(f"proto: syntax error: {exc}") from None
        if not isinstance(value, dict):
            raise Invalid(f"proto: syntax error: unexpected token {json.dumps(value)[:40]}")
        self.fields = value

    def _get(self, name: str) -> Any:
        if name in self.fields:
            return self.fields[name]
        return self.fields.get(_snake(name))

    def string(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise Invalid(f"proto: invalid value for string field {name}: {json.dumps(value)}")
        return value

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise Invalid(f"proto: invalid value for bool field {name}: {json.dumps(value)}")
        return value

    def uint64(self, name: str) -> int:
        value = self._get(name)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise Invalid(f"proto: invalid value for uint64 field {name}: {json.dumps(value)}")
        return uint64_text(str(value) if not isinstance(value, float) or not value.is_integer()
                           else str(int(value)), name)

    def strings(self, name: str) -> list[str]:
        value = self._get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"proto: invalid value for repeated string field {name}: {json.dumps(value)[:80]}")
        return list(value)

    def timestamp(self, name: str) -> datetime | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise Invalid(f"proto: invalid value for Timestamp field {name}: {json.dumps(value)}")
        return timestamp_text(value, name)


def uint64_text(text: str, name: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > UINT64_MAX:
        raise Invalid(f"type mismatch, parameter: {name}, error: strconv.ParseUint: parsing {json.dumps(text)}: "
                      "invalid syntax")
    return int(text)


def timestamp_text(text: str, name: str) -> datetime:
    try:
        return parse_time(text)
    except TimeFormatError:
        raise Invalid(f"proto: invalid value for Timestamp field {name}: {json.dumps(text)}") from None


def query_bool(text: str, name: str) -> bool:
    if text in ("true", "True", "TRUE", "t", "T", "1"):
        return True
    if text in ("", "false", "False", "FALSE", "f", "F", "0"):
        return False
    raise Invalid(f"type mismatch, parameter: {name}, error: strconv.ParseBool: parsing {json.dumps(text)}: "
                  "invalid syntax")
