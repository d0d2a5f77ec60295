"""A snapshot read from the simnet over HTTP equals its ground truth, or is rejected, or raises."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from driftsnap.chain import errors, rpc, snapshot
from driftsnap.scoring import bookfile
from driftsnap.simnet import layout, server, truth
from tests.test_chain_rpc import Provider, Recorder, fast, rpc_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from driftsnap.scoring.book import Book

Json = Any
NAMES = ["SOL-PERP", "BTC-PERP", "ETH-PERP"]
SETTINGS = snapshot.SnapshotSettings(max_slot_gap=10, max_skipped_share=0.2)


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("default", seed=31) as running:
        await running.advance(25)
        yield running


def as_rows(book: Book) -> list[tuple[str, str, str, int, int, int]]:
    return sorted(
        (o.user, o.authority, o.side.label, o.price, o.size, o.order_id) for o in book.orders
    )


def truth_rows(want: Json, *, without: frozenset[str] = frozenset()) -> list[tuple[Any, ...]]:
    return sorted(
        (o["user"], o["authority"], o["side"], o["price"], o["size"], o["order_id"])
        for o in want["orders"]
        if o["user"] not in without
    )


def assert_truth(node: server.SimnetServer, snap: snapshot.Snapshot) -> None:
    """Every market's book in ``snap`` is the simnet's truth at its slot, order for order."""
    assert snap.ok, snap.detail
    assert {m.market_index for m in snap.markets} == set(node.sim.markets)
    for index in node.sim.markets:
        want = truth.book(node.sim, snap.slot, index)
        got = snap.books[index]
        assert (got.market, got.slot, got.ts, got.oracle_price) == (
            want["market"],
            want["slot"],
            want["ts"],
            want["oracle_price"],
        )
        assert as_rows(got) == truth_rows(want)


@pytest.mark.asyncio
async def test_books_equal_the_ground_truth_at_several_slots(node: server.SimnetServer) -> None:
    """At four slots, every default-scenario market's book equals truth.book order for order."""
    last: int | None = None
    async with rpc.Client(fast(node.url)) as client:
        for _ in range(4):
            snap = await snapshot.take(client, SETTINGS, NAMES, last_slot=last)
            assert snap.slot == snap.market_slot == node.sim.slot
            assert snap.encoding == "base64+zstd"
            assert snap.skipped == {}
            assert snap.orders == sum(len(b.orders) for b in snap.books.values()) > 0
            assert_truth(node, snap)
            last = snap.slot
            await node.advance(25)


@pytest.mark.asyncio
async def test_books_are_sorted_best_price_first(node: server.SimnetServer) -> None:
    """Each side of a book lists bids by descending and asks by ascending price."""
    async with rpc.Client(fast(node.url)) as client:
        snap = await snapshot.take(client, SETTINGS, NAMES)
    for book in snap.books.values():
        bids = [o.price for o in book.orders if o.side.label == "bid"]
        asks = [o.price for o in book.orders if o.side.label == "ask"]
        assert bids == sorted(bids, reverse=True)
        assert asks == sorted(asks)
        assert bids
        assert asks
        assert bids[0] < asks[0]


@pytest.mark.asyncio
async def test_names_once_then_indexes_by_pda(node: server.SimnetServer) -> None:
    """By name the markets come from one scan; by the indexes it resolved, from their PDAs."""
    recorder = Recorder()
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        first = await snapshot.take(client, SETTINGS, ["ETH-PERP", "SOL-PERP"])
        assert first.market_indexes == (2, 0)
        assert len(recorder.times("getProgramAccounts")) == 2
        second = await snapshot.take(client, SETTINGS, first.market_indexes, last_slot=first.slot)
    assert len(recorder.times("getProgramAccounts")) == 3
    assert [m.name for m in second.markets] == ["ETH-PERP", "SOL-PERP"]
    assert second.books == first.books
    assert snapshot.perp_market_address(1) == str(layout.perp_market_address(1))
    # Every read after the users' asks for their slot or later.
    after = [body for _, body in recorder.requests if body["method"] == "getMultipleAccounts"]
    assert after
    assert all(body["params"][1]["minContextSlot"] == first.slot for body in after)


