"""Envelope encryption: master keys wrap data keys, data keys seal short texts.

No product knowledge here (which fields are private, where keys are stored, for how long
they are cached: ``service/sync/private_text.py``); decision 0021 says why it is built so.

* A **master key** (32 bytes, named by a ``kid``) comes from the configuration
  (``KITH_MASTER_KEYS``; in development a file made once under ``.kith/keys``). The first
  one configured is current: it wraps new data keys; the others still unwrap, so a
  rotation (``kith rotate-keys``) re-wraps keys while every process keeps reading.
* A **data key** (32 random bytes) is wrapped with AES-GCM under a master key, the
  associated data naming whose key it is and which master key wrapped it, so a wrapped key
  cannot be passed off as another person's.
* A data key **seals** a text with AES-256-GCM; the associated data (the caller's: a
  person, a record and a field) binds the ciphertext to its place, so it cannot be moved to
  another record or field. The nonce is synthetic — a keyed hash (BLAKE2b) of the
  associated data and the text, under a second key derived from the data key — so the
  same text in the same place seals to the same string (the merge compares values for
  equality; a retry must not look like a different value), and two different texts share
  a nonce only if a 96-bit keyed hash collides.

A sealed text is ``kith:1:`` and the base64 of nonce ‖ ciphertext ‖ tag: JSON-safe, and
told apart from text by its prefix. Keys and texts are never logged: no object here shows
a key in its ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable
from hashlib import blake2b
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.config import KEY_BYTES, EncryptionSettings, MasterKey

__all__ = [
    "KEY_BYTES",
    "SEALED_PREFIX",
    "DataKey",
    "MasterKey",
    "MasterKeys",
    "Undecryptable",
    "UnknownMasterKey",
    "load_or_create_dev_key",
    "master_keys",
    "new_data_key",
]

NONCE_BYTES = 12
SEALED_PREFIX = "kith:1:"


class Undecryptable(ValueError):
    """A sealed text or wrapped key that this key cannot open: tampered with, moved to
    another place, or sealed under another key."""


class UnknownMasterKey(LookupError):
    """A key wrapped under a master key that is not configured (any more)."""


def _wrap_aad(owner: str, kid: str) -> bytes:
    return b"kith data key\0" + owner.encode() + b"\0" + kid.encode()


class MasterKeys:
    """The configured master keys; the first is current."""

    __slots__ = ("_aead", "current")

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        keys = list(keys)
        if not keys:
            raise ValueError("at least one master key is needed")
        if len({k.kid for k in keys}) != len(keys):
            raise ValueError("master key ids must be distinct")
        self.current = keys[0].kid
        self._aead = {k.kid: AESGCM(k.key) for k in keys}

    def __repr__(self) -> str:
        return f"MasterKeys(current={self.current!r}, kids={sorted(self._aead)!r})"

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._aead)

    def wrap(self, owner: str, data_key: bytes) -> tuple[str, bytes]:
        """``data_key`` wrapped under the current master key for ``owner``: (kid, blob)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.current].encrypt(nonce, data_key, _wrap_aad(owner, self.current))
        return self.current, nonce + sealed

    def unwrap(self, owner: str, kid: str, blob: bytes) -> bytes:
        """The data key ``blob`` holds, wrapped for ``owner`` under master key ``kid``."""
        aead = self._aead.get(kid)
        if aead is None:
            raise UnknownMasterKey(f"master key {kid!r} is not configured")
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _wrap_aad(owner, kid))
        except InvalidTag:
            raise Undecryptable(f"the data key of {owner!r} does not open under {kid!r}") from None


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


class DataKey:
    """One person's data key, ready to seal and open (one AES-GCM object, built once)."""

    __slots__ = ("_aead", "_nonce_key")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes")
        # Two keys from one: sealing and nonce derivation never share a key.
        self._aead = AESGCM(hmac.digest(raw, b"kith seal", "sha256"))
        self._nonce_key = hmac.digest(raw, b"kith nonce", "sha256")[:KEY_BYTES]

    def __repr__(self) -> str:
        return "DataKey(…)"

    def seal(self, text: str, aad: bytes) -> str:
        """``text`` sealed for the place ``aad`` names; the same text and place always give
        the same string."""
        data = text.encode()
        # Keyed BLAKE2b as the PRF: a third of HMAC-SHA256's cost here, as sound a MAC.
        nonce = blake2b(aad + b"\0" + data, key=self._nonce_key, digest_size=NONCE_BYTES).digest()
        blob = binascii.b2a_base64(nonce + self._aead.encrypt(nonce, data, aad), newline=False)
        return SEALED_PREFIX + blob.decode()

    def open(self, sealed: str, aad: bytes) -> str:
        """The text ``sealed`` holds, if it was sealed by this key for the place ``aad``."""
        if not sealed.startswith(SEALED_PREFIX):
            raise Undecryptable("not a sealed text")
        return self.open_payload(sealed[len(SEALED_PREFIX) :], aad)

    def open_payload(self, payload: str, aad: bytes) -> str:
        """:meth:`open` for a sealed text's part after its prefix (the pull's fast path)."""
        try:
            blob = binascii.a2b_base64(payload, strict_mode=True)
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise Undecryptable("the sealed text does not open here") from None


def load_or_create_dev_key(key_dir: Path) -> MasterKey:
    """The development master key under ``key_dir`` (made once, 0600), for ``kith dev``,
    ``make run`` and the tests; production configures ``KITH_MASTER_KEYS``. Its id names
    the key's hash, so two data directories' keys never share an id."""
    key_dir.mkdir(parents=True, exist_ok=True)
    path = key_dir / "master.key"
    if not path.exists():
        # Create with 0600 atomically: the dev key is never world-readable, not even briefly.
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(os.urandom(KEY_BYTES)))
        os.replace(tmp, path)
    key = base64.b64decode(path.read_bytes().strip())
    return MasterKey(f"dev-{hashlib.sha256(key).hexdigest()[:8]}", key)


def master_keys(settings: EncryptionSettings, data_dir: Path) -> MasterKeys:
    """The configured master keys, or (outside production, where they are required) the
    development key under ``data_dir/keys``."""
    return MasterKeys(settings.master_keys or (load_or_create_dev_key(data_dir / "keys"),))
