"""The JSON-RPC client against the simnet over loopback: throttles, pauses, retries, errors."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from driftsnap.chain import errors, rpc
from driftsnap.errors import ConfigError
from driftsnap.simnet import server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

Json = Any
SENTINEL = "SENTINELk3yZ9q"  # stands for an API key: must never be shown


def fast(url: str, **changes: Any) -> rpc.RpcSettings:
    """Settings for tests: short timeouts and backoffs, throttles out of the way unless asked."""
    base: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_retries": 3,
        "rps": 1000,
        "gpa_rps": 1000,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return rpc.RpcSettings(url, **{**base, **changes})


@dataclass
class Recorder:
    """httpx event hooks noting when each request left and each response came, and what it was."""

    requests: list[tuple[float, Json]] = field(default_factory=list)
    responses: list[tuple[float, int]] = field(default_factory=list)

    async def on_request(self, request: httpx.Request) -> None:
        self.requests.append((time.monotonic(), json.loads(request.content)))

    async def on_response(self, response: httpx.Response) -> None:
        self.responses.append((time.monotonic(), response.status_code))

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def times(self, method: str) -> list[float]:
        return [t for t, body in self.requests if body["method"] == method]


class Provider(httpx.AsyncBaseTransport):
    """The simnet behind a provider with quirks: ``bend`` may answer a request itself.

    ``bend(body)`` returns ``None`` to pass the request on (it may edit ``body`` first), or
    ``(status, text)`` to answer in the node's place. A stand-in for real nodes' behaviour that
    the simnet does not model; the client code under test is untouched.
    """

    def __init__(self, bend: Callable[[Json], tuple[int, str] | None]) -> None:
        self._bend = bend
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        answer = self._bend(body)
        if answer is not None:
            status, text = answer
            return httpx.Response(status, content=text.encode(), request=request)
        forwarded = httpx.Request(
            request.method,
            request.url,
            headers={"content-type": "application/json"},
            content=json.dumps(body).encode(),
        )
        return await self._inner.handle_async_request(forwarded)

    async def aclose(self) -> None:
        await self._inner.aclose()


def rpc_error(body: Json, code: int, message: str) -> tuple[int, str]:
    """A JSON-RPC error answer to ``body``."""
    error = {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": body["id"]}
    return 200, json.dumps(error)


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("quiet", seed=13) as running:
        await running.advance(20)
        yield running


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://rpc.example/?api-key=K", "https://rpc.example/…"),
        ("https://rpc.example/v2/K", "https://rpc.example/…"),
        ("https://user:K@rpc.example:8443", "https://rpc.example:8443"),
        ("http://127.0.0.1:8899/", "http://127.0.0.1:8899"),
        ("http://[::1]:8899/#K", "http://[::1]:8899/…"),
    ],
)
def test_redact_keeps_scheme_host_and_port_only(url: str, shown: str) -> None:
    """redact() drops user info, path, query and fragment, marking that something was there."""
    assert rpc.redact(url) == shown
    assert repr(rpc.RpcSettings(url)).count(shown) == 1
    assert "K" not in repr(rpc.RpcSettings(url)).replace(shown, "")


@pytest.mark.parametrize(
    "changes", [{"timeout_s": 0}, {"rps": 0}, {"gpa_rps": 0}, {"max_retries": -1}]
)
def test_settings_refuse_values_that_cannot_work(changes: dict[str, Any]) -> None:
    """A zero timeout or rate, or negative retries, is a ConfigError naming no URL."""
    with pytest.raises(ConfigError) as caught:
        rpc.RpcSettings(f"https://rpc.example/?api-key={SENTINEL}", **changes)
    assert SENTINEL not in str(caught.value)


@pytest.mark.asyncio
async def test_call_returns_the_result(node: server.SimnetServer) -> None:
    """A plain call returns the JSON-RPC result (getSlot is the node's slot)."""
    async with rpc.Client(fast(node.url)) as client:
        assert await client.call("getSlot") == node.sim.slot


@pytest.mark.asyncio
async def test_429_pauses_every_caller_until_retry_after(node: server.SimnetServer) -> None:
    """After a 429 with Retry-After: 1, no caller sends a request before that second has passed."""
    node.set_faults(http_429=1, retry_after_s=1)
    recorder = Recorder()
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        first = asyncio.create_task(client.call("getSlot"), name="first-caller")
        await asyncio.sleep(0.2)  # the 429 is in: the second caller starts during the pause
        second = asyncio.create_task(client.call("getSlot"), name="second-caller")
        assert await first == await second == node.sim.slot
    refused_at = [t for t, status in recorder.responses if status == 429]
    assert len(refused_at) == 1
    later = [t for t, _ in recorder.requests[1:]]
    assert len(later) == 2
    assert min(later) >= refused_at[0] + 1.0


@pytest.mark.asyncio
async def test_429_without_end_is_a_rate_limited_error(node: server.SimnetServer) -> None:
    """429s past the retry budget raise RateLimitedError with the attempts and Retry-After."""
    node.set_faults(http_429=10, retry_after_s=0)
    async with rpc.Client(fast(node.url, max_retries=2)) as client:
        with pytest.raises(errors.RateLimitedError) as caught:
            await client.call("getSlot")
    assert (caught.value.attempts, caught.value.retry_after_s, caught.value.code) == (3, 0.0, 429)
    assert node.faults.http_429 == 7


@pytest.mark.asyncio
async def test_throttles_hold_each_method_class_to_its_rate(node: server.SimnetServer) -> None:
    """rps bounds getSlot to 20 in any second; getProgramAccounts has its own, separate limit."""
    recorder = Recorder()
    settings = fast(node.url, rps=20, gpa_rps=2)
    async with rpc.Client(settings, event_hooks=recorder.hooks()) as client:
        # A first request pays for lazy set-up (connection pool, imports) between the throttle
        # and the request hook, which would skew the times measured below.
        await client.call("getVersion")
        await asyncio.sleep(1.0)  # and its throttle slot expires
        recorder.requests.clear()
        gpa_params = ["11111111111111111111111111111111", {"encoding": "base64"}]
        async with asyncio.TaskGroup() as tasks:
            for i in range(4):
                tasks.create_task(client.call("getProgramAccounts", gpa_params), name=f"gpa-{i}")
            for i in range(45):
                tasks.create_task(client.call("getSlot"), name=f"slot-{i}")
    slots, gpas = recorder.times("getSlot"), recorder.times("getProgramAccounts")
    assert (len(slots), len(gpas)) == (45, 4)
    # A sliding window: request i + rate may only leave a whole period after request i.
    tolerance = 0.03  # between the throttle's clock reading and the request hook
    assert min(b - a for a, b in pairs_apart(slots, 20)) >= 1.0 - tolerance
    assert min(b - a for a, b in pairs_apart(gpas, 2)) >= 1.0 - tolerance
    # The two getProgramAccounts held back did not hold back getSlot, nor the other way round.
    assert slots[19] < gpas[2]
    assert gpas[1] < slots[20]


def pairs_apart(times: list[float], gap: int) -> list[tuple[float, float]]:
    """(time of request i, time of request i + gap) for every i."""
    return list(zip(times, times[gap:], strict=False))


@pytest.mark.asyncio
async def test_node_behind_is_retried(node: server.SimnetServer) -> None:
    """Two -32005 answers are retried, and the third request gets the result."""
    node.set_faults(node_behind=2)
    recorder = Recorder()
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        assert await client.call("getSlot") == node.sim.slot
    assert len(recorder.requests) == 3


@pytest.mark.asyncio
async def test_node_behind_past_the_retries_is_typed(node: server.SimnetServer) -> None:
    """-32005 on every attempt raises NodeBehindError after max_retries + 1 requests."""
    node.set_faults(node_behind=10)
    async with rpc.Client(fast(node.url, max_retries=2)) as client:
        with pytest.raises(errors.NodeBehindError) as caught:
            await client.call("getSlot")
    assert (caught.value.code, caught.value.attempts) == (-32005, 3)
    assert "gave up after 3 attempts" in str(caught.value)


@pytest.mark.asyncio
async def test_min_context_slot_is_retried_with_the_same_slot(node: server.SimnetServer) -> None:
    """-32016 is retried, each time asking for the same minContextSlot."""
    node.set_faults(min_context_not_reached=2)
    recorder = Recorder()
    wanted = node.sim.slot
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        assert await client.call("getSlot", [{"minContextSlot": wanted}]) == wanted
    assert [body["params"] for _, body in recorder.requests] == [[{"minContextSlot": wanted}]] * 3


@pytest.mark.asyncio
async def test_provider_minus_32603_min_context_is_the_same_error(
    node: server.SimnetServer,
) -> None:
    """A provider's -32603 'Minimum context slot has not been reached' is a MinContextSlotError."""
    provider = Provider(
        lambda body: rpc_error(body, -32603, "Minimum context slot has not been reached")
    )
    async with rpc.Client(fast(node.url, max_retries=1), transport=provider) as client:
        with pytest.raises(errors.MinContextSlotError) as caught:
            await client.call("getSlot")
    assert (caught.value.code, caught.value.attempts) == (-32603, 2)


@pytest.mark.asyncio
async def test_other_rpc_errors_are_not_retried(node: server.SimnetServer) -> None:
    """An invalid-params error is raised at once as a plain RpcError with its code."""
    recorder = Recorder()
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        with pytest.raises(errors.RpcError) as caught:
            await client.call("getBlockTime", ["not a slot"])
    assert type(caught.value) is errors.RpcError
    assert (caught.value.code, caught.value.attempts, len(recorder.requests)) == (-32602, 1, 1)


@pytest.mark.asyncio
async def test_http_5xx_is_retried_but_401_is_not(node: server.SimnetServer) -> None:
    """A gateway's 503 and 502 are retried until the node answers; a 401 raises at once."""
    statuses: list[int] = []

    def gateway(body: Json) -> tuple[int, str] | None:
        return (statuses.pop(0), "gateway says no") if statuses else None

    recorder = Recorder()
    async with rpc.Client(
        fast(node.url), transport=Provider(gateway), event_hooks=recorder.hooks()
    ) as client:
        statuses[:] = [503, 502]
        assert await client.call("getSlot") == node.sim.slot
        assert len(recorder.requests) == 3
        statuses[:] = [401, 401]
        with pytest.raises(errors.TransportError) as caught:
            await client.call("getSlot")
    assert (caught.value.code, caught.value.attempts, caught.value.retryable) == (401, 1, False)
    assert statuses == [401]


@pytest.mark.asyncio
async def test_an_answer_that_is_not_json_is_a_transport_error(node: server.SimnetServer) -> None:
    """A 200 with an HTML body (a captive proxy) raises TransportError after the retries."""
    provider = Provider(lambda body: (200, "<html>maintenance</html>"))
    async with rpc.Client(fast(node.url, max_retries=1), transport=provider) as client:
        with pytest.raises(errors.TransportError, match="not JSON") as caught:
            await client.call("getSlot")
    assert caught.value.attempts == 2


@pytest.mark.asyncio
async def test_timeouts_are_typed_after_the_retries(node: server.SimnetServer) -> None:
    """A node slower than timeout_s gives RpcTimeoutError after max_retries + 1 attempts."""
    node.set_faults(delay_ms=400)
    recorder = Recorder()
    settings = fast(node.url, timeout_s=0.1, max_retries=2)
    started = time.monotonic()
    async with rpc.Client(settings, event_hooks=recorder.hooks()) as client:
        with pytest.raises(errors.RpcTimeoutError) as caught:
            await client.call("getSlot")
    assert caught.value.attempts == len(recorder.requests) == 3
    assert time.monotonic() - started < 1.0  # three short timeouts, not three slow answers


@pytest.mark.asyncio
async def test_server_gone_is_a_transport_error_then_it_recovers(
    node: server.SimnetServer,
) -> None:
    """With the node down a call raises TransportError after its retries; once back, it works."""
    async with rpc.Client(fast(node.url, max_retries=1)) as client:
        await node.go_away()
        with pytest.raises(errors.TransportError) as caught:
            await client.call("getSlot")
        assert caught.value.attempts == 2
        await node.come_back()
        assert await client.call("getSlot") == node.sim.slot


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Run in a fresh interpreter so the logging set-up is exactly the daemon's (structlog caches
# loggers on first use, so configuring it inside this test process would depend on test order).
_SECRET_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    import httpx
    from driftsnap import logs
    from driftsnap.chain import errors, rpc

    base, dead, key = sys.argv[1], sys.argv[2], sys.argv[3]
    fast = dict(timeout_s=0.2, max_retries=3, rps=1000, gpa_rps=1000,
                backoff_base_s=0.01, backoff_max_s=0.02)
    log = logs.get("secret_test")

    async def attempt(url, method, params=(), **kw):
        settings = rpc.RpcSettings(url, **fast)
        print(repr(settings), settings.endpoint)
        async with rpc.Client(settings, **kw) as client:
            print(repr(client))
            try:
                print("result", await client.call(method, list(params)))
            except errors.ChainError as exc:
                print("raised", type(exc).__name__, str(exc), repr(exc), exc.args)
                log.exception("call_failed")

    async def faults(**changes):
        async with httpx.AsyncClient() as control:
            await control.post(base + "/_simnet/faults", json=changes)

    async def main():
        logs.configure("debug", "json")
        # logs.configure keeps httpx at WARNING; its INFO line (the full URL) is let through
        # here so that the client's filter, the second line of defence, is what is tested.
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        query = base + "/?api-key=" + key
        await faults(http_429=1, retry_after_s=0, node_behind=1, min_context_not_reached=1)
        await attempt(query, "getSlot")                      # 429, -32005, -32016, then ok
        await attempt(query, "getBlockTime", ["nope"])      # JSON-RPC error
        await attempt(base + "/v2/" + key, "getSlot")       # HTTP 404
        await faults(delay_ms=500)
        await attempt(query, "getSlot")                      # timeouts
        await faults(delay_ms=0)
        await attempt(dead + "/v2/" + key + "?api-key=" + key, "getSlot")  # refused
        html = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>"))
        await attempt(query, "getSlot", transport=html)      # not JSON
        def echo(request):                                   # an error quoting the URL
            body = json.loads(request.content)
            message = "bad request to " + str(request.url)
            error = {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -1, "message": message}}
            return httpx.Response(200, json=error)
        await attempt(query, "getSlot", transport=httpx.MockTransport(echo))

    asyncio.run(main())
    """
)


@pytest.mark.asyncio
async def test_api_key_never_in_logs_errors_or_reprs(node: server.SimnetServer) -> None:
    """A key in the URL's path or query shows in no log line, message, repr or traceback."""
    dead = f"http://127.0.0.1:{_free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SECRET_SCRIPT,
        node.url,
        dead,
        SENTINEL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout=30)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert process.returncode == 0, err
    # Every path really ran: the retries and each kind of error, in logs and in exceptions.
    for event in ("rpc_retry", "rpc_paused", "call_failed", "HTTP Request: POST"):
        assert event in err
    for kind in ("RpcError", "TransportError", "RpcTimeoutError", "HTTP 404", "not JSON"):
        assert kind in out
    assert f"result {node.sim.slot}" in out
    assert "bad request to http://127.0.0.1" in out  # the echoed URL, scrubbed
    assert SENTINEL not in out
    assert SENTINEL not in err
