"""Eight phones push at once while a ninth pulls in a loop (RxDB#6292 is the bug to avoid).

If a commit could land *under* a cursor a puller already holds — a transaction that took
its sequence number early but committed late — the looping phone would skip it for good,
and a contact would be missing on that phone only. The puller's incremental state must
equal a fresh full pull and hold every record pushed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sync.client import Tokens
from tests.helpers import new_device, server_records, sign_in_devices

WRITERS = 8
BATCHES = 20
PER_BATCH = 10  # 9 new contacts and 1 edit of a contact every phone shares
TIME_LIMIT_S = 120


def _write(base_url: str, tokens: Tokens, n: int, shared_id: str) -> list[str]:
    device = new_device(base_url, tokens)
    try:
        device.client.pull()
        ids: list[str] = []
        for b in range(BATCHES):
            for k in range(PER_BATCH - 1):
                ids.append(device.client.create("contacts", {"display_name": f"w{n} b{b} #{k}"}))
            device.client.update("contacts", shared_id, {"notes": f"w{n} b{b}"})
            report = device.client.push()
            assert report.pushed == PER_BATCH
            assert len(report.batches) == 1
        return ids
    finally:
        device.close()


def test_a_looping_puller_misses_no_commit_while_eight_phones_push(live_server: str) -> None:
    *writers, reader = sign_in_devices(live_server, WRITERS + 1)
    puller = new_device(live_server, reader)
    shared_id = puller.client.create("contacts", {"display_name": "Shared", "notes": ""})
    puller.client.sync()
    done = threading.Event()

    def pull_until_done() -> int:
        rounds = 0
        deadline = time.monotonic() + TIME_LIMIT_S
        while not done.is_set() and time.monotonic() < deadline:
            puller.client.pull()
            rounds += 1
        puller.client.pull()  # whatever committed after the last loop
        return rounds

    try:
        with ThreadPoolExecutor(WRITERS + 1) as pool:
            pulling = pool.submit(pull_until_done)
            writing = [
                pool.submit(_write, live_server, tokens, n, shared_id)
                for n, tokens in enumerate(writers)
            ]
            created = [rid for w in writing for rid in w.result(timeout=TIME_LIMIT_S)]
            done.set()
            rounds = pulling.result(timeout=TIME_LIMIT_S)

        assert rounds > 1  # the puller really did pull while the pushes were landing
        fresh = server_records(live_server, reader.access_token)
        assert {(r.table, r.id): r for r in puller.client.store.server_records()} == fresh
        assert len(created) == WRITERS * BATCHES * (PER_BATCH - 1)
        missing = [rid for rid in created if ("contacts", rid) not in fresh]
        assert missing == []
        on_phone = {r.id for r in puller.client.all("contacts")}
        assert on_phone >= set(created)
        shared = puller.client.get("contacts", shared_id)
        assert shared is not None
        assert shared.fields["notes"] in {f"w{n} b{BATCHES - 1}" for n in range(WRITERS)}
    finally:
        done.set()
        puller.close()
