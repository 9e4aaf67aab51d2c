"""Pages of the main listener: ``/register/<id>``, ``/apple``, ``/apple/<platform>``, ``/windows``, ``/swagger``.

Plain server-rendered HTML with inline style only (no scripts, fonts or CDN assets, so they
work on an air-gapped tailnet). ``/apple/<platform>`` returns a configuration profile
(``application/x-apple-aspen-config``) that points the Tailscale app at ``server_url``; the
payload types are the ones the Tailscale apps read (io.tailscale.ipn.ios/.macos/.macsys).
``/swagger`` lists every REST operation from the bundled OpenAPI file and links the raw spec,
which ``/swagger/v1/openapiv2.json`` serves byte for byte (Headscale v0.27.1's spec).
"""

from __future__ import annotations

import functools
import html
import json
import uuid
from pathlib import Path
from typing import Any

from pyscale.control.http1 import Request, Response

SPEC_FILE = Path(__file__).with_name("openapi_v0_27_1.json")
SPEC_PATH = "/swagger/v1/openapiv2.json"
PAGE_PATHS = ("/apple", "/windows", "/swagger", SPEC_PATH)
APPLE_PAYLOADS = {"ios": "io.tailscale.ipn.ios", "macos-app-store": "io.tailscale.ipn.macos",
                  "macos-standalone": "io.tailscale.ipn.macsys"}
_STYLE = ("font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; "
          "line-height: 1.5")


def is_page(path: str) -> bool:
    return path in PAGE_PATHS or path.startswith("/apple/")


def handle(req: Request, server_url: str) -> Response:
    if req.method != "GET":
        return Response(405)
    path = req.path
    if path == "/apple":
        return Response.html(apple_page(server_url))
    if path.startswith("/apple/"):
        return apple_profile(path.removeprefix("/apple/"), server_url)
    if path == "/windows":
        return Response.html(windows_page(server_url))
    if path == "/swagger":
        return Response.html(swagger_page())
    if path == SPEC_PATH:
        return Response(200, spec_bytes(), [("Content-Type", "application/json")])
    return Response(404)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title></head>\n<body style=\"{_STYLE}\">\n{body}\n</body></html>\n")


def _cmd(text: str) -> str:
    return f"<pre><code>{html.escape(text)}</code></pre>"


def register_page(registration_id: str) -> Response:
    """The page an interactive login's AuthURL shows: the command that completes it."""
    if len(registration_id) != 24:
        return Response.text("invalid registration id\n", 400)
    body = f"""<h1>pyscale</h1>
<h2>Machine registration</h2>
<p>Run the command below in the pyscale server to add this machine to your network:</p>
{_cmd(f"pyscale nodes register --user USERNAME --key {registration_id}")}
<p>(Where you used <code>headscale</code> before,
<code>headscale nodes register --user USERNAME --key {html.escape(registration_id)}</code> works the same.)</p>"""
    return Response.html(_page("pyscale - registration", body))


def windows_page(server_url: str) -> str:
    body = f"""<h1>pyscale: Windows configuration</h1>
<p>Install the Tailscale client for Windows (https://tailscale.com/download/windows).</p>
<p>Then open a Command Prompt or PowerShell and log in against this server:</p>
{_cmd(f"tailscale login --login-server {server_url}")}"""
    return _page("pyscale - Windows", body)


def apple_page(server_url: str) -> str:
    body = f"""<h1>pyscale: iOS configuration</h1>
<ol><li>Install the Tailscale app from the App Store.</li>
<li>Open Settings, then Tailscale, and enable <em>Use alternate coordination server</em>.</li>
<li>Enter <code>{html.escape(server_url)}</code> as the server URL, then reopen the app and log in.</li></ol>
<h1>pyscale: macOS configuration</h1>
<h2>Command line</h2>
<p>With the standalone app's command line tool:</p>
{_cmd(f"tailscale login --login-server {server_url}")}
<h2>Profiles</h2>
<p>Download and install the profile for your build of the app, then restart Tailscale and log in:</p>
<ul><li><a href="/apple/macos-app-store">macOS App Store profile</a></li>
<li><a href="/apple/macos-standalone">macOS standalone profile</a></li>
<li><a href="/apple/ios">iOS profile</a></li></ul>
<p>Or set the server from a terminal:</p>
{_cmd(f"defaults write io.tailscale.ipn.macos ControlURL {server_url}")}
{_cmd(f"defaults write io.tailscale.ipn.macsys ControlURL {server_url}")}
<h1>pyscale: tvOS configuration</h1>
<p>Install Tailscale from the App Store, enable the alternate coordination server in the app's settings,
enter <code>{html.escape(server_url)}</code>, then scan the QR code and log in.</p>"""
    return _page("pyscale - Apple", body)


def apple_profile(platform: str, server_url: str) -> Response:
    payload_type = APPLE_PAYLOADS.get(platform)
    if payload_type is None:
        return Response.text("platform must be ios, macos-app-store or macos-standalone\n", 400)
    url = html.escape(server_url)
    profile = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadUUID</key><string>{uuid.uuid4()}</string>
  <key>PayloadDisplayName</key><string>Headscale</string>
  <key>PayloadDescription</key><string>Configure Tailscale login server to: {url}</string>
  <key>PayloadIdentifier</key><string>com.github.juanfont.headscale</string>
  <key>PayloadRemovalDisallowed</key><false/>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadVersion</key><integer>1</integer>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>PayloadType</key><string>{payload_type}</string>
      <key>PayloadUUID</key><string>{uuid.uuid4()}</string>
      <key>PayloadIdentifier</key><string>com.github.juanfont.headscale</string>
      <key>PayloadVersion</key><integer>1</integer>
      <key>PayloadEnabled</key><true/>
      <key>ControlURL</key><string>{url}</string>
    </dict>
  </array>
</dict>
</plist>
"""
    return Response.text(profile, 200, "application/x-apple-aspen-config; charset=utf-8")


@functools.cache
def spec_bytes() -> bytes:
    return SPEC_FILE.read_bytes()


def spec() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(spec_bytes())
    return value


def swagger_page() -> str:
    doc = spec()
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('operationId', '').removeprefix('HeadscaleService_'))}</td>"
                        f"<td>{html.escape(params)}</td></tr>")
    info = doc.get("info", {})
    body = f"""<h1>{html.escape(str(info.get('title', 'API')))} {html.escape(str(info.get('version', '')))}</h1>
<p>REST API v1, compatible with Headscale v0.27.1. Every call needs <code>Authorization: Bearer &lt;API key&gt;</code>
(create one with <code>pyscale apikeys create</code>). The OpenAPI 2.0 document:
<a href="{SPEC_PATH}">{SPEC_PATH}</a>.</p>
<table style="border-collapse: collapse" border="1" cellpadding="4">
<tr><th>Method</th><th>Path</th><th>Operation</th><th>Parameters</th></tr>
{chr(10).join(rows)}
</table>"""
    return _page("pyscale - API", body)
