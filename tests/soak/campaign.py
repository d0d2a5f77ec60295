"""Issue 9's reliability campaign: the daemon as operators run it, while everything goes wrong.

One run: an embedded PostgreSQL of its own and a simnet in this process whose chain runs a
simulated minute every 20 ms, from ``genesis`` to ``end`` (the week ``plan.week`` ends inside,
``plan.tail`` before ``end``). ``driftsnap run`` runs as a subprocess on the chain clock
(``DRIFTSNAP_CLOCK=chain``), its RPC URL carrying a sentinel API key and its database URL a
sentinel password. While the chain runs, at random instants drawn from ``plan.seed``:

* every fault the simnet supports is injected (``SimnetServer.set_faults``, what
  ``POST /_simnet/faults`` does), those that hide fills from every reader (unlisted transactions,
  truncated logs) only after the closed week's end; the lying node's too (forged fills listed
  under Drift, paging that ignores ``before``), none of which may change a stored fill;
* the writer daemon is SIGKILLed and restarted; PostgreSQL is stopped and started again on the
  same data directory; a second daemon runs next to the first for a while (standby, then
  writer when the first is killed); a daemon that gives up is restarted, as a supervisor would;
* the daemons' resident memory is sampled from ``/proc/PID/status``.

The last part of the run is quiet (faults only, no process events): its daemon's memory must be
flat. Then the figures and the checks (:func:`check`): every cadence interval from the first
tick to the last has a header; no partial snapshot; the stored fills are exactly the simulator's
fills that a reader could see, and the hidden ones are reported as gaps; the closed week's
digest is the one recomputed from the ground truth for the ticks that were ok
(``tests/soak/truth.py``: the truth's books at the recorded slots, the truth's fills, the
revealed seed); no sentinel in any log; every daemon stops on SIGTERM with 0 within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap import calendar, config
from driftsnap.chain import rpc
from driftsnap.flows import close as close_flow
from driftsnap.flows import fills as fills_flow
from driftsnap.scoring import methods
from driftsnap.simnet import scenarios, server
from driftsnap.store import database, makers, migrations, schema
from driftsnap.store.seeds import Seeds
from tests.soak import truth as soak_truth

if TYPE_CHECKING:
    from collections.abc import Callable

SCRIPT: Final = Path(sys.executable).parent / "driftsnap"
DB_PASSWORD: Final = "Sentinel-SoakDbPa55-41c7"  # noqa: S105 (a sentinel, not a credential)
RPC_KEY: Final = "Sentinel-SoakRpcKey-9e2a"
STOP_WITHIN_S: Final = 10.0
MARKETS: Final = 3  # the default scenario's markets, each with a pool in the shipped program
# Every fault the simnet supports (driftsnap.simnet.faults.Faults), injected in shuffled cycles.
FAULTS: Final = (
    "http_429", "delay_ms", "node_behind", "min_context_not_reached", "slot_backwards",
    "transaction_null_slots", "ws_silent", "chaos", "burst_every_slots", "signature_burst",
    "outage_every_slots", "down_ms", "forge_fills", "ignore_before",
)  # fmt: skip
# Those that hide something from every reader: fills (never listed, logs cut short) or a User
# account (served malformed, it fails the node-side filters of getProgramAccounts). Injected
# only after the week that is closed, whose digest must equal the truth's.
HIDING_FAULTS: Final = ("truncate_logs", "unlist_transactions", "truncate_every_slots", "malformed")
# Process events at fixed points of the run (a share of it), on top of the random ones: so even
# the shortest run has a takeover by a standby, restarts with one and with two daemons.
SCRIPT_EVENTS: Final = (
    (0.08, "twin"), (0.16, "kill_writer"), (0.24, "pg_restart"), (0.32, "twin"),
    (0.40, "pg_restart"), (0.48, "kill"), (0.56, "twin"), (0.62, "kill_writer"),
)  # fmt: skip
WEEK: Final = calendar.Week(2026, 47)


@dataclass(frozen=True)
class Plan:
    """What one campaign runs. Times are chain (simulated) time unless named wall."""

    seed: int = 9
    simulated_days: float = 1.5
    week: calendar.Week = WEEK
    tail: timedelta = timedelta(hours=12)  # the run goes on this long after the week's end
    cadence: timedelta = timedelta(minutes=15)
    slot_ms: int = 60_000
    tick_s: float = 0.02  # wall seconds per slot
    event_every_s: float = 1.2  # wall seconds between chaos events, on average
    quiet_share: float = 0.3  # the last share of the run: no kills, restarts or twins
    rss_growth_max_kb: int = 12_000  # after warm-up, over the quiet part of the run
    wall_budget_s: float = 600.0

    @property
    def end(self) -> datetime:
        return self.week.end + self.tail

    @property
    def genesis(self) -> datetime:
        return self.end - timedelta(days=self.simulated_days)

    @property
    def slots(self) -> int:
        return int((self.end - self.genesis).total_seconds() * 1000) // self.slot_ms


# ---------------------------------------------------------------------------- processes


@dataclass
class Daemon:
    """One ``driftsnap run`` subprocess, its log file, and its memory over time."""

    number: int
    proc: asyncio.subprocess.Process
    log: Path
    started: float
    rss_kb: list[tuple[float, int]] = field(default_factory=list)  # (wall s, VmRSS kB)
    killed: bool = False
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def sample_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return  # exited between the check and the read
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss_kb.append((time.monotonic(), int(line.split()[1])))


@dataclass
class Figures:
    """What happened, and what was found."""

    wall_s: float = 0.0
    slots: int = 0
    ticks: int = 0
    ok: int = 0
    missed: int = 0
    rejected: int = 0
    late: int = 0
    kills: int = 0
    pg_restarts: int = 0
    twins: int = 0
    takeovers: int = 0
    supervisor_restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    fills_stored: int = 0
    fills_truth: int = 0
    fills_hidden: int = 0
    fills_equal: bool = False
    forged_served: int = 0  # forged fills the node listed under Drift
    forged_stored: int = 0  # ...of which driftsnap stored (must be 0)
    gaps_reported: int = 0
    close_digest: str = ""
    truth_digest: str = ""
    close_books: int = 0
    close_fills: int = 0
    books_checked: int = 0  # ok books after the closed week, each against the truth
    books_omitting: int = 0  # ...that lack the orders of a User account served malformed
    verified: bool = False
    rss_start_kb: int = 0
    rss_end_kb: int = 0
    rss_samples: int = 0
    sigterm_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return [
            f"run            {self.wall_s:.0f} s wall, {self.slots} slots",
            f"ticks          {self.ticks} (ok {self.ok}, missed {self.missed} of which late "
            f"{self.late}, rejected {self.rejected})",
            f"processes      {self.kills} SIGKILLs, {self.pg_restarts} PostgreSQL restarts, "
            f"{self.twins} second daemons, {self.takeovers} standby takeovers, "
            f"{self.supervisor_restarts} restarts after an exit",
            f"faults         {sum(self.faults.values())} injected: {faults}",
            f"fills          {self.fills_stored} stored = {self.fills_truth} visible on chain: "
            f"{self.fills_equal}; {self.fills_hidden} hidden by faults, "
            f"{self.gaps_reported} reported as gaps; forged fills {self.forged_served} served, "
            f"{self.forged_stored} stored",
            f"close          digest {self.close_digest[:16]}… recomputed {self.truth_digest[:16]}… "
            f"equal: {self.close_digest == self.truth_digest}; {self.close_books} books, "
            f"{self.close_fills} fills; verify-week ok: {self.verified}",
            f"later books    {self.books_checked} equal to the truth's, {self.books_omitting} "
            "of them without the orders of a User account the node served malformed",
            f"memory         RSS {self.rss_start_kb} kB -> {self.rss_end_kb} kB "
            f"({self.rss_samples} samples after warm-up)",
            f"SIGTERM        {', '.join(f'{s:.1f} s' for s in self.sigterm_s)}",
            f"problems       {len(self.problems)}" + "".join(f"\n  - {p}" for p in self.problems),
        ]


class Campaign:
    """One run of the campaign (see the module docstring)."""

    def __init__(self, plan: Plan, workdir: Path, *, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(plan.seed)
        self.figures = Figures()
        self.daemons: list[Daemon] = []
        self.pg: database.EmbeddedServer | None = None
        self.node: server.SimnetServer | None = None
        self.db_url: sa.URL | None = None
        self.reverts: list[tuple[float, dict[str, Any]]] = []
        self.gaps: set[tuple[int, int]] = set()  # (market index, fill record id) fills check saw
        self.fault_cycle: list[str] = []
        self.hiding_cycle: list[str] = []
        # (first slot, last slot or None while on, user): a User account served malformed.
        self.malformed: list[tuple[int, int | None, str]] = []
        self.started = time.monotonic()

    # ------------------------------------------------------------ set-up

    def _start_pg(self) -> database.EmbeddedServer:
        pg = database.start_embedded(self.workdir / "pg")
        self.pg = pg
        return pg

    def _prepare_database(self) -> sa.URL:
        pg = self._start_pg()
        admin = sa.create_engine(
            pg.url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE soak LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
        finally:
            admin.dispose()
        engine = sa.create_engine(pg.url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                migrations.apply(conn)
        finally:
            engine.dispose()
        return pg.url.set(username="soak", password=DB_PASSWORD)

    def env(self) -> dict[str, str]:
        assert self.node is not None
        assert self.db_url is not None
        return {
            "PATH": os.environ.get("PATH", ""),
            "DRIFTSNAP_CLOCK": "chain",
            "DRIFTSNAP_RPC_URL": f"{self.node.url}/?api-key={RPC_KEY}",
            "DRIFTSNAP_DATABASE_URL": self.db_url.render_as_string(hide_password=False),
            "DRIFTSNAP_DATA_DIR": str(self.workdir / "data"),
            "DRIFTSNAP_CADENCE": f"{self.plan.cadence.total_seconds():g}s",
            # A slot every 20 ms: ~60 transactions and two ticks a second, beyond a provider's
            # budget of 10 requests (2 getProgramAccounts) a second.
            "DRIFTSNAP_RPC_RPS": "2000",
            "DRIFTSNAP_RPC_GPA_RPS": "200",
            "DRIFTSNAP_RPC_TIMEOUT_S": "5",
            "DRIFTSNAP_FILLS_POLL": "0.5s",
            "DRIFTSNAP_METRICS_PORT": "0",
            "DRIFTSNAP_LOG_FORMAT": "json",
            "DRIFTSNAP_LOG_LEVEL": "debug",  # every line a secret could hide in
            "DRIFTSNAP_ALLOW_ROOT": "true",  # CI runs as root
        }

    async def start_daemon(self) -> Daemon:
        number = len(self.daemons) + 1
        log = self.workdir / "logs" / f"daemon-{number}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(SCRIPT), "run", env=self.env(), stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        d = Daemon(number, proc, log, time.monotonic())
        self.daemons.append(d)
        return d

    def live(self) -> list[Daemon]:
        return [d for d in self.daemons if d.alive]

    def chain_time(self) -> datetime:
        assert self.node is not None
        return datetime.fromtimestamp(self.node.sim.ts, UTC)

    # ------------------------------------------------------------ the run

    async def run(self) -> Figures:
        plan = self.plan
        self.say(
            f"soak: seed {plan.seed}, {plan.simulated_days:g} simulated days "
            f"({plan.genesis:%a %Y-%m-%d %H:%M} -> {plan.end:%a %Y-%m-%d %H:%M} UTC, "
            f"{plan.slots} slots), cadence {plan.cadence}, closing {plan.week}"
        )
        self.db_url = await asyncio.to_thread(self._prepare_database)
        scenario = dataclasses.replace(
            scenarios.DEFAULT, history_slots=plan.slots + 20_000, max_transactions=500_000
        )
        try:
            async with server.serve(
                scenario, seed=plan.seed, slot_ms=plan.slot_ms, tick_s=plan.tick_s,
                genesis_ts=int(plan.genesis.timestamp()),
            ) as node:  # fmt: skip
                self.node = node
                await self.start_daemon()
                await self._chaos()
                await self._settle()
                await self._stop_all()
                await self._check_gaps()
            await self._check()
        finally:
            for d in self.live():
                d.proc.kill()
                await d.proc.wait()
            if self.pg is not None:
                await asyncio.to_thread(self.pg.stop)
        self.figures.wall_s = time.monotonic() - self.started
        return self.figures

    def _progress(self) -> float:
        """How far the chain is from genesis to the end of the run, 0..1."""
        plan = self.plan
        return (self.chain_time() - plan.genesis) / (plan.end - plan.genesis)

    def _phase(self) -> tuple[bool, bool, bool]:
        """(process events allowed, faults allowed, fill-hiding faults allowed) now."""
        plan, now = self.plan, self.chain_time()
        faults = now < plan.end - 3 * plan.cadence
        hiding = plan.week.end + plan.cadence <= now < plan.end - 6 * plan.cadence
        return self._progress() < 1 - plan.quiet_share, faults, hiding

    async def _chaos(self) -> None:
        plan = self.plan
        deadline = self.started + plan.wall_budget_s
        next_event = time.monotonic() + self.rng.expovariate(1 / plan.event_every_s)
        script = list(SCRIPT_EVENTS)
        while self.chain_time() < plan.end:
            assert time.monotonic() < deadline, "the campaign ran out of wall time"
            await asyncio.sleep(0.1)
            for d in self.live():
                d.sample_rss()
            self._revert_due()
            await self._supervise()
            if script and self._progress() >= script[0][0]:
                await self._process_event(script.pop(0)[1])
            if time.monotonic() >= next_event:
                next_event = time.monotonic() + self.rng.expovariate(1 / plan.event_every_s)
                await self._event()
        self.say(f"soak: chain at {self.chain_time():%a %H:%M}, chaos over")

    async def _supervise(self) -> None:
        """Restart a daemon that exited on its own (gave up after failures), as systemd would."""
        for d in self.daemons:
            if d.exit_code is None and not d.alive:
                d.exit_code = d.proc.returncode
                if not d.killed:
                    self.figures.supervisor_restarts += 1
                    self.say(f"soak: daemon {d.number} exited {d.exit_code}; restarting")
        if not self.live():
            await self.start_daemon()

    async def _event(self) -> None:
        """A random event: mostly a fault, sometimes a process event."""
        processes, faults, hiding = self._phase()
        choices: list[tuple[str, float]] = []
        if faults:
            choices.append(("fault", 6.0))
        if hiding:
            choices.append(("hide", 5.0))
        if processes:
            choices += [("kill", 0.8), ("pg_restart", 0.5), ("twin", 0.5)]
        if not choices:
            return
        kinds, weights = zip(*choices, strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        if kind == "fault":
            self._fault(FAULTS, self.fault_cycle)
        elif kind == "hide":
            self._fault(HIDING_FAULTS, self.hiding_cycle)
        else:
            await self._process_event(kind)

    async def _process_event(self, kind: str) -> None:
        if kind == "kill":
            await self._kill(writer=False)
        elif kind == "kill_writer":
            await self._kill(writer=True)
        elif kind == "pg_restart":
            await self._pg_restart()
        else:
            await self._twin()

    # ------------------------------------------------------------ events

    def _fault(self, kinds: tuple[str, ...], cycle: list[str]) -> None:
        """The next fault of a shuffled cycle through ``kinds``: each comes once per cycle."""
        assert self.node is not None
        if not cycle:
            cycle.extend(self.rng.sample(kinds, len(kinds)))
        kind = cycle.pop()
        changes, revert = self._fault_settings(kind)
        self.node.set_faults(**changes)
        self.figures.faults[kind] = self.figures.faults.get(kind, 0) + 1
        if kind == "malformed":
            user = next(iter(changes["malformed"]))
            self.malformed.append((self.node.sim.slot, None, user))
        if revert is not None:
            self.reverts.append((time.monotonic() + self.rng.uniform(0.5, 2.5), revert))

    def _fault_settings(self, kind: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The settings that inject ``kind``, and those that end it (None: it ends itself)."""
        assert self.node is not None
        r = self.rng
        users = sorted(str(u) for u in self.node.sim.users)
        malformations = ["truncated", "wrong_discriminator", "wrong_owner"]
        options: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
            "http_429": ({"http_429": r.randint(2, 12), "retry_after_s": r.choice([0, 1])}, None),
            "delay_ms": ({"delay_ms": r.randint(5, 60)}, {"delay_ms": 0}),
            "node_behind": ({"node_behind": r.randint(2, 12)}, None),
            "min_context_not_reached": ({"min_context_not_reached": r.randint(2, 12)}, None),
            "slot_backwards": (
                {"slot_backwards": r.randint(5, 40), "backwards_by": r.randint(1, 8)},
                None,
            ),
            "transaction_null_slots": (
                {"transaction_null_slots": r.randint(3, 30)},
                {"transaction_null_slots": 0},
            ),
            "ws_silent": ({"ws_silent": True}, {"ws_silent": False}),
            "chaos": ({"chaos": r.uniform(0.02, 0.15)}, {"chaos": 0.0}),
            "burst_every_slots": (
                {"burst_every_slots": r.randint(20, 120), "burst_size": r.randint(10, 120)},
                {"burst_every_slots": 0},
            ),
            "signature_burst": ({"signature_burst": r.randint(50, 400)}, None),
            "outage_every_slots": (
                {"outage_every_slots": r.randint(60, 200), "outage_ms": r.randint(100, 600)},
                {"outage_every_slots": 0},
            ),
            "down_ms": ({"down_ms": r.randint(200, 1500)}, None),
            # A lying node: forged fills listed under Drift that never invoke it (each claims a
            # million USDC and the id of the market's next real fill), and paging that repeats.
            "forge_fills": ({"forge_fills": r.randint(1, 4)}, None),
            "ignore_before": ({"ignore_before": r.randint(2, 30)}, None),
            "truncate_logs": ({"truncate_logs": r.randint(1, 4)}, None),
            "unlist_transactions": ({"unlist_transactions": r.randint(1, 3)}, None),
            "truncate_every_slots": (
                {"truncate_every_slots": r.randint(15, 60)},
                {"truncate_every_slots": 0},
            ),
            "malformed": (
                {"malformed": {r.choice(users): r.choice(malformations)}},
                {"malformed": {}},
            ),
        }
        return options[kind]

    def _revert_due(self) -> None:
        assert self.node is not None
        due = [r for r in self.reverts if r[0] <= time.monotonic()]
        for r in due:
            self.reverts.remove(r)
            self.node.set_faults(**r[1])
            if "malformed" in r[1]:
                self._malformed_over()

    def _malformed_over(self) -> None:
        assert self.node is not None
        self.malformed = [
            (start, self.node.sim.slot if end is None else end, user)
            for start, end, user in self.malformed
        ]

    async def _kill(self, *, writer: bool) -> None:
        live = self.live()
        if not live:
            return
        # The oldest live daemon is the writer (a later one waits as standby) but after a
        # PostgreSQL restart, when either may have taken the lock again.
        victim = live[0] if writer else self.rng.choice(live)
        victim.killed = True
        victim.proc.kill()
        await victim.proc.wait()
        self.figures.kills += 1
        self.say(f"soak: SIGKILL daemon {victim.number} at {self.chain_time():%a %H:%M}")
        if not self.live():
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            await self.start_daemon()

    async def _pg_restart(self) -> None:
        assert self.pg is not None
        self.say(f"soak: PostgreSQL restart at {self.chain_time():%a %H:%M}")
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        await asyncio.to_thread(self._start_pg)
        self.figures.pg_restarts += 1

    async def _twin(self) -> None:
        if len(self.live()) >= 2:
            return
        d = await self.start_daemon()
        self.figures.twins += 1
        self.say(f"soak: second daemon {d.number} at {self.chain_time():%a %H:%M}")

    # ------------------------------------------------------------ the end

    def _engine(self) -> sa.Engine:
        assert self.pg is not None
        return sa.create_engine(self.pg.url, poolclass=NullPool)

    async def _settle(self) -> None:
        """Faults off; once the closed week's fills are final and the last ticks are written."""
        assert self.node is not None
        self.node.set_faults(**{k: v for _, r in self.reverts for k, v in r.items()})
        self.reverts.clear()
        self._malformed_over()
        self.node.set_faults(
            http_429=0, node_behind=0, min_context_not_reached=0, slot_backwards=0,
            truncate_logs=0, unlist_transactions=0,
        )  # fmt: skip
        await self.node.outage_over()
        engine = self._engine()
        deadline = time.monotonic() + 120
        try:
            while True:
                await self._supervise()
                for d in self.live():
                    d.sample_rss()
                done = await asyncio.to_thread(self._settled, engine)
                if done:
                    break
                assert time.monotonic() < deadline, "the daemon never finalized the week"
                await asyncio.sleep(0.25)
        finally:
            engine.dispose()

    def _settled(self, engine: sa.Engine) -> bool:
        with engine.connect() as conn:
            w = schema.fill_weeks
            final = conn.execute(
                sa.select(w.c.finalized).where(w.c.week_start == self.plan.week.monday)
            ).scalar()
            last = conn.execute(sa.select(sa.func.max(schema.ticks.c.tick_at))).scalar()
        return bool(final) and last is not None and last >= self.plan.end - self.plan.cadence

    async def _stop_all(self) -> None:
        for d in self.live():
            d.sample_rss()
            sent = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(d.proc.wait(), STOP_WITHIN_S)
            except TimeoutError:
                self.figures.problems.append(f"daemon {d.number} ignored SIGTERM for 10 s")
                d.proc.kill()
                code = await d.proc.wait()
            self.figures.sigterm_s.append(time.monotonic() - sent)
            d.exit_code = code
            if code != 0:
                self.figures.problems.append(f"daemon {d.number} stopped with {code}, not 0")

    async def _check_gaps(self) -> None:
        """While the node still answers: the gaps ``fills check`` finds after the week."""
        assert self.node is not None
        engine = self._engine()
        try:
            async with rpc.Client(rpc.RpcSettings(url=self.node.url)) as client:
                after = self.plan.week.next()
                checks = await fills_flow.check(client, engine, after)
        finally:
            engine.dispose()
        self.gaps = {
            (c.market_index, i) for c in checks for g in c.gaps for i in range(g.first, g.last + 1)
        }

    # ------------------------------------------------------------ the checks

    async def _check(self) -> None:
        await asyncio.to_thread(self._check_store)
        self._check_logs()
        self._check_memory()

    def _check_store(self) -> None:
        assert self.node is not None
        plan, sim, f = self.plan, self.node.sim, self.figures
        f.slots = sim.slot - sim.history[0].slot
        engine = self._engine()
        try:
            ticks = soak_truth.stored_ticks(engine, plan.genesis, plan.end + timedelta(days=1))
            f.ticks = len(ticks)
            f.ok = sum(t.status == "ok" for t in ticks)
            f.missed = sum(t.status == "missed" for t in ticks)
            f.rejected = sum(t.status == "rejected" for t in ticks)
            f.late = sum(t.status == "missed" and t.reason.startswith("woke ") for t in ticks)
            # Every cadence interval from the first tick to the last has its header.
            starts = [
                calendar.Week.containing(t.at).start + t.interval * plan.cadence for t in ticks
            ]
            want = [starts[0] + i * plan.cadence for i in range(len(starts))] if starts else []
            if starts != want:
                missing = sorted(set(want) - set(starts))[:5]
                f.problems.append(f"intervals without a header: {missing}")
            if not ticks or ticks[-1].at < plan.end - 3 * plan.cadence:
                f.problems.append("the last ticks of the run were not written")
            if f.ok < 0.3 * f.ticks:
                f.problems.append(f"only {f.ok} of {f.ticks} ticks ok")
            f.problems += soak_truth.partial_snapshots(engine, MARKETS, len(methods.PRESETS))
            self._check_fills(engine)
            self._check_close(engine)
            self._check_later_books(engine)
        finally:
            engine.dispose()

    def _check_fills(self, engine: sa.Engine) -> None:
        assert self.node is not None
        plan, sim, f = self.plan, self.node.sim, self.figures
        with engine.connect() as conn:
            mark = conn.execute(
                sa.select(schema.fill_watermarks.c.through_slot).where(
                    schema.fill_watermarks.c.commitment == "confirmed"
                )
            ).scalar_one()
        # Every fill up to the slot the confirmed pass has covered, both sides.
        start, end = plan.genesis, datetime.fromtimestamp(sim.ts_at(mark) + 1, UTC)
        stored = {x for x in soak_truth.stored_fill_facts(engine, start, end) if x.slot <= mark}
        visible = {x for x in soak_truth.truth_fill_facts(sim, start, end) if x.slot <= mark}
        hidden = [x for x in soak_truth.hidden_fills(sim, start, end) if x["slot"] <= mark]
        f.fills_stored, f.fills_truth, f.fills_hidden = len(stored), len(visible), len(hidden)
        f.fills_equal = stored == visible
        if not f.fills_equal:
            f.problems.append(
                f"stored fills differ from the chain's: {len(stored - visible)} extra, "
                f"{len(visible - stored)} missing (first {sorted(visible - stored, key=str)[:2]})"
            )
        with engine.connect() as conn:
            forged = conn.execute(
                sa.select(sa.func.count()).where(schema.fills.c.signature.in_(sorted(sim.forged)))
            ).scalar_one()
        f.forged_served, f.forged_stored = len(sim.forged), forged
        if forged:
            f.problems.append(f"{forged} forged fills (never invoking Drift) were stored")
        hidden_ids = {(x["market_index"], x["fill_record_id"]) for x in hidden}
        f.gaps_reported = len(self.gaps)
        if hidden_ids != self.gaps:
            f.problems.append(
                f"fills check reports {len(self.gaps)} missing ids, the faults hid "
                f"{len(hidden_ids)}: {sorted(hidden_ids ^ self.gaps)[:5]}"
            )
        if any(x["ts"] < plan.week.end.timestamp() for x in hidden):
            f.problems.append("a fill of the closed week was hidden (the campaign's own bug)")

    def _check_close(self, engine: sa.Engine) -> None:
        assert self.node is not None
        plan, sim, f = self.plan, self.node.sim, self.figures
        program = config.load_program()
        seeds = self.workdir / "data" / "seeds"
        # The shipped program pays registered makers: register all the simulator's but one,
        # whose share the others divide (the truth applies the same registrations).
        registered = sim.maker_authorities()[:-1]
        with engine.begin() as conn:
            for authority in registered:
                makers.add_participant(conn, authority, name="", from_week=None)
        outcome = close_flow.close_week(
            engine, program, now=plan.end, seeds=Seeds(seeds), week=plan.week, min_coverage=0.0
        )
        if outcome.close.forced or outcome.close.seed is None:
            f.problems.append("the close was forced or revealed no seed")
            return
        expected = soak_truth.recompute_week(
            engine,
            sim,
            program,
            plan.week,
            bytes.fromhex(outcome.close.seed),
            registered=registered,
        )
        f.close_digest, f.truth_digest = outcome.close.digest, expected.digest
        f.close_books, f.close_fills = outcome.close.books, outcome.close.fills
        if f.close_digest != f.truth_digest:
            f.problems.append("the close's digest is not the one recomputed from the truth")
        again = close_flow.close_week(
            engine, program, now=plan.end, seeds=Seeds(seeds), week=plan.week, min_coverage=0.0
        )
        if not again.already or again.close.digest != outcome.close.digest:
            f.problems.append("closing again did not return the stored close")
        verified = close_flow.verify_week(engine, plan.week)
        f.verified = verified.ok
        if not verified.ok:
            f.problems.append(f"verify-week: {verified.difference}")

    def _check_later_books(self, engine: sa.Engine) -> None:
        """The ok ticks after the closed week against the truth too, where a User account the
        node served malformed may be missing (the reader cannot see it: the node's filters
        drop it), and nothing else."""
        assert self.node is not None

        def omitted(slot: int) -> set[str]:
            # The fault takes effect between two requests: at its first and last slot a read
            # may have come before or after the change.
            return {u for a, b, u in self.malformed if a <= slot <= (b or slot)}

        try:
            books = soak_truth.checked_books(
                engine, self.node.sim, self.plan.week.next(), omitted=omitted
            )
        except AssertionError as exc:
            self.figures.problems.append(f"after the week: {exc}")
            return
        self.figures.books_checked = len(books)
        self.figures.books_omitting = sum(b.omitted for b in books)

    def _check_logs(self) -> None:
        f = self.figures
        for d in self.daemons:
            text = d.log.read_text(errors="replace")
            for secret in (DB_PASSWORD, RPC_KEY):
                if secret in text:
                    f.problems.append(f"daemon {d.number}'s log holds a secret sentinel")
            for line in text.splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if doc.get("event") == "writer_active" and doc.get("standby_before"):
                        f.takeovers += 1
            if "Traceback" in text:
                f.problems.append(f"daemon {d.number}'s log holds a traceback")

    def _check_memory(self) -> None:
        """The RSS of the daemon that ran to the end (the longest-lived, if two did), after a
        warm-up (the first third of its samples), is flat."""
        f = self.figures
        survivors = [d for d in self.daemons if d.exit_code == 0] or self.daemons
        last = max(survivors, key=lambda d: len(d.rss_kb))
        samples = [kb for _, kb in last.rss_kb]
        warm = samples[len(samples) // 3 :]  # the first third of its life is warm-up
        f.rss_samples = len(warm)
        if len(warm) < 12:
            f.problems.append(f"too few memory samples of the last daemon ({len(warm)})")
            return
        third = len(warm) // 3
        f.rss_start_kb = round(statistics.median(warm[:third]))
        f.rss_end_kb = round(statistics.median(warm[-third:]))
        if f.rss_end_kb - f.rss_start_kb > self.plan.rss_growth_max_kb:
            f.problems.append(f"RSS grew from {f.rss_start_kb} kB to {f.rss_end_kb} kB")


async def run(plan: Plan, workdir: Path, *, say: Callable[[str], None] = print) -> Figures:
    """Run one campaign in ``workdir`` and return its figures (``problems`` empty: passed)."""
    campaign = Campaign(plan, workdir, say=say)
    figures = await campaign.run()
    for line in figures.lines():
        say(line)
    return figures
