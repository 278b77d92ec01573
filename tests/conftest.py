"""Test fixtures: real PostgreSQL, real Redis/Valkey, and the real API over HTTP.

With ``DATABASE_URL`` / ``REDIS_URL`` set, tests use those servers (a fresh database is
created for the run and dropped after); otherwise they start the embedded PostgreSQL and
Valkey wheels, exactly as a newcomer's `make test` does.

With ``KITH_TEST_CITUS=1`` the run starts its own Citus cluster instead — a coordinator and
two workers (``../shared/citus/cluster.sh`` beside the checkout; needs root) — and the
migrations distribute the schema on it, so every test that touches PostgreSQL runs against
a distributed Kith (docs/decisions/0013-distributed-by-space-on-citus.md).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from service.infra.embedded import drop_database, ensure_database
from service.infra.migrate import migrate
from tests.fakes.oidc import FakeIdentityProviders

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
#: Run against a Citus cluster of a coordinator and two workers started for this run.
# Property tests judge the laws, not the machine's speed: on two cores shared with the
# servers, input generation and examples run slower than Hypothesis's timing checks allow.
hypothesis_settings.register_profile(
    "kith", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis_settings.load_profile("kith")

CITUS = os.environ.get("KITH_TEST_CITUS", "") not in ("", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[str]:
    """A fresh Citus 12.1 cluster (coordinator + 2 workers) for this run; its URL. The
    nodes' logs land in test-output/ (the API's log names only a refused statement's
    error class; the coordinator's names the statement)."""
    from service.infra.embedded import CITUS_SCRIPT, citus_cluster

    if not CITUS_SCRIPT.is_file():
        pytest.exit(
            f"KITH_TEST_CITUS=1 needs the Citus cluster script at {CITUS_SCRIPT} "
            "(the checkout must sit beside shared/citus/)",
            returncode=4,
        )
    with citus_cluster(2, keep_logs=OUTPUT) as url:
        yield url


@pytest.fixture(scope="session")
def admin_database_url(request: pytest.FixtureRequest) -> str:
    if CITUS:
        return str(request.getfixturevalue("citus_cluster"))
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from service.infra.embedded import start_postgres

    return start_postgres(ROOT / ".kith" / "test")


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    """A database of its own for this run, migrated (on Citus: the cluster's own database,
    the cluster being this run's alone — Citus 12.1 does not propagate CREATE DATABASE)."""
    if CITUS:
        asyncio.run(migrate(admin_database_url))
        yield admin_database_url
        return
    name = f"kith_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = asyncio.run(ensure_database(admin_database_url, name))
    asyncio.run(migrate(url))
    yield url
    asyncio.run(drop_database(admin_database_url, name))


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from service.infra.embedded import start_valkey

    return start_valkey(ROOT / ".kith" / "test")


@pytest.fixture(scope="session")
def identity_providers() -> Iterator[FakeIdentityProviders]:
    """A fake Apple and Google publishing their sign-in keys over local HTTP; every API
    server of the run trusts them (tests/fakes/oidc.py)."""
    with FakeIdentityProviders().running() as providers:
        yield providers


@pytest.fixture(scope="session")
def server_env(
    database_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    identity_providers: FakeIdentityProviders,
) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("kith-data")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KITH_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KITH_ENV": "test",
        "KITH_DATA_DIR": str(data_dir),
        # Cheap hashes: tests register hundreds of users; production keeps the defaults.
        "KITH_ARGON2_TIME_COST": "1",
        "KITH_ARGON2_MEMORY_KIB": "1024",
        "KITH_LOG_LEVEL": "INFO",
        # Queue a person's rule evaluation at once (production debounces a minute).
        "KITH_EVALUATE_DEBOUNCE_S": "0",
        # Every test talks from 127.0.0.1 and registers hundreds of people: limits far above
        # that (the limiter still counts every request). tests/integration/test_limits.py
        # runs its own servers with small limits.
        **{f"KITH_RATELIMIT_{name}": "1000000" for name in _LIMITS},
        # Sign in with Apple and Google against the local fakes' keys.
        **identity_providers.settings(),
    }


_LIMITS = ("LOGIN_PER_IP", "LOGIN_PER_EMAIL", "REGISTER_PER_IP", "REFRESH_PER_IP", "SYNC_PER_USER")


@pytest.fixture(scope="session")
def live_server(server_env: dict[str, str]) -> Iterator[str]:
    """The API served by Granian in its own process, as in production."""
    port = _free_port()
    OUTPUT.mkdir(exist_ok=True)
    log = (OUTPUT / "api-server.log").open("wb")  # this run's output only
    env = {**server_env, "KITH_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"API server did not start; see {OUTPUT / 'api-server.log'}")
        time.sleep(0.1)
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


class ApiProcess:
    """One more API server (``python -m service.cli api``) with its own settings, port and
    log file (``test-output/<name>.log``): for tests that need several processes, other
    limits, or to signal the server."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        port = _free_port()
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api"],
            env={**env, "KITH_PORT": str(port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 30) -> ApiProcess:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.base}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"API server did not start; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def api_process(server_env: dict[str, str]) -> Iterator[Callable[..., ApiProcess]]:
    """Start an extra API process: ``api_process("name", KITH_SETTING="value", ...)``
    (not yet ready: call ``wait_ready()``). Whatever is still running at the end is stopped."""
    started: list[ApiProcess] = []

    def start(name: str, **settings: str) -> ApiProcess:
        started.append(ApiProcess({**server_env, **settings}, name))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def key_dir(server_env: dict[str, str]) -> Path:
    """Where the test server keeps its (dev) signing keys."""
    return Path(server_env["KITH_DATA_DIR"]) / "keys"


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for asserting what was (not) written."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


# -- ordering: the log audit runs after every test that writes to the logs ------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "run_last: run after every other test (e.g. to audit the run's logs)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move ``run_last`` tests to the end, whatever their file's place in the alphabet."""
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)
