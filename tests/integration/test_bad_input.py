"""Bad input over the real API: a clear 4xx problem naming the field, never a 500, and
never half a batch written."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import PASSWORD, Account, expect_problem, new_id, push, register, stamp

MAX_BODY = 4 * 1024 * 1024  # KITH_MAX_BODY_BYTES's default


def _contact(account: Account, **fields: Any) -> dict[str, Any]:
    return {
        "table": "contacts",
        "id": new_id("c"),
        "hlc": stamp(account.device_id),
        "fields": {"display_name": "Sam", "circle": "close", **fields},
    }


def _reflection(account: Account, **fields: Any) -> dict[str, Any]:
    return {
        "table": "reflections",
        "id": new_id("r"),
        "hlc": stamp(account.device_id),
        "fields": {"occurred_at": "2025-03-01T20:00:00+00:00", **fields},
    }


def _batch(account: Account, changes: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "device_id": account.device_id,
        "batch_id": new_id("batch"),
        "schema_version": 1,
        "changes": changes,
        **top,
    }


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem["errors"]]


async def _post(http: httpx.AsyncClient, account: Account, body: Any) -> httpx.Response:
    return await http.post("/v1/sync/push", headers=account.headers, json=body)


# -- malformed bodies ----------------------------------------------------------------------

MALFORMED = [
    b'{"device_id": ',
    b"not json at all",
    b'{"schema_version": 1,}',
    b'{"schema_version": 1} trailing',
    b'{"device_id": "\xff\xfe"}',
    b'{"a": "\\ud800"}',
    b'{"schema_version": NaN}',
]


@pytest.mark.parametrize("raw", MALFORMED)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/sync/push"),
        ("POST", "/v1/sync/pull"),
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("PUT", "/v1/devices/{device}/push-token"),
    ],
)
async def test_malformed_json_is_a_400_everywhere(
    http: httpx.AsyncClient, method: str, path: str, raw: bytes
) -> None:
    ana = await register(http)
    r = await http.request(
        method,
        path.format(device=ana.device_id),
        content=raw,
        headers={**ana.headers, "Content-Type": "application/json"},
    )
    expect_problem(r, 400, "malformed_json")


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"text"', b"42"])
async def test_a_body_that_is_not_an_object_is_refused(
    http: httpx.AsyncClient, body: bytes
) -> None:
    ana = await register(http)
    r = await http.post(
        "/v1/sync/push",
        content=body,
        headers={**ana.headers, "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    expect_problem(r, r.status_code)


@pytest.mark.parametrize("path", ["/v1/sync/push", "/v1/sync/pull", "/v1/auth/login"])
async def test_deeply_nested_json_is_a_400(http: httpx.AsyncClient, path: str) -> None:
    ana = await register(http)
    for raw in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"cursor": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ):
        r = await http.post(
            path, content=raw, headers={**ana.headers, "Content-Type": "application/json"}
        )
        expect_problem(r, 400, "malformed_json")


async def test_a_form_instead_of_json_is_a_4xx_problem(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    r = await http.post("/v1/sync/push", headers=ana.headers, data={"schema_version": "1"})
    expect_problem(r, 400, "malformed_json")


async def test_unknown_routes_and_methods_answer_problems(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    expect_problem(await http.get("/v1/nothing-here", headers=ana.headers), 404, "not_found")
    expect_problem(await http.get("/v1/sync/push", headers=ana.headers), 405, "method_not_allowed")


# -- field errors name their path ----------------------------------------------------------


def _push_cases() -> Iterator[Any]:
    """(name, change the valid batch, expected field path, status)."""

    def top(**values: Any) -> Any:
        return lambda b: b.update(values)

    def change(i: int, **values: Any) -> Any:
        return lambda b: b["changes"][i].update(values)

    def fields(i: int, **values: Any) -> Any:
        return lambda b: b["changes"][i]["fields"].update(values)

    def drop(i: int, name: str) -> Any:
        return lambda b: b["changes"][i]["fields"].pop(name)

    yield "schema_version not a number", top(schema_version="one"), "schema_version", 422
    yield "schema_version unknown", top(schema_version=99), "schema_version", 426
    yield "changes not a list", top(changes={}), "changes", 422
    yield "device_id malformed", top(device_id="no spaces allowed"), "device_id", 422
    yield "device_id too short", top(device_id="x"), "device_id", 422
    yield "batch_id malformed", top(batch_id="!!"), "batch_id", 422
    yield "unknown top-level field", top(extra=1), "extra", 422
    yield "missing changes", lambda b: b.pop("changes"), "changes", 422
    yield "unknown table", change(1, table="users"), "changes[1].table", 422
    yield "server-only table", change(1, table="care_summaries"), "changes[1].table", 403
    yield "bad record id", change(1, id="a b"), "changes[1].id", 422
    yield "record id with a newline", change(1, id="abcdefgh\n"), "changes[1].id", 422
    yield "missing record id", lambda b: b["changes"][1].pop("id"), "changes[1].id", 422
    yield "bad hlc", change(1, hlc="yesterday"), "changes[1].hlc", 422
    yield "hlc with a bad counter", change(1, hlc="1763764200000-zzzz-dev"), "changes[1].hlc", 422
    yield "deleted not a bool", change(1, deleted=[True]), "changes[1].deleted", 422
    yield "fields not an object", change(1, fields=[]), "changes[1].fields", 422
    yield "unknown change field", change(1, colour="blue"), "changes[1].colour", 422
    yield "mood out of range", fields(1, mood=6), "changes[1].fields.mood", 422
    yield "mood wrong type", fields(1, mood="happy"), "changes[1].fields.mood", 422
    yield "mood as a string number", fields(1, mood="3"), "changes[1].fields.mood", 422
    yield (
        "naive event time",
        fields(1, occurred_at="2025-03-01T20:00:00"),
        ("changes[1].fields.occurred_at"),
        422,
    )
    yield (
        "event time not a time",
        fields(1, occurred_at="yesterday"),
        ("changes[1].fields.occurred_at"),
        422,
    )
    yield "ucla3 too short", fields(1, ucla3=[1, 2]), "changes[1].fields.ucla3", 422
    yield "ucla3 item out of range", fields(1, ucla3=[1, 2, 9]), "changes[1].fields.ucla3[2]", 422
    yield "body too long", fields(1, body="x" * 20_001), "changes[1].fields.body", 422
    yield "unknown data field", fields(1, colour="blue"), "changes[1].fields.colour", 422
    yield "contact cadence zero", fields(0, cadence_days=0), "changes[0].fields.cadence_days", 422
    yield "contact circle unknown", fields(0, circle="galaxy"), "changes[0].fields.circle", 422
    yield (
        "contact birthday not a date",
        fields(0, birthday="2023-02-30"),
        ("changes[0].fields.birthday"),
        422,
    )
    yield "contact without a name", drop(0, "display_name"), "changes[0].fields.display_name", 422
    yield "empty change", change(1, fields={}), "changes[1].fields", 422


PUSH_CASES = list(_push_cases())


@pytest.mark.parametrize(
    ("mutate", "field", "status"),
    [
        c if isinstance(c, type(pytest.param())) else pytest.param(*c[1:], id=c[0])
        for c in PUSH_CASES
    ],
)
async def test_a_bad_push_names_the_field(
    http: httpx.AsyncClient, db: asyncpg.Connection, mutate: Any, field: str, status: int
) -> None:
    ana = await register(http)
    body = _batch(ana, [_contact(ana), _reflection(ana, mood=3)])
    mutate(body)
    problem = expect_problem(await _post(http, ana, body), status)
    assert _fields(problem) == [field], problem
    assert problem["detail"]
    assert await db.fetchval("SELECT seq FROM spaces WHERE owner_id = $1", ana.user_id) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"display_name": "Sam\u0000"}, "changes[0].fields.display_name"),
        ({"display_name": "Sam", "notes": "\u0000"}, "changes[0].fields.notes"),
        ({"display_name": "Sam", "tags": ["a\u0000"]}, "changes[0].fields.tags[0]"),
    ],
)
async def test_a_nul_character_in_synced_text_is_a_4xx(
    http: httpx.AsyncClient, db: asyncpg.Connection, fields: dict[str, Any], field: str
) -> None:
    """PostgreSQL's jsonb cannot hold U+0000: the edge refuses it and names the field."""
    ana = await register(http)
    change = {"table": "contacts", "id": new_id("c"), "hlc": stamp(ana.device_id), "fields": fields}
    problem = expect_problem(await _post(http, ana, _batch(ana, [change])), 422)
    assert await db.fetchval("SELECT seq FROM spaces WHERE owner_id = $1", ana.user_id) == 1
    assert _fields(problem) == [field]


