"""The audit of the run's logs: no password, token, push token or journal text in any.

Operators read these logs, ship them to third parties and keep them for months; a
person's password, session tokens or the words of their journal must never be in them.

The test is marked ``run_last`` (``tests/conftest.py`` moves it behind every other test,
whatever the alphabet says), so it reads what the whole run wrote: the shared API server's
log and every log this session wrote under ``test-output/`` (other API processes, workers).
The secrets it looks for are the ones the run used — the tests' password, the push tokens
and journal texts stored in the database, this test's own — plus anything shaped like a
token (a JWT, a refresh token). It makes its own secrets first, so that even run alone it
checks the paths a secret travels: register, login, refresh, push, pull, push token.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import OUTPUT
from tests.helpers import PASSWORD, new_id, stamp

pytestmark = pytest.mark.run_last

_SESSION_STARTED = time.time() - 1  # modules are imported at collection, before any test
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}")
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
_STORED_TEXT = """
    SELECT push_token FROM devices WHERE push_token IS NOT NULL
    UNION SELECT fields->>'body' FROM reflections WHERE fields ? 'body'
    UNION SELECT fields->>'notes' FROM contacts WHERE fields ? 'notes'
    UNION SELECT fields->>'note' FROM interactions WHERE fields ? 'note'
    UNION SELECT fields->>'note' FROM check_ins WHERE fields ? 'note'
"""
MAX_STORED = 2000


def _distinctive(text: str | None) -> bool:
    """Long and varied enough that finding it in a log cannot be a coincidence."""
    return text is not None and len(text) >= 12 and len(set(text)) >= 6


async def _leave_secrets(http: httpx.AsyncClient) -> set[str]:
    """Walk a secret through every path that carries one; return them all."""
    password = f"pw-{secrets.token_hex(8)}"
    journal = f"journal entry {secrets.token_hex(8)}: felt close to Ana today"
    notes = f"notes {secrets.token_hex(8)}: her birthday is in May"
    push_token = secrets.token_hex(32)  # an APNs device token
    device = {"id": new_id("dev"), "platform": "ios", "name": "audit"}
    email = f"{new_id('audit')}@example.org"
    account = {"email": email, "password": password, "device": device}
    r = await http.post(
        "/v1/auth/register", json={**account, "display_name": "Audit", "time_zone": "UTC"}
    )
    assert r.status_code == 201, r.text
    tokens = r.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    wrong = f"wrong-{secrets.token_hex(8)}"
    await http.post("/v1/auth/login", json={**account, "password": wrong})
    changes = [
        {"table": "reflections", "id": new_id("r"), "hlc": stamp(device["id"]),
         "fields": {"occurred_at": "2025-01-01T21:00:00Z", "body": journal}},
        {"table": "contacts", "id": new_id("c"), "hlc": stamp(device["id"], counter=1),
         "fields": {"display_name": "Ana", "notes": notes}},
    ]  # fmt: skip
    batch = {"device_id": device["id"], "batch_id": new_id("b"), "schema_version": 1}
    r = await http.post("/v1/sync/push", headers=headers, json={**batch, "changes": changes})
    assert r.status_code == 200, r.text
    r = await http.post("/v1/sync/pull", headers=headers, json={"schema_version": 1})
    assert r.status_code == 200, r.text
    r = await http.put(
        f"/v1/devices/{device['id']}/push-token",
        headers=headers,
        json={"provider": "apns", "token": push_token},
    )
    assert r.status_code == 204, r.text
    r = await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    later = r.json()
    return {
        password,
        wrong,
        journal,
        notes,
        push_token,
        tokens["access_token"],
        tokens["refresh_token"],
        later["access_token"],
        later["refresh_token"],
    }


async def _stored_secrets(db: asyncpg.Connection) -> set[str]:
    """The push tokens and journal texts every test of the run stored (distinct ones)."""
    rows = await db.fetch(_STORED_TEXT)
    found = sorted({r[0] for r in rows if _distinctive(r[0])}, key=len, reverse=True)
    return set(found[:MAX_STORED])


def _session_logs() -> dict[Path, str]:
    return {
        path: path.read_text(errors="replace")
        for path in sorted(OUTPUT.glob("*.log"))
        if path.stat().st_mtime >= _SESSION_STARTED
    }


def _looks_like_a_token(run: str) -> bool:
    return (
        any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )


async def test_no_password_token_push_token_or_journal_text_is_in_any_log(
    http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    known = await _leave_secrets(http) | await _stored_secrets(db)
    known |= {PASSWORD, "kith-seed-password"}
    logs = _session_logs()
    assert OUTPUT / "api-server.log" in logs, "the shared API server's log was not written"
    for path, text in logs.items():
        leaked = sorted(s[:24] + "…" for s in known if s in text)
        assert not leaked, f"{path.name} contains secrets the tests used: {leaked}"
        jwt = _JWT.search(text)
        assert jwt is None, f"{path.name} contains a JWT: {jwt[0][:40] if jwt else ''}…"
        opaque = [m[0] for m in _OPAQUE.finditer(text) if _looks_like_a_token(m[0])]
        assert not opaque, f"{path.name} contains token-like strings: {opaque[:3]}"
