"""The optional "early noise" payload a server sends before its first HTTP/2 byte.

Layout: magic ``ff ff ff 54 53`` | u32be length | JSON ``{"nodeKeyChallenge":"chalpub:<hex>"}``
(tailscale control/ts2021/conn.go). Clients since capver 49 parse it; v1.90.9 ignores the value.
"""

from __future__ import annotations

import json
import struct

EARLY_PAYLOAD_MAGIC = b"\xff\xff\xffTS"
MIN_VERSION = 49


def early_payload(challenge_public: bytes) -> bytes:
    body = json.dumps({"nodeKeyChallenge": "chalpub:" + challenge_public.hex()}, separators=(",", ":"))
    raw = body.encode()
    return EARLY_PAYLOAD_MAGIC + struct.pack(">I", len(raw)) + raw
