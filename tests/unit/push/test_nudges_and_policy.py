"""Which nudge goes out and what becomes of the rest; what the push says; and what each
provider answer makes the worker do."""

from __future__ import annotations

import datetime as dt

import pytest

from service.nudges.planning import Decision, Pending, Tie, compose, decide
from service.push.base import SendResult
from service.push.policy import Action, judge

NOW = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 11, 23)


def pending(
    nid: str, contact: str | None = "c-sam", level: str = "slipping", age_days: float = 0
) -> Pending:
    return Pending(
        nid,
        f"ins-{nid}",
        contact,
        "overdue",
        level,
        "title",
        "body",
        NOW - dt.timedelta(days=age_days),
    )


def tie(name: str = "Sam", **kw: object) -> Tie:
    base: dict[str, object] = {
        "name": name,
        "live": True,
        "snoozed_until": None,
        "last_met_at": None,
    }
    return Tie(**(base | kw))  # type: ignore[arg-type]


TIES = {"c-sam": tie("Sam"), "c-ana": tie("Ana"), "c-joe": tie("Joe"), "c-lu": tie("Lu")}


def run(items: list[Pending], **kw: object) -> Decision:
    args: dict[str, object] = {
        "now": NOW,
        "today": TODAY,
        "enabled": True,
        "may_send": True,
        "digest": False,
    }
    ties = kw.pop("ties", TIES)
    open_ids = kw.pop("open_insights", {p.insight_id for p in items})
    return decide(items, ties, open_ids, **(args | kw))  # type: ignore[arg-type]


def test_the_most_urgent_goes_out_and_the_others_wait() -> None:
    d = run([pending("a", "c-ana"), pending("b", "c-sam", level="dormant")])
    assert d.send is not None
    assert d.send.id == "b"
    assert [p.id for p in d.waiting] == ["a"]


def test_an_escalation_supersedes_the_request_it_escalates() -> None:
    d = run([pending("s1", level="slipping", age_days=3), pending("s2", level="at_risk")])
    assert d.send is not None
    assert d.send.id == "s2"
    assert [(p.id, why, into) for p, why, into in d.merged] == [("s1", "superseded", "s2")]


def test_with_the_digest_the_others_ride_along_and_are_named() -> None:
    items = [pending("a", "c-ana"), pending("b", "c-sam", level="at_risk"), pending("j", "c-joe")]
    d = run(items, digest=True)
    assert d.send is not None
    assert d.send.id == "b"
    assert sorted(p.id for p, why, into in d.merged if why == "digest" and into == "b") == [
        "a",
        "j",
    ]
    assert sorted(d.merged_names(TIES)) == ["Ana", "Joe"]
    assert d.waiting == []


def test_a_request_that_waited_a_week_rides_along_instead_of_waiting_forever() -> None:
    d = run([pending("old", "c-ana", age_days=8), pending("new", "c-sam", level="at_risk")])
    assert d.send is not None
    assert d.send.id == "new"
    assert [(p.id, why) for p, why, _ in d.merged] == [("old", "digest")]


def test_nothing_is_dropped_silently() -> None:
    items = [
        pending("closed", "c-ana"),
        pending("gone", "c-joe"),
        pending("snoozed", "c-lu"),
        pending("ok", "c-sam"),
    ]
    ties = TIES | {
        "c-joe": tie("Joe", live=False),
        "c-lu": tie("Lu", snoozed_until=TODAY + dt.timedelta(days=2)),
    }
    open_ids = {"ins-gone", "ins-snoozed", "ins-ok"}
    d = run(items, ties=ties, open_insights=open_ids)
    assert [(p.id, why) for p, why in d.cancelled] == [
        ("closed", "insight_closed"),
        ("gone", "contact_gone"),
    ]
    assert [(p.id, why) for p, why in d.skipped] == [("snoozed", "snoozed")]
    assert d.send is not None
    assert d.send.id == "ok"
    off = run(items, ties=ties, open_insights=open_ids, enabled=False)
    assert {p.id for p, why in off.skipped if why == "nudges_off"} == {"snoozed", "ok"}
    assert accounted(d) == accounted(off) == {p.id for p in items}


def accounted(d: Decision) -> set[str]:
    return (
        {p.id for p, *_ in d.merged}
        | {p.id for p, _ in d.skipped}
        | {p.id for p, _ in d.cancelled}
        | {p.id for p in d.waiting}
        | ({d.send.id} if d.send else set())
    )


def test_out_of_budget_everything_waits() -> None:
    d = run([pending("a", "c-ana")], may_send=False)
    assert d.send is None
    assert [p.id for p in d.waiting] == ["a"]


