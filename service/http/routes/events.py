"""HTTP: ``GET /v1/sync/events`` — Server-Sent Events that tell a device when to pull.

The stream carries no data, only "pull now" pokes (docs/protocol.md, "Change events"):

* ``event: status`` ``{"realtime": true|false}`` first, and whenever Redis goes or comes
  back (without Redis nobody is poked: the app should fall back to pulling on a timer);
* ``event: change`` ``id: N`` ``{"seq": N}`` after a commit to the person's space — the
  seq is the event id, so a reconnecting ``EventSource`` sends ``Last-Event-ID: N`` and is
  poked at once if the space moved on meanwhile;
* ``: keep-alive`` comments every ``KITH_SSE_HEARTBEAT_S`` so proxies keep idle streams;
* ``event: end`` ``{"reason": …}`` then the end of the stream when the session is signed
  out or the token expires (reconnect with a fresh token), or ``retry: 2000`` and the end
  when the server shuts down (reconnect in two seconds, to another process).

Authentication is the bearer token, as everywhere; browsers' ``EventSource`` cannot set
headers, so this route alone also accepts it as the ``access_token`` query parameter.
Kith's access log records route templates, never query strings, and nothing here logs it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from service.errors import NotAuthenticated
from service.http.deps import AnyRequest, RealtimeDep
from service.http.guard import verified_session
from service.http.openapi import operation
from service.sync.realtime import EventStream, Realtime

__all__ = ["RETRY_MS", "EventsController"]

RETRY_MS = 2000  # how soon an EventSource reconnects after the server closed the stream
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kith"'}


def _realtime(state: State) -> Realtime:
    realtime: Realtime = state.realtime
    return realtime


class EventsController(Controller):
    path = "/v1/sync"
    tags = ["sync"]
    security = [{"bearer": []}]
    dependencies = {"realtime": Provide(_realtime, sync_to_thread=False)}

    @operation(
        get,
        "/events",
        "Server-Sent Events: a poke after every change to my space (then pull)",
        description='`event: change` with `{"seq": N}` (and `id: N`) after every commit; `event: '
        'status` with `{"realtime": bool}`; keep-alive comments; `event: end` when the '
        "session ends. See docs/protocol.md.",
        media_type="text/event-stream",
    )
    async def events(
        self,
        request: AnyRequest,
        realtime: RealtimeDep,
        since: Annotated[
            int | None,
            QueryParameter(
                ge=0,
                description="the seq the app last pulled to, if no Last-Event-ID",
                schema_extra={"minimum": 0},  # Litestar drops ge=0 from an optional's schema
            ),
        ] = None,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(name="Last-Event-ID", description="sent by EventSource on reconnect"),
        ] = None,
        access_token: Annotated[
            str | None,
            QueryParameter(
                description="only for clients that cannot send headers (browser EventSource); "
                "otherwise use the Authorization header"
            ),
        ] = None,
    ) -> ServerSentEvent:
        claims = await verified_session(request, _token(request, access_token))
        stream = realtime.open(
            claims.user_id,
            claims.device_id,
            claims.space_id,
            claims.family_id,
            expires_at=claims.expires_at,
            since=_since(since, last_event_id),
        )
        try:
            current = await realtime.committed_seq(claims.space_id)
        except BaseException:
            realtime.close(stream)
            raise
        if stream.sent_seq is None:
            stream.sent_seq = current  # a fresh stream: the app pulls when it opens it
        else:
            stream.poke(current)  # a reconnection: poke at once if the space moved on
        return ServerSentEvent(_frames(realtime, stream), headers={"Cache-Control": "no-store"})


def _token(request: AnyRequest, access_token: str | None) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if access_token:
        return access_token
    raise NotAuthenticated(
        "send 'Authorization: Bearer <access token>' (or ?access_token= from a browser)",
        headers=_CHALLENGE,
    )


def _since(since: int | None, last_event_id: str | None) -> int | None:
    """The newest seq the device has heard of: ``Last-Event-ID`` (ours are seqs) or
    ``?since=``; a malformed id is ignored rather than refused (it is the browser's)."""
    candidates = [since] if since is not None else []
    if last_event_id is not None and last_event_id.strip().isdigit():
        candidates.append(int(last_event_id.strip()))
    return max(candidates) if candidates else None


async def _frames(
    realtime: Realtime, stream: EventStream
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Everything the stream has to say, until it ends; unregisters it however it ends
    (including the client going away, which cancels this generator)."""
    try:
        yield _status(stream.realtime, retry=RETRY_MS)
        while True:
            for message in _drain(stream):
                yield message
            if stream.ending is not None:
                yield _ending(stream.ending)
                return
            await stream.wake.wait()
            stream.wake.clear()
    finally:
        realtime.close(stream)


def _drain(stream: EventStream) -> list[ServerSentEventMessage]:
    messages = []
    if stream.take_status():
        messages.append(_status(stream.realtime))
    seq = stream.take_poke()
    if seq is not None:
        messages.append(ServerSentEventMessage(data=f'{{"seq":{seq}}}', event="change", id=seq))
    if stream.take_heartbeat():
        messages.append(ServerSentEventMessage(data=None, comment="keep-alive"))
    return messages


def _status(realtime: bool, *, retry: int | None = None) -> ServerSentEventMessage:
    flag = "true" if realtime else "false"
    return ServerSentEventMessage(data=f'{{"realtime":{flag}}}', event="status", retry=retry)


def _ending(reason: str) -> ServerSentEventMessage:
    if reason == "shutdown":  # nothing is wrong: come back in a moment, to another process
        return ServerSentEventMessage(data=None, comment="server shutting down", retry=RETRY_MS)
    return ServerSentEventMessage(data=f'{{"reason":"{reason}"}}', event="end")
