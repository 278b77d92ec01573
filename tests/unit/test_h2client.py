"""H2Client against the fake APNs (both engines) and a scripted raw-h2 server: streams
multiplexed on one connection, the server's stream limit, deadlines that reset the stream,
reconnecting, GOAWAY, flow control."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec

from service.push.h2client import H2Client, H2ConnectionError, H2Timeout
from tests.fakes.apns import FakeAPNs
from tests.fakes.h2server import Engine
from tests.fakes.tls import make_certs

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "app.kith.ios"
BODY = json.dumps({"aps": {"alert": {"title": "Call Ana?"}}}).encode()
ENGINES: list[Engine] = ["hypercorn", "h2"]


def device(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(scope="module")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def provider_token(apns_key: ec.EllipticCurvePrivateKey) -> str:
    claims = {"iss": TEAM_ID, "iat": int(time.time())}
    return jwt.encode(claims, apns_key, algorithm="ES256", headers={"kid": KEY_ID})


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h2client-certs")
    make_certs(path)
    return path


def make_fake(
    key: ec.EllipticCurvePrivateKey, cert_dir: Path, engine: Engine, **options: object
) -> FakeAPNs:
    return FakeAPNs(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=key,
        topic=TOPIC,
        cert_dir=cert_dir,
        engine=engine,
        **options,  # type: ignore[arg-type]
    )


def client_for(url: str, cert_dir: Path) -> H2Client:
    return H2Client(url, verify=ssl.create_default_context(cafile=str(cert_dir / "ca.pem")))


def headers(token: str, apns_id: str | None = None) -> list[tuple[str, str]]:
    return [
        ("authorization", f"bearer {token}"),
        ("apns-topic", TOPIC),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
        ("apns-id", apns_id or str(uuid.uuid4())),
    ]


@pytest_asyncio.fixture(params=ENGINES)
async def fake(
    request: pytest.FixtureRequest, apns_key: ec.EllipticCurvePrivateKey, cert_dir: Path
) -> AsyncIterator[FakeAPNs]:
    async with make_fake(apns_key, cert_dir, request.param) as fake:
        yield fake


@pytest_asyncio.fixture
async def client(fake: FakeAPNs, cert_dir: Path) -> AsyncIterator[H2Client]:
    client = client_for(fake.url, cert_dir)
    yield client
    await client.aclose()


async def test_many_concurrent_requests_share_one_connection(
    fake: FakeAPNs, client: H2Client, provider_token: str
) -> None:
    responses = await asyncio.gather(
        *(
            client.request(
                "POST", f"/3/device/{device(i)}", headers(provider_token), BODY, timeout_s=10
            )
            for i in range(300)
        )
    )
    assert {r.status for r in responses} == {200}
    assert fake.accepted_count == 300
    assert client.connects == 1


async def test_the_answer_is_read_whole(
    fake: FakeAPNs, client: H2Client, provider_token: str
) -> None:
    apns_id = str(uuid.uuid4())
    ok = await client.request(
        "POST", f"/3/device/{device(1)}", headers(provider_token, apns_id), BODY, timeout_s=5
    )
    assert (ok.status, ok.body, ok.headers["apns-id"]) == (200, b"", apns_id)

    fake.script(device(2), status=429, reason="TooManyRequests", retry_after=30)
    r = await client.request(
        "POST", f"/3/device/{device(2)}", headers(provider_token, apns_id), BODY, timeout_s=5
    )
    assert r.status == 429
    assert json.loads(r.body) == {"reason": "TooManyRequests"}
    assert r.headers["retry-after"] == "30"
    assert r.headers["apns-id"] == apns_id
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == str(len(r.body))

    r = await client.request("GET", "/_fake/stats", [], b"", timeout_s=5)
    assert (r.status, json.loads(r.body)["accepted"]) == (200, 1)


@pytest.mark.parametrize("engine", ENGINES)
async def test_requests_beyond_the_stream_limit_wait_their_turn(
    engine: Engine, apns_key: ec.EllipticCurvePrivateKey, cert_dir: Path, provider_token: str
) -> None:
    fake = make_fake(apns_key, cert_dir, engine, max_concurrent_streams=5, latency_s=0.05)
    async with fake:
        client = client_for(fake.url, cert_dir)
        finished: list[int] = []

        async def send(i: int) -> int:
            r = await client.request(
                "POST", f"/3/device/{device(i)}", headers(provider_token), BODY, timeout_s=5
            )
            finished.append(i)
            return r.status

        started = time.monotonic()
        statuses = await asyncio.gather(*(send(i) for i in range(20)))
        elapsed = time.monotonic() - started
        await client.aclose()
    assert statuses == [200] * 20
    assert elapsed >= 4 * 0.05  # 5 at a time (more would have been a protocol error)
    # First come, first served: the requests went out in waves of five, in order.
    assert [set(finished[k : k + 5]) for k in range(0, 20, 5)] == [
        set(range(k, k + 5)) for k in range(0, 20, 5)
    ]
    assert client.connects == 1


async def test_an_unanswered_stream_times_out_and_is_reset(
    fake: FakeAPNs, client: H2Client, provider_token: str
) -> None:
    fake.script(device(7), never_answer=True)
    started = time.monotonic()
    with pytest.raises(H2Timeout):
        await client.request(
            "POST", f"/3/device/{device(7)}", headers(provider_token), BODY, timeout_s=0.3
        )
    assert 0.3 <= time.monotonic() - started < 0.6
    # The server learnt of the RST_STREAM and let the stream go.
    async with asyncio.timeout(2):
        while fake.waiting_never_answer:
            await asyncio.sleep(0.01)
    r = await client.request(
        "POST", f"/3/device/{device(8)}", headers(provider_token), BODY, timeout_s=5
    )
    assert r.status == 200
    assert client.connects == 1


async def test_a_cancelled_request_resets_its_stream(
    fake: FakeAPNs, client: H2Client, provider_token: str
) -> None:
    fake.script(device(7), never_answer=True)
    task = asyncio.create_task(
        client.request(
            "POST", f"/3/device/{device(7)}", headers(provider_token), BODY, timeout_s=30
        )
    )
    async with asyncio.timeout(2):
        while not fake.waiting_never_answer:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(2):
        while fake.waiting_never_answer:
            await asyncio.sleep(0.01)


async def test_a_body_larger_than_the_window_is_sent_as_it_opens(
    fake: FakeAPNs, client: H2Client, provider_token: str
) -> None:
    big = b"x" * (3 << 20)  # beyond any initial window: needs WINDOW_UPDATEs
    r = await client.request(
        "POST", f"/3/device/{device(3)}", headers(provider_token), big, timeout_s=10
    )
    assert (r.status, json.loads(r.body)["reason"]) == (413, "PayloadTooLarge")


@pytest.mark.parametrize("engine", ENGINES)
async def test_stopping_answers_held_streams_then_the_client_reconnects(
    engine: Engine, apns_key: ec.EllipticCurvePrivateKey, cert_dir: Path, provider_token: str
) -> None:
    fake = make_fake(apns_key, cert_dir, engine)
    await fake.start()
    port = fake.port
    client = client_for(fake.url, cert_dir)
    try:
        fake.script(device(7), never_answer=True)
        held = asyncio.create_task(
            client.request(
                "POST", f"/3/device/{device(7)}", headers(provider_token), BODY, timeout_s=10
            )
        )
        async with asyncio.timeout(2):
            while not fake.waiting_never_answer:
                await asyncio.sleep(0.01)
        await fake.stop()
        # Answered as the server shut down (around its GOAWAY), not failed.
        r = await asyncio.wait_for(held, 2)
        assert (r.status, json.loads(r.body)) == (503, {"reason": "Shutdown"})

        with pytest.raises(H2ConnectionError):  # nobody listening
            await client.request(
                "POST", f"/3/device/{device(1)}", headers(provider_token), BODY, timeout_s=5
            )

        again = make_fake(apns_key, cert_dir, engine, port=port)
        async with again:
            r = await client.request(
                "POST", f"/3/device/{device(1)}", headers(provider_token), BODY, timeout_s=5
            )
            assert r.status == 200
            assert again.accepted_count == 1
        assert client.connects == 2
    finally:
        await client.aclose()
        await fake.stop()


class _GoAwayServer(asyncio.Protocol):
    """Raw h2: on its first connection, once two requests are in, says GOAWAY naming
    only the first as processed, then answers that one; later connections answer every
    request at once."""

    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        type(self).connections += 1
        self.first_connection = type(self).connections == 1
        self.transport = transport
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.ended: list[int] = []
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                self.ended.append(event.stream_id)
                if not self.first_connection:
                    self.h2.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
        if self.first_connection and len(self.ended) == 2:
            self.first_connection = False
            first = min(self.ended)
            self.h2.send_headers(first, [(":status", "200")], end_stream=True)
            answer = self.h2.data_to_send()
            self.h2.close_connection(last_stream_id=first)
            goaway = self.h2.data_to_send()
            self.transport.write(goaway + answer)  # the answer comes after the GOAWAY
            return
        self.transport.write(self.h2.data_to_send())


async def test_goaway_fails_only_the_streams_it_did_not_process(cert_dir: Path) -> None:
    certs = make_certs(cert_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    _GoAwayServer.connections = 0
    server = await loop.create_server(_GoAwayServer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client = client_for(f"https://127.0.0.1:{port}", cert_dir)
    try:
        first, second = await asyncio.gather(
            client.request("POST", "/a", [], b"one", timeout_s=5),
            client.request("POST", "/b", [], b"two", timeout_s=5),
            return_exceptions=True,
        )
        assert not isinstance(first, BaseException)
        assert first.status == 200
        assert isinstance(second, H2ConnectionError)
        assert second.retriable
        r = await client.request("POST", "/b", [], b"two", timeout_s=5)
        assert r.status == 200
        assert client.connects == 2
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