@pytest.mark.asyncio
async def test_no_market_wanted_means_every_market(node: server.SimnetServer) -> None:
    """An empty selection reads every perp market on chain, in index order."""
    async with rpc.Client(fast(node.url)) as client:
        snap = await snapshot.take(client, SETTINGS, [])
    assert snap.market_indexes == tuple(sorted(node.sim.markets))
    assert_truth(node, snap)


@pytest.mark.asyncio
async def test_user_read_filters_on_the_node(node: server.SimnetServer) -> None:
    """The User gPA asks for exact size, the User discriminator and has_open_order = 1."""
    recorder = Recorder()
    async with rpc.Client(fast(node.url), event_hooks=recorder.hooks()) as client:
        snap = await snapshot.take(client, SETTINGS, [0])
    gpa = next(body for _, body in recorder.requests if body["method"] == "getProgramAccounts")
    config = gpa["params"][1]
    assert config["withContext"] is True
    assert {"dataSize": layout.USER_SIZE} in config["filters"]
    assert len(config["filters"]) == 3
    with_orders = sum(1 for u in node.sim.users.values() if u.open_orders > 0)
    assert snap.accounts_seen == snap.users == with_orders


@pytest.mark.asyncio
async def test_unknown_market_lists_the_available_ones(node: server.SimnetServer) -> None:
    """A configured market not on chain, by name or index, raises an error naming what exists."""
    async with rpc.Client(fast(node.url)) as client:
        for wanted in (["SOL-PERP", "DOGE-PERP"], [0, 7]):
            with pytest.raises(errors.MarketNotFoundError) as caught:
                await snapshot.take(client, SETTINGS, wanted)
            assert "0=SOL-PERP, 1=BTC-PERP, 2=ETH-PERP" in str(caught.value)


@pytest.mark.asyncio
async def test_node_behind_is_retried_into_a_true_snapshot(node: server.SimnetServer) -> None:
    """-32005 on the first reads is retried, and the snapshot still equals the truth."""
    node.set_faults(node_behind=2)
    async with rpc.Client(fast(node.url)) as client:
        snap = await snapshot.take(client, SETTINGS, NAMES)
    assert node.faults.node_behind == 0
    assert_truth(node, snap)


@pytest.mark.asyncio
async def test_min_context_slot_is_retried_with_the_users_slot(node: server.SimnetServer) -> None:
    """A -32016 on the market read is retried asking again for minContextSlot = S."""
    recorder = Recorder()
    armed = False

    async def arm(request: Any) -> None:
        # Armed as the market read leaves, so the fault hits exactly that call.
        nonlocal armed
        if not armed and json.loads(request.content)["method"] == "getMultipleAccounts":
            armed = True
            node.set_faults(min_context_not_reached=1)

    hooks = recorder.hooks()
    hooks["request"].insert(0, arm)
    async with rpc.Client(fast(node.url), event_hooks=hooks) as client:
        snap = await snapshot.take(client, SETTINGS, [0, 1, 2])
    reads = [body for _, body in recorder.requests if body["method"] == "getMultipleAccounts"]
    assert len(reads) == 3  # markets (refused, then served), oracles
    assert reads[0] == {**reads[1], "id": reads[0]["id"]}
    assert {body["params"][1]["minContextSlot"] for body in reads} == {snap.slot}
    assert_truth(node, snap)


@pytest.mark.asyncio
async def test_slot_going_backwards_rejects_the_snapshot(node: server.SimnetServer) -> None:
    """Users read at a slot before the last good snapshot's give a rejection, not books."""
    async with rpc.Client(fast(node.url)) as client:
        good = await snapshot.take(client, SETTINGS, NAMES)
        node.set_faults(slot_backwards=1, backwards_by=5)
        snap = await snapshot.take(client, SETTINGS, NAMES, last_slot=good.slot)
    assert snap.rejection is snapshot.Rejection.SLOT_REGRESSION
    assert (snap.ok, snap.slot, snap.books) == (False, good.slot - 5, {})
    with pytest.raises(errors.SnapshotRejectedError, match="slot_regression"):
        snapshot.book_documents(snap)


