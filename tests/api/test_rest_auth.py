"""API-key authentication: the auth matrix over every endpoint, Headscale-made keys, no secrets in logs."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import sqlite3
from pathlib import Path

import bcrypt
import pytest

from pyscale.api.auth import ApiKeyVerifier
from pyscale.api.rest import ROUTES
from pyscale.state.model import ApiKey, utcnow
from tests.api.conftest import ApiEnv, make_env

DUMPS = Path(__file__).resolve().parent.parent / "data" / "headscale" / "sqlite-dumps"


def _concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) in ("nodeId", "id", "oldId") else "abcdefg", template)


def _snapshot(env: ApiEnv) -> tuple[object, ...]:
    s = env.state
    return (dict(s.users), dict(s.nodes), dict(s.preauthkeys), {k: (v.prefix, v.expiration)
                                                                  for k, v in s.apikeys.items()})


@pytest.mark.asyncio
async def test_auth_matrix_every_endpoint(env: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt cost 4 keeps 27 routes x 12 headers fast; the cost-10 path is covered by the other tests
    monkeypatch.setattr("pyscale.api.auth.BCRYPT_COST", 4)
    monkeypatch.setattr("pyscale.api.auth._DUMMY_HASH", bcrypt.hashpw(b"x", bcrypt.gensalt(4)))
    main_key = next(k for k in env.state.apikeys.values() if env.key.startswith(k.prefix + "."))
    main_key.hash = bcrypt.hashpw(env.key.partition(".")[2].encode(), bcrypt.gensalt(4, prefix=b"2a"))
    await env.call("POST", "/api/v1/user", {"name": "alice"})
    await env.add_node("n1", 1)
    expired = (await env.call("POST", "/api/v1/apikey", {"expiration": "2099-01-01T00:00:00Z"})).body["apiKey"]
    await env.call("POST", "/api/v1/apikey/expire", {"prefix": expired.partition(".")[0]})
    deleted = (await env.call("POST", "/api/v1/apikey", {"expiration": "2099-01-01T00:00:00Z"})).body["apiKey"]
    assert (await env.call("GET", "/api/v1/apikey", auth=f"Bearer {deleted}")).status == 200  # cached as valid
    await env.call("DELETE", f"/api/v1/apikey/{deleted.partition('.')[0]}")
    prefix = env.key.partition(".")[0]
    bad_headers = {
        "no header": None, "empty": "", "garbage": "garbage", "bearer only": "Bearer ",
        "lower-case scheme": f"bearer {env.key}", "basic": f"Basic {env.key}", "no dot": "Bearer abcdefghijkl",
        "unknown prefix": "Bearer zzzzzzz.secretsecretsecretsecretsecretse",
        "right prefix, wrong secret": f"Bearer {prefix}.{'x' * 32}", "expired key": f"Bearer {expired}",
        "deleted key": f"Bearer {deleted}", "trailing space": f"Bearer {env.key} ",
    }
    routes = ROUTES + [("GET", "/api/v1/nothing", ""), ("GET", "/api/other", "")]
    for method, template, _ in routes:
        path = _concrete(template)
        for label, header in bad_headers.items():
            before = _snapshot(env)
            headers_auth = header if header is not None else None
            reply = await env.call(method, path, {"name": "x", "user": "1", "prefix": prefix}, auth=headers_auth)
            assert (reply.status, reply.raw) == (401, b"Unauthorized"), f"{method} {path} with {label}"
            assert _snapshot(env) == before, f"{method} {path} with {label} changed state"
    for method, template, _ in ROUTES:
        if method == "GET":
            assert (await env.call(method, _concrete(template), query={"user": "1"})).status != 401


@pytest.mark.asyncio
async def test_key_made_like_headscale_v0_27_1_authenticates(tmp_path: Path) -> None:
    """Rows as Headscale writes them: 7-char URL-safe prefix, bcrypt cost 10 '$2a$' of the 32-char secret;
    plus the api_keys rows of a real Headscale database (10-char prefixes, '$2b$12$' hashes)."""
    env = await make_env(tmp_path)
    await env.db.close()
    env.state.close()
    prefix = base64.urlsafe_b64encode(secrets.token_bytes(7)).rstrip(b"=").decode()[:7]
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()[:32]
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(10, prefix=b"2a"))
    assert hashed.startswith(b"$2a$10$")
    dump = (DUMPS / "from_nblock_db01__0.14.0__0.26.1.sql").read_text()
    real_rows = re.findall(r"^INSERT INTO api_keys VALUES\((.*)\);$", dump, re.M)
    assert len(real_rows) >= 2
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    with conn:
        for row in real_rows:
            values = conn.execute(f"SELECT {row}").fetchone()
            conn.execute("INSERT INTO api_keys (prefix, hash, created_at, expiration, last_seen) "
                         "VALUES (?, ?, ?, '2099-01-01 00:00:00+00:00', NULL)", (values[1], values[2], values[3]))
        conn.execute("INSERT INTO api_keys (prefix, hash, created_at, expiration) "
                     "VALUES (?, ?, '2025-11-11 10:00:00+00:00', '2099-01-01 00:00:00+00:00')", (prefix, hashed))
    conn.close()
    env = await make_env(tmp_path)
    try:
        ok = await env.call("GET", "/api/v1/user", auth=f"Bearer {prefix}.{secret}")
        assert ok.status == 200 and ok.body == {"users": []}
        assert (await env.call("GET", "/api/v1/user", auth=f"Bearer {prefix}.{secret[:-1]}x")).status == 401
        listed = {k["prefix"] for k in (await env.call("GET", "/api/v1/apikey")).body["apiKeys"]}
        assert prefix in listed and len(listed) >= 3
        old_prefix = [k.prefix for k in env.state.apikeys.values() if len(k.prefix) == 10]
        assert old_prefix
        assert (await env.call("GET", "/api/v1/user", auth=f"Bearer {old_prefix[0]}.wrongsecret")).status == 401
    finally:
        env.registrar.close()
        env.state.close()
        await env.db.close()


@pytest.mark.asyncio
async def test_no_key_or_secret_in_logs(env: ApiEnv, caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    # as pyscale.logsetup does: aiosqlite logs every statement with its parameters at debug
    monkeypatch.setattr(logging.getLogger("aiosqlite"), "level", logging.WARNING)
    created = (await env.call("POST", "/api/v1/apikey", {"expiration": "2099-01-01T00:00:00Z"})).body["apiKey"]
    prefix, _, secret = created.partition(".")
    await env.call("GET", "/api/v1/user", auth=f"Bearer {created}")
    await env.call("GET", "/api/v1/user", auth=f"Bearer {prefix}.{secret[::-1]}")
    await env.call("GET", "/api/v1/user", auth="Bearer someone.elsessecret")
    text = caplog.text
    assert "refused" in text  # failures are logged...
    for needle in (secret, secret[::-1], "elsessecret", env.key.partition(".")[2]):
        assert needle not in text  # ...without the secret
    hashes = [k.hash.decode() for k in env.state.apikeys.values()]
    assert not any(h in text for h in hashes)


def test_verifier_unit_cases() -> None:
    secret = "s" * 32
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(4, prefix=b"2a"))
    keys = [ApiKey(1, "abcdefg", hashed, expiration=utcnow().replace(year=2099)),
            ApiKey(2, "expired", hashed, expiration=utcnow().replace(year=2000)),
            ApiKey(3, "nullexp", hashed, expiration=None),
            ApiKey(4, "badhash", b"not a bcrypt hash", expiration=utcnow().replace(year=2099))]
    v = ApiKeyVerifier(lambda: keys)
    assert v.check_header(f"Bearer abcdefg.{secret}")
    assert v.check_header(f"Bearer abcdefg.{secret}")  # second time from the verified cache
    assert not v.check_header(f"Bearer abcdefg.{secret}x")
    assert not v.check_header(f"Bearer expired.{secret}")
    assert not v.check_header(f"Bearer nullexp.{secret}")
    assert not v.check_header(f"Bearer badhash.{secret}")
    keys[0].expiration = utcnow().replace(year=2001)  # expiry is checked even for a cached key
    assert not v.check_header(f"Bearer abcdefg.{secret}")


def test_every_failure_runs_one_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing must not tell which part failed: unknown prefix, expired key and wrong secret each run
    exactly one bcrypt comparison (against a dummy hash when there is no stored one)."""
    secret = "s" * 32
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(4, prefix=b"2a"))
    keys = [ApiKey(1, "abcdefg", hashed, expiration=utcnow().replace(year=2099)),
            ApiKey(2, "expired", hashed, expiration=utcnow().replace(year=2000))]
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, stored: bytes) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr("pyscale.api.auth.bcrypt.checkpw", counting)
    v = ApiKeyVerifier(lambda: keys)
    for header in ("Bearer zzzzzzz.wrong", f"Bearer expired.{secret}", "Bearer abcdefg.wrong", "Bearer nodot"):
        calls.clear()
        assert not v.check_header(header)
        assert len(calls) == 1, header


@pytest.mark.asyncio
async def test_bcrypt_runs_off_the_event_loop() -> None:
    """While a wrong key is being checked (one cost-10 bcrypt), other tasks keep running."""
    secret = "s" * 32
    keys = [ApiKey(1, "abcdefg", bcrypt.hashpw(secret.encode(), bcrypt.gensalt(10, prefix=b"2a")),
                   expiration=utcnow().replace(year=2099))]
    v = ApiKeyVerifier(lambda: keys)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    assert not await v.verify_header("Bearer abcdefg.wrong")
    done.set()
    await task
    assert ticks > 10  # a bcrypt on the loop thread would have allowed none
    assert await v.verify_header(f"Bearer abcdefg.{secret}")
