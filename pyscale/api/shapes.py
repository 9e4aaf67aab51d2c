"""Records in grpc-gateway's JSON (protojson) shape, as Headscale's REST API v1 returns them.

lowerCamelCase keys, every field present, uint64 ids as strings, enums by name, RFC 3339
timestamps, unset messages as null. The CLI converts these to Headscale's CLI JSON shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyscale.mapper.build import announced_routes
from pyscale.state.model import ApiKey, Node, PreAuthKey, User
from pyscale.state.store import State
from pyscale.tailcfg.timefmt import format_time

REGISTER_METHODS = {"authkey": "REGISTER_METHOD_AUTH_KEY", "cli": "REGISTER_METHOD_CLI",
                    "oidc": "REGISTER_METHOD_OIDC"}


def ts(t: datetime | None) -> str | None:
    return None if t is None else format_time(t)


def user_json(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": str(user.id), "name": user.name, "createdAt": ts(user.created_at),
            "displayName": user.display_name, "email": user.email,
            "providerId": user.provider_identifier or "", "provider": user.provider,
            "profilePicUrl": user.profile_pic_url}


def preauthkey_json(key: PreAuthKey, state: State) -> dict[str, Any]:
    return {"user": user_json(state.users.get(key.user_id or -1)), "id": str(key.id), "key": key.key,
            "reusable": key.reusable, "ephemeral": key.ephemeral, "used": key.used,
            "expiration": ts(key.expiration), "createdAt": ts(key.created_at), "aclTags": list(key.tags)}


def apikey_json(key: ApiKey) -> dict[str, Any]:
    return {"id": str(key.id), "prefix": key.prefix, "expiration": ts(key.expiration),
            "createdAt": ts(key.created_at), "lastSeen": ts(key.last_seen)}


def node_json(node: Node, state: State, primaries: list[str]) -> dict[str, Any]:
    key = state.preauthkeys.get(node.auth_key_id) if node.auth_key_id is not None else None
    requested = [str(t) for t in (node.hostinfo or {}).get("RequestTags") or []]
    return {
        "id": str(node.id),
        "machineKey": str(node.machine_key),
        "nodeKey": str(node.node_key),
        "discoKey": str(node.disco_key) if node.disco_key else "",
        "ipAddresses": [str(a) for a in (node.ipv4, node.ipv6) if a is not None],
        "name": node.hostname,
        "user": user_json(state.users.get(node.user_id or -1)),
        "lastSeen": ts(node.last_seen),
        "expiry": ts(node.expiry),
        "preAuthKey": preauthkey_json(key, state) if key else None,
        "createdAt": ts(node.created_at),
        "registerMethod": REGISTER_METHODS.get(node.register_method, "REGISTER_METHOD_UNSPECIFIED"),
        "forcedTags": list(node.forced_tags),
        "invalidTags": [t for t in requested if t not in node.forced_tags],
        "validTags": [],
        "givenName": node.given_name,
        "online": state.is_online(node.id),
        "approvedRoutes": list(node.approved_routes),
        "availableRoutes": announced_routes(node),
        "subnetRoutes": primaries,
    }
