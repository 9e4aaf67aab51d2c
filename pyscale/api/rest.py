"""REST API v1 edge: Headscale v0.27.1's routes, API-key check, grpc-gateway routing and errors.

On the TCP listener everything under ``/api`` needs ``Authorization: Bearer <prefix>.<secret>``;
anything wrong with it is a bare ``401 Unauthorized`` (text, as Headscale's middleware) and the
handler never runs. The unix socket is trusted (the local CLI, like Headscale's gRPC socket).
Routing follows grpc-gateway's ServeMux: an unknown path is 404 ``Not Found``, a known path with
another method is 501 ``Method Not Allowed`` (code 12), both as ``{"code","message","details"}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pyscale.api.auth import ApiKeyVerifier
from pyscale.api.protojson import GRPC_HTTP, status_body
from pyscale.api.service import HeadscaleService, PathArgs
from pyscale.control.http1 import BadRequest, Request, Response
from pyscale.errors import PyscaleError
from pyscale.mapper.build import Mapper
from pyscale.state.registration import Registrar
from pyscale.state.store import State

log = logging.getLogger("pyscale.api")

Handler = Callable[[Request, PathArgs], Awaitable[Any]]
JSON_CONTENT_TYPE = "application/json"  # grpc-gateway's JSONPb.ContentType
ROUTES: list[tuple[str, str, str]] = [  # method, path template, HeadscaleService method
    ("GET", "/api/v1/apikey", "list_api_keys"),
    ("POST", "/api/v1/apikey", "create_api_key"),
    ("POST", "/api/v1/apikey/expire", "expire_api_key"),
    ("DELETE", "/api/v1/apikey/{prefix}", "delete_api_key"),
    ("POST", "/api/v1/debug/node", "debug_create_node"),
    ("GET", "/api/v1/health", "health"),
    ("GET", "/api/v1/node", "list_nodes"),
    ("POST", "/api/v1/node/backfillips", "backfill_node_ips"),
    ("POST", "/api/v1/node/register", "register_node"),
    ("GET", "/api/v1/node/{nodeId}", "get_node"),
    ("DELETE", "/api/v1/node/{nodeId}", "delete_node"),
    ("POST", "/api/v1/node/{nodeId}/approve_routes", "set_approved_routes"),
    ("POST", "/api/v1/node/{nodeId}/expire", "expire_node"),
    ("POST", "/api/v1/node/{nodeId}/rename/{newName}", "rename_node"),
    ("POST", "/api/v1/node/{nodeId}/tags", "set_tags"),
    ("POST", "/api/v1/node/{nodeId}/user", "move_node"),
    ("GET", "/api/v1/policy", "get_policy"),
    ("PUT", "/api/v1/policy", "set_policy"),
    ("GET", "/api/v1/preauthkey", "list_pre_auth_keys"),
    ("POST", "/api/v1/preauthkey", "create_pre_auth_key"),
    ("POST", "/api/v1/preauthkey/expire", "expire_pre_auth_key"),
    ("GET", "/api/v1/user", "list_users"),
    ("POST", "/api/v1/user", "create_user"),
    ("DELETE", "/api/v1/user/{id}", "delete_user"),
    ("POST", "/api/v1/user/{oldId}/rename/{newName}", "rename_user"),
]


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(regex + "$")


def error_response(code: int, message: str) -> Response:
    return json_response(status_body(code, message), GRPC_HTTP.get(code, 500))


def json_response(obj: Any, status: int = 200) -> Response:
    import json

    return Response(status, json.dumps(obj).encode(), [("Content-Type", JSON_CONTENT_TYPE)])


class RestApi:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper, *, policy_mode: str = "file",
                 policy_path: str = "", ip_prefixes: tuple[Any, Any] | None = None) -> None:
        self.state = state
        self.service = HeadscaleService(state, registrar, mapper, policy_mode=policy_mode,
                                        policy_path=policy_path, ip_prefixes=ip_prefixes)
        self.verifier = ApiKeyVerifier(lambda: state.apikeys.values())
        self.service.on_api_key_removed = self.verifier.forget
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, _compile(path), getattr(self.service, name)) for method, path, name in ROUTES]

    # ---- edges ---------------------------------------------------------------------------

    async def trusted(self, req: Request) -> Response:
        return await self._dispatch(req)

    async def authenticated(self, req: Request) -> Response:
        if not await self.verifier.verify_header(req.header("authorization")):
            log.info("API request refused: missing or invalid API key (client %s)", req.peer or "?")
            return Response.text("Unauthorized", 401)
        return await self._dispatch(req)

    def check_api_key(self, header: str) -> bool:
        return self.verifier.check_header(header)

    async def _dispatch(self, req: Request) -> Response:
        if not req.path.startswith("/api/v1/"):
            return Response(404)  # the /api subtree outside v1: the main router's empty 404
        path_matched = False
        for method, pattern, handler in self.routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            path_matched = True
            if method != req.method:
                continue
            return await self._call(handler, req, m.groupdict())
        if path_matched:
            return error_response(12, "Method Not Allowed")
        return error_response(5, "Not Found")

    async def _call(self, handler: Handler, req: Request, args: PathArgs) -> Response:
        try:
            return json_response(await handler(req, args))
        except PyscaleError as exc:
            return error_response(exc.grpc_code, str(exc))
        except BadRequest as exc:
            return error_response(3, str(exc))
        except Exception as exc:  # a bug must not kill the connection; the client still gets the status body
            log.exception("API handler %s failed", getattr(handler, "__name__", "?"))
            return error_response(2, f"internal error: {type(exc).__name__}")
