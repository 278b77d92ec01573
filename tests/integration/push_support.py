"""What the push tests share: signing keys, the fake providers on a simulated clock, a
person with a fading friend, and a worker run until a person's jobs are done."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.config import ApnsSettings, FcmSettings, PushSettings, Settings, WebPushSettings
from service.insights.service import InsightEvaluator
from service.jobs import Handler
from service.nudges.jobs import NudgeJobs
from service.push.base import Provider
from service.push.factory import build_providers
from service.worker.runner import Worker, WorkerConfig
from sync.hlc import Clock
from tests.fakes.apns import FakeAPNs
from tests.fakes.fcm import FakeFCM
from tests.fakes.webpush import FakeWebPush
from tests.helpers import Account, login, new_id, push, register, stamp

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "org.kith.app"
FCM_PROJECT = "kith-test"
FCM_EMAIL = "push@kith-test.iam.gserviceaccount.com"
LISBON = ZoneInfo("Europe/Lisbon")


@dataclass(frozen=True)
class PushKeys:
    apns_private: str
    apns_public: bytes
    fcm_private: str
    fcm_public: bytes
    vapid_private: str


def make_keys() -> PushKeys:
    from service.push.webpush import generate_vapid_keys

    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    private = serialization.PrivateFormat.PKCS8
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    none = serialization.NoEncryption()
    return PushKeys(
        ec_key.private_bytes(pem, private, none).decode(),
        ec_key.public_key().public_bytes(pem, public),
        rsa_key.private_bytes(pem, private, none).decode(),
        rsa_key.public_key().public_bytes(pem, public),
        generate_vapid_keys()[0],
    )


class SimClock:
    """Simulated time shared by the worker and the fakes (Apple's and Google's clocks)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def next_local(
    hour: int, zone: ZoneInfo = LISBON, *, after: dt.datetime | None = None
) -> dt.datetime:
    """The next time the wall clock in ``zone`` shows ``hour``:00 (UTC instant)."""
    now = (after or dt.datetime.now(dt.UTC)).astimezone(zone)
    candidate = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if candidate <= now:
        candidate = (now + dt.timedelta(days=1)).replace(hour=hour, minute=0, second=0)
    return candidate.astimezone(dt.UTC)


@dataclass
class Fakes:
    apns: FakeAPNs
    sandbox: FakeAPNs
    clock: SimClock
    keys: PushKeys
    fcm: FakeFCM | None = None
    webpush: FakeWebPush | None = None

    @property
    def the_fcm(self) -> FakeFCM:
        assert self.fcm is not None, "this test started no fake FCM"
        return self.fcm

    @property
    def the_webpush(self) -> FakeWebPush:
        assert self.webpush is not None, "this test started no fake Web Push service"
        return self.webpush

    def settings(self, database_url: str, **overrides: Any) -> Settings:
        """Settings with every started fake as a provider; ``overrides`` replace
        :class:`PushSettings` fields (``timeout_s=1``)."""
        push = PushSettings(
            timeout_s=2,
            ca_file=self.apns.ca_file,
            apns=ApnsSettings(
                team_id=TEAM_ID,
                key_id=KEY_ID,
                private_key=self.keys.apns_private,
                topic=TOPIC,
                url=self.apns.url,
                sandbox_url=self.sandbox.url,
            ),
        )
        if self.fcm is not None:
            push = dataclasses.replace(
                push,
                fcm=FcmSettings(
                    project_id=FCM_PROJECT,
                    client_email=FCM_EMAIL,
                    private_key=self.keys.fcm_private,
                    url=self.fcm.url,
                    token_url=self.fcm.token_url,
                ),
            )
        if self.webpush is not None:
            push = dataclasses.replace(
                push,
                webpush=WebPushSettings(
                    vapid_private_key=self.keys.vapid_private,
                    vapid_subject="mailto:ops@kith.example",
                    allow_private_hosts=True,
                ),
            )
        push = dataclasses.replace(push, **overrides)
        return Settings(environment="test", push=push).using(database_url=database_url)

    def env(self, database_url: str) -> dict[str, str]:
        """The same configuration as environment variables, for a `kith worker` process."""
        return {
            "DATABASE_URL": database_url,
            "KITH_ENV": "test",
            "KITH_PUSH_TIMEOUT_S": "2",
            "KITH_PUSH_CA_FILE": str(self.apns.ca_file),
            "KITH_APNS_TEAM_ID": TEAM_ID,
            "KITH_APNS_KEY_ID": KEY_ID,
            "KITH_APNS_PRIVATE_KEY": self.keys.apns_private,
            "KITH_APNS_TOPIC": TOPIC,
            "KITH_APNS_URL": self.apns.url,
            "KITH_APNS_SANDBOX_URL": self.sandbox.url,
        }


