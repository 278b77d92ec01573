"""Wire types of the account's lifecycle: deleting it and exporting everything in it."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

__all__ = ["DeleteAccountRequest", "DeletionStarted"]


class DeleteAccountRequest(Struct, forbid_unknown_fields=True):
    """The password confirms an irreversible act; it may be left out only within five
    minutes of a sign-in on this device (``reauthentication_required`` otherwise)."""

    password: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None


class DeletionStarted(Struct):
    """Every device is signed out already; the rest is erased within seconds, by a job that
    finishes even if a worker stops half way."""

    state: Literal["erasing"] = "erasing"
