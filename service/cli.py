"""The ``kith`` command.

kith dev        embedded PostgreSQL + Valkey (unless DATABASE_URL/REDIS_URL are set),
                migrations, a background worker, then the API — what `make run` calls
kith api        serve the API with Granian (production: DATABASE_URL must be set)
kith worker     the background worker: durable jobs, rules evaluation, daily maintenance
kith migrate    apply pending migrations and exit
kith maintain   purge tombstones past the horizon and expired conflict/batch records
kith rotate-keys  re-wrap every person's data key under the current master key (online)
kith seal-existing  seal private text stored in the clear before migration 0011 (online)
kith openapi    write the OpenAPI document and the synced tables' JSON Schema
kith seed       fill the database (DATABASE_URL) with a generated population
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from service.config import Settings, SettingsError
from service.infra.migrate import migrate
from service.sync.seed import SeedError

__all__ = ["main"]


def _embedded_env(settings: Settings) -> Settings:
    """Fill in DATABASE_URL / REDIS_URL with embedded servers where they are not set."""
    from service.infra.embedded import ensure_database, start_postgres, start_valkey

    database_url, redis_url = settings.database.url, settings.redis_url
    if not database_url:
        print("starting embedded PostgreSQL …", flush=True)
        database_url = asyncio.run(ensure_database(start_postgres(settings.data_dir), "kith"))
        os.environ["DATABASE_URL"] = database_url
    if not redis_url:
        print("starting embedded Valkey …", flush=True)
        redis_url = start_valkey(settings.data_dir)
        os.environ["REDIS_URL"] = redis_url
    return settings.using(database_url=database_url, redis_url=redis_url)


def _start_dev_worker() -> subprocess.Popen[bytes]:
    """`kith dev` runs one background worker beside the API, so a developer sees insights
    appear (rules evaluation, sweeps) exactly as in production, where it is `kith worker`."""
    print("starting the background worker (kith worker) …", flush=True)
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=dict(os.environ))


def _dev(settings: Settings) -> None:
    settings = _embedded_env(settings)
    _migrate(settings)
    worker = _start_dev_worker()
    # Plain lines for the person at the terminal; the JSON log lines follow.
    base = f"{'https' if settings.server.tls_cert else 'http'}://{settings.server.host}:{settings.server.port}"
    print(f"\nKith is starting on {base}\n  OpenAPI docs:   {base}/docs", flush=True)
    print(f"  caregiver page: {base}/care\n", flush=True)
    try:
        _serve(settings)
    finally:
        worker.terminate()
        worker.wait(30)


def _serve(settings: Settings) -> None:
    import logging

    from granian import Granian
    from granian.constants import Interfaces

    from service.infra.logs import configure_logging, granian_log_config

    configure_logging(settings.log_level)  # one JSON object per line, Granian's lines too
    scheme = "https" if settings.server.tls_cert else "http"
    log = logging.getLogger("kith")
    log.info("Kith API on %s://%s:%d", scheme, settings.server.host, settings.server.port)
    log.info("OpenAPI docs: %s://%s:%d/docs", scheme, settings.server.host, settings.server.port)
    # SIGTERM: Granian stops accepting, lets in-flight requests finish, then runs the
    # lifespan shutdown; a process still busy after the grace period is killed.
    Granian(
        "service.app:app_from_env",
        factory=True,
        address=settings.server.host,
        port=settings.server.port,
        interface=Interfaces.ASGI,
        workers=settings.server.workers,
        ssl_cert=settings.server.tls_cert,
        ssl_key=settings.server.tls_key,
        log_access=False,
        log_dictconfig=granian_log_config(),
        workers_kill_timeout=settings.server.shutdown_grace_s,
        backpressure=_concurrent_requests(),
    ).serve()


def _concurrent_requests() -> int:
    """How many requests one worker handles at once. Granian's default (1024 / workers)
    counts every open ``/v1/sync/events`` stream, so the 1025th idle stream would stall
    every other request; the real bound on connections is the file-descriptor limit.
    Database work is bounded anyway by the pool (``KITH_DB_POOL_MAX``)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1024, soft if soft != resource.RLIM_INFINITY else 65536)