def test_the_push_is_specific_and_suggests_meeting() -> None:
    sam = tie("Sam", last_met_at=NOW - dt.timedelta(days=42))
    title, body = compose(pending("x"), sam, [], now=NOW, local_weekday=0)
    assert title == "Time to see Sam?"
    assert body == "It's been 6 weeks since you and Sam met in person — coffee this weekend?"
    _, body = compose(pending("x"), sam, ["Ana", "Joe", "Lu", "Bo"], now=NOW, local_weekday=5)
    assert body.endswith("coffee in the next few days? Also on your list: Ana, Joe, Lu and 1 more.")


APNS_REGISTERED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def MS(d: dt.datetime) -> int:
    return int(d.timestamp() * 1000)


@pytest.mark.parametrize(
    ("provider", "result", "action", "min_delay"),
    [
        ("apns", SendResult(200), Action.DELIVERED, 0),
        # 410 after the token was registered: dead. Before: the phone registered it again.
        (
            "apns",
            SendResult(410, "Unregistered", timestamp_ms=MS(APNS_REGISTERED) + 1),
            Action.DROP_TOKEN,
            0,
        ),
        (
            "apns",
            SendResult(410, "Unregistered", timestamp_ms=MS(APNS_REGISTERED) - 1),
            Action.KEEP_TOKEN,
            0,
        ),
        ("apns", SendResult(410, "ExpiredToken"), Action.DROP_TOKEN, 0),
        ("apns", SendResult(400, "DeviceTokenNotForTopic"), Action.DROP_TOKEN, 0),
        ("apns", SendResult(400, "BadDeviceToken"), Action.OTHER_ENVIRONMENT, 0),
        ("apns", SendResult(403, "ExpiredProviderToken"), Action.REMINT, 0),
        ("apns", SendResult(403, "InvalidProviderToken"), Action.CREDENTIALS, 0),
        ("apns", SendResult(400, "TopicDisallowed"), Action.CREDENTIALS, 0),
        ("apns", SendResult(429, "TooManyProviderTokenUpdates"), Action.WAIT_TOKEN_LIMIT, 1200),
        ("apns", SendResult(429, "TooManyRequests", retry_after_s=30), Action.RETRY, 30),
        ("apns", SendResult(503, "ServiceUnavailable"), Action.RETRY, 0),
        ("apns", SendResult(500, "InternalServerError"), Action.RETRY, 0),
        ("apns", SendResult(0, "Timeout"), Action.RETRY, 0),
        ("apns", SendResult(413, "PayloadTooLarge"), Action.BAD_MESSAGE, 0),
        ("apns", SendResult(400, "BadCollapseId"), Action.BAD_MESSAGE, 0),
        ("fcm", SendResult(200), Action.DELIVERED, 0),
        ("fcm", SendResult(404, "UNREGISTERED"), Action.DROP_TOKEN, 0),
        ("fcm", SendResult(400, "INVALID_ARGUMENT:token"), Action.DROP_TOKEN, 0),
        ("fcm", SendResult(400, "INVALID_ARGUMENT"), Action.BAD_MESSAGE, 0),
        ("fcm", SendResult(403, "SENDER_ID_MISMATCH"), Action.DROP_TOKEN, 0),
        ("fcm", SendResult(401, "UNAUTHENTICATED"), Action.REMINT, 0),
        ("fcm", SendResult(401, "THIRD_PARTY_AUTH_ERROR"), Action.CREDENTIALS, 0),
        ("fcm", SendResult(429, "QUOTA_EXCEEDED", retry_after_s=5), Action.RETRY, 60),
        ("fcm", SendResult(429, "QUOTA_EXCEEDED", retry_after_s=300), Action.RETRY, 300),
        ("fcm", SendResult(503, "UNAVAILABLE"), Action.RETRY, 0),
        ("webpush", SendResult(201), Action.DELIVERED, 0),
        ("webpush", SendResult(410, "Gone"), Action.DROP_TOKEN, 0),
        ("webpush", SendResult(404, "NotFound"), Action.DROP_TOKEN, 0),
        ("webpush", SendResult(429, retry_after_s=12), Action.RETRY, 12),
        ("webpush", SendResult(403), Action.CREDENTIALS, 0),
        ("webpush", SendResult(403, "VapidPkHashMismatch"), Action.DROP_TOKEN, 0),
        ("webpush", SendResult(400, "InvalidSubscription"), Action.DROP_TOKEN, 0),
        ("webpush", SendResult(413, "PayloadTooLarge"), Action.BAD_MESSAGE, 0),
    ],
)
def test_reason_code_policy(
    provider: str, result: SendResult, action: Action, min_delay: float
) -> None:
    verdict = judge(provider, result, APNS_REGISTERED)
    assert (verdict.action, verdict.min_delay_s) == (action, min_delay)
