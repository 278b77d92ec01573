"""Opaque pull cursors.

A cursor names a position in one space's change sequence. Clients store it and send it
back; they must not parse it, so the server can change what it carries (a version prefix
keeps old cursors decodable).
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["InvalidCursor", "decode_cursor", "encode_cursor"]

_PREFIX = b"k1:"
_MAX = 2**63 - 1


class InvalidCursor(ValueError):
    """A cursor this server did not issue."""


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(_PREFIX + str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor is not one this server issued") from None
    digits = raw[len(_PREFIX) :]
    if not raw.startswith(_PREFIX) or not digits.isascii() or not digits.isdigit():
        raise InvalidCursor("cursor is not one this server issued")
    value = int(digits) if len(digits) <= 19 else _MAX + 1
    if value > _MAX:  # a forged cursor; a database bigint cannot hold it
        raise InvalidCursor("cursor is not one this server issued")
    return value
