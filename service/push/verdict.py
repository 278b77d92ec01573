"""What a provider's answer leads to: the actions the delivery takes (``Verdict``), and the
small readings every provider shares (Retry-After). Which answer means which action is each
provider's ``judge`` and ``service/push/policy.py``."""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from dataclasses import dataclass

from service.push.base import SendResult

__all__ = ["Action", "Verdict", "retry_after_s", "retry_verdict"]


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header's delay: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - (now or dt.datetime.now(dt.UTC))).total_seconds(), 0.0)


class Action(enum.Enum):
    DELIVERED = "delivered"
    DROP_TOKEN = "drop_token"  # noqa: S105 - an action's name, not a secret
    OTHER_ENVIRONMENT = "other_environment"  # APNs BadDeviceToken: try the other gateway once
    KEEP_TOKEN = "keep_token"  # noqa: S105 - a 410 older than the token's registration: stop, keep it
    RETRY = "retry"
    REMINT = "remint"
    CREDENTIALS = "credentials"  # alarm, stop the app
    WAIT_TOKEN_LIMIT = "wait_token_limit"  # noqa: S105
    BAD_MESSAGE = "bad_message"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    min_delay_s: float = 0.0  # for RETRY: no sooner than this (Retry-After, quotas)


def retry_verdict(result: SendResult, floor: float = 0.0) -> Verdict:
    """Try again later, no sooner than the provider's Retry-After (or ``floor``)."""
    return Verdict(Action.RETRY, max(result.retry_after_s or 0.0, floor))
