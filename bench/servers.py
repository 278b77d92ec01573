"""The servers a benchmark runs against: PostgreSQL, Redis/Valkey and the Kith API.

Given URLs name existing servers; without them the embedded wheels start (data under
``.kith/bench``), as `make run` does. Either way the run gets a database of its own,
migrated, and dropped at the end; the API runs as production runs it, ``python -m
service.cli api`` (Granian) in its own process on a free loopback port, and next to it the
transport floor (:mod:`bench.http_floor`) on the same HTTP server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil

from service.infra.embedded import drop_database, ensure_database, start_postgres, start_valkey
from service.infra.migrate import migrate

__all__ = ["ApiProcess", "Stack", "stack"]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


class ApiProcess:
    """The API server's process tree (Granian's supervisor and its workers), for memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def rss(self) -> int:
        """Resident bytes of the whole tree now."""
        return sum(p.memory_info().rss for p in self._tree())

    def reset_peak_rss(self) -> bool:
        """Restart the kernel's high-water mark (Linux ``clear_refs`` 5); False if we can't."""
        try:
            for p in self._tree():
                Path(f"/proc/{p.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def peak_rss(self) -> int:
        """Sum over the tree of each process's peak resident bytes (``VmHWM``) since the
        last reset; falls back to the current RSS where ``/proc`` is not there."""
        total = 0
        for p in self._tree():
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                total += p.memory_info().rss
                continue
            kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmHWM:")
            total += kib * 1024
        return total


@dataclass(frozen=True, slots=True)
class Stack:
    """Everything a workload may talk to."""

    base_url: str  # the API
    floor_url: str  # the transport floor (bench/http_floor.py): same HTTP stack, no app
    database_url: str  # the run's own database (for ceilings and checks)
    redis_url: str
    api: ApiProcess
    servers: str  # where PostgreSQL and Redis come from, e.g. "PostgreSQL embedded, Redis given"
    postgres_version: str


@contextmanager
def stack(
    database_url: str | None, redis_url: str | None, *, own_database: bool = False
) -> Iterator[Stack]:
    """Start (or borrow) the servers, create and migrate a fresh database, start the API
    and the transport floor; undo all of it on exit. Blocking: call it outside a loop.

    ``own_database``: ``database_url`` is this run's alone (a Citus cluster started for
    it, where CREATE DATABASE does not reach the workers): migrate and use it as it is."""
    state_dir = ROOT / ".kith" / "bench"
    servers = (
        f"PostgreSQL {'given' if database_url else 'embedded'}, "
        f"Redis {'given' if redis_url else 'embedded (Valkey)'}"
    )
    if own_database and database_url:
        with _stack_on(database_url, redis_url or start_valkey(state_dir), servers) as s:
            yield s
        return
    if not database_url:
        print("starting embedded PostgreSQL …", flush=True)
        with warnings.catch_warnings():  # platformdirs, on machines without XDG_RUNTIME_DIR
            warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR")
            database_url = start_postgres(state_dir)
    if not redis_url:
        print("starting embedded Valkey …", flush=True)
        redis_url = start_valkey(state_dir)
    name = f"kith_bench_{os.getpid()}_{secrets.token_hex(3)}"
    url = asyncio.run(ensure_database(database_url, name))
    try:
        with _stack_on(url, redis_url, servers) as s:
            yield s
    finally:
        asyncio.run(drop_database(database_url, name))


@contextmanager
def _stack_on(url: str, redis_url: str, servers: str) -> Iterator[Stack]:
    """Migrate the database at ``url``, start the API on it and the transport floor."""
    asyncio.run(migrate(url))
    version = asyncio.run(_server_version(url))
    with tempfile.TemporaryDirectory(prefix="kith-bench-") as tmp:
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}"
        api_args = [sys.executable, "-m", "service.cli", "api"]
        api_env = _api_env(url, redis_url, tmp, port)
        ready = f"{api_url}/health/ready"
        with _process(api_args, api_env, ready, Path(tmp) / "api.log") as api_pid:
            port = _free_port()  # chosen only now: the API holds its port already
            floor_url = f"http://127.0.0.1:{port}"
            floor_args = [
                *(sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"),
                *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
                "bench.http_floor:app",
            ]
            floor_env = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
            with _process(floor_args, floor_env, f"{floor_url}/health", Path(tmp) / "floor.log"):
                yield Stack(
                    api_url, floor_url, url, redis_url, ApiProcess(api_pid), servers, version
                )


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api_env(database_url: str, redis_url: str, data_dir: str, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KITH_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KITH_HOST": "127.0.0.1",
        "KITH_PORT": str(port),
        "KITH_DATA_DIR": data_dir,
        # Cheap password hashes: accounts are set-up, not what is measured.
        "KITH_ARGON2_TIME_COST": "1",
        "KITH_ARGON2_MEMORY_KIB": "1024",
        # One client address and one user drive the whole run: per-address and per-user
        # limits (0 = none) would measure the limiter, not the service. Each request still
        # pays for the limiter's guard.
        "KITH_RATELIMIT_REGISTER_PER_IP": "0",
        "KITH_RATELIMIT_LOGIN_PER_IP": "0",
        "KITH_RATELIMIT_LOGIN_PER_EMAIL": "0",
        "KITH_RATELIMIT_REFRESH_PER_IP": "0",
        "KITH_RATELIMIT_SYNC_PER_USER": "0",
    }


@contextmanager
def _process(args: list[str], env: dict[str, str], ready_url: str, log_path: Path) -> Iterator[int]:
    """Run ``args`` until the block ends; yield its pid once ``ready_url`` answers 200."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(ready_url, proc, log_path)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{url} did not answer (see {log_path.name}):\n{tail}")
        time.sleep(0.1)
