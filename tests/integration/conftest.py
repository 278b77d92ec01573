"""Fixtures for the push and caregiver tests: the HTTP/2 fakes on a simulated clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fakes.fcm import FakeFCM
from tests.fakes.webpush import FakeWebPush
from tests.integration.push_support import (
    FCM_EMAIL,
    FCM_PROJECT,
    Fakes,
    PushKeys,
    PushWorld,
    SimClock,
    fake_apns,
    make_keys,
    next_local,
    push_world,
)


@pytest.fixture(scope="session")
def push_keys() -> PushKeys:
    return make_keys()


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("push-certs")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    await pool.execute("DELETE FROM push_credentials")  # each test mints its own tokens
    yield pool
    await pool.close()


@pytest.fixture
async def fakes(push_keys: PushKeys, cert_dir: Path) -> AsyncIterator[Fakes]:
    clock = SimClock(next_local(18))  # the default preferred time, in Lisbon
    apns = fake_apns(push_keys, cert_dir, clock)
    sandbox = fake_apns(push_keys, cert_dir, clock)
    fcm = FakeFCM(
        project_id=FCM_PROJECT,
        client_email=FCM_EMAIL,
        public_key=push_keys.fcm_public,
        clock=clock.epoch,
        cert_dir=cert_dir,
    )
    webpush = FakeWebPush(clock=clock.epoch, cert_dir=cert_dir)
    for fake in (apns, sandbox, fcm, webpush):
        await fake.start()
    yield Fakes(apns, sandbox, clock, push_keys, fcm, webpush)
    for fake in (apns, sandbox, fcm, webpush):
        await fake.stop()


@pytest.fixture
async def world(
    pool: asyncpg.Pool[Any], fakes: Fakes, database_url: str
) -> AsyncIterator[PushWorld]:
    w = push_world(pool, fakes, database_url)
    yield w
    await w.aclose()
