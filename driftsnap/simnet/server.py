"""The simnet server: JSON-RPC over HTTP, subscriptions over websocket, a clock, a control API.

One aiohttp application on one port answers

* ``POST /`` -- JSON-RPC 2.0, single or batch (:mod:`driftsnap.simnet.rpc`);
* ``GET /`` with an Upgrade header -- the websocket API (``slotSubscribe``, ``logsSubscribe``,
  ``accountSubscribe``, ``programSubscribe`` and their unsubscribes);
* ``/_simnet/...`` -- control: faults, manual steps, ground-truth books and fills.

The clock either ticks every ``tick_s`` wall seconds or stands still (``tick_s=None``) so a test
steps it with :meth:`SimnetServer.advance`. Requests are answered without awaiting between reading
the simulator and building the answer, so every response sees one whole slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final

import pydantic
from aiohttp import WSMsgType, web

from driftsnap.simnet import faults as faults_mod
from driftsnap.simnet import ledger, model, rpc, scenarios, truth

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from solders.pubkey import Pubkey

Json = Any
RATE_LIMITED_BODY: Final = json.dumps(
    {
        "jsonrpc": "2.0",
        "error": {"code": 429, "message": "Too many requests for a specific RPC call"},
        "id": None,
    }
)


@dataclasses.dataclass(slots=True)
class Subscription:
    """One websocket subscription and what it has already been told."""

    id: int
    socket: web.WebSocketResponse
    kind: str  # "slot" | "logs" | "account" | "program"
    address: Pubkey | None = None
    mentions: str | None = None
    config: dict[str, Json] = dataclasses.field(default_factory=dict)
    filters: list[Callable[[bytes], bool]] = dataclasses.field(default_factory=list)
    seen: dict[Pubkey, tuple[bytes, Pubkey]] = dataclasses.field(default_factory=dict)


_SUBSCRIBE: Final = {
    "slotSubscribe": "slot",
    "logsSubscribe": "logs",
    "accountSubscribe": "account",
    "programSubscribe": "program",
}
_UNSUBSCRIBE: Final = {
    "slotUnsubscribe": "slot",
    "logsUnsubscribe": "logs",
    "accountUnsubscribe": "account",
    "programUnsubscribe": "program",
}


class SimnetServer:
    """A running simulated node. Use :func:`serve` to get one."""

    def __init__(
        self,
        sim: model.Simulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_s: float | None = None,
        faults: faults_mod.Faults | None = None,
    ) -> None:
        self.sim = sim
        self.node = rpc.Node(sim, faults or faults_mod.Faults(), seed=sim.seed)
        self.host = host
        self.port = port
        self.tick_s = tick_s
        self._runner: web.AppRunner | None = None
        self._subscriptions: dict[int, Subscription] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._next_subscription = 1
        self._published_seq = sim.ledger.next_seq
        self._step_lock = asyncio.Lock()
        self._clock_task: asyncio.Task[None] | None = None
        self._outage_task: asyncio.Task[None] | None = None
        self._tasks: asyncio.TaskGroup | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The HTTP JSON-RPC endpoint."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The websocket endpoint."""
        return f"ws://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections (not during an outage)."""
        return self._runner is not None

    @property
    def faults(self) -> faults_mod.Faults:
        """The node's faults in force."""
        return self.node.faults

    async def start(self, tasks: asyncio.TaskGroup) -> None:
        """Listen, and run the clock (if any) in ``tasks``, which owns every background task."""
        self._tasks = tasks
        self.node.warm()
        await self._listen()
        if self.tick_s is not None:
            self._clock_task = tasks.create_task(self._clock(self.tick_s), name="simnet-clock")

    async def stop(self) -> None:
        """Cancel the clock and any outage, then stop listening and drop every connection."""
        for task in (self._clock_task, self._outage_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._clock_task = self._outage_task = None
        await self.go_away()

    async def _listen(self) -> None:
        # A fresh application per listening period: a cleaned-up aiohttp app cannot be reused.
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def go_away(self) -> None:
        """Stop listening and drop every connection, websockets included (a crashed node)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for ws in list(self._sockets):
            await ws.close()
        await runner.cleanup()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        if self._runner is None:
            await self._listen()

    async def outage_over(self) -> None:
        """Return once the current outage (if any) has ended and the server listens again."""
        task = self._outage_task
        if task is not None:
            await asyncio.shield(task)

    async def _outage(self, seconds: float) -> None:
        await asyncio.sleep(0.05)  # let the control response that asked for this go out first
        await self.go_away()
        await asyncio.sleep(seconds)
        await self.come_back()

    async def _clock(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            await self.advance(1)

    # ------------------------------------------------------------ control

    async def advance(self, slots: int = 1) -> int:
        """Step the simulator ``slots`` slots and notify subscribers after each; the new slot."""
        async with self._step_lock:
            for _ in range(slots):
                self._apply_actions()
                self._apply_periodic()
                self.sim.step()
                await self._publish()
        return self.sim.slot

    def set_faults(self, **changes: object) -> faults_mod.Faults:
        """Change faults (validated); actions (``signature_burst``...) are handed over at once."""
        self.node.faults = self.node.faults.updated(dict(changes))
        down_ms = self.node.faults.down_ms
        self._apply_actions()
        if down_ms:
            self.node.faults = self.node.faults.model_copy(update={"down_ms": 0})
            self._start_outage(down_ms)
        return self.node.faults

    def _start_outage(self, down_ms: int) -> None:
        """Go away for ``down_ms`` in a background task (one outage at a time)."""
        if self._tasks is None:
            raise RuntimeError("the server is not running")
        if self._outage_task is None or self._outage_task.done():
            self._outage_task = self._tasks.create_task(
                self._outage(down_ms / 1000), name="simnet-outage"
            )

    def _apply_periodic(self) -> None:
        """Arm the repeating faults that fall due in the slot about to be simulated."""
        f = self.node.faults
        upcoming = self.sim.slot + 1
        if f.burst_every_slots and upcoming % f.burst_every_slots == 0:
            self.sim.pending_burst += f.burst_size
        if f.truncate_every_slots and upcoming % f.truncate_every_slots == 0:
            self.sim.truncate_next_logs += 1
        if f.outage_every_slots and upcoming % f.outage_every_slots == 0:
            self._start_outage(f.outage_ms)

    def _apply_actions(self) -> None:
        """Hand one-shot actions to the simulator, which performs them in its next step."""
        f = self.node.faults
        if f.signature_burst or f.truncate_logs or f.unlist_transactions or f.forge_fills:
            self.sim.pending_burst += f.signature_burst
            self.sim.truncate_next_logs += f.truncate_logs
            self.sim.unlist_next += f.unlist_transactions
            self.sim.forge_next += f.forge_fills
            self.node.faults = f.model_copy(
                update={
                    "signature_burst": 0,
                    "truncate_logs": 0,
                    "unlist_transactions": 0,
                    "forge_fills": 0,
                }
            )

    # ------------------------------------------------------------ HTTP

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._rpc)
        app.router.add_get("/", self._websocket)
        app.router.add_get("/_simnet/faults", self._get_faults)
        app.router.add_post("/_simnet/faults", self._post_faults)
        app.router.add_post("/_simnet/step", self._post_step)
        app.router.add_get("/_simnet/book", self._get_book)
        app.router.add_get("/_simnet/fills", self._get_fills)
        return app

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        delay_ms = self.node.faults.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        retry_after = self.node.http_fault()
        if retry_after is not None:
            return web.Response(
                status=429,
                text=RATE_LIMITED_BODY,
                content_type="application/json",
                headers={"Retry-After": str(retry_after)},
            )
        try:
            body = await request.read()
        except ConnectionResetError:
            # The client vanished mid-request (a reader killed, a timeout): nobody to answer.
            return web.Response(status=400, text="connection lost")
        try:
            payload = json.loads(body)
        except ValueError:
            answer: Json = rpc.error_response(rpc.RpcError(-32700, "Parse error"), None)
        else:
            if isinstance(payload, list) and payload:
                answer = [self.node.call(item) for item in payload]
            elif isinstance(payload, list):
                answer = rpc.error_response(rpc.RpcError(-32600, "Invalid request"), None)
            else:
                answer = self.node.call(payload)
        return web.Response(text=rpc.response_text(answer), content_type="application/json")

    async def _get_faults(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.node.faults.model_dump())

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object of fault settings")
            faults = self.set_faults(**changes)
        except (ValueError, TypeError, pydantic.ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.model_dump())

    async def _post_step(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        slots = body.get("slots", 1) if isinstance(body, dict) else None
        if not isinstance(slots, int) or not 0 <= slots <= 100_000:
            return web.json_response({"error": "slots must be an integer 0..100000"}, status=400)
        return web.json_response({"slot": await self.advance(slots)})

    async def _get_book(self, request: web.Request) -> web.StreamResponse:
        try:
            slot = int(request.query.get("slot", self.sim.slot))
            oracle = request.query.get("oracle_slot")
            oracle_slot = None if oracle is None else int(oracle)
            market = request.query.get("market")
            if market is None:
                return web.json_response(truth.books(self.sim, slot, oracle_slot=oracle_slot))
            index = int(market) if market.isdigit() else self._market_index(market)
            return web.json_response(truth.book(self.sim, slot, index, oracle_slot=oracle_slot))
        except (ValueError, KeyError, truth.UnknownSlotError) as exc:
            return web.json_response({"error": str(exc)}, status=404)

    def _market_index(self, name: str) -> int:
        for index, market in self.sim.markets.items():
            if market.name == name:
                return index
        raise KeyError(f"no market {name}")

    async def _get_fills(self, request: web.Request) -> web.StreamResponse:
        try:
            first = int(request.query.get("from", 0))
            last = int(request.query.get("to", self.sim.slot))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(truth.fills(self.sim, first, last))

    # ------------------------------------------------------------ websocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            return web.Response(status=405, text="use POST for JSON-RPC, or a websocket upgrade")
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await ws.send_str(json.dumps(self._ws_answer(ws, message.data)))
        finally:
            self._drop_socket(ws)
        return ws

    def _ws_answer(self, ws: web.WebSocketResponse, text: str) -> Json:
        try:
            payload = json.loads(text)
        except ValueError:
            return rpc.error_response(rpc.RpcError(-32700, "Parse error"), None)
        if isinstance(payload, list):
            return [self._ws_call(ws, item) for item in payload]
        return self._ws_call(ws, payload)

    def _ws_call(self, ws: web.WebSocketResponse, request: Json) -> Json:
        if not isinstance(request, dict):
            return rpc.error_response(rpc.RpcError(-32600, "Invalid request"), None)
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or []
        try:
            if not isinstance(params, list):
                raise rpc.invalid_params("Invalid params")
            if method in _SUBSCRIBE:
                result: Json = self._subscribe(ws, _SUBSCRIBE[method], params)
            elif method in _UNSUBSCRIBE:
                wanted = params[0] if params and isinstance(params[0], int) else None
                sub = self._subscriptions.get(wanted) if wanted is not None else None
                if sub is None or sub.socket is not ws or sub.kind != _UNSUBSCRIBE[method]:
                    raise rpc.invalid_params("Invalid subscription id.")
                del self._subscriptions[sub.id]
                result = True
            else:
                raise rpc.RpcError(-32601, "Method not found")
        except rpc.RpcError as error:
            return rpc.error_response(error, request_id)
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _subscribe(self, ws: web.WebSocketResponse, kind: str, params: list[Json]) -> int:
        sub = Subscription(self._next_subscription, ws, kind)
        if kind == "logs":
            spec = params[0] if params else "all"
            if isinstance(spec, dict) and isinstance(spec.get("mentions"), list):
                if len(spec["mentions"]) != 1:
                    raise rpc.invalid_params("Invalid Request: Only 1 address supported")
                sub.mentions = str(rpc.parse_pubkey(spec["mentions"][0]))
            elif spec not in ("all", "allWithVotes"):
                raise rpc.invalid_params("Invalid params: unknown logs filter")
        elif kind in ("account", "program"):
            if not params or not isinstance(params[0], str):
                raise rpc.invalid_params("Invalid params: expected a base-58 public key")
            sub.address = rpc.parse_pubkey(params[0])
            config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            sub.config = config
            rpc.parse_encoding(config)  # reject a bad encoding now, not at the first notification
            if kind == "program":
                sub.filters = rpc.parse_filters(config.get("filters"))
            for address, account in self._watched(sub):
                sub.seen[address] = (account.data, account.owner)
        self._subscriptions[sub.id] = sub
        self._next_subscription += 1
        return sub.id

    def _watched(self, sub: Subscription) -> list[tuple[Pubkey, model.Account]]:
        assert sub.address is not None
        if sub.kind == "account":
            account = self.node.account(sub.address)
            return [] if account is None else [(sub.address, account)]
        return [
            (address, account)
            for address, account in self.node.program_accounts(sub.address)
            if all(match(account.data) for match in sub.filters)
        ]

    async def _publish(self) -> None:
        """Tell every subscriber what the last step changed."""
        slot = self.sim.slot
        new_txs = self.sim.ledger.since(self._published_seq)
        self._published_seq = self.sim.ledger.next_seq
        if self.node.faults.ws_silent or not self._subscriptions:
            return
        for sub in list(self._subscriptions.values()):
            for method, result in self._notifications(sub, slot, new_txs):
                message = {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": {"result": result, "subscription": sub.id},
                }
                if sub.socket.closed:
                    break
                try:
                    await sub.socket.send_str(json.dumps(message))
                except ConnectionError:
                    # A client that vanished mid-send is the client's problem, not the clock's:
                    # drop its subscriptions and go on notifying the others.
                    self._drop_socket(sub.socket)
                    break

    def _drop_socket(self, ws: web.WebSocketResponse) -> None:
        self._sockets.discard(ws)
        for sub_id in [i for i, s in self._subscriptions.items() if s.socket is ws]:
            del self._subscriptions[sub_id]

    def _notifications(
        self, sub: Subscription, slot: int, new_txs: list[ledger.Transaction]
    ) -> list[tuple[str, Json]]:
        context = {"slot": slot}
        if sub.kind == "slot":
            return [("slotNotification", {"parent": slot - 1, "root": slot - 32, "slot": slot})]
        if sub.kind == "logs":
            return [
                (
                    "logsNotification",
                    {
                        "context": {"slot": tx.slot},
                        "value": {"signature": tx.signature, "err": None, "logs": list(tx.logs)},
                    },
                )
                for tx in new_txs
                if sub.mentions is None or sub.mentions in tx.account_keys
            ]
        out: list[tuple[str, Json]] = []
        for address, account in self._watched(sub):
            state = (account.data, account.owner)
            if sub.seen.get(address) == state:
                continue
            sub.seen[address] = state
            rendered = self.node.render_account(address, account, sub.config)
            if sub.kind == "account":
                out.append(("accountNotification", {"context": context, "value": rendered}))
            else:
                value = {"pubkey": str(address), "account": rendered}
                out.append(("programNotification", {"context": context, "value": value}))
        return out


@contextlib.asynccontextmanager
async def serve(
    scenario: str | scenarios.Scenario = "quiet",
    *,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    slot_ms: int = 400,
    tick_s: float | None = None,
    faults: faults_mod.Faults | None = None,
    genesis_ts: int = model.GENESIS_TS,
) -> AsyncIterator[SimnetServer]:
    """Run a simnet in this event loop for the ``async with`` block.

    ``port=0`` picks a free port (read it from ``server.url``). ``tick_s=None`` leaves the clock
    still: call ``await server.advance(n)`` to move it, which is what deterministic tests do.
    ``slot_ms`` is simulated time per slot, ``tick_s`` wall time per slot: ``slot_ms=60_000,
    tick_s=0.02`` runs a simulated minute every 20 ms, a program week in under four minutes.
    ``genesis_ts`` is the block time of the first slot (unix seconds).
    """
    chosen = scenarios.SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    server = SimnetServer(
        model.Simulator(chosen, seed=seed, slot_ms=slot_ms, genesis_ts=genesis_ts),
        host=host,
        port=port,
        tick_s=tick_s,
        faults=faults,
    )
    # The task group owns the clock and outage tasks: if one fails, the block using the server
    # is cancelled and the failure is raised here, instead of a clock that silently stopped.
    try:
        async with asyncio.TaskGroup() as tasks:
            await server.start(tasks)
            try:
                yield server
            finally:
                await server.stop()
    except BaseExceptionGroup as group:
        # A task group wraps even the block's own error; a lone error is raised as itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