def _migrate(settings: Settings) -> None:
    if not settings.database.url:
        raise SettingsError("DATABASE_URL is not set")
    applied = asyncio.run(migrate(settings.database.url))
    print(f"migrations applied: {applied or 'none pending'}", flush=True)


async def _maintain(settings: Settings) -> None:
    from service.store.sync import purge_expired, purge_tombstones

    assert settings.database.url
    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(settings.database.url)
    try:
        purged = await purge_tombstones(
            conn, now - dt.timedelta(days=settings.sync.tombstone_horizon_days)
        )
        conflicts, batches = await purge_expired(
            conn,
            conflicts_before=now - dt.timedelta(days=settings.sync.conflict_retention_days),
            batches_before=now - dt.timedelta(days=settings.sync.batch_retention_days),
        )
    finally:
        await conn.close()
    print(f"purged {purged} tombstones, {conflicts} conflict entries, {batches} batch records")


def api_documents(settings: Settings) -> dict[str, bytes]:
    """The OpenAPI document and the JSON Schema of every synced table's fields."""
    import msgspec

    from schemas.tables import TABLES
    from service.app import create_app, openapi_document

    app = create_app(settings.using(database_url=settings.database.url or "unused"))
    openapi = msgspec.json.encode(openapi_document(app))
    types = [spec.client_type for spec in TABLES.values() if spec.client_type is not None]
    server_written = [spec.read_type for spec in TABLES.values() if spec.read_type is not None]
    _, components = msgspec.json.schema_components(
        [*types, *server_written], ref_template="#/$defs/{name}"
    )
    tables = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kith synced tables, schema version 1 (the `fields` of a change)",
        "$defs": components,
    }
    return {
        "openapi.json": msgspec.json.format(openapi, indent=2) + b"\n",
        "tables.schema.json": msgspec.json.format(msgspec.json.encode(tables), indent=2) + b"\n",
    }


def _openapi(out_dir: str | None) -> None:
    for name, doc in api_documents(Settings.from_env()).items():
        if out_dir:
            (Path(out_dir) / name).write_bytes(doc)
        else:
            sys.stdout.buffer.write(doc)


def _seed(settings: Settings, args: argparse.Namespace) -> None:
    from service.sync.seed import ProgressBar, SeedOptions, seed_database

    if not settings.database.url:
        raise SettingsError(
            "DATABASE_URL is not set: `kith seed` writes to an existing, migrated database "
            "(e.g. DATABASE_URL=postgresql://postgres@127.0.0.1:5432/kith kith seed …)"
        )
    options = SeedOptions(
        people=args.people,
        contacts=args.contacts,
        days=args.days,
        seed=args.seed,
        start=args.start,
        now=dt.datetime.fromisoformat(args.now) if args.now else None,
        chunk=args.chunk,
        password=args.password,
        argon2_time_cost=settings.tokens.argon2_time_cost,
        argon2_memory_kib=settings.tokens.argon2_memory_kib,
    )
    bar = ProgressBar(options.people)
    result = asyncio.run(seed_database(settings.database.url, options, progress=bar.update))
    bar.update(result.people, final=True)
    rows = ", ".join(f"{n:,} {table}" for table, n in result.rows.items())
    print(f"seeded {result.people:,} people ({rows}) in {result.seconds:.1f} s", flush=True)