def fake_apns(keys: PushKeys, cert_dir: Path, clock: SimClock | None = None, **kw: Any) -> FakeAPNs:
    """A fake APNs for this project's team, key and app, on ``clock`` if given."""
    if clock is not None:
        kw["clock"] = clock.epoch
    return FakeAPNs(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=keys.apns_public,
        topic=TOPIC,
        cert_dir=cert_dir,
        **kw,
    )


def apns_token() -> str:
    return secrets.token_hex(32)


def fcm_token() -> str:
    return "fcm-" + secrets.token_urlsafe(60)


@dataclass
class Person:
    phone: Account  # an iPhone (APNs)
    space_id: str
    apns_token: str
    android: Account | None = None
    fcm_token: str | None = None


async def set_push_token(http: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> None:
    r = await http.put(
        f"/v1/devices/{account.device_id}/push-token", headers=account.headers, json=body
    )
    assert r.status_code == 204, r.text


async def make_person(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    *,
    android: bool = False,
    settings: dict[str, Any] | None = None,
) -> Person:
    phone = await register(http, time_zone="Europe/Lisbon")
    token = apns_token()
    await set_push_token(
        http, phone, {"provider": "apns", "token": token, "environment": "production"}
    )
    space = str(await pool.fetchval("SELECT id FROM spaces WHERE owner_id = $1", phone.user_id))
    person = Person(phone, space, token)
    if android:
        person.android = await login(http, phone.email, new_id("dev"))
        person.fcm_token = fcm_token()
        await set_push_token(http, person.android, {"provider": "fcm", "token": person.fcm_token})
    if settings:
        await push(
            http,
            phone,
            [
                {
                    "table": "settings",
                    "id": "settings",
                    "hlc": stamp(phone.device_id),
                    "fields": settings,
                }
            ],
        )
    return person


async def fading_friend(
    http: httpx.AsyncClient, person: Person, name: str = "Sam", last_met_days: int = 50
) -> str:
    """A friend met every week for months, until ``last_met_days`` ago."""
    contact = new_id("c")
    now = dt.datetime.now(LISBON)
    changes: list[dict[str, Any]] = [
        {
            "table": "contacts",
            "id": contact,
            "hlc": stamp(person.phone.device_id),
            "fields": {"display_name": name, "circle": "close"},
        }
    ]
    for days in range(last_met_days + 70, last_met_days - 1, -7):
        at = (now - dt.timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
        changes.append(
            {
                "table": "interactions",
                "id": new_id("i"),
                "hlc": stamp(person.phone.device_id),
                "fields": {
                    "contact_ids": [contact],
                    "kind": "in_person",
                    "occurred_at": at.isoformat(),
                },
            }
        )
    await push(http, person.phone, changes)
    return contact


async def evaluate(pool: asyncpg.Pool[Any], space_id: str) -> int:
    """Run the rules for one person now; returns how many nudge requests they have."""
    evaluator = InsightEvaluator(pool, Clock(f"wrk-{secrets.token_hex(3)}"))
    await evaluator.evaluate_spaces([space_id], dt.datetime.now(dt.UTC))
    return int(
        await pool.fetchval("SELECT count(*) FROM nudge_requests WHERE space_id = $1", space_id)
    )


async def drain(
    pool: asyncpg.Pool[Any],
    handlers: dict[str, Handler],
    space_ids: list[str],
    *,
    within_s: float = 20,
) -> None:
    """Run a real worker until none of these people's jobs is due or running (jobs
    scheduled for later stay queued for the test to look at)."""
    worker = Worker(pool, handlers, WorkerConfig(poll_interval_s=0.05, concurrency=16))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(within_s):
            while await pool.fetchval(
                """
                SELECT count(*) FROM jobs
                WHERE space_id = ANY($1::text[]) AND kind = ANY($2::text[])
                  AND (state = 'running' OR (state = 'queued' AND run_at <= now()))
                """,
                space_ids,
                list(handlers),
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


@dataclass
class PushWorld:
    """Providers built from the fakes' settings, and the job handlers that use them."""

    providers: dict[str, Provider]
    jobs: NudgeJobs

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()


def push_world(
    pool: asyncpg.Pool[Any], fakes: Fakes, database_url: str, **overrides: Any
) -> PushWorld:
    clock: Callable[[], dt.datetime] = fakes.clock
    providers = build_providers(fakes.settings(database_url, **overrides), pool, clock)
    return PushWorld(providers, NudgeJobs(pool, providers, clock=clock))


async def nudges_of(http: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    r = await http.get("/v1/nudges", headers=account.headers)
    assert r.status_code == 200, r.text
    nudges: list[dict[str, Any]] = r.json()["nudges"]
    return nudges


@dataclass(frozen=True)
class Backlog:
    """People who each have one nudge marked sent and one queued send to their iPhone."""

    run: str
    space_ids: list[str]
    tokens: list[str]  # APNs device tokens, one per person
    nudge_ids: list[str]


async def seed_send_backlog(
    pool: asyncpg.Pool[Any], people: int, *, chunk: int = 5000, enqueue: bool = True
) -> Backlog:
    """Write ``people`` accounts straight into the tables (the API's work is not what is
    under test here), each with an APNs device, a sent nudge, no quiet hours, and — with
    ``enqueue`` — its ``push_send`` job: the state the planner leaves behind."""
    run = secrets.token_hex(4)
    spaces = [f"sp-{run}-{i}" for i in range(people)]
    tokens = [secrets.token_hex(32) for _ in range(people)]
    nudges = [f"ins-{run}-{i}.at_risk" for i in range(people)]
    settings = '{"time_zone": "UTC", "quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}'
    for start in range(0, people, chunk):
        part = slice(start, start + chunk)
        users = [f"u-{run}-{i}" for i in range(start, min(start + chunk, people))]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO users (id, email, password_hash, display_name, time_zone, space_id)
                SELECT u, u || '@bench.example', 'x', 'Bench', 'UTC', s
                FROM unnest($1::text[], $2::text[]) AS x(u, s)
                """,
                users,
                spaces[part],
            )
            await conn.execute(
                "INSERT INTO spaces (id, owner_id) SELECT * FROM unnest($1::text[], $2::text[])",
                spaces[part],
                users,
            )
            await conn.execute(
                """
                INSERT INTO devices (user_id, id, platform, push_provider, push_token,
                                     push_environment, push_token_updated_at)
                SELECT u, 'phone', 'ios', 'apns', t, 'production', now()
                FROM unnest($1::text[], $2::text[]) AS x(u, t)
                """,
                users,
                tokens[part],
            )
            await conn.execute(
                """
                INSERT INTO settings (space_id, id, fields, hlc, seq)
                SELECT s, 'settings', $2::jsonb, '0', 1 FROM unnest($1::text[]) s
                """,
                spaces[part],
                settings,
            )
            await conn.execute(
                """
                INSERT INTO nudge_requests (space_id, id, insight_id, rule, level, title, body,
                                            state, sent_at, push_title, push_body)
                SELECT s, n, split_part(n, '.', 1), 'overdue', 'at_risk', 't', 'b', 'sent', now(),
                       'Time to see Sam?',
                       'It''s been 6 weeks since you and Sam met in person — coffee this weekend?'
                FROM unnest($1::text[], $2::text[]) AS x(s, n)
                """,
                spaces[part],
                nudges[part],
            )
            if enqueue:
                await conn.execute(
                    """
                    INSERT INTO jobs (kind, space_id, payload, max_attempts)
                    SELECT 'push_send', s, jsonb_build_object('nudge_id', n, 'device_id', 'phone'),
                           12
                    FROM unnest($1::text[], $2::text[]) AS x(s, n)
                    """,
                    spaces[part],
                    nudges[part],
                )
    return Backlog(run, spaces, tokens, nudges)


async def remove_backlog(pool: asyncpg.Pool[Any], backlog: Backlog) -> None:
    # Not one transaction: on Citus, a transaction that deleted from every shard in
    # parallel may not then write a reference table (users) that they reference.
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM jobs WHERE space_id = ANY($1::text[])", backlog.space_ids)
        await conn.execute(
            "DELETE FROM nudge_requests WHERE space_id = ANY($1::text[])", backlog.space_ids
        )
        await conn.execute(
            "DELETE FROM settings WHERE space_id = ANY($1::text[])", backlog.space_ids
        )
        await conn.execute("DELETE FROM users WHERE id LIKE $1", f"u-{backlog.run}-%")
