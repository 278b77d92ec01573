"""The error-code table: declared once (``service.errors.Code``), documented once
(docs/protocol.md), each code answered with the status the table gives it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Annotated

import msgspec
import msgspec.inspect as mi
import pytest

import schemas
from schemas.common import FORMATS
from service.app import create_app
from service.config import Settings
from service.errors import Code, KithError, field_errors_from_msgspec
from service.http.problems import STATUS, problem_body, status_of

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented() -> dict[str, str]:
    """code -> the status row of docs/protocol.md's error table that lists it."""
    text = PROTOCOL.read_text()
    table = text[text.index("| status | codes |") : text.index("Which error wins")]
    rows = re.findall(r"^\| ([^|]+) \| ([^|]*) \|", table, flags=re.M)
    return {
        code: status.strip() for status, codes in rows for code in re.findall(r"`(\w+)`", codes)
    }


def test_every_code_is_documented_and_nothing_else() -> None:
    assert set(documented()) == {c.value for c in Code}


@pytest.mark.parametrize("branch", list(STATUS), ids=lambda cls: cls.__name__)
def test_each_branch_answers_the_documented_status_for_its_code(branch: type[KithError]) -> None:
    exc = branch("detail")
    assert status_of(exc) == STATUS[branch]
    assert documented()[exc.code] == str(STATUS[branch])
    assert f'"status":{STATUS[branch]}'.encode() in problem_body(exc)


def test_every_branch_of_the_tree_has_a_status() -> None:
    def branches(cls: type[KithError]) -> set[type[KithError]]:
        return {c for sub in cls.__subclasses__() for c in {sub, *branches(sub)}}

    assert branches(KithError) <= STATUS.keys()


def _struct_patterns() -> set[str]:
    """Every pattern msgspec checks in a wire type of ``schemas/``."""

    found: set[str] = set()
    seen: set[type] = set()

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.StrType) and t.pattern is not None:
            found.add(t.pattern)
        elif isinstance(t, mi.Metadata):
            walk(t.type)
        elif isinstance(t, mi.StructType) and t.cls not in seen:
            seen.add(t.cls)
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                walk(member)
        elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.key_type)
            walk(t.value_type)

    for module in pkgutil.iter_modules(schemas.__path__):
        for obj in vars(importlib.import_module(f"schemas.{module.name}")).values():
            if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
                walk(mi.type_info(obj))
    return found


def _parameter_patterns(tmp_path: Path) -> set[str]:
    """Every pattern Litestar checks in a path or query parameter of a route (or of a
    dependency that reads one)."""

    app = create_app(Settings(data_dir=tmp_path).using(database_url="unused"))
    found: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            providers = handler.resolve_dependencies().values()
            for signature in [
                handler.parsed_fn_signature,
                *(p.parsed_fn_signature for p in providers),
            ]:
                for parameter in signature.parameters.values():
                    pattern = getattr(parameter.kwarg_definition, "pattern", None)
                    if pattern is not None:
                        found.add(pattern)
    return found


def test_every_pattern_a_client_can_meet_is_explained_in_words(tmp_path: Path) -> None:
    """A mobile developer shown "must match ^(?:[A-Za-z0-9_+/-]{1,64})$(?!\\n)" has to read a
    regular expression: every pattern checked in a body (the wire types) or in a path or
    query parameter has words instead (``schemas.common.described``)."""

    parameters, bodies = _parameter_patterns(tmp_path), _struct_patterns()
    assert len(parameters) >= 5  # the walks found them
    assert len(bodies) >= 15
    assert sorted((parameters | bodies) - FORMATS.keys()) == []


@pytest.mark.parametrize(
    ("pattern", "value", "words"),
    [
        ("^[A-Za-z0-9_-]{8,64}$(?!\\n)", "a b", "must be 8 to 64 letters, digits, _ or -"),
        ("^cl[0-9a-f]{16}$(?!\\n)", "cl1", "must be a care link id: cl and 16 hex digits"),
        ("^x[0-9]+$(?!\\n)", "y", "must match ^x[0-9]+$"),  # undeclared: the pattern, bare
    ],
)
def test_a_refused_pattern_reads_as_words(pattern: str, value: str, words: str) -> None:

    shape = msgspec.defstruct("Shape", [("v", Annotated[str, msgspec.Meta(pattern=pattern)])])
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.json.decode(msgspec.json.encode({"v": value}), type=shape)
    [error] = field_errors_from_msgspec(refused.value)
    assert (error.field, error.message) == ("v", words)