@contextlib.asynccontextmanager
async def _pool(database_url: str | None) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A small pool for one operator command, closed when it is done."""
    from service.store.db import create_pool

    if not database_url:
        raise SettingsError("DATABASE_URL is not set")
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def report_lines(database_url: str | None, days: int) -> list[str]:
    """The operator's view: the job queue (with the dead letters), help requests that went
    unanswered to the end of their ladder (decision 0018), and, per rule, how often a nudge
    was followed by an in-person meeting within 14 days."""
    from service.store import care_alerts as alert_store
    from service.store import jobs as job_store
    from service.store import nudges as nudge_store
    from service.store import push as push_store

    async with _pool(database_url) as pool:
        now = dt.datetime.now(dt.UTC)
        unanswered = await alert_store.no_response_alerts(pool, now - dt.timedelta(days=days))
        stats = await job_store.queue_stats(pool)
        dead = await job_store.dead_jobs(pool, 20)
        effects = await nudge_store.effectiveness(pool, now, now - dt.timedelta(days=days))
        disabled = await push_store.disabled_credentials(pool)
    lines = [
        f"jobs: {stats['queued']} queued, {stats['running']} running, {stats['dead']} dead",
        *(f"  dead #{j.id} {j.kind} after {j.attempts} attempts: {j.last_error}" for j in dead),
        *(
            f"push credential {key} DISABLED since {at:%Y-%m-%d %H:%M} UTC: {why} "
            f"(fix the key, then `kith enable-push {key}`)"
            for key, why, at in disabled
        ),
        f"help requests nobody answered in the last {days} days: {len(unanswered)}",
        *(
            f"  NO RESPONSE space {a.space_id}: raised {a.raised_at:%Y-%m-%d %H:%M} UTC, "
            f"no response by {a.no_response_at:%H:%M} UTC"
            f"{' (resolved since)' if a.resolved else ' (still open)'}"
            for a in unanswered
        ),
        f"nudges sent in the last {days} days, and in-person meetings within 14 days after:",
        f"  {'rule':<12} {'sent':>6} {'settled':>8} {'effective':>10} {'rate':>6}",
    ]
    for e in effects:
        rate = f"{e.rate:.0%}" if e.rate is not None else "-"
        lines.append(f"  {e.rule:<12} {e.sent:>6} {e.settled:>8} {e.effective:>10} {rate:>6}")
    if not effects:
        lines.append("  (none sent)")
    return lines


async def operate(database_url: str | None, action: str, target: str) -> str | None:
    """An operator's fix: ``retry`` a dead job (by id) or ``enable-push`` a credential (by
    key). Returns what was done, or None if there was nothing to do."""
    from service.store import jobs as job_store
    from service.store import push as push_store

    async with _pool(database_url) as pool:
        if action == "retry":
            async with pool.acquire() as conn:
                done = await job_store.retry_dead(conn, int(target))
            return f"job {target} queued again with fresh attempts" if done else None
        done = await push_store.enable_credential(pool, target)
        return (
            f"push credential {target} enabled; the next send mints a new token" if done else None
        )


def _add_seed_parser(sub: Any) -> None:
    p_seed = sub.add_parser("seed", help="insert a generated population (needs DATABASE_URL)")
    p_seed.add_argument("--people", type=int, default=1000, help="how many people")
    p_seed.add_argument("--contacts", type=int, default=30, help="contacts per person")
    p_seed.add_argument("--days", type=int, default=730, help="days of history per person")
    p_seed.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    p_seed.add_argument("--start", type=int, default=0, help="index of the first person")
    p_seed.add_argument("--now", help="ISO time the histories end at (default: now)")
    p_seed.add_argument("--chunk", type=int, default=250, help="people per transaction")
    p_seed.add_argument("--password", default="kith-seed-password", help="every account's")


class OperatorError(Exception):
    """An operator command found nothing to act on."""


async def rotate_keys(settings: Settings, batch: int) -> str:
    """Re-wrap every data key under the first of ``KITH_MASTER_KEYS`` (decision 0021); the
    service keeps running (readers accept every configured master key). Raises
    :class:`OperatorError` if some keys could not be re-wrapped, so the old master key is
    not dropped while anything still needs it."""
    from service.wiring import private_text

    async with _pool(settings.database.url) as pool:
        done = await private_text(settings, pool).rotate(batch=batch)
    line = f"re-wrapped {done.rewrapped} data keys"
    if done.unknown_kid or done.undecryptable:
        raise OperatorError(
            f"{line}; {done.unknown_kid} are wrapped under a master key not configured here "
            f"and {done.undecryptable} do not open under theirs: keep the old keys until "
            "they are re-wrapped"
        )
    return line


async def seal_existing(settings: Settings, batch: int) -> str:
    """Seal every private value written before migration 0011 (decision 0021), with the
    service running; what was sealed, per table. Raises :class:`OperatorError` if some
    spaces' keys do not open here (their text is left as it is)."""
    from service.wiring import private_text

    async with _pool(settings.database.url) as pool:
        done = await private_text(settings, pool).seal_existing(batch=batch)
    counts = ", ".join(f"{table} {n}" for table, n in done.sealed.items())
    line = f"sealed {sum(done.sealed.values())} values that were in the clear ({counts})"
    if done.unreadable:
        raise OperatorError(
            f"{line}; {done.unreadable} spaces hold text in the clear but their key is under "
            "a master key not configured here, or does not open: run again with every "
            "master key configured"
        )
    return line


