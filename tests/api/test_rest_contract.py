"""Contract test: every operation of Headscale v0.27.1's OpenAPI document, success and error, each
response checked against the spec (tests/api/specschema.py) plus the values Headscale returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import ApiEnv, make_env
from tests.api.specschema import SpecValidator

pytestmark = pytest.mark.asyncio


async def test_users(env: ApiEnv) -> None:
    r = await env.call("POST", "/api/v1/user", {"name": "alice", "displayName": "Alice", "email": "a@x.test",
                                                "pictureUrl": "http://p/a.png"})
    assert r.status == 200 and r.content_type == "application/json"
    alice = r.body["user"]
    assert alice["name"] == "alice" and alice["displayName"] == "Alice" and alice["profilePicUrl"] == "http://p/a.png"
    assert alice["id"] == "1" and alice["provider"] == "" and alice["providerId"] == ""
    assert (await env.call("POST", "/api/v1/user", {"name": "bob", "unknown_field": 1})).status == 200
    assert (await env.call("POST", "/api/v1/user", {"name": "alice"})).status == 409
    assert (await env.call("POST", "/api/v1/user", {"name": ""})).status == 400
    assert (await env.call("POST", "/api/v1/user", b"{not json")).status == 400
    assert (await env.call("POST", "/api/v1/user", {"name": 5})).status == 400

    listed = (await env.call("GET", "/api/v1/user")).body["users"]
    assert [u["name"] for u in listed] == ["alice", "bob"]
    assert [u["name"] for u in (await env.call("GET", "/api/v1/user", query={"name": "bob"})).body["users"]] == ["bob"]
    assert [u["id"] for u in (await env.call("GET", "/api/v1/user", query={"id": "1"})).body["users"]] == ["1"]
    by_mail = (await env.call("GET", "/api/v1/user", query={"email": "a@x.test"})).body["users"]
    assert [u["name"] for u in by_mail] == ["alice"]
    assert (await env.call("GET", "/api/v1/user", query={"name": "nobody"})).body == {"users": []}
    assert (await env.call("GET", "/api/v1/user", query={"id": "x"})).status == 400

    renamed = await env.call("POST", "/api/v1/user/2/rename/robert")
    assert renamed.status == 200 and renamed.body["user"]["name"] == "robert"
    assert (await env.call("POST", "/api/v1/user/99/rename/x")).status == 404
    assert (await env.call("POST", "/api/v1/user/2/rename/alice")).status == 409

    assert (await env.call("DELETE", "/api/v1/user/99")).status == 404
    deleted = await env.call("DELETE", "/api/v1/user/2")
    assert deleted.status == 200 and deleted.body == {}
    assert env.problems == []


async def test_preauthkeys(env: ApiEnv) -> None:
    a = (await env.call("POST", "/api/v1/user", {"name": "ann"})).body["user"]["id"]
    b = (await env.call("POST", "/api/v1/user", {"name": "ben"})).body["user"]["id"]
    r = await env.call("POST", "/api/v1/preauthkey", {"user": a, "reusable": True, "ephemeral": False,
                                                      "expiration": "2099-01-01T00:00:00Z", "aclTags": ["tag:web"]})
    assert r.status == 200
    key = r.body["preAuthKey"]
    assert len(key["key"]) == 48 and key["reusable"] and key["aclTags"] == ["tag:web"]
    assert key["expiration"] == "2099-01-01T00:00:00Z" and key["user"]["name"] == "ann"
    no_exp = (await env.call("POST", "/api/v1/preauthkey", {"user": int(a)})).body["preAuthKey"]
    assert no_exp["expiration"] == "0001-01-01T00:00:00Z"  # Headscale's zero time: already expired
    assert (await env.call("POST", "/api/v1/preauthkey", {"user": a, "aclTags": ["web"]})).status == 400
    assert (await env.call("POST", "/api/v1/preauthkey", {"user": a, "aclTags": ["tag:Web"]})).status == 400
    assert (await env.call("POST", "/api/v1/preauthkey", {"user": "42"})).status == 404
    assert (await env.call("POST", "/api/v1/preauthkey", {"user": a, "reusable": "yes"})).status == 400

    listed = await env.call("GET", "/api/v1/preauthkey", query={"user": a})
    assert len(listed.body["preAuthKeys"]) == 2 and listed.body["preAuthKeys"][0]["id"] == key["id"]
    assert (await env.call("GET", "/api/v1/preauthkey", query={"user": b})).body == {"preAuthKeys": []}
    assert (await env.call("GET", "/api/v1/preauthkey", query={"user": "42"})).status == 404

    wrong_user = await env.call("POST", "/api/v1/preauthkey/expire", {"user": b, "key": key["key"]})
    assert wrong_user.status == 500 and wrong_user.body["message"] == "preauth key does not belong to user"
    assert (await env.call("POST", "/api/v1/preauthkey/expire", {"user": a, "key": "f" * 48})).status == 404
    ok = await env.call("POST", "/api/v1/preauthkey/expire", {"user": a, "key": key["key"]})
    assert ok.status == 200 and ok.body == {}
    after = (await env.call("GET", "/api/v1/preauthkey", query={"user": a})).body["preAuthKeys"][0]
    assert after["expiration"] < "2099"
    assert env.problems == []


async def test_nodes(env: ApiEnv) -> None:
    await env.call("POST", "/api/v1/user", {"name": "alice"})
    await env.call("POST", "/api/v1/user", {"name": "bob"})
    await env.add_node("router", 1, routes=["10.0.0.0/24", "0.0.0.0/0", "::/0"], request_tags=["tag:r"], n=1)
    await env.add_node("laptop", 2, n=2)

    nodes = (await env.call("GET", "/api/v1/node")).body["nodes"]
    assert [n["givenName"] for n in nodes] == ["router", "laptop"]
    router = nodes[0]
    assert router["availableRoutes"] == ["10.0.0.0/24", "0.0.0.0/0", "::/0"]
    assert router["machineKey"].startswith("mkey:") and router["nodeKey"].startswith("nodekey:")
    assert router["discoKey"] == "discokey:" + "0" * 64
    assert router["ipAddresses"] == ["100.64.0.1", "fd7a:115c:a1e0::1"]
    assert router["registerMethod"] == "REGISTER_METHOD_AUTH_KEY" and router["preAuthKey"] is None
    assert router["validTags"] == [] and router["invalidTags"] == [] and router["tags"] == []
    assert [n["name"] for n in (await env.call("GET", "/api/v1/node", query={"user": "bob"})).body["nodes"]] == [
        "laptop"]
    assert (await env.call("GET", "/api/v1/node", query={"user": "nobody"})).status == 404

    got = await env.call("GET", "/api/v1/node/1")
    assert got.status == 200 and got.body["node"]["id"] == "1"
    missing = await env.call("GET", "/api/v1/node/99")
    assert missing.status == 404 and missing.body == {"code": 5, "message": "node not found", "details": []}
    assert (await env.call("GET", "/api/v1/node/abc")).status == 400

    tagged = await env.call("POST", "/api/v1/node/1/tags", {"tags": ["tag:web", "tag:db"]})
    assert tagged.status == 200 and tagged.body["node"]["forcedTags"] == ["tag:web", "tag:db"]
    assert tagged.body["node"]["tags"] == ["tag:db", "tag:web"]
    bad_tag = await env.call("POST", "/api/v1/node/1/tags", {"tags": ["web"]})
    assert bad_tag.status == 400 and bad_tag.body["message"] == "tag must start with the string 'tag:'"
    assert (await env.call("POST", "/api/v1/node/99/tags", {"tags": ["tag:a"]})).status == 400
    listed = (await env.call("GET", "/api/v1/node")).body["nodes"][0]
    assert listed["validTags"] == ["tag:web", "tag:db"]

    approved = await env.call("POST", "/api/v1/node/1/approve_routes", {"routes": ["0.0.0.0/0", "10.0.0.0/24"]})
    assert approved.status == 200
    assert approved.body["node"]["approvedRoutes"] == ["0.0.0.0/0", "10.0.0.0/24", "::/0"]
    assert approved.body["node"]["subnetRoutes"] == ["10.0.0.0/24"]  # primaries only: no exit routes
    listed = (await env.call("GET", "/api/v1/node")).body["nodes"][0]
    assert listed["subnetRoutes"] == ["10.0.0.0/24", "0.0.0.0/0", "::/0"]  # ListNodes adds approved exit routes
    assert (await env.call("POST", "/api/v1/node/1/approve_routes", {"routes": ["10.0.0.0/33"]})).status == 500
    cleared = await env.call("POST", "/api/v1/node/1/approve_routes", {"routes": []})
    assert cleared.body["node"]["approvedRoutes"] == []

    expired = await env.call("POST", "/api/v1/node/2/expire", query={"expiry": "2030-05-06T07:08:09Z"})
    assert expired.status == 200 and expired.body["node"]["expiry"] == "2030-05-06T07:08:09Z"
    now_expired = await env.call("POST", "/api/v1/node/2/expire")
    assert now_expired.body["node"]["expiry"] < "2030"
    assert (await env.call("POST", "/api/v1/node/99/expire")).status == 404
    assert (await env.call("POST", "/api/v1/node/2/expire", query={"expiry": "tomorrow"})).status == 400

    renamed = await env.call("POST", "/api/v1/node/2/rename/work-laptop")
    assert renamed.status == 200 and renamed.body["node"]["givenName"] == "work-laptop"
    assert (await env.call("POST", "/api/v1/node/2/rename/Bad_Name")).status == 400
    assert (await env.call("POST", "/api/v1/node/2/rename/router")).status == 409
    assert (await env.call("POST", "/api/v1/node/99/rename/x")).status == 404

    moved = await env.call("POST", "/api/v1/node/2/user", {"user": 1})  # headscale-ui sends a JSON number
    assert moved.status == 200 and moved.body["node"]["user"]["name"] == "alice"
    assert (await env.call("POST", "/api/v1/node/2/user", {"user": "2"})).body["node"]["user"]["name"] == "bob"
    assert (await env.call("POST", "/api/v1/node/2/user", {"user": "77"})).status == 404
    assert (await env.call("POST", "/api/v1/node/99/user", {"user": "1"})).status == 404

    refused = await env.call("POST", "/api/v1/node/backfillips")
    assert refused.status == 500 and refused.body["message"] == "not confirmed, aborting"
    backfilled = await env.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"})
    assert backfilled.status == 200 and backfilled.body == {"changes": []}

    assert (await env.call("DELETE", "/api/v1/node/99")).status == 404
    assert (await env.call("DELETE", "/api/v1/user/2")).status == 409  # still owns a node
    deleted = await env.call("DELETE", "/api/v1/node/2")
    assert deleted.status == 200 and deleted.body == {}
    assert [n["id"] for n in (await env.call("GET", "/api/v1/node")).body["nodes"]] == ["1"]
    assert env.problems == []


async def test_debug_node_then_register(env: ApiEnv) -> None:
    await env.call("POST", "/api/v1/user", {"name": "alice"})
    reg_id = "a" * 24
    created = await env.call("POST", "/api/v1/debug/node", {"user": "alice", "key": reg_id, "name": "debugnode",
                                                            "routes": ["10.1.0.0/16"]})
    assert created.status == 200
    shown = created.body["node"]
    assert shown["id"] == "0" and shown["name"] == "debugnode" and shown["availableRoutes"] == ["10.1.0.0/16"]
    assert shown["expiry"] == "0001-01-01T00:00:00Z" and shown["user"]["name"] == "alice"
    assert (await env.call("POST", "/api/v1/debug/node", {"user": "alice", "key": "short", "name": "x"})).status == 400
    assert (await env.call("POST", "/api/v1/debug/node", {"user": "nobody", "key": reg_id, "name": "x"})).status == 404

    assert (await env.call("POST", "/api/v1/node/register", query={"user": "alice", "key": "x"})).status == 400
    unknown = await env.call("POST", "/api/v1/node/register", query={"user": "alice", "key": "b" * 24})
    assert unknown.status == 404 and unknown.body["message"] == "node not found in registration cache"
    assert (await env.call("POST", "/api/v1/node/register", query={"user": "nobody", "key": reg_id})).status == 404
    registered = await env.call("POST", "/api/v1/node/register", query={"user": "alice", "key": reg_id})
    assert registered.status == 200
    node = registered.body["node"]
    assert node["givenName"] == "debugnode" and node["registerMethod"] == "REGISTER_METHOD_CLI"
    assert node["ipAddresses"][0].startswith("100.64.")
    assert env.problems == []


async def test_api_keys(env: ApiEnv) -> None:
    created = await env.call("POST", "/api/v1/apikey", {"expiration": "2099-01-01T00:00:00Z"})
    assert created.status == 200
    full = created.body["apiKey"]
    prefix, _, secret = full.partition(".")
    assert len(prefix) == 7 and len(secret) == 32
    listed = (await env.call("GET", "/api/v1/apikey")).body["apiKeys"]
    assert [k["prefix"] for k in listed] == [env.key.partition(".")[0], prefix]
    assert listed[1]["expiration"] == "2099-01-01T00:00:00Z" and listed[1]["lastSeen"] is None
    assert (await env.call("POST", "/api/v1/apikey", {"expiration": 5})).status == 400
    assert (await env.call("POST", "/api/v1/apikey/expire", {"prefix": "nope123"})).status == 404
    assert (await env.call("POST", "/api/v1/apikey/expire", {"prefix": prefix})).body == {}
    assert (await env.call("GET", "/api/v1/apikey", auth=f"Bearer {full}")).status == 401
    assert (await env.call("DELETE", "/api/v1/apikey/nope123")).status == 404
    assert (await env.call("DELETE", f"/api/v1/apikey/{prefix}")).body == {}
    assert len((await env.call("GET", "/api/v1/apikey")).body["apiKeys"]) == 1
    assert env.problems == []


async def test_policy_database_mode(env: ApiEnv) -> None:
    missing = await env.call("GET", "/api/v1/policy")
    assert missing.status == 500 and "record not found" in missing.body["message"]
    text = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'
    stored = await env.call("PUT", "/api/v1/policy", {"policy": text})
    assert stored.status == 200 and stored.body["policy"] == text and stored.body["updatedAt"]
    got = await env.call("GET", "/api/v1/policy")
    assert got.status == 200 and got.body["policy"] == text
    assert (await env.call("PUT", "/api/v1/policy", {"policy": 1})).status == 400
    assert env.problems == []


async def test_policy_file_mode(tmp_path: Path) -> None:
    policy = tmp_path / "acl.hujson"
    policy.write_text("// comment\n{}\n")
    env = await make_env(tmp_path, policy_mode="file", policy_path=str(policy))
    try:
        got = await env.call("GET", "/api/v1/policy")
        assert got.status == 200 and got.body == {"policy": "// comment\n{}\n", "updatedAt": None}
        refused = await env.call("PUT", "/api/v1/policy", {"policy": "{}"})
        assert refused.status == 500 and refused.body["message"] == "update is disabled for modes other than 'database'"
        policy.unlink()
        assert (await env.call("GET", "/api/v1/policy")).status == 500
        assert env.problems == []
    finally:
        env.registrar.close()
        env.state.close()
        await env.db.close()


async def test_health_and_routing_errors(env: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = await env.call("GET", "/api/v1/health")
    assert ok.status == 200 and ok.body == {"databaseConnectivity": True}

    async def down() -> bool:
        return False

    monkeypatch.setattr(env.state, "ping_database", down)
    failed = await env.call("GET", "/api/v1/health")
    assert failed.status == 500 and failed.body["message"] == "database ping failed"
    not_found = await env.call("GET", "/api/v1/nothing")
    assert not_found.status == 404 and not_found.body == {"code": 5, "message": "Not Found", "details": []}
    wrong_method = await env.call("PATCH", "/api/v1/user")
    assert wrong_method.status == 501 and wrong_method.body == {"code": 12, "message": "Method Not Allowed",
                                                                "details": []}
    validator = SpecValidator()
    assert validator.validate_response("HeadscaleService_ListUsers", 404, not_found.body) == []
    assert env.problems == []


async def test_every_operation_success_and_error_covered(tmp_path: Path) -> None:
    """Run the scenarios above on one server and require all 25 operations with a 2xx and an error."""
    env = await make_env(tmp_path)
    try:
        for scenario in (test_users, test_preauthkeys, test_api_keys, test_health_and_routing_errors):
            if scenario is test_health_and_routing_errors:
                with pytest.MonkeyPatch.context() as mp:
                    await scenario(env, mp)
            else:
                await scenario(env)
        await env.call("POST", "/api/v1/user", {"name": "carol"})
        await env.call("POST", "/api/v1/user", {"name": "bob"})
        await _nodes_on_fresh_ids(env)
        await test_debug_node_then_register(env)
        await test_policy_database_mode(env)
        await env.call("PUT", "/api/v1/policy", b'{"policy": "{}", "extra": [1]}')
    finally:
        env.registrar.close()
        env.state.close()
        await env.db.close()
    operations = set(env.validator.operations())
    assert len(operations) == 25
    assert set(env.seen) == operations
    no_success = sorted(op for op, codes in env.seen.items() if not any(200 <= c < 300 for c in codes))
    no_error = sorted(op for op, codes in env.seen.items() if not any(c >= 400 for c in codes))
    no_error.remove("HeadscaleService_ListApiKeys")  # takes no input: its only failure is the plain 401
    assert no_success == [] and no_error == []
    assert env.problems == []


async def _nodes_on_fresh_ids(env: ApiEnv) -> None:
    users = {u["name"]: u["id"] for u in (await env.call("GET", "/api/v1/user")).body["users"]}
    node = await env.add_node("gw", int(users["carol"]), routes=["10.9.0.0/16"], n=9)
    path = f"/api/v1/node/{node.id}"
    for method, suffix, body in (("GET", "", None), ("POST", "/tags", {"tags": ["tag:x"]}),
                                 ("POST", "/approve_routes", {"routes": ["10.9.0.0/16"]}),
                                 ("POST", "/expire", None), ("POST", "/rename/gw2", None),
                                 ("POST", "/user", {"user": users["bob"]})):
        assert (await env.call(method, path + suffix, body)).status == 200
        assert (await env.call(method, "/api/v1/node/999" + suffix, body)).status >= 400
    assert (await env.call("GET", "/api/v1/node")).status == 200
    assert (await env.call("GET", "/api/v1/node", query={"user": "zed"})).status == 404
    assert (await env.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"})).status == 200
    assert (await env.call("POST", "/api/v1/node/backfillips")).status == 500
    assert (await env.call("DELETE", path)).status == 200
    assert (await env.call("DELETE", path)).status == 404


async def test_backfill_assigns_and_removes(tmp_path: Path) -> None:
    """Nodes from a v4-only past get an IPv6; with IPv6 dropped from the config, backfill removes it."""
    import ipaddress
    from dataclasses import replace

    from pyscale.state.ipam import IPAllocator

    env = await make_env(tmp_path)
    try:
        await env.call("POST", "/api/v1/user", {"name": "alice"})
        node = await env.add_node("old", 1)
        await env.state.update_node(replace(node, ipv6=None))
        changes = (await env.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"})).body["changes"]
        assert changes == [f'assigned IPv6 "{env.state.nodes[node.id].ipv6}" to Node({node.id}) "old"']
        assigned = env.state.nodes[node.id].ipv6
        assert assigned is not None
        env.state.ipam = IPAllocator(ipaddress.IPv4Network("100.64.0.0/10"), None)
        changes = (await env.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"})).body["changes"]
        assert changes == [f'removing IPv6 "{assigned}" from Node({node.id}) "old"']
        assert env.state.nodes[node.id].ipv6 is None and env.state.nodes[node.id].ipv4 is not None
        assert (await env.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"})).body == {
            "changes": []}
        assert env.problems == []
    finally:
        env.registrar.close()
        env.state.close()
        await env.db.close()
