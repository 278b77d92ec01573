"""The push providers Kith can send through: one module each, registered here once.

A provider module owns everything about its service: the provider (``send``), how it is
built from its settings group (``build``), and what its answers mean (``judge``). Its
device-address variant is in ``schemas/auth.py`` and its settings group in
``service/config.py`` (``PushSettings``), both named by the same key as here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from service.push import apns, fcm, webpush
from service.push.base import Provider, SendResult, Shared
from service.push.verdict import Verdict

__all__ = ["PROVIDERS", "ProviderModule"]


class ProviderModule(Protocol):
    def build(self, settings: Any, shared: Shared) -> Provider: ...

    def judge(self, result: SendResult, registered_at: dt.datetime | None) -> Verdict: ...


PROVIDERS: dict[str, ProviderModule] = {"apns": apns, "fcm": fcm, "webpush": webpush}
