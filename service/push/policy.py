"""What a provider's answer means — one vocabulary for APNs, FCM and Web Push.

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

from service.push.base import SendResult
from service.push.providers import PROVIDERS
from service.push.verdict import Action, Verdict, retry_verdict

__all__ = ["Action", "Verdict", "judge"]


def judge(provider: str, result: SendResult, registered_at: dt.datetime | None) -> Verdict:
    """The action for ``result`` of a send to a token registered at ``registered_at``:
    what every provider's answer shares first, then the provider's own reading."""
    if result.ok:
        return Verdict(Action.DELIVERED)
    if result.status == 0:  # timeout, connection refused or reset: the send may not have happened
        return retry_verdict(result)
    return PROVIDERS[provider].judge(result, registered_at)