@pytest.mark.asyncio
async def test_markets_read_too_long_after_the_users_reject(node: server.SimnetServer) -> None:
    """Markets and oracles read more than max_slot_gap slots after S reject the snapshot."""
    node.set_faults(slot_backwards=1, backwards_by=5)  # only the users' read lags
    settings = snapshot.SnapshotSettings(max_slot_gap=4)
    async with rpc.Client(fast(node.url)) as client:
        snap = await snapshot.take(client, settings, NAMES)
    assert snap.rejection is snapshot.Rejection.SLOT_GAP
    assert (snap.slot, snap.market_slot) == (node.sim.slot - 5, node.sim.slot)
    assert "5 slots after" in snap.detail


@pytest.mark.asyncio
async def test_a_node_ignoring_min_context_slot_is_rejected(node: server.SimnetServer) -> None:
    """Markets served from before S (minContextSlot dropped by a provider) reject the snapshot."""

    # The simnet honours minContextSlot, so a lagging read asked for S fails -32016 there; this
    # provider drops the parameter, and the market read is served 3 slots back.
    def drop_min_context(body: Json) -> None:
        if body["method"] == "getMultipleAccounts":
            body["params"][1].pop("minContextSlot")

    async def lag(request: Any) -> None:
        if json.loads(request.content)["method"] == "getMultipleAccounts":
            node.set_faults(slot_backwards=1, backwards_by=3)

    async with rpc.Client(
        fast(node.url), transport=Provider(drop_min_context), event_hooks={"request": [lag]}
    ) as client:
        snap = await snapshot.take(client, SETTINGS, [0])
    assert snap.rejection is snapshot.Rejection.SLOT_REGRESSION
    assert (snap.slot, snap.market_slot) == (node.sim.slot, node.sim.slot - 3)
    assert "ignored minContextSlot" in snap.detail


class _NoDiscriminatorFilter(Provider):
    """A provider that drops gPA memcmp filters at offset 0, so bad-discriminator accounts reach
    the reader (the simnet itself filters them out, as a correct node does)."""

    def __init__(self) -> None:
        def drop(body: Json) -> None:
            if body["method"] == "getProgramAccounts":
                config = body["params"][1]
                config["filters"] = [
                    f for f in config["filters"] if f.get("memcmp", {}).get("offset") != 0
                ]

        super().__init__(drop)


def _makers(node: server.SimnetServer, count: int) -> list[str]:
    """Addresses of ``count`` users that have open orders."""
    return [str(a) for a, u in node.sim.users.items() if u.open_orders > 0][:count]


@pytest.mark.asyncio
async def test_malformed_users_are_skipped_and_counted(node: server.SimnetServer) -> None:
    """Users with a wrong discriminator are left out and counted; the rest equals the truth."""
    bad = _makers(node, 2)
    node.set_faults(malformed=dict.fromkeys(bad, "wrong_discriminator"))
    async with rpc.Client(fast(node.url), transport=_NoDiscriminatorFilter()) as client:
        snap = await snapshot.take(client, SETTINGS, NAMES)
    assert snap.ok, snap.detail
    assert snap.skipped == {"discriminator": 2}
    assert snap.accounts_seen == snap.users + 2
    for index in node.sim.markets:
        want = truth.book(node.sim, snap.slot, index)
        assert as_rows(snap.books[index]) == truth_rows(want, without=frozenset(bad))


@pytest.mark.asyncio
async def test_too_many_malformed_users_reject_the_snapshot(node: server.SimnetServer) -> None:
    """More bad User accounts than max_skipped_share gives a bad_accounts rejection."""
    bad = _makers(node, 2)
    node.set_faults(malformed=dict.fromkeys(bad, "wrong_discriminator"))
    settings = snapshot.SnapshotSettings(max_skipped_share=0.05)
    async with rpc.Client(fast(node.url), transport=_NoDiscriminatorFilter()) as client:
        snap = await snapshot.take(client, settings, NAMES)
    assert snap.rejection is snapshot.Rejection.BAD_ACCOUNTS
    assert snap.books == {}
    assert snap.skipped == {"discriminator": 2}
    assert "2 of" in snap.detail


