"""Records in grpc-gateway's JSON (protojson) shape, as Headscale v0.27.1's REST API v1 returns them.

lowerCamelCase keys, every field present (``EmitUnpopulated``), uint64 ids as strings, enums by
name, Timestamps as RFC 3339 UTC with 0, 3, 6 or 9 fraction digits, unset messages as null.
The CLI converts these to Headscale's CLI JSON shape (cli/output.py).

One addition beyond 0.27.1's schema: Node carries ``tags`` (the node's effective tags, the
field Headscale 0.28 replaced forced/valid/invalid tags with), so both headscale-ui builds
(2025.08.23 for 0.27, and 2026.03.17 = ``:latest`` for 0.28) render the devices page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pyscale.keys import DiscoPublic
from pyscale.mapper.build import EXIT_ROUTES, announced_routes, served_routes
from pyscale.state.model import ApiKey, Node, PreAuthKey, User
from pyscale.state.store import State

REGISTER_METHODS = {"authkey": "REGISTER_METHOD_AUTH_KEY", "cli": "REGISTER_METHOD_CLI",
                    "oidc": "REGISTER_METHOD_OIDC"}


def ts(t: datetime | None) -> str | None:
    """protojson Timestamp: UTC, 'Z', fraction digits in groups of three (none when zero)."""
    if t is None:
        return None
    t = t.astimezone(UTC) if t.year > 1 else t.replace(tzinfo=UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.year < 1000:
        text = f"{t.year:04d}" + text[text.index("-"):]
    if t.microsecond:
        text += f".{t.microsecond // 1000:03d}" if t.microsecond % 1000 == 0 else f".{t.microsecond:06d}"
    return text + "Z"


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


def requested_tags(node: Node) -> list[str]:
    return [str(t) for t in (node.hostinfo or {}).get("RequestTags") or [] if isinstance(t, str)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def node_json(node: Node, state: State, *, subnet_routes: list[str] | None = None,
              valid_tags: list[str] | None = None) -> dict[str, Any]:
    """Node.Proto(): ``subnetRoutes`` and ``validTags`` are filled only where Headscale fills them."""
    key = state.preauthkeys.get(node.auth_key_id) if node.auth_key_id is not None else None
    disco = node.disco_key or DiscoPublic.zero()
    effective = valid_tags if valid_tags is not None else list(node.forced_tags)
    return {
        "id": str(node.id),
        "machineKey": str(node.machine_key),
        "nodeKey": str(node.node_key),
        "discoKey": str(disco),
        "ipAddresses": [str(a) for a in (node.ipv4, node.ipv6) if a is not None],
        "name": node.hostname,
        "user": user_json(state.users.get(node.user_id or -1)),
        "lastSeen": ts(node.last_seen),
        "expiry": ts(node.expiry),
        "preAuthKey": preauthkey_json(key, state) if key else None,
        "createdAt": ts(node.created_at),
        "registerMethod": REGISTER_METHODS.get(node.register_method, "REGISTER_METHOD_UNSPECIFIED"),
        "forcedTags": list(node.forced_tags),
        "invalidTags": [],  # declared by 0.27.1, never filled
        "validTags": valid_tags or [],
        "givenName": node.given_name,
        "online": state.is_online(node.id),
        "approvedRoutes": list(node.approved_routes),
        "availableRoutes": announced_routes(node),
        "subnetRoutes": subnet_routes or [],
        "tags": sorted(set(effective)),
    }


def listed_valid_tags(node: Node, may_have_tag: Any) -> list[str]:
    """ListNodes' validTags: requested tags the policy lets this node own, then the forced ones."""
    allowed = [t for t in requested_tags(node) if may_have_tag(node, t)]
    return _unique(allowed + list(node.forced_tags))


def exit_routes(node: Node) -> list[str]:
    """Approved exit routes the node also announces (ListNodes adds them to subnetRoutes)."""
    return [r for r in served_routes(node) if r in EXIT_ROUTES]
