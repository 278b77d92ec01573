"""The first thing a mobile developer tries: register, push a contact, pull it back."""

from __future__ import annotations

import httpx

from tests.helpers import new_id, pull_all, push, register, stamp


async def test_a_pushed_contact_comes_back_on_pull(http: httpx.AsyncClient) -> None:
    ana = await register(http)
    cid = new_id("contact")
    result = await push(
        http,
        ana,
        [
            {
                "table": "contacts",
                "id": cid,
                "hlc": stamp(ana.device_id),
                "fields": {"display_name": "Sam", "circle": "close"},
            }
        ],
    )
    assert result["accepted"] == 1
    state, _ = await pull_all(http, ana)
    contact = state[("contacts", cid)]
    assert contact["fields"]["display_name"] == "Sam"
    assert contact["fields"]["circle"] == "close"
    assert contact["fields"]["archived"] is False  # defaults fill every field
    assert state[("settings", "settings")]["fields"]["time_zone"] == "Europe/Lisbon"