@pytest.mark.asyncio
async def test_malformed_market_or_oracle_raises(node: server.SimnetServer) -> None:
    """A truncated PerpMarket is an AccountError; an oracle of the wrong owner an OracleError."""
    market = node.sim.markets[1]
    async with rpc.Client(fast(node.url)) as client:
        node.set_faults(malformed={str(market.address): "truncated"})
        with pytest.raises(errors.AccountError, match="length"):
            await snapshot.take(client, SETTINGS, [1])
        node.set_faults(malformed={str(market.oracle_address): "wrong_owner"})
        with pytest.raises(errors.OracleError, match="BTC-PERP"):
            await snapshot.take(client, SETTINGS, [1])


@pytest.mark.asyncio
async def test_timeouts_raise_a_typed_error(node: server.SimnetServer) -> None:
    """A node slower than the timeout makes take raise RpcTimeoutError after the retries."""
    node.set_faults(delay_ms=300)
    async with rpc.Client(fast(node.url, timeout_s=0.1, max_retries=1)) as client:
        with pytest.raises(errors.RpcTimeoutError) as caught:
            await snapshot.take(client, SETTINGS, NAMES)
    assert (caught.value.method, caught.value.attempts) == ("getProgramAccounts", 2)


@pytest.mark.asyncio
async def test_node_away_raises_then_recovers(node: server.SimnetServer) -> None:
    """With the node gone take raises TransportError; once it is back, snapshots are true again."""
    async with rpc.Client(fast(node.url, max_retries=1)) as client:
        await node.go_away()
        with pytest.raises(errors.TransportError):
            await snapshot.take(client, SETTINGS, NAMES)
        await node.come_back()
        assert_truth(node, await snapshot.take(client, SETTINGS, NAMES))


@pytest.mark.asyncio
async def test_zstd_refused_once_falls_back_to_base64(node: server.SimnetServer) -> None:
    """A node refusing base64+zstd is asked again in base64, and not asked for zstd again."""
    refused = 0

    def no_zstd(body: Json) -> tuple[int, str] | None:
        nonlocal refused
        params = body["params"]
        if body["method"] == "getProgramAccounts" and params[1]["encoding"] == "base64+zstd":
            refused += 1
            return rpc_error(body, -32602, "Invalid params: unsupported encoding base64+zstd")
        return None

    async with rpc.Client(fast(node.url), transport=Provider(no_zstd)) as client:
        first = await snapshot.take(client, SETTINGS, NAMES)
        second = await snapshot.take(client, SETTINGS, NAMES)
    assert (first.encoding, second.encoding, refused) == ("base64", "base64", 1)
    assert_truth(node, first)


@pytest.mark.asyncio
async def test_missing_block_time_falls_back_to_the_wall_clock(node: server.SimnetServer) -> None:
    """A null getBlockTime gives a snapshot flagged ts_estimated, with a plausible ts."""

    def null_time(body: Json) -> tuple[int, str] | None:
        if body["method"] == "getBlockTime":
            return 200, json.dumps({"jsonrpc": "2.0", "result": None, "id": body["id"]})
        return None

    async with rpc.Client(fast(node.url), transport=Provider(null_time)) as client:
        snap = await snapshot.take(client, SETTINGS, NAMES)
    assert snap.ok
    assert snap.ts_estimated
    assert snap.ts is not None
    assert snap.ts > 1_700_000_000


@pytest.mark.asyncio
async def test_book_documents_are_score_books_with_facts(node: server.SimnetServer) -> None:
    """book_documents gives each market's score-book JSON (parsed back equal) plus slot facts."""
    async with rpc.Client(fast(node.url)) as client:
        snap = await snapshot.take(client, SETTINGS, NAMES)
    documents = snapshot.book_documents(snap)
    assert list(documents) == NAMES
    for market in snap.markets:
        document = json.loads(json.dumps(documents[market.name]))
        book = snap.books[market.market_index]
        assert bookfile.from_dict(document) == book
        bids = [o.price for o in book.orders if o.side.label == "bid"]
        asks = [o.price for o in book.orders if o.side.label == "ask"]
        assert (document["best_bid"], document["best_ask"]) == (max(bids), min(asks))
        assert document["market_slot"] == snap.market_slot
        assert document["oracle_slot"] == snap.oracles[market.market_index].slot
        assert document["oracle"] == str(node.sim.markets[market.market_index].oracle_address)