def _dispatch(settings: Settings, args: argparse.Namespace) -> None:
    if args.command == "dev":
        _dev(settings)
    elif args.command == "api":
        if not settings.database.url:
            raise SettingsError("DATABASE_URL is not set (`kith dev` starts embedded servers)")
        _serve(settings)
    elif args.command == "worker":
        if not settings.database.url:
            raise SettingsError("DATABASE_URL is not set")
        from service.infra.logs import configure_logging
        from service.worker.main import run_worker

        configure_logging(settings.log_level)
        asyncio.run(run_worker(settings))
    elif args.command == "migrate":
        _migrate(settings)
    elif args.command == "maintain":
        if not settings.database.url:
            raise SettingsError("DATABASE_URL is not set")
        asyncio.run(_maintain(settings))
    elif args.command == "openapi":
        _openapi(args.out_dir)
    elif args.command == "report":  # each opens its pool with _pool: no URL, no start
        print("\n".join(asyncio.run(report_lines(settings.database.url, args.days))))
    elif args.command in {"retry", "enable-push"}:
        target = str(args.job_id if args.command == "retry" else args.key)
        done = asyncio.run(operate(settings.database.url, args.command, target))
        if done is None:
            raise OperatorError(f"nothing to do: no dead job or disabled credential {target!r}")
        print(done)
    elif args.command == "seed":
        _seed(settings, args)
    elif args.command == "rotate-keys":
        print(asyncio.run(rotate_keys(settings, args.batch)))
    elif args.command == "seal-existing":
        print(asyncio.run(seal_existing(settings, args.batch)))


def _positive(text: str) -> int:
    """A page size: a whole number of at least 1 (argparse names the option if not)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kith", description="Kith backend")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("dev", "embedded servers + migrations + API (what `make run` calls)"),
        ("api", "serve the API"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.add_argument("--workers", type=int)
    sub.add_parser("worker", help="run the background worker (jobs, maintenance)")
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("maintain", help="purge expired tombstones, conflicts and batch records")
    p_report = sub.add_parser("report", help="job queue, dead letters, nudge effectiveness")
    p_report.add_argument("--days", type=int, default=90, help="nudges sent in the last N days")
    p_retry = sub.add_parser("retry", help="send a dead job back to the queue")
    p_retry.add_argument("job_id", type=int)
    p_enable = sub.add_parser("enable-push", help="resume a push credential a provider refused")
    p_enable.add_argument("key", help="as `kith report` names it, e.g. apns:TEAM:KEYID")
    p_rotate = sub.add_parser(
        "rotate-keys", help="re-wrap every data key under the current master key, online"
    )
    p_rotate.add_argument("--batch", type=_positive, default=500, help="keys read per page")
    p_seal = sub.add_parser(
        "seal-existing", help="seal private text written before migration 0011, online"
    )
    p_seal.add_argument(
        "--batch", type=_positive, default=500, help="spaces and rows read per page"
    )
    p_openapi = sub.add_parser("openapi", help="write the OpenAPI document and table schemas")
    p_openapi.add_argument("--out-dir", help="a folder (default: print to stdout)")
    _add_seed_parser(sub)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        if args.command in {"dev", "api"}:
            overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k))}
            settings = dataclasses.replace(settings, **overrides)
            os.environ.update({f"KITH_{k.upper()}": str(v) for k, v in overrides.items()})
        _dispatch(settings, args)
    except SettingsError as exc:
        print(f"kith: {exc}", file=sys.stderr)
        return 2
    except OperatorError as exc:
        print(f"kith: {exc}", file=sys.stderr)
        return 1
    except SeedError as exc:
        print(f"kith seed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
