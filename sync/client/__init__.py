"""Kith's reference sync client: how a phone app should sync, as a small library.

Pure Python — SQLite for the local store, httpx for HTTP, ``sync.hlc`` for the clock —
so it reads as a specification a Swift or Kotlin client can follow line by line::

    tokens = login(base_url, email=..., password=..., device_id="phone-ana-01")
    client = SyncClient(tokens.device_id, HttpxTransport(base_url, tokens.access_token),
                        LocalStore("kith.sqlite3"))
    contact_id = client.create("contacts", {"display_name": "Sam"})
    client.sync()

The integration tests drive several of these against a real server and check that every
device converges and no write is lost (``tests/integration/test_convergence_stateful.py``).
"""

from sync.client.client import (
    MAX_BATCH,
    SCHEMA_VERSION,
    Backoff,
    Conflict,
    Superseded,
    SyncClient,
    SyncReport,
)
from sync.client.errors import (
    NotAuthenticated,
    RecordNotFound,
    Rejected,
    RetryLater,
    ServerError,
    SyncError,
    TransportError,
    UpgradeRequired,
)
from sync.client.store import Batch, Change, LocalStore, Record
from sync.client.transport import HttpxTransport, Reply, Tokens, Transport, login, register

__all__ = [
    "MAX_BATCH",
    "SCHEMA_VERSION",
    "Backoff",
    "Batch",
    "Change",
    "Conflict",
    "HttpxTransport",
    "LocalStore",
    "NotAuthenticated",
    "Record",
    "RecordNotFound",
    "Rejected",
    "Reply",
    "RetryLater",
    "ServerError",
    "Superseded",
    "SyncClient",
    "SyncError",
    "SyncReport",
    "Tokens",
    "Transport",
    "TransportError",
    "UpgradeRequired",
    "login",
    "register",
]
