"""The no-change pull, answered in front of Litestar.

``POST /v1/sync/pull`` with the space's latest cursor — the app opened, nothing new — is
the request Kith answers most often, and its answer needs no database: the caller's token
and session are known to this process (``service.accounts.sessions``) and the space's seq is
known from Redis or memory (``service.sync.realtime``). Litestar's routing, guards, dependency
injection and response machinery cost ten times more than that answer (decision 0008).

:class:`FastPull` sits between :class:`service.infra.logs.ObservedApp` (request id, access line,
latency metric — so nothing about observability changes) and Litestar. It answers only
when everything is certain: a bearer token it has verified, a session known live, a valid
body whose cursor is the space's latest seq. Anything else — another route, a bad or
missing token, a session not in the cache, a malformed body, an unsupported schema
version, a stale cursor, Redis down — goes to Litestar untouched (the body it read is
replayed), which answers exactly as it always did, errors included. So the fast path can
only ever give the answer the full path would give, sooner
(``tests/integration/test_fast_pull.py`` holds it to that). Rate limits are counted
before it, by ``service.http.ratelimit.RateLimits``, for every request alike.

Litestar middleware, guards or hooks added later do not run for a request answered here:
whoever adds one decides whether the no-change pull needs it too.
"""

from __future__ import annotations

import msgspec
from litestar.datastructures import State

from schemas.sync import PullRequest
from service.accounts.tokens import InvalidToken
from service.errors import KithError
from service.infra.asgi import ASGIApp, Message, Receive, Scope, Send, bearer_token

__all__ = ["PULL_PATH", "FastPull"]

PULL_PATH = "/v1/sync/pull"
# A pull request is about 60 bytes; a body larger than this takes the full path (which
# enforces the real body limit and says so).
MAX_BODY = 1024


class FastPull:
    """ASGI: answer the no-change pull without Litestar; pass everything else through."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        """``app``: Litestar (or anything wrapping it); ``state``: its ``app.state``, where
        the lifespan puts the session cache and the sync service."""
        self.app = app
        self._state = state
        self._decode = msgspec.json.Decoder(PullRequest).decode
        self._encode = msgspec.json.Encoder().encode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PULL_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        received, body = await _read_small_body(receive)
        answer = None if body is None else await self._answer(scope, body)
        if answer is None:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["path_template"] = PULL_PATH  # the access line and metrics name the route
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    async def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The encoded answer when this request is a no-change pull known to be one, else
        None (Litestar answers it)."""
        state = self._state
        sessions, sync = getattr(state, "sessions", None), getattr(state, "sync", None)
        if sessions is None or sync is None:
            return None  # not started yet, or shutting down
        token = bearer_token(scope)
        if token is None:
            return None
        try:
            request = self._decode(body)
            claims = sessions.claims(token)
        except (msgspec.DecodeError, InvalidToken):
            return None
        if request.cursor is None or not sessions.known_live(claims):
            return None
        consent = getattr(state, "consent", None)
        if consent is None or not consent.satisfied(claims.terms_version):
            return None  # Litestar answers 403 consent_required
        try:
            response = await sync.pull_if_unchanged(claims.space_id, request)
        except KithError:
            return None  # e.g. an unsupported schema version: Litestar says so
        if response is None:
            return None
        return self._encode(response)


async def _read_small_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages read, and the whole body if it arrived within ``MAX_BODY`` bytes
    (None if it is larger, or the client went away)."""
    received: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return received, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return received, b"".join(chunks)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives back what was already read, then reads on."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
