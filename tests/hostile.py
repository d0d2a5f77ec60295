"""A hostile JSON-RPC node: a real HTTP server in front of the simulator that rewrites replies.

It stands where a compromised provider or a man-in-the-middle on an ``http://`` URL would: every
request is forwarded to the upstream node (the simnet) unchanged, and its answer passes through
``rewrite`` before it goes back. driftsnap talks to it over HTTP like to any node; nothing of
driftsnap's own is replaced.

``rewrite(call)`` gets a :class:`Call` (the method, its params and the upstream's decoded reply
envelope) and returns one of

- a JSON value: sent back as the whole reply envelope (keep ``jsonrpc`` and ``id``, or not);
- ``bytes``: sent back as the raw body (broken JSON, a huge body);
- an async iterator of ``bytes``: streamed as the body (an endless one);
- ``None``: the upstream's reply unchanged.

:func:`result` replaces only the ``result`` of the envelope, for the common case.

    async with hostile.serve(node.url, rewrite) as proxy:
        async with rpc.Client(settings(proxy.url)) as client: ...
"""

from __future__ import annotations

import collections
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

Json = Any
Reply = Json | bytes | AsyncIterator[bytes] | None
Rewrite = Callable[["Call"], Reply | Awaitable[Reply]]


@dataclass
class Call:
    """One request as the proxy saw it, with the upstream's answer."""

    method: str
    params: list[Json]
    reply: Json  # the upstream's whole envelope: {"jsonrpc", "id", "result" | "error"}
    number: int  # how many calls of this method came before, from 0

    @property
    def result(self) -> Json:
        """The upstream's ``result`` (``None`` for an error reply)."""
        return self.reply.get("result") if isinstance(self.reply, dict) else None


def result(call: Call, value: Json) -> Json:
    """``call``'s reply envelope with ``value`` as its result."""
    return {"jsonrpc": "2.0", "id": call.reply.get("id"), "result": value}


def error(call: Call, code: int, message: str) -> Json:
    """``call``'s reply envelope as a JSON-RPC error."""
    return {
        "jsonrpc": "2.0",
        "id": call.reply.get("id"),
        "error": {"code": code, "message": message},
    }


@dataclass
class Proxy:
    """A running hostile node: its URL and the calls it answered, by method."""

    url: str
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    rewrite: Rewrite | None = None  # may be swapped while running


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(upstream: str, rewrite: Rewrite | None = None) -> AsyncIterator[Proxy]:
    """A hostile node on a free local port, forwarding to ``upstream`` through ``rewrite``."""
    port = _free_port()
    proxy = Proxy(f"http://127.0.0.1:{port}", rewrite=rewrite)
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with session.post(
            upstream, data=body, headers={"Content-Type": "application/json"}
        ) as answer:
            status, raw = answer.status, await answer.read()
        try:
            sent = json.loads(body)
            reply = json.loads(raw)
        except ValueError:
            return web.Response(status=status, body=raw, content_type="application/json")
        if not isinstance(sent, dict) or not isinstance(reply, dict):
            return web.Response(status=status, body=raw, content_type="application/json")
        method = str(sent.get("method"))
        call = Call(method, list(sent.get("params") or []), reply, proxy.calls[method])
        proxy.calls[method] += 1
        out: Reply = None
        if proxy.rewrite is not None:
            out = proxy.rewrite(call)
            if isinstance(out, Awaitable):
                out = await out
        if out is None:
            return web.Response(status=status, body=raw, content_type="application/json")
        if isinstance(out, bytes):
            return web.Response(status=200, body=out, content_type="application/json")
        if isinstance(out, AsyncIterator):
            stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await stream.prepare(request)
            try:
                async for chunk in out:
                    await stream.write(chunk)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                pass  # the client gave up on the body, as it should
            return stream
        return web.json_response(out)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield proxy
    finally:
        await runner.cleanup()
        await session.close()
