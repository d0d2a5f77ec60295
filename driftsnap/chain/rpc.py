"""A small Solana JSON-RPC client of our own, over ``httpx.AsyncClient``.

One :class:`Client` per endpoint. Each call goes through

1. the endpoint's pause: after a 429 nobody sends anything until ``Retry-After`` has passed;
2. a throttle of its method class (``getProgramAccounts`` has its own: providers meter it apart,
   and one of them costs more than a hundred ``getMultipleAccounts``);
3. one HTTP POST under a total timeout, whose body is read no further than ``max_body_bytes``
   (a ``Content-Length`` above it is refused before reading, an endless body at the cap; gzip
   is inflated in bounded steps, under the same cap), and whose answer is classified by
   :mod:`driftsnap.chain.errors` (-32005, -32016, 429, timeout, transport, too large);
4. retries of the retryable kinds, with exponential backoff and jitter, up to ``max_retries``;
   then the last error is raised, with ``attempts`` set.

The endpoint URL may carry an API key in its path or query. It is used for requests only: every
log line, message and repr shows :func:`redact` of it, and httpx's own request log line (which
prints the full URL) is rewritten by a filter while a client is open.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import random
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
from asyncio_throttle.throttler import Throttler

from driftsnap import logs
from driftsnap.chain import errors
from driftsnap.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from types import TracebackType

Json = Any
log = logs.get(__name__)

NODE_BEHIND: Final = -32005
MIN_CONTEXT_SLOT: Final = -32016
INTERNAL_ERROR: Final = -32603  # some providers report an unreached minContextSlot so
_GPA: Final = "getProgramAccounts"
MIB: Final = 1 << 20
# The largest reply read. The simnet's mainnet-scale getProgramAccounts (10,002 User accounts with
# open orders, BENCHMARKS.md) is 60.8 MB of JSON in plain base64 (5.9 MB in base64+zstd, which
# the snapshot asks for first); its scale curve reaches ~120 MB at 20k accounts. 256 MiB is twice
# that and four times today's mainnet, and a body at the cap still leaves the process well
# under 1 GB. DRIFTSNAP_RPC_MAX_BODY_MB sets it.
DEFAULT_MAX_BODY_BYTES: Final = 256 * MIB
_CHUNK: Final = 1 << 16  # the most a gzip step may inflate to before the cap is looked at

# The only methods this client sends. driftsnap holds no key and never writes to the chain; an
# allowlist (not a denylist) makes that hold for methods added to Solana later too.
READ_METHODS: Final = frozenset(
    {
        "getAccountInfo",
        "getBlockTime",
        "getHealth",
        "getMultipleAccounts",
        "getProgramAccounts",
        "getSignaturesForAddress",
        "getSlot",
        "getTransaction",
        "getVersion",
    }
)


@dataclass(frozen=True, slots=True, repr=False)
class RpcSettings:
    """How to talk to one endpoint. ``url`` is a secret: it never leaves this module unredacted."""

    url: str
    timeout_s: float = 30.0
    max_retries: int = 4  # retries after the first attempt
    rps: int = 10  # requests per second, every method but getProgramAccounts
    gpa_rps: int = 2  # getProgramAccounts per second
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 60.0  # a Retry-After longer than this is capped (a broken proxy)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # a longer reply is refused, unread past this

    def __post_init__(self) -> None:
        if (
            self.timeout_s <= 0
            or self.rps < 1
            or self.gpa_rps < 1
            or self.max_retries < 0
            or self.max_body_bytes < 1
        ):
            raise ConfigError(
                "RPC settings: timeout_s must be > 0, rps and gpa_rps >= 1, max_retries >= 0, "
                "max_body_bytes >= 1"
            )
        _check_url(self.url)

    @property
    def endpoint(self) -> str:
        """The URL without what may be secret: ``scheme://host[:port]``, then ``/…`` if more."""
        return redact(self.url)

    def __repr__(self) -> str:
        return (
            f"RpcSettings(url={self.endpoint!r}, timeout_s={self.timeout_s}, "
            f"max_retries={self.max_retries}, rps={self.rps}, gpa_rps={self.gpa_rps}, "
            f"max_body_bytes={self.max_body_bytes})"
        )


def _check_url(url: str) -> None:
    """:class:`ConfigError` (exit 2, before any request) unless ``url`` is an http(s) URL with a
    host. The message never quotes it: an RPC URL may carry an API key."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError("RPC URL is malformed (its port is not a number)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "RPC URL must look like https://host[:port][/path] (http:// or https:// and a host; "
            "--rpc-url, DRIFTSNAP_RPC_URL)"
        )


def redact(url: str) -> str:
    """``scheme://host[:port]``, plus ``/…`` when the URL had a path, query or fragment.

    User info (``user:key@``) is dropped, as are path and query, where providers put API keys.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparseable url>"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    more = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{more}"


