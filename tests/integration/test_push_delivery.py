"""Nudges end to end: a fading friend becomes one push on each of the person's devices —
through real HTTP/2 fakes of APNs and FCM that check what Apple and Google check — and the
worker does the right thing with each answer the providers can give."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import httpx
import pytest

from service.jobs import Job, Kind
from tests.helpers import expect_problem, new_id, pull_all, push, stamp
from tests.integration.push_support import (
    KEY_ID,
    TEAM_ID,
    TOPIC,
    Fakes,
    Person,
    PushWorld,
    drain,
    evaluate,
    fading_friend,
    make_person,
    nudges_of,
    push_world,
)


async def person_with_nudge(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], *, android: bool = False
) -> Person:
    person = await make_person(http, pool, android=android)
    await fading_friend(http, person, "Sam", last_met_days=50)
    assert await evaluate(pool, person.space_id) == 1
    return person


async def deliver(pool: asyncpg.Pool[Any], world: PushWorld, person: Person) -> None:
    await drain(pool, world.jobs.handlers(), [person.space_id])


async def queued_sends(pool: asyncpg.Pool[Any], space_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, run_at, attempts, last_error, state FROM jobs "
        "WHERE space_id = $1 AND kind = $2",
        space_id,
        Kind.PUSH_SEND,
    )


# -- the happy path ------------------------------------------------------------------------


async def test_a_fading_friend_reaches_each_device_once_with_its_buttons(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool, android=True)
    assert person.fcm_token is not None
    await deliver(pool, world, person)

    [iphone] = fakes.apns.shown(person.apns_token)
    [note] = fakes.apns.notifications(person.apns_token)
    aps = iphone["aps"]
    assert aps["alert"]["title"] == "Time to see Sam?"
    assert aps["alert"]["body"].startswith("It's been 7 weeks since you and Sam met in person")
    assert aps["category"] == "KITH_NUDGE"  # Plan it · Already saw them · Snooze a week
    nudge_id = iphone["nudge_id"]
    assert note.collapse_id == nudge_id
    assert note.headers["apns-topic"] == TOPIC
    assert note.headers["apns-push-type"] == "alert"
    # Until the person's quiet hours (21:00 in Lisbon) and no longer: 18:00 → 3 hours.
    expires = int(note.headers["apns-expiration"]) - fakes.clock.epoch()
    assert 3 * 3600 - 5 <= expires <= 3 * 3600

    [android] = fakes.the_fcm.shown(person.fcm_token)
    assert android["notification"]["title"] == "Time to see Sam?"
    assert android["android"]["collapse_key"] == nudge_id
    assert android["android"]["notification"]["click_action"] == "KITH_NUDGE"
    assert android["data"]["nudge_id"] == nudge_id

    [listed] = await nudges_of(http, person.phone)
    assert (listed["id"], listed["state"], listed["rule"]) == (nudge_id, "sent", "overdue")
    assert listed["body"] == aps["alert"]["body"]


async def test_a_send_that_runs_twice_is_shown_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    """What a worker killed after sending but before recording does: send again."""
    person = await person_with_nudge(http, pool)
    await deliver(pool, world, person)
    [first] = fakes.apns.notifications(person.apns_token)
    nudge_id = first.collapse_id
    assert nudge_id is not None
    payload = {"nudge_id": nudge_id, "device_id": person.phone.device_id}
    await world.jobs.send(Job(0, Kind.PUSH_SEND, person.space_id, payload, 2))
    assert len(fakes.apns.notifications(person.apns_token)) == 2
    assert len(fakes.apns.shown(person.apns_token)) == 1


# -- the budget, end to end ------------------------------------------------------------------


async def test_over_budget_nudges_wait_for_the_next_day_and_say_so(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await make_person(http, pool)
    # Kim, still seen every week, shows the person is around: the others' silence is theirs.
    for name, days in (("Sam", 60), ("Ana", 55), ("Joe", 50), ("Kim", 1)):
        await fading_friend(http, person, name, last_met_days=days)
    assert await evaluate(pool, person.space_id) == 3
    await deliver(pool, world, person)
    assert len(fakes.apns.shown(person.apns_token)) == 1  # one a day
    states = sorted(n["state"] for n in await nudges_of(http, person.phone))
    assert states == ["pending", "pending", "sent"]
    # The planner queued itself for tomorrow's 18:00 in Lisbon: a day after this one
    # (the worker's clock is simulated; the queue's delay is relative).
    wait = await pool.fetchval(
        "SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE space_id = $1 AND kind = $2",
        person.space_id,
        Kind.NUDGE_PLAN,
    )
    assert abs(float(wait) - 24 * 3600) < 60
    # Tomorrow at 18:00: the next one.
    fakes.clock.advance(days=1)
    await pool.execute(
        "UPDATE jobs SET run_at = now() WHERE space_id = $1 AND kind = $2",
        person.space_id,
        Kind.NUDGE_PLAN,
    )
    await deliver(pool, world, person)
    assert len(fakes.apns.shown(person.apns_token)) == 2


async def test_with_the_digest_one_push_names_everyone(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await make_person(http, pool, settings={"nudge_digest": True})
    for name, days in (("Sam", 65), ("Ana", 55), ("Joe", 50), ("Kim", 1)):
        await fading_friend(http, person, name, last_met_days=days)
    assert await evaluate(pool, person.space_id) == 3
    await deliver(pool, world, person)
    [shown] = fakes.apns.shown(person.apns_token)
    body = shown["aps"]["alert"]["body"]
    assert "Also on your list:" in body
    assert {"Ana", "Joe"} <= set(body.replace(",", " ").replace(".", " ").split())
    nudges = await nudges_of(http, person.phone)
    sent = [n for n in nudges if n["state"] == "sent"]
    assert len(sent) == 1
    merged = [n for n in nudges if n["state"] == "merged"]
    assert len(merged) == 2
    assert {n["merged_into"] for n in merged} == {sent[0]["id"]}


async def test_nudges_off_means_no_push_and_the_reason_is_visible(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await make_person(http, pool, settings={"nudges_enabled": False})
    await fading_friend(http, person)
    assert await evaluate(pool, person.space_id) == 1
    await deliver(pool, world, person)
    assert fakes.apns.notifications(person.apns_token) == []
    [nudge] = await nudges_of(http, person.phone)
    assert (nudge["state"], nudge["reason"]) == ("skipped", "nudges_off")


# -- feedback from the buttons ---------------------------------------------------------------


async def test_snooze_from_the_push_reaches_every_device_and_silences_the_contact(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool, android=True)
    assert person.android is not None
    await deliver(pool, world, person)
    nudge_id = fakes.apns.shown(person.apns_token)[0]["nudge_id"]

    r = await http.post(
        f"/v1/nudges/{nudge_id}/feedback", headers=person.phone.headers, json={"action": "snooze"}
    )
    assert r.status_code == 200, r.text
    until = dt.date.fromisoformat(r.json()["snoozed_until"])
    today = dt.datetime.now(dt.UTC).astimezone(fakes.clock.now.tzinfo).date()
    assert (until - today).days in {7, 8}  # a week from the person's today

    # The other device learns it on its next pull, like any edit.
    records, _ = await pull_all(http, person.android)
    [contact] = [r for (table, _), r in records.items() if table == "contacts"]
    assert contact["fields"]["snoozed_until"] == until.isoformat()
    [nudge] = await nudges_of(http, person.phone)
    assert nudge["feedback"] == "snooze"


async def test_feedback_is_only_for_ones_own_nudges_and_known_actions(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool)
    await deliver(pool, world, person)
    nudge_id = fakes.apns.shown(person.apns_token)[0]["nudge_id"]
    stranger = await make_person(http, pool)

    r = await http.post(
        f"/v1/nudges/{nudge_id}/feedback", headers=stranger.phone.headers, json={"action": "plan"}
    )
    assert r.status_code == 404
    r = await http.post(
        f"/v1/nudges/{nudge_id}/feedback", headers=person.phone.headers, json={"action": "maybe"}
    )
    problem = expect_problem(r, 422)
    assert [e["field"] for e in problem["errors"]] == ["action"]
    r = await http.post(
        "/v1/nudges/no-such-nudge/feedback", headers=person.phone.headers, json={"action": "plan"}
    )
    assert r.status_code == 404
    r = await http.post(
        f"/v1/nudges/{nudge_id}/feedback", headers=person.phone.headers, json={"action": "plan"}
    )
    assert r.status_code == 200
    # "Plan it" closes the insight on every device.
    records, _ = await pull_all(http, person.phone)
    [insight] = [r for (table, _), r in records.items() if table == "insights"]
    assert insight["fields"]["status"] == "acted"


# -- what the providers answer -----------------------------------------------------------------


async def device_push_provider(http: httpx.AsyncClient, person: Person) -> str | None:
    r = await http.get("/v1/devices", headers=person.phone.headers)
    [device] = [d for d in r.json()["devices"] if d["id"] == person.phone.device_id]
    provider: str | None = device["push_provider"]
    return provider


async def test_a_410_forgets_the_token_only_if_it_was_registered_before(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    gone = await person_with_nudge(http, pool)
    again = await person_with_nudge(http, pool)
    later = int((dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).timestamp() * 1000)
    earlier = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp() * 1000)
    fakes.apns.script(gone.apns_token, status=410, reason="Unregistered", timestamp_ms=later)
    fakes.apns.script(again.apns_token, status=410, reason="Unregistered", timestamp_ms=earlier)
    await drain(pool, world.jobs.handlers(), [gone.space_id, again.space_id])
    assert await device_push_provider(http, gone) is None  # uninstalled: forgotten
    # The app registered this token again after Apple's timestamp: it is live.
    assert await device_push_provider(http, again) == "apns"
    assert await queued_sends(pool, gone.space_id) == []  # and nothing retries


async def test_bad_device_token_tries_the_sandbox_before_giving_the_token_up(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    debug_build = await person_with_nudge(http, pool)
    fakes.apns.script(debug_build.apns_token, status=400, reason="BadDeviceToken")
    await deliver(pool, world, debug_build)
    assert len(fakes.sandbox.shown(debug_build.apns_token)) == 1
    env = await pool.fetchval(
        "SELECT push_environment FROM devices WHERE id = $1", debug_build.phone.device_id
    )
    assert env == "sandbox"

    bogus = await person_with_nudge(http, pool)
    fakes.apns.script(bogus.apns_token, status=400, reason="BadDeviceToken")
    fakes.sandbox.script(bogus.apns_token, status=400, reason="BadDeviceToken")
    await deliver(pool, world, bogus)
    assert await device_push_provider(http, bogus) is None


async def test_a_busy_provider_is_retried_no_sooner_than_retry_after(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool)
    fakes.apns.script(person.apns_token, status=429, reason="TooManyRequests", retry_after=90)
    await deliver(pool, world, person)
    [job] = await queued_sends(pool, person.space_id)
    wait = (job["run_at"] - dt.datetime.now(dt.UTC)).total_seconds()
    assert 80 < wait <= 90
    assert "429" in job["last_error"]
    assert fakes.apns.shown(person.apns_token) == []
    await pool.execute("UPDATE jobs SET run_at = now() WHERE id = $1", job["id"])
    await deliver(pool, world, person)
    assert len(fakes.apns.shown(person.apns_token)) == 1


async def test_a_stream_apns_never_answers_times_out_and_is_retried(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    database_url: str,
) -> None:
    world = push_world(pool, fakes, database_url, timeout_s=1)
    try:
        person = await person_with_nudge(http, pool)
        fakes.apns.script(person.apns_token, never_answer=True)
        await deliver(pool, world, person)
        [job] = await queued_sends(pool, person.space_id)
        assert "Timeout" in job["last_error"]
        await pool.execute("UPDATE jobs SET run_at = now() WHERE id = $1", job["id"])
        await deliver(pool, world, person)
        assert len(fakes.apns.shown(person.apns_token)) == 1
    finally:
        await world.aclose()


async def test_fcm_unregistered_forgets_the_token_and_quota_waits_a_minute(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool, android=True)
    assert person.android is not None
    assert person.fcm_token is not None
    fakes.the_fcm.script(person.fcm_token, error="QUOTA_EXCEEDED", retry_after=5)
    await deliver(pool, world, person)
    [job] = await queued_sends(pool, person.space_id)
    assert (job["run_at"] - dt.datetime.now(dt.UTC)).total_seconds() > 50  # at least 1 minute
    fakes.the_fcm.script(person.fcm_token, error="UNREGISTERED")
    await pool.execute("UPDATE jobs SET run_at = now() WHERE id = $1", job["id"])
    await deliver(pool, world, person)
    token = await pool.fetchval(
        "SELECT push_token FROM devices WHERE id = $1", person.android.device_id
    )
    assert token is None
    assert len(fakes.apns.shown(person.apns_token)) == 1  # the iPhone was unaffected


async def test_an_expired_provider_token_is_reminted_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    first = await person_with_nudge(http, pool)
    await deliver(pool, world, first)
    assert fakes.apns.provider_token_count == 1
    # Half an hour on, Apple says the (still cached) token has expired: mint once, resend.
    fakes.clock.advance(minutes=30)
    second = await person_with_nudge(http, pool)
    fakes.apns.script(second.apns_token, status=403, reason="ExpiredProviderToken")
    await deliver(pool, world, second)
    assert len(fakes.apns.shown(second.apns_token)) == 1
    assert fakes.apns.provider_token_count == 2


async def test_refused_credentials_raise_the_alarm_and_stop_the_app_without_losing_nudges(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    world: PushWorld,
    caplog: pytest.LogCaptureFixture,
) -> None:
    person = await person_with_nudge(http, pool)
    fakes.apns.script(None, status=403, reason="InvalidProviderToken")
    await deliver(pool, world, person)
    assert fakes.apns.shown(person.apns_token) == []
    [job] = await queued_sends(pool, person.space_id)
    assert job["state"] == "queued"  # waiting, not lost
    disabled = await pool.fetchval(
        "SELECT disabled_reason FROM push_credentials WHERE key = $1", f"apns:{TEAM_ID}:{KEY_ID}"
    )
    assert "InvalidProviderToken" in disabled
    assert any(r.levelname == "ERROR" and "disabled" in r.getMessage() for r in caplog.records)
    # Retrying while disabled does not touch Apple at all.
    before = len(fakes.apns.rejections())
    await pool.execute("UPDATE jobs SET run_at = now() WHERE id = $1", job["id"])
    await deliver(pool, world, person)
    assert len(fakes.apns.rejections()) == before


async def test_web_push_is_encrypted_for_the_browser(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], fakes: Fakes, world: PushWorld
) -> None:
    person = await person_with_nudge(http, pool)
    endpoint, p256dh, auth = fakes.the_webpush.subscribe()
    # The API refuses endpoints on private addresses (the fake is on 127.0.0.1), so the
    # subscription is stored as the API would store it.
    await pool.execute(
        """
        UPDATE devices SET push_provider = 'webpush', push_token = $2,
               push_keys = $3::jsonb, push_token_updated_at = now()
        WHERE id = $1
        """,
        person.phone.device_id,
        endpoint,
        json.dumps({"p256dh": p256dh, "auth": auth}),
    )
    await deliver(pool, world, person)
    [shown] = fakes.the_webpush.shown(endpoint)
    assert shown["title"] == "Time to see Sam?"
    assert shown["category"] == "KITH_NUDGE"
    assert shown["nudge_id"]


async def test_the_report_counts_a_nudge_effective_when_they_met_within_14_days(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    fakes: Fakes,
    world: PushWorld,
    database_url: str,
) -> None:
    from service.cli import report_lines

    met, not_met = await person_with_nudge(http, pool), await person_with_nudge(http, pool)
    await drain(pool, world.jobs.handlers(), [met.space_id, not_met.space_id])
    sent_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    await pool.execute(
        "UPDATE nudge_requests SET sent_at = $2 "
        "WHERE space_id = ANY($1::text[]) AND state = 'sent'",
        [met.space_id, not_met.space_id],
        sent_at,
    )
    contact = await pool.fetchval(
        "SELECT contact_id FROM nudge_requests WHERE space_id = $1", met.space_id
    )
    await push(
        http,
        met.phone,
        [
            {
                "table": "interactions",
                "id": new_id("i"),
                "hlc": stamp(met.phone.device_id),
                "fields": {
                    "contact_ids": [contact],
                    "kind": "in_person",
                    "occurred_at": (sent_at + dt.timedelta(days=5)).isoformat(),
                },
            }
        ],
    )
    lines = await report_lines(database_url, 90)
    [overdue] = [line.split() for line in lines if line.strip().startswith("overdue")]
    # rule, sent, settled (14 days passed), effective, rate — other tests' nudges are recent
    assert overdue[2:] == ["2", "1", "50%"]
