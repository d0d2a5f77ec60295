"""Small helpers shared by the simnet tests: raw JSON-RPC calls over real HTTP."""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from anchorpy.coder.coder import Coder
from anchorpy_core.idl import Idl
from driftpy.events.parse import parse_logs

if TYPE_CHECKING:
    import aiohttp
    from anchorpy.program.core import Program

Json = Any


async def post(session: aiohttp.ClientSession, url: str, body: Json) -> tuple[int, Json, str]:
    """POST a JSON body; (status, decoded JSON or None, raw text)."""
    async with session.post(url, data=body if isinstance(body, str) else json.dumps(body)) as resp:
        text = await resp.text()
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        return resp.status, decoded, text


async def call(
    session: aiohttp.ClientSession, url: str, method: str, params: list[Json] | None = None
) -> Json:
    """One JSON-RPC request; the whole response object (result or error)."""
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    status, decoded, _ = await post(session, url, request)
    assert status == 200
    return decoded


async def call_text(
    session: aiohttp.ClientSession, url: str, method: str, params: list[Json] | None = None
) -> str:
    """One JSON-RPC request; the raw response text (for solders' ``from_json`` parsers)."""
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    status, _, text = await post(session, url, request)
    assert status == 200
    return text


@dataclasses.dataclass(frozen=True)
class _EventSource:
    """What driftpy's ``parse_logs`` uses of an anchorpy ``Program``: its ``coder``."""

    coder: Any


@functools.cache
def _event_source() -> _EventSource:
    # Built here from driftpy's IDL file, independently of the simnet's own coder.
    idl = resources.files("driftpy").joinpath("idl/drift.json").read_text()
    return _EventSource(Coder(Idl.from_json(idl)))


def drift_events(logs: list[str]) -> list[Any]:
    """Drift events in a transaction's logs, parsed by driftpy's own log parser."""
    # parse_logs is annotated with anchorpy's Program but reads nothing of it except ``coder``.
    events: list[Any] = parse_logs(cast("Program", _event_source()), logs)
    return events
