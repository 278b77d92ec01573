"""The access line written directly (service/infra/logs.py) is the line ``logging`` would write,
and anything but Kith's own JSON handler still gets the line through ``logging``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.infra.logs import (
    JsonFormatter,
    access_log,
    configure_logging,
    request_id_var,
    write_access_line,
)


@pytest.fixture
def kith_json() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("INFO")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    token = request_id_var.set("req-1234")
    yield stream
    request_id_var.reset(token)
    root.handlers, _ = saved
    root.setLevel(saved[1])


def _only_kith_json() -> None:
    """pytest's log capture adds its own handler while a test runs: take it off (pytest
    removes it again afterwards), so the direct path is the one taken."""
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() == "kith-json"]


def test_the_direct_line_is_the_formatters_line(
    kith_json: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_kith_json()
    through_logging: list[logging.LogRecord] = []
    monkeypatch.setattr(access_log, "handle", through_logging.append)
    write_access_line(logging.INFO, "POST", "/v1/sync/pull", 200, 0.000421)
    access_log.info(
        "%s %s %d",
        "POST",
        "/v1/sync/pull",
        200,
        extra={"method": "POST", "route": "/v1/sync/pull", "status": 200, "duration_ms": 0.42},
    )
    # The first line did not go through logging (the second did, and was captured above
    # instead of written: write it through the handler as logging would have).
    [record] = through_logging
    logging.getLogger().handlers[0].handle(record)
    direct, logged = (json.loads(line) for line in kith_json.getvalue().splitlines())
    assert direct.keys() == logged.keys()
    assert list(direct) == list(logged)  # same order of keys too
    direct_time, logged_time = direct.pop("time"), logged.pop("time")
    assert direct == logged
    assert direct["request_id"] == "req-1234"
    assert direct["message"] == "POST /v1/sync/pull 200"
    assert len(direct_time) == len(logged_time) == len("2026-11-22T03:15:57.568Z")
    assert direct_time.endswith("Z")
    assert direct_time[:19] <= logged_time[:19]


def test_below_the_level_nothing_is_written(kith_json: io.StringIO) -> None:
    _only_kith_json()
    write_access_line(logging.DEBUG, "GET", "/health/live", 200, 0.0001)
    assert kith_json.getvalue() == ""


def test_another_handler_gets_the_line_through_logging(
    kith_json: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kith.access"):
        write_access_line(logging.INFO, "GET", "/v1/devices", 404, 0.002)
    [record] = [r for r in caplog.records if r.name == "kith.access"]
    assert record.getMessage() == "GET /v1/devices 404"
    assert (record.route, record.status, record.duration_ms) == ("/v1/devices", 404, 2.0)  # type: ignore[attr-defined]
    # The JSON handler wrote it too, through its formatter.
    assert json.loads(kith_json.getvalue())["route"] == "/v1/devices"
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
