"""The committed OpenAPI document and table schema are what the server actually serves.

Client developers generate code from these files; a stale copy breaks their builds silently.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from service.cli import api_documents
from service.config import Settings

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_api_documents_are_current(tmp_path: Path) -> None:
    docs = api_documents(Settings(data_dir=tmp_path))
    for name, generated in docs.items():
        committed = (SCHEMAS / name).read_bytes()
        assert msgspec.json.decode(committed) == msgspec.json.decode(generated), (
            f"schemas/{name} is stale: run `make openapi`"
        )


def test_the_table_schema_carries_the_limits_a_client_must_respect(tmp_path: Path) -> None:
    tables = msgspec.json.decode(api_documents(Settings(data_dir=tmp_path))["tables.schema.json"])
    contact = tables["$defs"]["ContactFields"]["properties"]
    assert contact["display_name"]["maxLength"] == 200
    assert set(tables["$defs"]) >= {
        "ContactFields",
        "InteractionFields",
        "ReflectionFields",
        "CheckInFields",
        "SettingsFields",
        "InsightStatusFields",
    }
