"""Clients generated from schemas/openapi.json are useful, checked with the real npm tools
(pinned in package.json; `make test` runs `npm ci`).

A mobile team generates its client with openapi-typescript and lints the document with
Redocly: a table's fields typed as ``unknown``, an error a route answers but does not
document, or a lint error breaks their build, so it breaks this suite first.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import msgspec

from service.cli import api_documents
from service.config import Settings
from service.errors import Code
from service.http.openapi import CODES

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"
PROGRAM = ROOT / "tests" / "node" / "sync_client.ts"


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = BIN / str(args[0])
    assert tool.exists(), f"{tool} is missing: run `npm ci` (make test does)"
    return subprocess.run(
        [str(tool), *map(str, args[1:])],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _document(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_bytes(api_documents(Settings(data_dir=tmp_path / "data"))["openapi.json"])
    return path


def test_a_generated_typescript_client_types_push_and_pull_under_strict(tmp_path: Path) -> None:
    generated = _run("openapi-typescript", _document(tmp_path), "-o", tmp_path / "kith.ts")
    assert generated.returncode == 0, generated.stderr
    shutil.copy(PROGRAM, tmp_path / "sync_client.ts")
    options = {
        "strict": True,
        "exactOptionalPropertyTypes": True,
        "noEmit": True,
        "target": "es2022",
        "module": "es2022",
        "moduleResolution": "bundler",
        "lib": ["es2022", "dom"],
        "types": [],
    }
    config = {"compilerOptions": options, "files": ["sync_client.ts"]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    compiled = _run("tsc", "-p", tmp_path / "tsconfig.json", cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    # The program type-checks because each table has its own fields, not `unknown`:
    client = (tmp_path / "kith.ts").read_text()
    assert 'table: "contacts";' in client
    assert 'fields?: components["schemas"]["ContactFields"];' in client


def test_redocly_lint_finds_no_error(tmp_path: Path) -> None:
    linted = _run("redocly", "lint", "--format", "json", _document(tmp_path), cwd=tmp_path)
    report = json.loads(linted.stdout)
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert errors == [], json.dumps(errors, indent=2)[:4000]
    assert report["totals"]["errors"] == 0


def test_every_route_documents_its_errors_as_problem_details(tmp_path: Path) -> None:
    doc = msgspec.json.decode(_document(tmp_path).read_bytes())
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            public = operation["security"] == []
            responses = operation["responses"]
            if not public:
                assert "401" in responses, f"{method} {path}"
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= responses.keys(), f"{method} {path}"
            for status, response in responses.items():
                if int(status) >= 400 and path != "/health/ready":
                    content = response["content"]
                    assert list(content) == ["application/problem+json"], f"{method} {path}"
                    codes = content["application/problem+json"]["schema"]["allOf"][1]
                    assert codes["properties"]["code"]["enum"], f"{method} {path} {status}"
    push = doc["paths"]["/v1/sync/push"]["post"]["responses"]
    assert {"403", "409", "426", "429"} <= push.keys()
    assert doc["paths"]["/v1/auth/login"]["post"]["security"] == []
    assert doc["paths"]["/v1/sync/pull"]["post"]["security"] == [{"bearer": []}]


def test_every_code_the_service_raises_is_documented() -> None:
    """A code raised somewhere below the edge but missing from the document's table would
    reach clients that were never told about it."""
    raised: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        if path.name not in {"errors.py", "openapi.py"}:
            raised |= set(re.findall(r"\bCode\.([A-Z_]+)\b", path.read_text()))
    assert raised, "no Code.X found: has the error module moved?"
    # The edge's answers to framework exceptions no documented operation raises (a 405 for
    # an undocumented method, ...): the fuzzer fails on any status a route answers that the
    # document does not list.
    fallbacks = {Code.FORBIDDEN, Code.METHOD_NOT_ALLOWED, Code.HTTP_ERROR}
    undocumented = {Code[name] for name in raised} - CODES.keys() - fallbacks
    undocumented -= {Code.INTERNAL_ERROR}
    assert undocumented == set()
