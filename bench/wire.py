"""A lean HTTP/1.1 client for the timed part of the device workloads.

A device's HTTP stack (URLSession, OkHttp) is native code; httpx is not, and on this
2-core machine it took as long to move a pull page as PostgreSQL took to read it — so a
benchmark driven by httpx measured httpx as much as Kith. This client is what a load
generator should be: one keep-alive connection, requests written as bytes, answers read
by ``Content-Length`` (or chunked), nothing else. Set-up steps (register, log in) still
use httpx; only the timed exchanges go through here, against Kith and the floor alike.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["Wire", "read_response"]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response: its status and body (``Content-Length`` or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return status, b"".join(parts)


class Wire:
    """One keep-alive connection to ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, got {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self._host_header = f"{self.host}:{self.port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Wire:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()

    def request_bytes(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write a request made by :meth:`request_bytes`; return the status and body."""
        if self._reader is None or self._writer is None:
            raise RuntimeError("open the connection first: `async with Wire(url) as wire`")
        self._writer.write(request)
        return await read_response(self._reader)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await self.send(self.request_bytes("POST", path, body, headers))
