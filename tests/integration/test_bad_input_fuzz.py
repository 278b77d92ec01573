"""Fuzzed push bodies over the real API: random JSON and valid batches with a few things
broken. Whatever arrives, the answer is below 500, and every 4xx is a problem body whose
field errors name a field. Seeded (derandomized): the same bodies every run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.tables import TABLES
from tests.helpers import PASSWORD, expect_problem, new_id, stamp

_FIELD_NAMES = sorted(
    {
        name
        for spec in TABLES.values()
        if spec.client_type
        for name in spec.client_type.__struct_fields__
    }
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", "\u0000", "settings", "close", "2025-01-01T00:00:00+00:00", "--02-30"])
    | st.integers(min_value=1, max_value=20_001).map(lambda n: "x" * n)  # around the limits
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _valid_batch(device_id: str) -> dict[str, Any]:
    """A batch the server accepts as it is: one change per writable table."""
    cid = new_id("c")
    when = "2025-03-01T20:00:00+00:00"
    hlc = stamp(device_id)
    changes: list[dict[str, Any]] = [
        {
            "table": "contacts",
            "id": cid,
            "hlc": hlc,
            "fields": {"display_name": "Sam", "circle": "close", "tags": ["school"]},
        },
        {
            "table": "interactions",
            "id": new_id("i"),
            "hlc": hlc,
            "fields": {"contact_ids": [cid], "kind": "call", "occurred_at": when, "quality": 4},
        },
        {
            "table": "reflections",
            "id": new_id("r"),
            "hlc": hlc,
            "fields": {"occurred_at": when, "mood": 3, "ucla3": [1, 2, 3], "body": "ok"},
        },
        {
            "table": "check_ins",
            "id": new_id("k"),
            "hlc": hlc,
            "fields": {"occurred_at": when, "status": "ok"},
        },
        {
            "table": "settings",
            "id": "settings",
            "hlc": hlc,
            "fields": {"quiet_hours_start": "22:00", "time_zone": "Europe/Lisbon"},
        },
        {"table": "contacts", "id": new_id("c"), "hlc": hlc, "deleted": True},
    ]
    return {
        "device_id": device_id,
        "batch_id": new_id("fuzz"),
        "schema_version": 1,
        "changes": changes,
    }


@st.composite
def _mutated_batch(draw: st.DrawFn, device_id: str) -> Any:
    """A valid batch with one to four things broken: a value replaced (often by a value
    of a real field name's neighbour), a key dropped, a key or list item added."""
    batch = _valid_batch(device_id)
    for _ in range(draw(st.integers(1, 4))):
        target: Any = batch
        for step in draw(st.lists(st.integers(0, 10), max_size=4)):
            children = list(target.values()) if isinstance(target, dict) else list(target)
            nested = [v for v in children if isinstance(v, (dict, list))]
            if not nested:
                break
            target = nested[step % len(nested)]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if isinstance(target, dict) and target and action != "add":
            key = draw(st.sampled_from(sorted(target)))
            if action == "drop":
                del target[key]
            else:
                target[key] = draw(_json)
        elif isinstance(target, dict):
            target[draw(st.sampled_from(_FIELD_NAMES) | st.text(max_size=8))] = draw(_json)
        elif target and action == "replace":
            target[draw(st.integers(0, len(target) - 1))] = draw(_json)
        else:
            target.append(draw(_json))
    return batch


@pytest.fixture(scope="module")
def fuzz_account(live_server: str) -> Iterator[tuple[httpx.Client, str, str]]:
    device_id = new_id("fuzz")
    with httpx.Client(base_url=live_server, timeout=30) as client:
        r = client.post(
            "/v1/auth/register",
            json={
                "email": f"{new_id('fuzz')}@example.org",
                "password": PASSWORD,
                "display_name": "Fuzz",
                "time_zone": "UTC",
                "device": {"id": device_id, "platform": "other"},
            },
        )
        assert r.status_code == 201, r.text
        yield client, r.json()["access_token"], device_id


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = expect_problem(r, r.status_code)
        for error in body.get("errors", []):
            assert isinstance(error["field"], str)
            assert error["field"]
            assert isinstance(error["message"], str)


def test_the_unmutated_fuzz_seed_is_accepted(
    fuzz_account: tuple[httpx.Client, str, str],
) -> None:
    """The fuzzer's starting point is valid, so its mutations probe one fault at a time."""
    client, token, device_id = fuzz_account
    r = client.post(
        "/v1/sync/push",
        json=_valid_batch(device_id),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 6


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same 100 bodies every run: CI stays deterministic
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzzed_push_bodies_never_crash_the_server(
    fuzz_account: tuple[httpx.Client, str, str], data: st.DataObject
) -> None:
    client, token, device_id = fuzz_account
    body = data.draw(
        st.one_of(_mutated_batch(device_id), _mutated_batch(device_id), _json), label="body"
    )
    raw = json.dumps(body, allow_nan=True).encode()
    r = client.post(
        "/v1/sync/push",
        content=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    event(f"HTTP {r.status_code}")  # --hypothesis-show-statistics shows the spread
    _check(r)
