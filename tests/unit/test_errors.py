"""The error-code table: declared once (``service.errors.Code``), documented once
(docs/protocol.md), each code answered with the status the table gives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.errors import Code, KithError
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
