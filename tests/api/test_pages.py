"""/apple, /apple/<platform>, /windows, /swagger and the spec: plain HTML, no external assets."""

from __future__ import annotations

import json
import re
import xml.dom.minidom

from pyscale.api import pages
from pyscale.control.http1 import Request
from tests.api.specschema import SPEC_PATH

URL = "https://hs.example.com"


def _get(path: str, method: str = "GET") -> tuple[int, str, str]:
    resp = pages.handle(Request(method, path, {"host": "hs.example.com"}), URL)
    return resp.status, dict(resp.headers).get("Content-Type", ""), resp.body.decode()


def _self_contained(html_text: str) -> None:
    assert html_text.startswith("<!DOCTYPE html>") and "</html>" in html_text
    for banned in ("<script", "<link", "<img", "@import", "src="):
        assert banned not in html_text
    assert not re.search(r'href="https?://', html_text)  # every link stays on this server


def test_windows_and_apple_pages() -> None:
    for path, needle in (("/windows", f"tailscale login --login-server {URL}"),
                         ("/apple", f"defaults write io.tailscale.ipn.macos ControlURL {URL}")):
        status, ctype, body = _get(path)
        assert status == 200 and ctype == "text/html; charset=utf-8" and needle in body
        _self_contained(body)
    assert _get("/windows", "POST")[0] == 405


def test_apple_profiles() -> None:
    for platform, payload in pages.APPLE_PAYLOADS.items():
        status, ctype, body = _get(f"/apple/{platform}")
        assert status == 200 and ctype.startswith("application/x-apple-aspen-config")
        doc = xml.dom.minidom.parseString(body)  # well-formed plist
        strings = [n.firstChild.data for n in doc.getElementsByTagName("string") if n.firstChild]
        assert payload in strings and URL in strings
    status, _, body = _get("/apple/android")
    assert status == 400 and "platform must be ios, macos-app-store or macos-standalone" in body


def test_swagger_lists_every_operation_and_serves_the_spec() -> None:
    status, _, body = _get("/swagger")
    assert status == 200
    _self_contained(body)
    spec = json.loads(SPEC_PATH.read_text())
    ops = [op["operationId"].removeprefix("HeadscaleService_") for o in spec["paths"].values() for op in o.values()]
    assert len(ops) == 25 and all(f"<td>{op}</td>" in body for op in ops)
    status, ctype, raw = _get("/swagger/v1/openapiv2.json")
    assert status == 200 and ctype == "application/json" and raw.encode() == SPEC_PATH.read_bytes()
