"""A validator for REST responses against Headscale v0.27.1's OpenAPI (swagger 2.0) document.

Stricter than plain JSON Schema where grpc-gateway's protojson output is stricter: every declared
property must be present (EmitUnpopulated), no undeclared property may appear (except the listed
extensions), ``format: uint64`` is a decimal string, ``format: int32`` an integer, ``date-time``
an RFC 3339 UTC time with 0/3/6/9 fraction digits, enums by name, arrays are arrays (never null).
Only message-typed fields ($ref to an object, and Timestamps) may be null, as protojson writes
an unset message. Returns a list of problems (empty = valid), each with its JSON path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().parent.parent / "data" / "headscale" / "openapi-v0.27.1.json"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")
# pyscale adds Node.tags (0.28's name for the effective tags) so headscale-ui :latest works too.
EXTENSIONS = {"v1Node": {"tags": {"type": "array", "items": {"type": "string"}}}}


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return spec


class SpecValidator:
    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec or load_spec()
        self.defs: dict[str, Any] = self.spec["definitions"]

    def operations(self) -> dict[str, tuple[str, str]]:
        """operationId -> (METHOD, path template)."""
        out = {}
        for path, ops in self.spec["paths"].items():
            for method, op in ops.items():
                out[op["operationId"]] = (method.upper(), path)
        return out

    def response_schema(self, operation_id: str, status: int) -> dict[str, Any]:
        for ops in self.spec["paths"].values():
            for op in ops.values():
                if op["operationId"] == operation_id:
                    responses = op["responses"]
                    chosen = responses.get(str(status)) or responses["default"]
                    schema: dict[str, Any] = chosen["schema"]
                    return schema
        raise KeyError(operation_id)

    def validate_response(self, operation_id: str, status: int, body: Any) -> list[str]:
        return self.validate(body, self.response_schema(operation_id, status), "$")

    def _resolve(self, schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        ref = schema.get("$ref")
        if ref is None:
            return None, schema
        name = ref.rsplit("/", 1)[-1]
        return name, self.defs[name]

    def validate(self, value: Any, schema: dict[str, Any], where: str) -> list[str]:
        name, schema = self._resolve(schema)
        if "enum" in schema:
            ok = isinstance(value, str) and value in schema["enum"]
            return [] if ok else [f"{where}: {value!r} not one of {schema['enum']}"]
        kind = schema.get("type", "object")
        if kind == "object":
            return self._object(value, schema, name, where)
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where}: expected array, got {type(value).__name__}"]
            problems: list[str] = []
            for i, item in enumerate(value):
                problems += self.validate(item, schema.get("items", {}), f"{where}[{i}]")
            return problems
        return self._scalar(value, kind, schema.get("format"), where)

    def _object(self, value: Any, schema: dict[str, Any], name: str | None, where: str) -> list[str]:
        if value is None and name is not None:
            return []  # an unset sub-message
        if not isinstance(value, dict):
            return [f"{where}: expected object, got {type(value).__name__}"]
        props = dict(schema.get("properties", {}))
        props.update(EXTENSIONS.get(name or "", {}))
        problems: list[str] = []
        if "additionalProperties" not in schema:
            problems += [f"{where}: unexpected key {k!r}" for k in value if k not in props]
            problems += [f"{where}: missing key {k!r}" for k in props if k not in value]
        for key, sub in props.items():
            if key in value:
                problems += self.validate(value[key], sub, f"{where}.{key}")
        return problems

    def _scalar(self, value: Any, kind: str, fmt: str | None, where: str) -> list[str]:
        if kind == "string":
            if fmt == "date-time":
                if value is None:
                    return []  # google.protobuf.Timestamp is a message: unset = null
                if not isinstance(value, str) or not RFC3339_UTC.match(value):
                    return [f"{where}: not an RFC 3339 UTC timestamp: {value!r}"]
                return []
            if not isinstance(value, str):
                return [f"{where}: expected string, got {value!r}"]
            if fmt in ("uint64", "int64") and not re.fullmatch(r"-?\d+", value):
                return [f"{where}: {fmt} must be a decimal string, got {value!r}"]
            return []
        if kind == "boolean":
            return [] if isinstance(value, bool) else [f"{where}: expected boolean, got {value!r}"]
        if kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else [f"{where}: expected integer, got {value!r}"]
        return [f"{where}: unsupported schema type {kind!r}"]
