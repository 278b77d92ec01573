"""The error body every endpoint returns: RFC 9457 problem details plus stable codes."""

from __future__ import annotations

from msgspec import Struct

__all__ = ["FieldError", "Problem"]


class FieldError(Struct):
    field: str
    message: str


class Problem(Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    errors: list[FieldError] = []