async def test_more_than_1000_changes_is_refused(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    changes = [_contact(ana) for _ in range(1001)]
    problem = expect_problem(await _post(http, ana, _batch(ana, changes)), 422, "invalid_field")
    assert _fields(problem) == ["changes"]


async def test_exactly_1000_changes_is_accepted(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    result = await push(http, ana, [_contact(ana) for _ in range(1000)])
    assert result["accepted"] == 1000


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"schema_version": 1, "limit": 1001}, 422, "limit"),
        ({"schema_version": 1, "limit": 0}, 422, "limit"),
        ({"schema_version": 1, "limit": "ten"}, 422, "limit"),
        ({"schema_version": 1, "cursor": "not-a-cursor!"}, 400, "cursor"),
        ({"schema_version": 1, "cursor": 12}, 422, "cursor"),
        ({"schema_version": 1, "since": 0}, 422, "since"),
        ({"limit": 10}, 422, "schema_version"),
        ({"schema_version": 2}, 426, "schema_version"),
    ],
)
async def test_a_bad_pull_names_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    ana = await register(http)
    r = await http.post("/v1/sync/pull", headers=ana.headers, json=body)
    assert _fields(expect_problem(r, status)) == [field]


async def test_a_conflicts_page_token_past_any_sequence_is_a_4xx(
    http: httpx.AsyncClient,
) -> None:
    """A forged ``after`` beyond PostgreSQL's bigint must not reach the database as a 500."""
    ana = await register(http)
    forged = base64.urlsafe_b64encode(b"k1:" + b"9" * 30).decode().rstrip("=")
    r = await http.get("/v1/sync/conflicts", headers=ana.headers, params={"after": forged})
    assert _fields(expect_problem(r, 400, "invalid_cursor")) == ["after"]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": "5000"}, 422, "limit"),
        ({"limit": "0"}, 422, "limit"),
        ({"since": "last tuesday"}, 422, "since"),
        ({"since": "2025-01-01T00:00:00"}, 422, "since"),  # no offset: which midnight?
        ({"table": "users"}, 422, "table"),
        ({"id": "a b"}, 422, "id"),
        ({"after": "garbage!"}, 400, "after"),
    ],
    ids=["limit-high", "limit-zero", "since", "since-naive", "table", "id", "after"],
)
async def test_a_bad_conflicts_query_names_the_parameter(
    http: httpx.AsyncClient, params: dict[str, str], status: int, field: str
) -> None:
    ana = await register(http)
    r = await http.get("/v1/sync/conflicts", headers=ana.headers, params=params)
    assert _fields(expect_problem(r, status)) == [field]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "ana@example.org\n"}, "email"),
        ({"password": "short"}, "password"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "Ana\u0000"}, "display_name"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"time_zone": "Europe/Lisbon\n"}, "time_zone"),
        ({"time_zone": "Europe\u0000Lisbon"}, "time_zone"),
        ({"device": {"id": "dev-1234567", "platform": "nokia"}}, "device.platform"),
        ({"device": {"id": "x", "platform": "ios"}}, "device.id"),
        ({"device": {"id": "dev-1234567", "platform": "ios", "name": "a\u0000"}}, "device.name"),
        ({"device": {"platform": "ios"}}, "device.id"),
        ({"admin": True}, "admin"),
    ],
)
async def test_a_bad_registration_names_the_field(
    http: httpx.AsyncClient, db: asyncpg.Connection, change: dict[str, Any], field: str
) -> None:
    email = f"{new_id('reg')}@example.org"
    body = {
        "email": email,
        "password": PASSWORD,
        "display_name": "Ana",
        "time_zone": "Europe/Lisbon",
        "device": {"id": new_id("dev"), "platform": "ios"},
        **change,
    }
    r = await http.post("/v1/auth/register", json=body)
    assert _fields(expect_problem(r, 422, "invalid_field")) == [field]
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ana\u0000@example.org", "password": PASSWORD},
        {"email": "x" * 300, "password": PASSWORD},
        {"email": "ana@example.org", "password": "p" * 2000},
    ],
)
async def test_a_bad_login_is_a_4xx_not_a_crash(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    r = await http.post(
        "/v1/auth/login", json={**body, "device": {"id": new_id("dev"), "platform": "ios"}}
    )
    assert r.status_code in {401, 422}, r.text
    expect_problem(r, r.status_code)


# -- size limits ---------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_before_it_is_read(live_server: str) -> None:
    """A Content-Length over the limit is answered 413 at once. Raw socket: httpx stops
    at the failed upload and never reads the early answer, but phones' HTTP stacks do."""
    host, port = live_server.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            (
                "POST /v1/sync/push HTTP/1.1\r\n"
                f"Host: {host}\r\n"
                "Content-Type: application/json\r\n"
                "Authorization: Bearer whatever\r\n"
                f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
            ).encode()
        )
        writer.write(b" " * 65_536)  # the upload has begun
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        headers = dict(
            line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:] if line
        )
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (413, "body_too_large")


