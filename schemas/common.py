"""Constrained scalar types shared by every wire type.

Limits live on the types, so bad input fails at the edge with the path of the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

__all__ = [
    "FORMATS",
    "ID_PATTERN",
    "SCHEMA_VERSION_MAX",
    "SCHEMA_VERSION_MIN",
    "Circle",
    "HlcStamp",
    "InteractionKind",
    "Platform",
    "RecordId",
    "Relationship",
    "TimeOfDay",
    "described",
]

#: What each pattern of a wire type asks for, in words: a refused value's 422 says this
#: (``service/errors.py``), not the regular expression.
FORMATS: dict[str, str] = {}


def described(pattern: str, words: str) -> str:
    """``pattern``, with what it asks for in ``words`` ("8 to 64 letters, digits, _ or -")
    recorded for the message a client shows when a value does not match."""
    FORMATS[pattern] = words
    return pattern


#: Client-chosen ids: UUIDs, ULIDs and WatermelonDB's 16-char ids all fit.
ID_PATTERN = described(
    "^[A-Za-z0-9_-]{8,64}$(?!\\n)",  # (?!\n): Python's $ also matches before a final newline
    "8 to 64 letters, digits, _ or -",
)

#: The sync schema versions this server speaks.
SCHEMA_VERSION_MIN = 1
SCHEMA_VERSION_MAX = 1

RecordId = Annotated[str, Meta(pattern=ID_PATTERN, description="8 to 64 of A-Z a-z 0-9 _ -")]
HlcStamp = Annotated[
    str,
    Meta(
        pattern=described(
            r"^[0-9]{13}-[0-9a-f]{4}-[A-Za-z0-9_-]{1,64}$(?!\n)",
            "a hybrid logical clock stamp: milliseconds (13 digits), counter (4 hex digits) "
            "and device id joined by -, as 1763764200000-0000-phone-ana-01",
        ),
        description="Hybrid logical clock: {ms:013d}-{counter:04x}-{device id}",
        examples=["1763764200000-0000-phone-ana-01"],
    ),
]
TimeOfDay = Annotated[
    str,
    Meta(
        pattern=described(
            r"^([01][0-9]|2[0-3]):[0-5][0-9]$(?!\n)", "a time of day, HH:MM (00:00 to 23:59)"
        ),
        examples=["21:30"],
    ),
]

Relationship = Literal[
    "family", "partner", "friend", "colleague", "neighbour", "community", "other"
]
Circle = Literal["inner", "close", "social", "wider"]
InteractionKind = Literal[
    "in_person", "video", "call", "voice", "text", "social", "letter", "other"
]
Platform = Literal["ios", "android", "web", "other"]
