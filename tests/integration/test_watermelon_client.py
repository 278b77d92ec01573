"""The real WatermelonDB (``@nozbe/watermelondb`` 0.28 from npm, LokiJS adapter under Node,
no mocks) syncing with the live API through ``/v1/watermelon``: the scenarios are in
``tests/watermelon/scenarios.js`` and fail on any warning WatermelonDB logs. ``make test``
installs the npm packages (``npm ci`` in ``tests/watermelon``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.watermelon import COLUMNS
from tests.helpers import Account, login, new_id, push, register

APP = Path(__file__).resolve().parents[1] / "watermelon"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (APP / "node_modules" / "@nozbe" / "watermelondb").is_dir():
        pytest.fail(
            "the WatermelonDB test needs Node >= 20 and its npm packages: run `make test` "
            "(it runs `npm ci` in tests/watermelon)"
        )
    return node


async def run_scenario(base_url: str, name: str, devices: list[Account]) -> dict[str, Any]:
    env = {
        **os.environ,
        "KITH_URL": base_url,
        "KITH_TOKENS": json.dumps([d.access_token for d in devices]),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [_node(), "scenarios.js", name],
        cwd=APP,
        env=env,
        capture_output=True,
        text=True,
        timeout=int(os.environ.get("KITH_NODE_TIMEOUT_S", "300")),
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == "", done.stderr  # WatermelonDB printed nothing at all
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == name
    return figures


async def two_devices(http: httpx.AsyncClient) -> list[Account]:
    phone = await register(http)
    return [phone, await login(http, phone.email, new_id("dev"))]


async def timestamp(http: httpx.AsyncClient, who: Account) -> int:
    r = await http.get(
        "/v1/watermelon/pull", headers=who.headers, params={"last_pulled_at": "null"}
    )
    assert r.status_code == 200, r.text
    value: int = r.json()["timestamp"]
    return value


async def test_two_devices_create_edit_offline_and_delete_with_the_real_watermelondb(
    http: httpx.AsyncClient, live_server: str
) -> None:
    devices = await two_devices(http)
    await run_scenario(live_server, "twoDevices", devices)
    # Different fields: no value lost a merge; the history keeps only the name B replaced.
    r = await http.get("/v1/sync/conflicts", headers=devices[0].headers)
    assert r.status_code == 200
    assert [(c["field"], c["value"], c["reason"]) for c in r.json()["conflicts"]] == [
        ("display_name", "Ana", "overwritten")
    ]


async def test_a_value_that_lost_comes_back_to_the_device_with_the_real_watermelondb(
    http: httpx.AsyncClient, live_server: str
) -> None:
    devices = await two_devices(http)
    await run_scenario(live_server, "losingValue", devices)
    r = await http.get("/v1/sync/conflicts", headers=devices[0].headers)
    # …and the losing value is kept in the history.
    (lost,) = [c for c in r.json()["conflicts"] if c["reason"] == "older"]
    assert (lost["field"], lost["value"], lost["reason"]) == (
        "display_name",
        "Cyd (older edit, device A)",
        "older",
    )


async def test_a_retried_push_is_applied_once_with_the_real_watermelondb(
    http: httpx.AsyncClient, live_server: str
) -> None:
    devices = await two_devices(http)
    before = await timestamp(http, devices[0])
    figures = await run_scenario(live_server, "retriedPush", devices)
    assert len(figures["batch_ids"]) == 1
    assert await timestamp(http, devices[0]) == before + 3  # three records, written once


async def test_a_first_sync_of_10000_records_with_the_real_watermelondb(
    http: httpx.AsyncClient, live_server: str
) -> None:
    (who,) = [await register(http)]
    hlc = f"{time.time_ns() // 1_000_000:013d}-0000-{who.device_id}"
    for start in range(0, 10_000, 1000):
        await push(
            http,
            who,
            [
                {
                    "table": "contacts",
                    "id": f"person{n:010d}",
                    "hlc": hlc,
                    "fields": {"display_name": f"Person {n}", "tags": ["seeded"]},
                }
                for n in range(start, start + 1000)
            ],
        )
    figures = await run_scenario(live_server, "firstSync", [who])
    assert figures["contacts"] == 10_000


def test_the_guides_app_schema_declares_every_kith_column_with_its_type() -> None:
    """The schema in tests/watermelon/app.js (the guide's) matches the adapter's mapping:
    a table or column added to Kith and missing from the app's schema fails here."""
    dump = subprocess.run(
        [_node(), "-e", "process.stdout.write(JSON.stringify(require('./app').schema.tables))"],
        cwd=APP,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tables = json.loads(dump.stdout)
    assert set(tables) == set(COLUMNS)
    for name, columns in COLUMNS.items():
        declared = {c["name"]: c for c in tables[name]["columnArray"]}
        assert set(declared) == {*columns, "updated_at"}, name
        assert declared["updated_at"]["type"] == "number"
        for column in columns.values():
            assert declared[column.name]["type"] == column.watermelon_type, (name, column)
            assert declared[column.name].get("isOptional") is True, (name, column)
