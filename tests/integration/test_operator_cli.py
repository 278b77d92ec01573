"""What an operator does when something is stuck: see it in `kith report`, fix it with one
command — and recurring jobs that died come back on their own."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from service.cli import main, operate, report_lines
from service.jobs import Kind
from service.worker.main import ensure_recurring


async def test_a_dead_job_is_listed_and_sent_back_to_the_queue(
    pool: asyncpg.Pool[Any], database_url: str
) -> None:
    job_id = await pool.fetchval(
        "INSERT INTO jobs (kind, state, attempts, last_error) "
        "VALUES ('push_send', 'dead', 12, 'retry: apns 503') RETURNING id"
    )
    lines = await report_lines(database_url, 90)
    assert any(f"dead #{job_id} push_send after 12 attempts" in line for line in lines)
    assert await operate(database_url, "retry", str(job_id)) is not None
    row = await pool.fetchrow("SELECT state, attempts FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert (row["state"], row["attempts"]) == ("queued", 0)
    # Twice: nothing left to retry.
    assert await operate(database_url, "retry", str(job_id)) is None
    await pool.execute("DELETE FROM jobs WHERE id = $1", job_id)


async def test_a_disabled_push_credential_is_reported_and_can_be_enabled(
    pool: asyncpg.Pool[Any], database_url: str
) -> None:
    key = "apns:TEAMOPS001:KEYOPS0001"
    await pool.execute(
        """
        INSERT INTO push_credentials (key, token, minted_at, expires_at, disabled_reason,
                                      disabled_at)
        VALUES ($1, 'old-token', now(), now() + interval '1 hour',
                'apns answered 403 InvalidProviderToken', now())
        """,
        key,
    )
    lines = await report_lines(database_url, 90)
    assert any(
        key in line and "DISABLED" in line and "InvalidProviderToken" in line for line in lines
    )
    assert await operate(database_url, "enable-push", key) is not None
    row = await pool.fetchrow(
        "SELECT disabled_reason, token FROM push_credentials WHERE key = $1", key
    )
    assert row is not None
    assert (row["disabled_reason"], row["token"]) == (None, "")  # the next send mints anew
    assert not any(key in line for line in await report_lines(database_url, 90))
    await pool.execute("DELETE FROM push_credentials WHERE key = $1", key)


def test_the_commands_say_when_there_is_nothing_to_do(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["retry", "999999999"]) == 1
    assert main(["enable-push", "apns:NOPE:NOPE"]) == 1
    assert "nothing to do" in capsys.readouterr().err


async def test_a_recurring_job_that_died_comes_back(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(
        "DELETE FROM jobs WHERE kind = ANY($1::text[])", [Kind.MAINTENANCE, Kind.SWEEP]
    )
    await pool.execute(
        "INSERT INTO jobs (kind, dedupe_key, state) VALUES ($1, 'daily', 'dead')",
        Kind.MAINTENANCE,
    )
    await ensure_recurring(pool, {Kind.MAINTENANCE, Kind.SWEEP, Kind.PUSH_SEND})
    queued = {
        r["kind"]
        for r in await pool.fetch(
            "SELECT kind FROM jobs WHERE state = 'queued' AND kind = ANY($1::text[])",
            [Kind.MAINTENANCE, Kind.SWEEP],
        )
    }
    assert queued == {Kind.MAINTENANCE, Kind.SWEEP}
    # Again: deduplicated, still one of each.
    await ensure_recurring(pool, {Kind.MAINTENANCE, Kind.SWEEP})
    count = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE state = 'queued' AND kind = ANY($1::text[])",
        [Kind.MAINTENANCE, Kind.SWEEP],
    )
    assert count == 2
    # A delivery-only worker schedules neither.
    await pool.execute(
        "DELETE FROM jobs WHERE kind = ANY($1::text[])", [Kind.MAINTENANCE, Kind.SWEEP]
    )
    await ensure_recurring(pool, {Kind.PUSH_SEND})
    assert not await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE kind = ANY($1::text[])",
        [Kind.MAINTENANCE, Kind.SWEEP],
    )


@pytest.mark.parametrize("command", ["rotate-keys", "seal-existing"])
def test_a_page_size_below_one_is_refused_by_name(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--batch", "0"])
    assert exited.value.code == 2
    assert "argument --batch: must be at least 1, not 0" in capsys.readouterr().err
