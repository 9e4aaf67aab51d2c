"""The embedded DERP relay's routes on pyscale's main listener.

``/derp`` with ``Upgrade: DERP`` hands the connection to the relay (derp.server); the probe
routes and ``/generate_204`` are answered by derp.http, shared with the standalone relay.
"""

from __future__ import annotations

from derp import http as derp_http
from derp.server import DerpServer
from pyscale.control.http1 import HIJACKED, Request, Response


class DerpRoute:
    def __init__(self, server: DerpServer) -> None:
        self.server = server

    async def __call__(self, req: Request) -> Response:
        headers = list(req.headers.items())
        if req.path != derp_http.DERP_PATH:
            answer = derp_http.route(req.method, req.target, headers)
            if answer is None:
                return Response(404)
            return Response(answer.status, answer.body, list(answer.headers))
        if derp_http.upgrade_kind(headers) != "derp":
            answer = derp_http.upgrade_required()
            return Response(answer.status, answer.body, list(answer.headers))
        assert req.reader is not None and req.writer is not None
        await self.server.serve_upgraded(req.reader, req.writer, fast_start=derp_http.is_fast_start(headers))
        return HIJACKED
