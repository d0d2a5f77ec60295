"""Random faults, crashes and restarts between polls still end with the exact ground truth."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from driftsnap.chain import rpc
from driftsnap.flows import fills as fills_flow
from driftsnap.simnet import server
from tests import fills_helpers as h

if TYPE_CHECKING:
    import httpx

    from tests import pg


class CrashError(RuntimeError):
    """Stands for the process dying in the middle of a poll."""


def test_random_faults_and_restarts_end_with_the_exact_ground_truth(
    pg_cluster: pg.Cluster, pg_template: str
) -> None:
    """Any sequence of advances, bursts, nulls, 429s, cut logs, crashes and restarts converges."""

    class Ingest(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.name = pg_cluster.new_name("stateful")
            self.url = pg_cluster.create(self.name, template=pg_template)
            self.engine = sa.create_engine(self.url)
            self.stop = asyncio.Event()
            self.host: asyncio.Task[None] | None = None
            self.node: server.SimnetServer | None = None
            self.client: rpc.Client | None = None

        async def _start(self, seed: int) -> server.SimnetServer:
            ready: asyncio.Future[server.SimnetServer] = asyncio.get_running_loop().create_future()

            async def host() -> None:
                async with server.serve("quiet", seed=seed) as node:
                    ready.set_result(node)
                    await self.stop.wait()

            # The node runs in the runner's loop between steps; it answers while a step runs.
            self.host = asyncio.create_task(host(), name="simnet-host")
            return await ready

        @initialize(seed=st.integers(0, 10_000))
        def start(self, seed: int) -> None:
            self.node = self.runner.run(self._start(seed))
            self.client = rpc.Client(h.settings(self.node.url))

        @property
        def sim_node(self) -> server.SimnetServer:
            assert self.node is not None
            return self.node

        @rule(slots=st.integers(1, 25))
        def advance(self, slots: int) -> None:
            self.runner.run(self.sim_node.advance(slots))

        @rule(size=st.integers(1, 150))
        def burst(self, size: int) -> None:
            self.sim_node.set_faults(signature_burst=size)
            self.runner.run(self.sim_node.advance(1))

        @rule(
            fault=st.sampled_from(["null", "no_null", "429", "truncate"]),
            n=st.integers(1, 4),
        )
        def fault(self, fault: str, n: int) -> None:
            changes: dict[str, Any] = {
                "null": {"transaction_null_slots": n},
                "no_null": {"transaction_null_slots": 0},
                "429": {"http_429": n, "retry_after_s": 0},
                "truncate": {"truncate_logs": n},
            }[fault]
            self.sim_node.set_faults(**changes)

        @rule(limit=st.none() | st.integers(1, 40))
        def poll(self, limit: int | None) -> None:
            assert self.client is not None
            self.runner.run(
                fills_flow.poll_once(
                    self.client,
                    self.engine,
                    fills_flow.PollSettings(max_transactions=limit, batch_size=10),
                )
            )

        @rule(after=st.integers(0, 30))
        def crash_and_restart(self, after: int) -> None:
            calls = 0

            async def crash(request: httpx.Request) -> None:
                nonlocal calls
                if b"getTransaction" in request.content:
                    calls += 1
                    if calls > after:
                        raise CrashError("killed")

            async def crashing_poll() -> None:
                settings_ = h.settings(self.sim_node.url)
                async with rpc.Client(settings_, event_hooks={"request": [crash]}) as client:
                    try:
                        await fills_flow.poll_once(
                            client, self.engine, fills_flow.PollSettings(batch_size=8)
                        )
                    except* CrashError:
                        pass  # the process died; what it committed is all that remains

            self.runner.run(crashing_poll())
            # A new process: a new engine and client, nothing kept in memory.
            self.engine.dispose()
            self.engine = sa.create_engine(self.url)
            if self.client is not None:
                self.runner.run(self.client.aclose())
            self.client = rpc.Client(h.settings(self.sim_node.url))

        @invariant()
        def only_true_fills_are_stored(self) -> None:
            if self.node is None:
                return
            rows = h.stored(self.engine)
            assert set(rows) <= set(h.truth_rows(self.node))

        def teardown(self) -> None:
            try:
                if self.node is not None and self.client is not None:
                    self.node.set_faults(transaction_null_slots=0, http_429=0)
                    report = self.runner.run(fills_flow.poll_once(self.client, self.engine))
                    assert report.caught_up
                    lost = h.lost_to_truncation(self.node)
                    assert h.stored(self.engine) == h.truth_rows(self.node, lost=lost)
            finally:
                if self.client is not None:
                    self.runner.run(self.client.aclose())
                self.stop.set()
                if self.host is not None:
                    self.runner.run(asyncio.wait_for(self.host, 5))
                self.runner.close()
                self.engine.dispose()
                pg_cluster.drop(self.name)

    run_state_machine_as_test(
        Ingest,
        settings=settings(
            max_examples=10,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
