"""The contract validator itself must reject what grpc-gateway would never send."""

from __future__ import annotations

from tests.api.specschema import SpecValidator

USER = {"id": "1", "name": "a", "createdAt": "2025-01-02T03:04:05.123Z", "displayName": "", "email": "",
        "providerId": "", "provider": "", "profilePicUrl": ""}


def test_accepts_a_protojson_user() -> None:
    assert SpecValidator().validate_response("HeadscaleService_ListUsers", 200, {"users": [USER]}) == []


def test_rejects_what_protojson_never_emits() -> None:
    v = SpecValidator()
    cases = [
        {"users": [{**USER, "id": 1}]},  # uint64 as a number
        {"users": [{k: x for k, x in USER.items() if k != "email"}]},  # field omitted
        {"users": [{**USER, "extra": 1}]},  # undeclared field
        {"users": None},  # list as null
        {"users": [{**USER, "createdAt": "2025-01-02 03:04:05"}]},  # not RFC 3339
        {"users": [{**USER, "createdAt": "2025-01-02T03:04:05.12Z"}]},  # 2 fraction digits
        {"users": [{**USER, "createdAt": "2025-01-02T03:04:05+01:00"}]},  # not UTC
    ]
    for body in cases:
        assert v.validate_response("HeadscaleService_ListUsers", 200, body), body
    node_problems = v.validate_response("HeadscaleService_GetNode", 200, {"node": {"registerMethod": "CLI"}})
    assert any("registerMethod" in p for p in node_problems)
    assert v.validate_response("HeadscaleService_GetNode", 404, {"code": "5", "message": "x", "details": []})
