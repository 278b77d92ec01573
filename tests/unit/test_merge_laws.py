"""The merge is a join semilattice: replicas that saw the same writes agree, in any order.

If one of these laws broke, two phones that synced the same edits could show different
contacts — or a deleted reflection could come back.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sync.hlc import format_hlc
from sync.merge import RecordState, apply, merge

NODES = ["phone-ana-01", "tablet-ana-02", "web-ana-0003"]
FIELDS = ["display_name", "circle", "notes", "tags"]

stamps = st.builds(
    format_hlc,
    st.integers(1_700_000_000_000, 1_700_000_000_050),
    st.integers(0, 3),
    st.sampled_from(NODES),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.text(max_size=4),
    st.lists(st.integers(0, 2), max_size=2),
)


@st.composite
def writes(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool]:
    """One change as a device sends it: some fields at one stamp, or a delete."""
    deleted = draw(st.integers(0, 4)) == 0  # one change in five is a delete
    fields = {} if deleted else draw(st.dictionaries(st.sampled_from(FIELDS), values, min_size=1))
    return fields, draw(stamps), deleted


@st.composite
def states(draw: st.DrawFn) -> RecordState:
    """A replica state reachable by applying some writes."""
    state: RecordState | None = None
    for fields, hlc, deleted in draw(st.lists(writes(), min_size=1, max_size=4)):
        state = apply(state, fields, hlc, deleted=deleted).state
    assert state is not None
    return state


@given(states(), states())
def test_merge_is_commutative(a: RecordState, b: RecordState) -> None:
    assert merge(a, b) == merge(b, a)


@given(states(), states(), states())
def test_merge_is_associative(a: RecordState, b: RecordState, c: RecordState) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(states())
def test_merge_is_idempotent(a: RecordState) -> None:
    assert merge(a, a) == a


@given(st.lists(writes(), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_any_delivery_order_converges(
    changes: list[tuple[dict[str, Any], str, bool]], rnd: Any
) -> None:
    """Two servers receiving the same pushes in different orders hold the same record."""

    def replay(order: list[tuple[dict[str, Any], str, bool]]) -> RecordState:
        state: RecordState | None = None
        for fields, hlc, deleted in order:
            state = apply(state, fields, hlc, deleted=deleted).state
        assert state is not None
        return state

    shuffled = list(changes)
    rnd.shuffle(shuffled)
    assert replay(changes) == replay(shuffled)
    # ... and a replica that merges everything at once agrees too.
    singles = [apply(None, f, h, deleted=d).state for f, h, d in changes]
    assert reduce(merge, singles) == replay(changes)


@given(states(), stamps, st.lists(writes(), max_size=6))
def test_a_deleted_record_stays_deleted_whatever_edits_arrive(
    before: RecordState, delete_hlc: str, later: list[tuple[dict[str, Any], str, bool]]
) -> None:
    state = apply(before, {}, delete_hlc, deleted=True).state
    for fields, hlc, deleted in later:
        outcome = apply(state, fields, hlc, deleted=deleted)
        state = outcome.state
        assert state.deleted
        assert state.fields == {}  # a tombstone keeps no content (deleted journal text is gone)
        if not deleted:
            # ...and the edit is not silently dropped: it is reported for the conflict history.
            assert {loss.field for loss in outcome.superseded} == set(fields)
            assert all(loss.reason == "deleted" for loss in outcome.superseded)


@given(st.dictionaries(st.sampled_from(FIELDS), values, min_size=1), stamps, stamps)
def test_newer_stamp_wins_each_field_and_the_loser_is_kept(
    fields: dict[str, Any], s1: str, s2: str
) -> None:
    older, newer = sorted([s1, s2])
    base = apply(None, fields, newer).state
    stale = {k: ["stale", k] for k in fields}
    outcome = apply(base, stale, older)
    if older == newer:
        return
    assert outcome.state.fields == fields  # the newer write holds
    assert {loss.field for loss in outcome.superseded} == set(fields)
    assert not outcome.changed


def test_field_level_merge_keeps_concurrent_edits_to_different_fields() -> None:
    """Phone renames Sam while the tablet moves Sam to the inner circle: both edits stay."""
    created = apply(
        None, {"display_name": "Sam", "circle": "close"}, "1700000000000-0000-phone-ana-01"
    )
    renamed = apply(created.state, {"display_name": "Samuel"}, "1700000000005-0000-phone-ana-01")
    moved = apply(renamed.state, {"circle": "inner"}, "1700000000003-0000-tablet-ana-02")
    assert moved.state.fields == {"display_name": "Samuel", "circle": "inner"}
    assert moved.superseded == []


def test_overwriting_another_devices_value_keeps_it_in_history() -> None:
    first = apply(None, {"notes": "likes hiking"}, "1700000000000-0000-phone-ana-01")
    second = apply(first.state, {"notes": "allergic to cats"}, "1700000000009-0000-tablet-ana-02")
    assert second.state.fields["notes"] == "allergic to cats"
    assert [(d.field, d.value, d.reason) for d in second.displaced] == [
        ("notes", "likes hiking", "overwritten")
    ]
    # The same device editing its own value is ordinary editing, not a conflict.
    third = apply(
        second.state, {"notes": "allergic to cats and dogs"}, "1700000000010-0000-tablet-ana-02"
    )
    assert third.displaced == []