async def test_an_oversized_chunked_body_is_a_413_problem(live_server: str) -> None:
    """No Content-Length to refuse up front: the limit is counted as the bytes arrive. The
    answer is read while the upload is still going, as a phone's HTTP stack does; the server
    may stop reading (and reset the connection) once it has answered."""
    async with httpx.AsyncClient(base_url=live_server) as http:
        ana = await register(http)
    host, port = live_server.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def upload() -> None:
        head = (
            "POST /v1/sync/push HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Content-Type: application/json\r\n"
            f"Authorization: {ana.headers['Authorization']}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode())
        first = b'{"device_id": "' + ana.device_id.encode() + b'", "pad": "'
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        chunk = b"x" * 65_536
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_BODY // len(chunk) + 2):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b'2\r\n"}\r\n0\r\n\r\n')
            await writer.drain()

    sending = asyncio.create_task(upload())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        headers = dict(
            line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:] if line
        )
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (413, "body_too_large")


async def test_a_body_just_under_the_limit_is_read(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    raw = json.dumps(_batch(ana, [_contact(ana)])).encode()
    raw = raw[:-1] + b" " * (MAX_BODY - len(raw) - 1000) + raw[-1:]
    r = await http.post(
        "/v1/sync/push", content=raw, headers={**ana.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text


# -- all or nothing ------------------------------------------------------------------------


def _last_change_bad(account: Account) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Ways the last change of a batch can fail, from the edge to deep in the merge."""
    yield "a wrong type", _reflection(account, mood="great"), "changes[2].fields.mood"
    yield (
        "a new interaction missing its contacts",
        {
            "table": "interactions",
            "id": new_id("i"),
            "hlc": stamp(account.device_id),
            "fields": {"kind": "call"},
        },
        "changes[2].fields.contact_ids",
    )
    yield (
        "an insight that does not exist",
        {
            "table": "insights",
            "id": new_id("ins"),
            "hlc": stamp(account.device_id),
            "fields": {"status": "dismissed"},
        },
        "changes[2].id",
    )
    yield (
        "a settings record under another id",
        {
            "table": "settings",
            "id": "settings-2",
            "hlc": stamp(account.device_id),
            "fields": {"nudges_enabled": False},
        },
        "changes[2].id",
    )


@pytest.mark.parametrize("case", range(4))
async def test_one_bad_change_writes_nothing_of_its_batch(
    http: httpx.AsyncClient, db: asyncpg.Connection, case: int
) -> None:
    ana = await register(http)
    existing = _contact(ana)
    await push(http, ana, [existing])
    space = await db.fetchrow("SELECT id, seq FROM spaces WHERE owner_id = $1", ana.user_id)
    assert space is not None
    name, bad, field = list(_last_change_bad(ana))[case]

    update = {**existing, "hlc": stamp(ana.device_id, offset_ms=1), "fields": {"notes": "new"}}
    fresh = _contact(ana)
    body = _batch(ana, [update, fresh, bad])
    problem = expect_problem(await _post(http, ana, body), 422, "invalid_field")
    assert _fields(problem) == [field], name

    assert await db.fetchval("SELECT seq FROM spaces WHERE id = $1", space["id"]) == space["seq"]
    notes = await db.fetchval(
        "SELECT fields->>'notes' FROM contacts WHERE space_id = $1 AND id = $2",
        space["id"],
        existing["id"],
    )
    assert notes == ""
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE id = $1", fresh["id"]) == 0
    assert await db.fetchval("SELECT count(*) FROM conflicts WHERE space_id = $1", space["id"]) == 0
    stored = await db.fetchval(
        "SELECT count(*) FROM sync_batches WHERE space_id = $1 AND batch_id = $2",
        space["id"],
        body["batch_id"],
    )
    assert stored == 0

    # The app fixes the change and retries under the same batch id: now it all applies.
    body["changes"] = body["changes"][:2]
    r = await _post(http, ana, body)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE id = $1", fresh["id"]) == 1


async def test_a_refused_format_is_said_in_words_not_as_a_regular_expression(
    http: httpx.AsyncClient,
) -> None:
    """What an app can show next to the field (or a developer read in a log): the format
    asked for, in words, wherever the value came from — a body, a path, a query."""
    ana = await register(http)

    def said(r: httpx.Response) -> tuple[str, str]:
        [error] = expect_problem(r, 422)["errors"]
        assert "regex" not in error["message"]
        assert "(?" not in error["message"]
        return error["field"], error["message"]

    def pushing(change: dict[str, Any], **top: Any) -> dict[str, Any]:
        return _batch(ana, [_contact(ana), {**_reflection(ana), **change}], **top)

    assert said(await _post(http, ana, pushing({}, batch_id="not ok"))) == (
        "batch_id",
        "must be 8 to 64 letters, digits, _ or -",
    )
    field, message = said(await _post(http, ana, pushing({"hlc": "yesterday"})))
    assert field == "changes[1].hlc"
    assert message.startswith("must be a hybrid logical clock stamp: milliseconds (13 digits)")
    assert said(await _post(http, ana, _batch(ana, [_contact(ana, birthday="3 March")]))) == (
        "changes[0].fields.birthday",
        "must be YYYY-MM-DD, or --MM-DD without a year",
    )
    assert said(await http.delete("/v1/devices/a%20b", headers=ana.headers)) == (
        "device_id",
        "must be 8 to 64 letters, digits, _ or -",
    )
    since = {"since": "tuesday"}
    assert said(await http.get("/v1/sync/conflicts", headers=ana.headers, params=since)) == (
        "since",
        "must be an RFC 3339 time with its offset, from 1900, as 2026-11-01T00:00:00Z",
    )
    registration = {
        "email": f"{new_id('reg')}@example.org",
        "password": PASSWORD,
        "display_name": "Ana",
        "time_zone": "Lisbon time",
        "device": {"id": new_id("dev"), "platform": "ios"},
    }
    assert said(await http.post("/v1/auth/register", json=registration)) == (
        "time_zone",
        "must be an IANA time zone name, as Europe/Lisbon",
    )
