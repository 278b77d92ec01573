"""Envelope encryption (decision 0021): a sealed note opens only with its person's key, in
its own place; wrapped keys open only under their master key, for their own person; a
rotation keeps everything readable after the old master key is gone."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import msgspec
import pytest

from service.config import MasterKey, Settings, SettingsError
from service.infra.crypto import (
    SEALED_PREFIX,
    DataKey,
    MasterKeys,
    Undecryptable,
    UnknownMasterKey,
    load_or_create_dev_key,
    new_data_key,
)
from service.sync.private_text import SEALED_PATTERN, SpaceCipher, in_the_clear, needs_sealing

AAD = b"space-1\0contacts\0c1\0notes"


def _master(kid: str) -> MasterKey:
    return MasterKey(kid, os.urandom(32))


def test_a_sealed_text_opens_to_itself() -> None:
    key = DataKey(new_data_key())
    for text in ("Met at the allotment; ask about her knee 🌱", "x", "ü" * 5000):
        sealed = key.seal(text, AAD)
        assert sealed.startswith(SEALED_PREFIX)
        assert key.open(sealed, AAD) == text
    assert "allotment" not in key.seal("Met at the allotment", AAD)


def test_the_same_text_in_the_same_place_seals_the_same() -> None:
    # The merge compares values: a retried write must look like the same value.
    key = DataKey(new_data_key())
    assert key.seal("same", AAD) == key.seal("same", AAD)
    assert key.seal("same", AAD) != key.seal("other", AAD)
    assert key.seal("same", AAD) != key.seal("same", AAD + b"x")


def test_a_tampered_text_is_refused() -> None:
    key = DataKey(new_data_key())
    sealed = key.seal("a private note", AAD)
    blob = bytearray(base64.b64decode(sealed[len(SEALED_PREFIX) :]))
    for i in (0, 12, len(blob) - 1):  # the nonce, the ciphertext, the tag
        changed = bytearray(blob)
        changed[i] ^= 1
        with pytest.raises(Undecryptable):
            key.open(SEALED_PREFIX + base64.b64encode(bytes(changed)).decode(), AAD)
    with pytest.raises(Undecryptable):
        key.open(sealed[:-4], AAD)
    with pytest.raises(Undecryptable):
        key.open("not sealed at all", AAD)


def test_a_text_moved_to_another_record_field_or_person_does_not_open() -> None:
    raw = new_data_key()
    mine = SpaceCipher("space-1", DataKey(raw))
    sealed = mine.seal_fields("contacts", "c1", {"notes": "hers"})["notes"]
    assert mine.open_value("contacts", "c1", "notes", sealed) == "hers"
    with pytest.raises(Undecryptable):
        mine.open_value("contacts", "c2", "notes", sealed)  # another record
    with pytest.raises(Undecryptable):
        mine.open_value("interactions", "c1", "note", sealed)  # another table and field
    with pytest.raises(Undecryptable):  # the same key bytes, another person's space
        SpaceCipher("space-2", DataKey(raw)).open_value("contacts", "c1", "notes", sealed)
    with pytest.raises(Undecryptable):  # another person's key
        SpaceCipher("space-1", DataKey(new_data_key())).open_value(
            "contacts", "c1", "notes", sealed
        )


def test_only_private_nonempty_text_is_sealed() -> None:
    cipher = SpaceCipher("space-1", DataKey(new_data_key()))
    fields = {"display_name": "Ada", "notes": "", "tags": ["x"]}
    assert not needs_sealing("contacts", fields)
    assert cipher.seal_fields("contacts", "c1", fields) is fields
    sealed = cipher.seal_fields("contacts", "c1", {"display_name": "Ada", "notes": "n"})
    assert sealed["display_name"] == "Ada"
    assert sealed["notes"].startswith(SEALED_PREFIX)
    # Whatever a person writes is sealed, even text that looks like a sealed value.
    lookalike = {"notes": sealed["notes"]}
    assert needs_sealing("contacts", lookalike)
    twice = cipher.seal_fields("contacts", "c1", lookalike)
    assert twice["notes"] != sealed["notes"]
    opened_twice = cipher.open_json("contacts", "c1", msgspec.json.encode(twice).decode())
    assert msgspec.json.decode(opened_twice) == lookalike
    assert not needs_sealing("settings", {"time_zone": "Europe/Paris"})
    text = f'{{"display_name": "Ada", "notes": "{sealed["notes"]}"}}'
    assert cipher.open_json("contacts", "c1", text) == '{"display_name": "Ada", "notes": "n"}'
    # A value that spells a sealed note inside itself is a string: its quotes are escaped.
    spelt = msgspec.json.encode({"display_name": f'x", "notes": "{sealed["notes"]}'}).decode()
    assert cipher.open_json("contacts", "c1", spelt) == spelt
    # Text that needs escaping comes back as valid JSON.
    tricky = 'She said "no" \\ then\n left'
    again = cipher.seal_fields("contacts", "c1", {"notes": tricky})
    opened = cipher.open_json("contacts", "c1", msgspec.json.encode(again).decode())
    assert msgspec.json.decode(opened) == {"notes": tricky}
    plain = '{"display_name": "Ada", "notes": "written before 0011"}'
    assert cipher.open_json("contacts", "c1", plain) is plain


def test_seal_existing_tells_old_text_from_a_sealed_value() -> None:
    """What a release before migration 0011 stored is text — even text that starts like a
    sealed value — and what was sealed is left alone (in Python and in the SQL's pattern)."""
    cipher = SpaceCipher("space-1", DataKey(new_data_key()))
    for text in ("n", "a note", "x" * 1000, f"{SEALED_PREFIX}AAAA my password hint"):
        sealed = cipher.seal_value("contacts", "c1", "notes", text)
        assert not in_the_clear(sealed)
        assert re.search(SEALED_PATTERN, sealed)
        assert in_the_clear(text)
        assert not re.search(SEALED_PATTERN, text)
    assert not in_the_clear("")
    assert not in_the_clear(None)
    assert in_the_clear(f"{SEALED_PREFIX}AAAA\n")  # only the whole value counts


def test_a_wrapped_key_opens_only_for_its_person_under_its_master_key() -> None:
    keys = MasterKeys([_master("k1")])
    data = new_data_key()
    kid, blob = keys.wrap("space-1", data)
    assert kid == "k1"
    assert data not in blob
    assert keys.unwrap("space-1", kid, blob) == data
    with pytest.raises(Undecryptable):
        keys.unwrap("space-2", kid, blob)  # passed off as another person's key
    with pytest.raises(Undecryptable):
        keys.unwrap("space-1", kid, blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(UnknownMasterKey):
        keys.unwrap("space-1", "k0", blob)


def test_rotation_rewraps_so_the_old_master_key_can_go() -> None:
    old, new = _master("old"), _master("new")
    data = new_data_key()
    kid, blob = MasterKeys([old]).wrap("space-1", data)
    during = MasterKeys([new, old])  # the new key current, the old one still unwraps
    assert during.unwrap("space-1", kid, blob) == data
    kid2, blob2 = during.wrap("space-1", during.unwrap("space-1", kid, blob))
    assert kid2 == "new"
    after = MasterKeys([new])
    assert after.unwrap("space-1", kid2, blob2) == data
    with pytest.raises(UnknownMasterKey):
        after.unwrap("space-1", kid, blob)  # what was not re-wrapped needs the old key


def test_no_key_is_shown_in_a_repr() -> None:
    master = _master("k1")
    keys = MasterKeys([master])
    data = DataKey(new_data_key())
    for shown in (repr(master), repr(keys), repr(data), repr(SpaceCipher("s", data))):
        assert base64.b64encode(master.key).decode() not in shown
        assert repr(master.key) not in shown


def test_master_keys_are_read_from_settings(tmp_path: Path) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    b1, b2 = base64.b64encode(k1).decode(), base64.b64encode(k2).decode()
    env = {"KITH_MASTER_KEYS": f"new:{b2}, old:{b1}"}
    keys = Settings.from_env(env).encryption.master_keys
    assert [(k.kid, k.key) for k in keys] == [("new", k2), ("old", k1)]
    for bad in (
        "nokid",
        "k1:not-base64!",
        f"k1:{base64.b64encode(b'short').decode()}",
        f"a:{base64.b64encode(k1).decode()},a:{base64.b64encode(k2).decode()}",
        f"bad kid:{base64.b64encode(k1).decode()}",
    ):
        with pytest.raises(SettingsError):
            Settings.from_env({"KITH_MASTER_KEYS": bad})
    with pytest.raises(SettingsError, match="KITH_MASTER_KEYS"):
        Settings.from_env(
            {"KITH_ENV": "production", "KITH_JWT_PRIVATE_KEY": "x", "KITH_JWT_PUBLIC_KEY": "y"}
        )


def test_the_dev_key_is_made_once_private_and_named_by_its_hash(tmp_path: Path) -> None:
    first = load_or_create_dev_key(tmp_path)
    assert load_or_create_dev_key(tmp_path) == first
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0
    assert first.kid.startswith("dev-")
    assert load_or_create_dev_key(tmp_path / "other").kid != first.kid
