"""Constrained scalar types shared by every wire type.

Limits live on the types, so bad input fails at the edge with the path of the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

__all__ = [
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
]

#: Client-chosen ids: UUIDs, ULIDs and WatermelonDB's 16-char ids all fit.
ID_PATTERN = (
    "^[A-Za-z0-9_-]{8,64}$(?!\\n)"  # (?!\n): Python's $ also matches before a final newline
)

#: The sync schema versions this server speaks.
SCHEMA_VERSION_MIN = 1
SCHEMA_VERSION_MAX = 1

RecordId = Annotated[str, Meta(pattern=ID_PATTERN, description="8 to 64 of A-Z a-z 0-9 _ -")]
HlcStamp = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{13}-[0-9a-f]{4}-[A-Za-z0-9_-]{1,64}$(?!\n)",
        description="Hybrid logical clock: {ms:013d}-{counter:04x}-{device id}",
        examples=["1763764200000-0000-phone-ana-01"],
    ),
]
TimeOfDay = Annotated[
    str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$(?!\n)", examples=["21:30"])
]

Relationship = Literal[
    "family", "partner", "friend", "colleague", "neighbour", "community", "other"
]
Circle = Literal["inner", "close", "social", "wider"]
InteractionKind = Literal[
    "in_person", "video", "call", "voice", "text", "social", "letter", "other"
]
Platform = Literal["ios", "android", "web", "other"]
