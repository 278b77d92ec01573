"""Kith's pure sync library: HLC clocks, the field-level merge law and cursors.

No HTTP, no database: the server and the reference client (``sync.client``) both build on
it, and its laws are property-tested in isolation.
"""

from sync.cursor import InvalidCursor, decode_cursor, encode_cursor
from sync.hlc import HLC, Clock, InvalidHLC, format_hlc, parse
from sync.merge import EMPTY_CLOCK, Loss, Outcome, RecordState, apply, merge, tombstone

__all__ = [
    "EMPTY_CLOCK",
    "HLC",
    "Clock",
    "InvalidCursor",
    "InvalidHLC",
    "Loss",
    "Outcome",
    "RecordState",
    "apply",
    "decode_cursor",
    "encode_cursor",
    "format_hlc",
    "merge",
    "parse",
    "tombstone",
]
