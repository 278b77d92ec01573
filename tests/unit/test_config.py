"""Settings: one typed object read once; every setting documented in deploy/env.example."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from service.config import Settings, SettingsError

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "env.example"


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers which names were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_every_setting_read_is_documented_in_env_example() -> None:
    env = RecordingEnv()
    Settings.from_env(env)
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert env.asked == documented


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env({})
    assert (s.tokens.access_ttl_s, s.sync.max_clock_skew_ms, s.sync.tombstone_horizon_days) == (
        900,
        300_000,
        180,
    )
    assert s.database.url is None  # `kith dev` then starts the embedded servers


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KITH_PORT": "eighty"}, "KITH_PORT must be an integer"),
        ({"KITH_ENV": "prod"}, "KITH_ENV must be"),
        ({"KITH_ENV": "production"}, "KITH_JWT_PRIVATE_KEY and KITH_JWT_PUBLIC_KEY are required"),
        ({"KITH_TLS_CERT": "/x.pem"}, "must be set together"),
        ({"KITH_ACCESS_TOKEN_TTL_S": "5"}, "must be >= 30"),
    ],
)
def test_bad_settings_fail_at_start_with_the_name_of_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_worker_can_be_limited_to_some_kinds_of_job() -> None:
    settings = Settings.from_env({"KITH_WORKER_KINDS": "push_send, care_push,"})
    assert settings.worker.kinds == ("push_send", "care_push")
    assert Settings.from_env({}).worker.kinds == ()