def _secrets(url: str) -> list[str]:
    """Pieces of ``url`` that must not be shown, longest first (so the whole URL goes first)."""
    parts = urllib.parse.urlsplit(url)
    pieces = [
        url,
        parts.path,
        parts.query,
        parts.fragment,
        parts.netloc if "@" in parts.netloc else "",
    ]
    pieces += [p for p in parts.path.split("/") if len(p) >= 8]
    pieces += [v for _, v in urllib.parse.parse_qsl(parts.query) if v]
    return sorted({p for p in pieces if len(p) > 1}, key=len, reverse=True)


class _Scrubber(logging.Filter):
    """Rewrites stdlib log records (httpx logs every request's full URL at INFO) to hide secrets."""

    def __init__(self, url: str, endpoint: str) -> None:
        super().__init__()
        self._secrets = _secrets(url)
        self._url = url
        self._endpoint = endpoint

    def scrub(self, text: str) -> str:
        text = text.replace(self._url, self._endpoint)
        for secret in self._secrets:
            text = text.replace(secret, "…")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


class Client:
    """JSON-RPC calls to one endpoint; use as ``async with rpc.Client(settings) as client``.

    ``transport`` and ``event_hooks`` go to ``httpx.AsyncClient`` (tests put a faulty node or a
    request recorder there).
    """

    def __init__(
        self,
        settings: RpcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, list[Callable[..., Awaitable[Any]]]] | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        # Whether getProgramAccounts may ask for base64+zstd; the snapshot clears it once a node
        # refuses that encoding, so the refusal costs one request per client, not per snapshot.
        self.zstd = True
        self._http = httpx.AsyncClient(
            transport=transport,
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
            timeout=httpx.Timeout(settings.timeout_s),
            # gzip only, inflated here in bounded steps: httpx would inflate a whole chunk of
            # deflate or zstd at once, however large it comes out.
            headers={"content-type": "application/json", "accept-encoding": "gzip"},
            # Settings are read once, by the CLI: no proxy or certificate settings from the
            # environment behind its back.
            trust_env=False,
        )
        self._throttle = Throttler(rate_limit=settings.rps, period=1.0)
        self._gpa_throttle = Throttler(rate_limit=settings.gpa_rps, period=1.0)
        self._paused_until = 0.0  # time.monotonic() before which no request is sent
        self._ids = itertools.count(1)
        self._scrubber = _Scrubber(settings.url, self.endpoint)
        # Backoff jitter only spreads retries of many clients apart; it is not cryptographic.
        self._jitter = random.Random()  # noqa: S311
        logging.getLogger("httpx").addFilter(self._scrubber)

    def __repr__(self) -> str:
        return f"rpc.Client({self.endpoint!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client and detach the URL scrubber from httpx's logger."""
        await self._http.aclose()
        logging.getLogger("httpx").removeFilter(self._scrubber)

    async def call(self, method: str, params: Sequence[Json] = ()) -> Json:
        """The ``result`` of one call, retried as the settings allow; a typed RpcError if not."""
        if method not in READ_METHODS:
            raise errors.ReadOnlyError(
                f"refusing to send {method!r}: driftsnap only reads the chain"
            )
        throttle = self._gpa_throttle if method == _GPA else self._throttle
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_pause()
            async with throttle:
                # The throttle may have held us while a 429 arrived: look at the pause again.
                await self._wait_for_pause()
                try:
                    return await self._send(method, params)
                except errors.RpcError as exc:
                    if not exc.retryable or attempt > self.settings.max_retries:
                        raise exc.gave_up(attempt) from None
                    failure = exc
            delay = self._delay(failure, attempt)
            log.warning(
                "rpc_retry",
                method=method,
                attempt=attempt,
                error=type(failure).__name__,
                code=failure.code,
                detail=failure.detail,
                delay_s=round(delay, 3),
                endpoint=self.endpoint,
            )
            await asyncio.sleep(delay)

    def _delay(self, exc: errors.RpcError, attempt: int) -> float:
        """Seconds to wait before the next attempt: backoff with jitter, or the 429 pause."""
        if isinstance(exc, errors.RateLimitedError) and exc.retry_after_s is not None:
            return 0.0  # _wait_for_pause does the waiting, for every caller at once
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        return float(ceiling / 2 + self._jitter.uniform(0, ceiling / 2))

    async def _wait_for_pause(self) -> None:
        while (left := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def _pause(self, seconds: float, method: str) -> None:
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            log.warning("rpc_paused", method=method, retry_after_s=seconds, endpoint=self.endpoint)

    async def _send(self, method: str, params: Sequence[Json]) -> Json:
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                status, headers, content = await self._post(method, body)
        except (TimeoutError, httpx.TimeoutException):
            raise errors.RpcTimeoutError(
                f"no answer within {self.settings.timeout_s} s",
                method=method,
                endpoint=self.endpoint,
            ) from None
        except httpx.HTTPError as exc:
            # from None: httpx errors hold the request, whose URL holds the key; the text of
            # the error is kept, scrubbed.
            raise errors.TransportError(
                f"{type(exc).__name__}: {self._scrubber.scrub(str(exc)) or 'no detail'}",
                method=method,
                endpoint=self.endpoint,
            ) from None
        log.debug(
            "rpc_call",
            method=method,
            status=status,
            bytes=len(content),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return self._result(method, request_id, status, headers, content)

    async def _post(self, method: str, body: str) -> tuple[int, httpx.Headers, bytearray]:
        """POST ``body``: the status, the headers and, for a 200, the body, never read past
        ``max_body_bytes`` (other statuses are classified without their body)."""
        cap = self.settings.max_body_bytes
        content = bytearray()
        async with self._http.stream("POST", self.settings.url, content=body) as response:
            status, headers = response.status_code, response.headers
            if status != 200:
                return status, headers, content
            declared = headers.get("content-length", "").strip()
            if declared.isdigit() and (len(declared) > 18 or int(declared) > cap):
                raise self._too_large(method, f"its Content-Length is {declared[:24]} bytes")
            encoding = headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "gzip"):
                raise errors.TransportError(
                    f"answer in content encoding {encoding[:40]!r}, which was not asked for",
                    method=method,
                    endpoint=self.endpoint,
                    retryable=False,
                )
            if response.is_stream_consumed:
                # A transport that hands over a body already in memory (tests do): httpx has
                # decoded it; only its size is left to check.
                content += response.content
                if len(content) > cap:
                    raise self._too_large(method, f"it has {len(content):,} bytes")
                return status, headers, content
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
            async for chunk in response.aiter_raw():
                if inflate is None:
                    content += chunk
                else:
                    _inflate(
                        inflate, chunk, content, cap=cap, method=method, endpoint=self.endpoint
                    )
                if len(content) > cap:
                    raise self._too_large(method, "more than that arrived")
            if inflate is not None and not inflate.eof:
                raise _not_gzip(method, self.endpoint)
        return status, headers, content

    def _too_large(self, method: str, detail: str) -> errors.ResponseTooLargeError:
        cap = self.settings.max_body_bytes
        size = f"{cap // MIB} MB" if cap % MIB == 0 else f"{cap:,} bytes"
        return errors.ResponseTooLargeError(
            f"reply larger than {size}, the cap (DRIFTSNAP_RPC_MAX_BODY_MB): {detail}; "
            "refused without reading further",
            method=method,
            endpoint=self.endpoint,
        )

    def _result(
        self,
        method: str,
        request_id: int,
        status: int,
        headers: httpx.Headers,
        content: bytearray,
    ) -> Json:
        if status == 429:
            retry_after = _retry_after(headers.get("retry-after"))
            if retry_after is not None:
                retry_after = min(retry_after, self.settings.retry_after_max_s)
                self._pause(retry_after, method)
            raise errors.RateLimitedError(
                f"HTTP 429 (Retry-After {retry_after} s)",
                method=method,
                endpoint=self.endpoint,
                retry_after_s=retry_after,
            )
        if status != 200:
            # A gateway's 5xx passes; 401/403/404 (a wrong key or path) will not get better.
            raise errors.TransportError(
                f"HTTP {status}",
                method=method,
                endpoint=self.endpoint,
                code=status,
                retryable=status >= 500,
            )
        try:
            answer = json.loads(content)
        except ValueError:
            raise errors.TransportError(
                "answer is not JSON", method=method, endpoint=self.endpoint
            ) from None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise errors.TransportError(
                "answer is not a JSON-RPC response to this request",
                method=method,
                endpoint=self.endpoint,
            )
        if "error" in answer:
            raise self._classify(method, answer["error"])
        if "result" not in answer:
            raise errors.TransportError(
                "JSON-RPC response without result or error", method=method, endpoint=self.endpoint
            )
        return answer["result"]

    def _classify(self, method: str, error: Json) -> errors.RpcError:
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        detail = f"{self._scrubber.scrub(message)} ({code})"
        code = code if isinstance(code, int) else None
        kind: type[errors.RpcError] = errors.RpcError
        if code == NODE_BEHIND:
            kind = errors.NodeBehindError
        elif code == MIN_CONTEXT_SLOT or (
            code == INTERNAL_ERROR and "minimum context slot" in message.lower()
        ):
            kind = errors.MinContextSlotError
        return kind(detail, method=method, endpoint=self.endpoint, code=code)


def _inflate(
    inflate: Any, data: bytes, content: bytearray, *, cap: int, method: str, endpoint: str
) -> None:
    """Inflate a gzip chunk into ``content`` :data:`_CHUNK` bytes at a time, stopping past ``cap``
    (a small chunk of gzip may inflate a thousandfold)."""
    try:
        while len(content) <= cap:
            out = inflate.decompress(data, _CHUNK)
            content += out
            data = inflate.unconsumed_tail
            if not data and len(out) < _CHUNK:
                return
    except zlib.error:
        raise _not_gzip(method, endpoint) from None


def _not_gzip(method: str, endpoint: str) -> errors.TransportError:
    return errors.TransportError(
        "answer is not complete gzip", method=method, endpoint=endpoint, retryable=False
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
