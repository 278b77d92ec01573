"""What a provider's answer means — one policy for APNs, FCM and Web Push.

Design brief §6 and ``reference/push-and-jobs.md`` (Apple's and Google's documented
reason codes):

* delivered → done;
* the token is dead (APNs 410 Unregistered/ExpiredToken *if registered before the 410's
  timestamp*, DeviceTokenNotForTopic, BadDeviceToken after trying the other APNs
  environment; FCM UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT on
  ``message.token``; Web Push 404/410) → forget the token, stop;
* the provider is busy or unreachable (429 TooManyRequests/QUOTA_EXCEEDED, 5xx, Shutdown,
  IdleTimeout, a timeout or a dropped connection) → retry later with exponential backoff
  and jitter, never sooner than Retry-After (FCM's quota: never sooner than a minute);
* our provider token expired (APNs ExpiredProviderToken, FCM 401 UNAUTHENTICATED) →
  re-mint once and resend; if that fails too, it is a credentials problem;
* our credentials or app configuration are wrong (InvalidProviderToken, BadTopic,
  TopicDisallowed, Forbidden, BadCertificate…, FCM THIRD_PARTY_AUTH_ERROR, Web Push 401/403)
  → raise the alarm and stop sending for that app; the messages wait;
* TooManyProviderTokenUpdates → stop minting and wait out Apple's 20 minutes;
* the message itself is wrong (PayloadTooLarge, BadCollapseId, BadPriority… ) → it is a bug:
  log it and drop this message only.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from service.push.base import ProviderName, SendResult

__all__ = ["Action", "Verdict", "judge"]


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


_APNS_CREDENTIALS = frozenset(
    {
        "InvalidProviderToken",
        "MissingProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
        "Forbidden",
        "BadTopic",
        "MissingTopic",
        "TopicDisallowed",
        "InvalidPushType",
    }
)
_APNS_BAD_MESSAGE = frozenset(
    {
        "PayloadTooLarge",
        "PayloadEmpty",
        "BadCollapseId",
        "BadExpirationDate",
        "BadMessageId",
        "BadPriority",
        "DuplicateHeaders",
        "BadPath",
        "MethodNotAllowed",
        "MissingDeviceToken",
    }
)
_FCM_DEAD_TOKEN = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT:token"})
QUOTA_MIN_DELAY_S = 60.0  # FCM: "exponential backoff with a minimum initial delay of 1 minute"
TOKEN_LIMIT_WAIT_S = 20 * 60.0


def _retry(result: SendResult, floor: float = 0.0) -> Verdict:
    return Verdict(Action.RETRY, max(result.retry_after_s or 0.0, floor))


def judge(provider: ProviderName, result: SendResult, registered_at: dt.datetime | None) -> Verdict:
    """The action for ``result`` of a send to a token registered at ``registered_at``."""
    if result.ok:
        return Verdict(Action.DELIVERED)
    status, reason = result.status, result.reason or ""
    if status == 0:  # timeout, connection refused or reset: the send may not have happened
        return _retry(result)
    if provider == "apns":
        return _judge_apns(result, status, reason, registered_at)
    if provider == "fcm":
        return _judge_fcm(result, status, reason)
    return _judge_webpush(result, status, reason)


def _judge_apns(
    result: SendResult, status: int, reason: str, registered_at: dt.datetime | None
) -> Verdict:
    if status == 410:
        if result.timestamp_ms is None or registered_at is None:
            return Verdict(Action.DROP_TOKEN)
        invalid_since = dt.datetime.fromtimestamp(result.timestamp_ms / 1000, dt.UTC)
        return Verdict(Action.DROP_TOKEN if registered_at < invalid_since else Action.KEEP_TOKEN)
    if reason == "DeviceTokenNotForTopic":
        return Verdict(Action.DROP_TOKEN)
    if reason == "BadDeviceToken":
        return Verdict(Action.OTHER_ENVIRONMENT)
    if reason == "ExpiredProviderToken":
        return Verdict(Action.REMINT)
    if reason == "TooManyProviderTokenUpdates":
        return Verdict(Action.WAIT_TOKEN_LIMIT, TOKEN_LIMIT_WAIT_S)
    if reason in _APNS_CREDENTIALS:
        return Verdict(Action.CREDENTIALS)
    if reason in _APNS_BAD_MESSAGE or status == 413:
        return Verdict(Action.BAD_MESSAGE)
    # 429 TooManyRequests (this device), 500, 503 ServiceUnavailable/Shutdown, IdleTimeout,
    # and anything Apple adds later: not our fault, try again later.
    return _retry(result)


def _judge_fcm(result: SendResult, status: int, reason: str) -> Verdict:
    if reason in _FCM_DEAD_TOKEN or status == 404:
        return Verdict(Action.DROP_TOKEN)
    if status == 401 and reason != "THIRD_PARTY_AUTH_ERROR":
        return Verdict(Action.REMINT)  # our OAuth access token
    if reason == "THIRD_PARTY_AUTH_ERROR" or status == 403:
        return Verdict(Action.CREDENTIALS)
    if status == 429 or reason == "QUOTA_EXCEEDED":
        return _retry(result, QUOTA_MIN_DELAY_S)
    if status == 400:
        return Verdict(Action.BAD_MESSAGE)
    return _retry(result)


#: Web Push answers about one subscription, not our key: a malformed subscription, or one
#: a browser made under an earlier VAPID key (Apple's push service names it).
_WEBPUSH_DEAD = frozenset({"InvalidSubscription", "VapidPkHashMismatch"})


def _judge_webpush(result: SendResult, status: int, reason: str) -> Verdict:
    if status in {404, 410} or reason in _WEBPUSH_DEAD:
        return Verdict(Action.DROP_TOKEN)
    if status in {401, 403}:
        return Verdict(Action.CREDENTIALS)  # our VAPID key or claims are refused
    if status in {400, 413}:
        return Verdict(Action.BAD_MESSAGE)
    return _retry(result)
