"""HLC ordering and cursor encoding: what keeps a device's later edit ordered after what it saw."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.cursor import InvalidCursor, decode_cursor, encode_cursor
from sync.hlc import MAX_COUNTER, Clock, InvalidHLC, parse


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_stamps_increase_even_when_the_wall_clock_stands_still_or_goes_back() -> None:
    wall = FakeWall(1_700_000_000_000)
    clock = Clock("phone-ana-01", wall)
    a = clock.now()
    b = clock.now()
    wall.ms -= 10_000  # NTP steps the clock back
    c = clock.now()
    assert a < b < c


def test_an_event_after_receiving_a_stamp_orders_after_it() -> None:
    """A phone whose clock is behind still orders its edit after the server's change it saw."""
    phone = Clock("phone-ana-01", FakeWall(1_700_000_000_000))
    seen = "1700000090000-0003-srv-abcd"
    phone.receive(seen)
    assert phone.now() > seen


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(1_700_000_000_000, 1_700_000_000_020)),
        min_size=1,
        max_size=40,
    )
)
def test_every_stamp_a_clock_issues_is_greater_than_everything_it_saw(
    events: list[tuple[int, int]],
) -> None:
    wall = FakeWall(1_700_000_000_000)
    clock = Clock("dev-000001", wall)
    highest = ""
    for kind, ms in events:
        wall.ms = ms
        if kind == 0:
            stamp = f"{ms + 3:013d}-0002-other-node"
            clock.receive(stamp)
            highest = max(highest, stamp)
        else:
            stamp = clock.now()
            assert stamp > highest
            highest = stamp


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = Clock("dev-000001", FakeWall(1_700_000_000_000))
    clock.restore(f"1700000000000-{MAX_COUNTER:04x}-dev-000001")
    nxt = parse(clock.now())
    assert (nxt.ms, nxt.counter) == (1_700_000_000_001, 0)


@pytest.mark.parametrize(
    "bad", ["", "123-0000-x", "1700000000000-00g0-x", "1700000000000-0000-", "17000000000000000"]
)
def test_malformed_stamps_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidHLC):
        parse(bad)


@given(st.integers(0, 2**62))
def test_cursor_round_trips(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize("bad", ["", "!!!", "azE6", "bm9wZQ", "azE6LTE", "azE6MTIzYWJj"])
def test_foreign_cursors_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(bad)
