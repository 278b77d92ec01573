"""The WatermelonDB adapter's value mapping is lossless both ways: any value Kith stores,
sent to the app (``pulled_row``) and pushed back unchanged (``to_kith``), is the same value
— lists and objects through JSON text, instants through milliseconds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.watermelon import COLUMNS, Column
from service.sync.watermelon import pulled_row, to_kith

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
instants = st.datetimes(
    min_value=dt.datetime(1970, 1, 2),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [
            dt.UTC,
            dt.timezone(dt.timedelta(hours=2)),
            dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
        ]
    ),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))  # ms: what WatermelonDB keeps

_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "text": st.text(),
    "number": st.integers(-(2**53), 2**53),
    "boolean": st.booleans(),
    "json": json_values,
}

columns = st.sampled_from(
    [(table, column) for table, cols in COLUMNS.items() for column in cols.values()]
)


def _roundtrip(table: str, column: Column, stored: Any) -> Any:
    fields = msgspec.json.encode({column.name: stored})
    raw = pulled_row(table, "rec00000001", fields, "1765000000000-0000-dev-1")
    sent = msgspec.json.decode(msgspec.json.encode(raw))  # over the wire, as JSON
    assert "_status" not in sent
    assert "_changed" not in sent
    assert sent["updated_at"] == 1_765_000_000_000
    return to_kith(table, "updated", "rec00000001", column, sent[column.name])


@settings(max_examples=300)
@given(data=st.data(), target=columns)
def test_every_column_comes_back_as_it_was_stored(
    data: st.DataObject, target: tuple[str, Column]
) -> None:
    table, column = target
    if column.kind == "time_ms":
        instant = data.draw(instants)
        back = _roundtrip(table, column, instant.isoformat())
        assert dt.datetime.fromisoformat(back) == instant  # the same instant, in UTC
        return
    stored = data.draw(_KINDS[column.kind])
    assert _roundtrip(table, column, stored) == stored


def test_null_stays_null_and_json_text_is_what_json_stringify_reads() -> None:
    tags = COLUMNS["contacts"]["tags"]
    assert _roundtrip("contacts", tags, None) is None
    raw = pulled_row("contacts", "rec00000001", b'{"tags":["a \\"b\\"","\\u00e7"]}', "")
    assert raw == {"id": "rec00000001", "tags": '["a \\"b\\"","ç"]', "updated_at": 0}
