"""The simulated Drift market: oracles, makers, takers and fills, one slot at a time.

Everything here is a pure function of the scenario and the seed: :meth:`Simulator.step` advances
exactly one slot and draws only from the simulator's own ``random.Random``, and simulated time is
derived from the slot (``ts = genesis_ts + slots * slot_ms // 1000``), never from the wall clock.
So two simulators with the same seed serve the same bytes, and a test can step one by hand.

Rates are per slot (re-quotes, taker orders, fills, oracle moves), so a long ``slot_ms`` (a minute
per slot, to run a program week in minutes) is a quieter market per simulated second, not a
different one; what the protocol measures in seconds (``max_ts``, the 30-day maker volume, the
oracle's publish time) follows ``ts``.

The simulator keeps a bounded history (the last ``history_slots`` slots of every User account,
oracle price and fill counter) for ground truth and for a node that answers from a slot behind,
and a bounded transaction log, so a long run does not grow.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from solders.pubkey import Pubkey
from solders.signature import Signature

from driftsnap import protocol
from driftsnap.simnet import layout, ledger, mainnet, scenarios

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DRIFT_PROGRAM: Final = str(layout.DRIFT_PROGRAM_ID)
COMPUTE_BUDGET_PROGRAM: Final = "ComputeBudget111111111111111111111111111111"
GENESIS_SLOT: Final = 348_900_700
GENESIS_TS: Final = 1_750_772_100
THIRTY_DAYS_S: Final = 30 * 86_400
TRUNCATED_LOG: Final = "Log truncated"  # the line a node ends logs it cut short with
# The program a forged transaction really invokes: a lying node lists the transaction under the
# Drift program and writes Drift's frames into its logs, but its message never names Drift.
FORGER_PROGRAM: Final = "Forger1111111111111111111111111111111111111"
FORGED_QUOTE: Final = 1_000_000 * protocol.QUOTE_PRECISION  # the volume a forged fill claims


def rent_exempt_lamports(size: int) -> int:
    """Solana's rent-exempt minimum: two years of rent at 3480 lamports per byte-year."""
    return (128 + size) * 3480 * 2


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """What a node returns for an account: its data, owner and balance."""

    data: bytes
    owner: Pubkey
    lamports: int


@dataclasses.dataclass(slots=True)
class Market:
    """One perp market and its PythLazer oracle."""

    index: int
    name: str
    address: Pubkey
    oracle_address: Pubkey
    template: layout.PerpMarketTemplate
    oracle_exponent: int
    oracle_conf: int
    oracle_price: int
    next_fill_record_id: int
    tick_size: int
    step_size: int
    volatility_bps: float

    def oracle_raw(self, price: int | None = None) -> int:
        """The oracle price (or ``price``) in the feed's raw units, ``oracle_exponent`` decimals."""
        # Pyth Lazer prices carry ``exponent`` decimals; protocol.PRICE_PRECISION has 6.
        scale: int = 10 ** (-self.oracle_exponent - 6)
        return (self.oracle_price if price is None else price) * scale


@dataclasses.dataclass(frozen=True, slots=True)
class SlotState:
    """What ground truth needs of one slot: every User's content and every oracle price."""

    slot: int
    ts: int
    oracle_prices: Mapping[int, int]
    users: Mapping[Pubkey, layout.User]
    fill_ids: Mapping[int, int]  # each market's next_fill_record_id after the slot


@dataclasses.dataclass(frozen=True, slots=True)
class Maker:
    """How one User account quotes."""

    profile: scenarios.Profile
    markets: tuple[int, ...]


class Simulator:
    """A deterministic Drift market that advances one slot per :meth:`step`."""

    def __init__(
        self,
        scenario: scenarios.Scenario,
        seed: int,
        slot_ms: int = 400,
        genesis_ts: int = GENESIS_TS,
    ) -> None:
        if slot_ms < 1 or genesis_ts < 0:
            raise ValueError("slot_ms must be >= 1 and genesis_ts >= 0")
        self.scenario = scenario
        self.seed = seed
        self.slot_ms = slot_ms
        self.genesis_ts = genesis_ts
        # The simulation's only randomness; nothing here is cryptographic.
        self.rng = random.Random(seed)  # noqa: S311
        self.slot = GENESIS_SLOT
        self.markets: dict[int, Market] = {}
        self.users: dict[Pubkey, layout.User] = {}
        self.makers: dict[Pubkey, Maker] = {}
        self.takers: list[Pubkey] = []
        self.sub_accounts: dict[Pubkey, list[Pubkey]] = {}  # authority -> its User accounts
        self.user_stats: dict[Pubkey, bytes] = {}
        # authority -> (UserStats.maker_volume30d, its last update ts), as the program keeps it
        self.maker_volume_30d: dict[Pubkey, tuple[int, int]] = {}
        self.keepers: list[Pubkey] = [self._new_pubkey() for _ in range(3)]
        self.history: deque[SlotState] = deque(maxlen=scenario.history_slots)
        self.ledger = ledger.Ledger(scenario.max_transactions)
        self._cache: dict[Pubkey, tuple[object, Account]] = {}
        self._order_expiry: dict[tuple[Pubkey, int], int] = {}  # taker orders: removal slot
        # One-shot behaviour that faults arm and the next steps consume.
        self.pending_burst = 0
        self.truncate_next_logs = 0
        # Transactions a (faulty) node never lists in getSignaturesForAddress: their fill
        # records happened, but a reader that pages signatures cannot see them.
        self.unlist_next = 0
        self.unlisted: set[str] = set()
        # Forged fills a lying node serves: listed under Drift, never invoking it (no truth).
        self.forge_next = 0
        self.forged: set[str] = set()
        self._build()
        self._record_history()

    # ------------------------------------------------------------ time and lookups

    def ts_at(self, slot: int) -> int:
        """The block time (unix s) of ``slot``."""
        return self.genesis_ts + (slot - GENESIS_SLOT) * self.slot_ms // 1000

    @property
    def ts(self) -> int:
        """The block time (unix s) of the current slot."""
        return self.ts_at(self.slot)

    def maker_authorities(self) -> list[str]:
        """The wallets of the quoting makers (each may quote from several sub-accounts)."""
        return sorted({str(self.users[address].authority) for address in self.makers})

    def _new_pubkey(self) -> Pubkey:
        return Pubkey(self.rng.randbytes(32))

    def account(self, address: Pubkey) -> Account | None:
        """The account at ``address`` now, encoded on demand and cached until it changes."""
        source: object | None = self.users.get(address)
        if source is None:
            source = self._static_source(address)
            if source is None:
                return None
        cached = self._cache.get(address)
        if cached is not None and cached[0] is source:
            return cached[1]
        account = Account(self._encode(address, source), layout.DRIFT_PROGRAM_ID, 0)
        account = dataclasses.replace(account, lamports=rent_exempt_lamports(len(account.data)))
        self._cache[address] = (source, account)
        return account

    def account_at(self, address: Pubkey, slot: int) -> Account | None:
        """The account as it was after ``slot``: Users, markets and oracles from the history (a
        node that is behind serves its own older state, consistently); the current account
        when the slot is the current one or no longer retained. UserStats are always current."""
        state = self.state_at(slot)
        if state is None or slot == self.slot:
            return self.account(address)
        if address in self.users:
            user = state.users.get(address)
            if user is None:
                return None
            if user is self.users[address]:
                return self.account(address)  # unchanged since: the cached encoding
            data = layout.encode_user(user)
        elif (market := self._market_by_address.get(address)) is not None:
            data = market.template.render(
                state.fill_ids[market.index], state.oracle_prices[market.index]
            )
        elif (market := self._market_by_oracle.get(address)) is not None:
            data = layout.encode_pyth_lazer(
                market.oracle_raw(state.oracle_prices[market.index]),
                market.oracle_exponent,
                market.oracle_conf,
                state.ts * 1_000_000,
                state.slot,
            )
        else:
            return self.account(address)
        return Account(data, layout.DRIFT_PROGRAM_ID, rent_exempt_lamports(len(data)))

    def program_accounts_at(self, slot: int) -> Iterator[tuple[Pubkey, Account]]:
        """:meth:`program_accounts` as they were after ``slot`` (see :meth:`account_at`)."""
        if slot == self.slot or self.state_at(slot) is None:
            yield from self.program_accounts()
            return
        for market in self.markets.values():
            for address in (market.address, market.oracle_address):
                account = self.account_at(address, slot)
                assert account is not None
                yield address, account
        for address in [*self.user_stats, *self.users]:
            account = self.account_at(address, slot)
            if account is not None:
                yield address, account

    def _static_source(self, address: Pubkey) -> object | None:
        market = self._market_by_address.get(address) or self._market_by_oracle.get(address)
        if market is not None:
            # A market's bytes depend on (oracle price, fill id): a tuple identifies the version.
            return self._market_versions[address]
        return self.user_stats.get(address)

    def _encode(self, address: Pubkey, source: object) -> bytes:
        if isinstance(source, layout.User):
            return layout.encode_user(source)
        if isinstance(source, bytes):
            return source
        market = self._market_by_address.get(address)
        if market is not None:
            return market.template.render(market.next_fill_record_id, market.oracle_price)
        market = self._market_by_oracle[address]
        return layout.encode_pyth_lazer(
            market.oracle_raw(),
            market.oracle_exponent,
            market.oracle_conf,
            self.ts * 1_000_000,
            self.slot,
        )

    def program_accounts(self) -> Iterator[tuple[Pubkey, Account]]:
        """Every Drift-owned account: markets, oracles, user stats, users (a stable order)."""
        for market in self.markets.values():
            for address in (market.address, market.oracle_address):
                account = self.account(address)
                assert account is not None
                yield address, account
        for address in [*self.user_stats, *self.users]:
            account = self.account(address)
            assert account is not None
            yield address, account

    # ------------------------------------------------------------ building the scenario

    def _build(self) -> None:
        self._market_by_address: dict[Pubkey, Market] = {}
        self._market_by_oracle: dict[Pubkey, Market] = {}
        self._market_versions: dict[Pubkey, tuple[int, int, int]] = {}
        for spec in self.scenario.markets:
            self._add_market(spec)
        for i in range(self.scenario.authorities):
            self._add_authority(i)
        for _ in range(self.scenario.takers):
            authority = self._new_pubkey()
            address = self._add_user(authority, 0)
            self.takers.append(address)
        self._maker_list = list(self.makers)
        self._place_ignored_orders()
        self._touch_markets()

    def _add_market(self, spec: scenarios.MarketSpec) -> None:
        sol = mainnet.raw("8UJgxaiQx5nTrdDgph5FiahMmzduuLTLf5WmsPegYA6W")
        sol_oracle = mainnet.raw("3m6i4RFWEDw2Ft4tFHPJtYgmpPe21k56M3FHeWYrgGBz")
        address = layout.perp_market_address(spec.index)
        real = mainnet.ACCOUNTS.get(str(address))
        if real is not None:
            data = mainnet.raw(str(address))
        else:
            oracle = layout.pyth_lazer_address(10_000 + spec.index)
            data = layout.derive_perp_market(
                sol, market_index=spec.index, name=spec.name, oracle=oracle, pubkey=address
            )
        decoded = layout.decode_account(data)
        oracle_address: Pubkey = decoded.amm.oracle
        oracle_real = mainnet.ACCOUNTS.get(str(oracle_address))
        _, exponent, conf, _, _ = layout.decode_pyth_lazer(
            mainnet.raw(str(oracle_address)) if oracle_real is not None else sol_oracle
        )
        if oracle_real is not None:
            raw_price = layout.decode_pyth_lazer(mainnet.raw(str(oracle_address)))[0]
            price = raw_price // 10 ** (-exponent - 6)
        else:
            price = spec.start_price or int(decoded.amm.historical_oracle_data.last_oracle_price)
            conf = price // 10_000 * 10 ** (-exponent - 6)
        market = Market(
            index=spec.index,
            name=spec.name,
            address=address,
            oracle_address=oracle_address,
            template=layout.PerpMarketTemplate.from_bytes(data),
            oracle_exponent=exponent,
            oracle_conf=conf,
            oracle_price=exact_oracle_price(price, exponent),
            next_fill_record_id=int(decoded.next_fill_record_id),
            tick_size=int(decoded.amm.order_tick_size),
            step_size=int(decoded.amm.order_step_size),
            volatility_bps=spec.volatility_bps,
        )
        self.markets[spec.index] = market
        self._market_by_address[address] = market
        self._market_by_oracle[oracle_address] = market

    def _touch_markets(self) -> None:
        for m in self.markets.values():
            version = (m.oracle_price, m.next_fill_record_id, self.slot)
            self._market_versions[m.address] = version
            self._market_versions[m.oracle_address] = version

    def _add_user(self, authority: Pubkey, sub_account_id: int) -> Pubkey:
        address = layout.user_address(authority, sub_account_id)
        self.users[address] = layout.User(
            authority=authority, sub_account_id=sub_account_id, orders=()
        )
        subs = self.sub_accounts.setdefault(authority, [])
        subs.append(address)
        self.user_stats[layout.user_stats_address(authority)] = layout.encode_user_stats(
            authority, len(subs)
        )
        return address

    def _add_authority(self, i: int) -> None:
        sc = self.scenario
        authority = self._new_pubkey()
        n_subs = sc.sub_accounts[i % len(sc.sub_accounts)]
        market_indexes = [m.index for m in sc.markets]
        for sub in range(n_subs):
            address = self._add_user(authority, sub)
            profile = sc.profiles[(i + sub) % len(sc.profiles)]
            k = min(len(market_indexes), sc.markets_per_maker)
            markets = tuple(sorted(self.rng.sample(market_indexes, k)))
            self.makers[address] = Maker(profile, markets)
            for _ in range(sc.orders_per_maker):
                self._place_quote(address)

    # ------------------------------------------------------------ orders

    def _replace_user(self, address: Pubkey, user: layout.User) -> None:
        self.users[address] = dataclasses.replace(user, last_active_slot=self.slot)

    def _add_order(self, address: Pubkey, **fields: Any) -> layout.Order | None:
        """Place an order (the user's next id, this slot); None when all 32 slots are taken."""
        user = self.users[address]
        if len(user.orders) >= layout.ORDER_SLOTS:
            return None
        order = layout.Order(order_id=user.next_order_id, slot=self.slot, **fields)
        self._replace_user(
            address,
            dataclasses.replace(
                user,
                orders=(*user.orders, order),
                next_order_id=user.next_order_id + 1,
                perp_positions=_positions_with(user, order),
            ),
        )
        return order

    def _remove_order(self, address: Pubkey, order_id: int) -> None:
        user = self.users[address]
        orders = tuple(o for o in user.orders if o.order_id != order_id)
        user = dataclasses.replace(user, orders=orders)
        self._replace_user(address, dataclasses.replace(user, perp_positions=_positions(user)))

    def _size_for(self, market: Market, notional_usd: float) -> int:
        base = int(
            notional_usd * protocol.PRICE_PRECISION / market.oracle_price * protocol.BASE_PRECISION
        )
        return max(market.step_size, base // market.step_size * market.step_size)

    def _place_quote(self, address: Pubkey) -> None:
        maker = self.makers[address]
        profile = maker.profile
        market = self.markets[self.rng.choice(maker.markets)]
        side = self.rng.choice(profile.sides)
        direction = protocol.Direction.LONG if side == "bid" else protocol.Direction.SHORT
        bps = self.rng.choice(profile.distances_bps)
        sign = -1 if direction == protocol.Direction.LONG else 1
        distance = market.oracle_price * bps // 10_000 // market.tick_size * market.tick_size
        size = self._size_for(market, self.rng.uniform(*profile.notional_usd))
        # An oracle offset is an i32: far quotes on high-priced markets must be fixed-price.
        if self.rng.random() < profile.floating_share and distance < 2**31:
            self._add_order(
                address,
                market_index=market.index,
                direction=direction,
                base_asset_amount=size,
                oracle_price_offset=sign * distance,
                post_only=True,
            )
        else:
            self._add_order(
                address,
                market_index=market.index,
                direction=direction,
                base_asset_amount=size,
                price=market.oracle_price + sign * distance,
                post_only=True,
            )

    def _place_ignored_orders(self) -> None:
        """Orders a scorer must not count, spread over the makers (spec 1.1's exclusions)."""
        makers = list(self.makers)
        for market in self.markets.values():
            for k in range(self.scenario.ignored_per_market):
                address = makers[(market.index * 7 + k) % len(makers)]
                self._place_ignored(address, market, k % 6)

    def _place_ignored(self, address: Pubkey, market: Market, kind: int) -> None:
        price = market.oracle_price
        size = self._size_for(market, 2_000)
        direction = protocol.Direction(kind % 2)
        sign = -1 if direction == protocol.Direction.LONG else 1
        near = price + sign * (price // 2_000 // market.tick_size * market.tick_size)
        common: dict[str, Any] = {
            "market_index": market.index,
            "direction": direction,
            "base_asset_amount": size,
        }
        if kind == 0:  # a trigger order that has not triggered
            self._add_order(
                address,
                **common,
                order_type=protocol.OrderType.TRIGGER_LIMIT,
                price=near,
                trigger_price=near,
                trigger_condition=protocol.TriggerCondition.BELOW,
            )
        elif kind == 1:  # expired: max_ts already passed, still on the account
            self._add_order(address, **common, price=near, post_only=True, max_ts=self.ts - 60)
        elif kind == 2:  # fully filled yet still marked open
            self._add_order(
                address,
                **common,
                price=near,
                post_only=True,
                base_asset_amount_filled=size,
                quote_asset_amount_filled=size * near // protocol.BASE_PRECISION,
            )
        elif kind == 3:  # a spot order with the same market index
            self._add_order(
                address, **{**common, "market_type": protocol.MarketType.SPOT}, price=near
            )
        elif kind == 4:  # expires 50 slots into the run (20 s at 400 ms): eligible until then
            max_ts = self.ts_at(self.slot + 50)
            self._add_order(address, **common, price=near, post_only=True, max_ts=max_ts)
        else:  # a trigger market order
            self._add_order(
                address,
                **common,
                order_type=protocol.OrderType.TRIGGER_MARKET,
                trigger_price=near,
                trigger_condition=protocol.TriggerCondition.ABOVE,
            )

    def _place_taker_order(self) -> None:
        """A taker order in its auction: Market, or Limit that rests once its auction ends."""
        taker = self.rng.choice(self.takers)
        market = self.markets[self.rng.choice(sorted(self.markets))]
        direction = protocol.Direction(self.rng.randrange(2))
        sign = 1 if direction == protocol.Direction.LONG else -1
        price = market.oracle_price
        duration = self.rng.randrange(5, 20)
        is_limit = self.rng.random() < 0.5
        order = self._add_order(
            taker,
            market_index=market.index,
            direction=direction,
            base_asset_amount=self._size_for(market, self.rng.uniform(500, 5_000)),
            order_type=protocol.OrderType.LIMIT if is_limit else protocol.OrderType.MARKET,
            price=price + sign * (price // 100 // market.tick_size * market.tick_size),
            auction_start_price=price,
            auction_end_price=price + sign * price // 200,
            auction_duration=duration,
        )
        if order is not None:
            # Limit orders linger a few slots past their auction, so they rest for a while.
            self._order_expiry[(taker, order.order_id)] = (
                self.slot + duration + 1 + (self.rng.randrange(4) if is_limit else 0)
            )

    # ------------------------------------------------------------ the step

    def step(self) -> None:
        """Advance one slot: oracles move, makers re-quote, takers fill, history records it."""
        self.slot += 1
        for market in self.markets.values():
            drift = self.rng.gauss(0.0, market.volatility_bps / 10_000)
            price = max(market.tick_size, round(market.oracle_price * math.exp(drift)))
            market.oracle_price = exact_oracle_price(price, market.oracle_exponent)
        self._expire_taker_orders()
        self._pull_crossed_quotes()
        sc = self.scenario
        for _ in range(_poisson(self.rng, sc.requotes_per_slot)):
            if not self._maker_list:
                break
            self._requote(self.rng.choice(self._maker_list))
        if self.rng.random() < sc.taker_orders_per_slot:
            self._place_taker_order()
        for _ in range(_poisson(self.rng, sc.fills_per_slot)):
            self._fill_one()
        burst, self.pending_burst = self.pending_burst, 0
        for _ in range(burst):
            self._jit_fill(self.markets[self.rng.choice(sorted(self.markets))])
        forge, self.forge_next = self.forge_next, 0
        for _ in range(forge):
            self._forged_fill(self.markets[self.rng.choice(sorted(self.markets))])
        self._touch_markets()
        self._record_history()

    def _record_history(self) -> None:
        self.history.append(
            SlotState(
                slot=self.slot,
                ts=self.ts,
                oracle_prices={i: m.oracle_price for i, m in self.markets.items()},
                users=dict(self.users),
                fill_ids={i: m.next_fill_record_id for i, m in self.markets.items()},
            )
        )

    def _expire_taker_orders(self) -> None:
        due = [key for key, slot in self._order_expiry.items() if slot <= self.slot]
        for address, order_id in due:
            del self._order_expiry[(address, order_id)]
            self._remove_order(address, order_id)

    def _pull_crossed_quotes(self) -> None:
        """Makers pull (most) fixed-price quotes that the oracle has moved through, and re-quote."""
        for address in self.makers:
            for order in self.users[address].orders:
                if order.oracle_price_offset != 0 or order.order_type != protocol.OrderType.LIMIT:
                    continue
                market = self.markets.get(order.market_index)
                if market is None or order.market_type != protocol.MarketType.PERP:
                    continue
                crossed = (
                    order.price >= market.oracle_price
                    if order.direction == protocol.Direction.LONG
                    else order.price <= market.oracle_price
                )
                if crossed and self.rng.random() < 0.5:
                    self._remove_order(address, order.order_id)
                    self._place_quote(address)

    def _requote(self, address: Pubkey) -> None:
        quotes = [
            o
            for o in self.users[address].orders
            if o.post_only and o.max_ts == 0 and o.base_asset_amount_filled < o.base_asset_amount
        ]
        if quotes:
            self._remove_order(address, self.rng.choice(quotes).order_id)
        self._place_quote(address)

    # ------------------------------------------------------------ fills

    def resting_orders(
        self, market_index: int, direction: protocol.Direction
    ) -> list[tuple[int, Pubkey, layout.Order]]:
        """(limit price, user, order) of the eligible orders on one side, best first."""
        price = self.markets[market_index].oracle_price
        out = [
            (limit, address, order)
            for address, user in self.users.items()
            if address in self.makers
            for order in user.orders
            if order.direction == direction
            and (limit := eligible_price(order, market_index, self.slot, self.ts, price))
            is not None
        ]
        out.sort(key=lambda t: -t[0] if direction == protocol.Direction.LONG else t[0])
        return out

    def _fill_one(self) -> None:
        market = self.markets[self.rng.choice(sorted(self.markets))]
        if self.rng.random() < self.scenario.jit_share:
            self._jit_fill(market)
            return
        taker_direction = protocol.Direction(self.rng.randrange(2))
        maker_direction = protocol.Direction(1 - taker_direction)
        book = self.resting_orders(market.index, maker_direction)[:2]
        if not book:
            return
        first_maker = book[0][1]
        taker = self.rng.choice(self.takers)
        siblings = [
            a for a in self.sub_accounts[self.users[first_maker].authority] if a != first_maker
        ]
        if siblings and self.rng.random() < self.scenario.self_match_share:
            taker = self.rng.choice(siblings)  # a wallet trading against its own sub-account
        want = self._size_for(market, self.rng.uniform(100, 4_000))
        taker_order = self._add_order(
            taker,
            market_index=market.index,
            direction=taker_direction,
            base_asset_amount=want,
            order_type=protocol.OrderType.MARKET,
            auction_duration=0,
        )
        if taker_order is None:
            return
        fills: list[tuple[Pubkey, layout.Order, int, int, int]] = []
        left = want
        for limit, maker, order in book:
            if left == 0 or maker == taker:
                continue
            base = min(left, order.remaining)
            fills.append((maker, order, base, base * limit // protocol.BASE_PRECISION, limit))
            left -= base
        if not fills:
            self._remove_order(taker, taker_order.order_id)
            return
        events: list[bytes] = []
        records: list[ledger.Fill] = []
        filled_base = filled_quote = 0
        signature = self._new_signature()
        for maker, order, base, quote, limit in fills:
            filled_base += base
            filled_quote += quote
            maker_after = dataclasses.replace(
                order,
                base_asset_amount_filled=order.base_asset_amount_filled + base,
                quote_asset_amount_filled=order.quote_asset_amount_filled + quote,
            )
            taker_after = dataclasses.replace(
                taker_order,
                base_asset_amount_filled=filled_base,
                quote_asset_amount_filled=filled_quote,
            )
            record, event = self._fill_record(
                market,
                signature,
                maker=maker,
                maker_order=maker_after,
                taker=taker,
                taker_order=taker_after,
                base=base,
                quote=quote,
                price=limit,
            )
            records.append(record)
            events.append(event)
            self._apply_maker_fill(maker, maker_after, base, quote)
        # The taker's market order is complete (or cancelled for the rest) within the transaction.
        self._remove_order(taker, taker_order.order_id)
        keys = [taker, *(f[0] for f in fills)]
        self._add_transaction(signature, market, keys, events, records)

    def _jit_fill(self, market: Market) -> None:
        """A JIT fill: the maker's order is placed and filled inside one transaction."""
        maker = self.rng.choice(self._maker_list)
        taker = self.rng.choice(self.takers)
        taker_direction = protocol.Direction(self.rng.randrange(2))
        base = self._size_for(market, self.rng.uniform(200, 5_000))
        sign = 1 if taker_direction == protocol.Direction.LONG else -1
        price = market.oracle_price + sign * market.tick_size
        quote = base * price // protocol.BASE_PRECISION
        maker_user = self.users[maker]
        maker_order = layout.Order(
            order_id=maker_user.next_order_id,
            market_index=market.index,
            direction=protocol.Direction(1 - taker_direction),
            base_asset_amount=base,
            slot=self.slot,
            price=price,
            post_only=True,
            base_asset_amount_filled=base,
            quote_asset_amount_filled=quote,
        )
        self._replace_user(
            maker, dataclasses.replace(maker_user, next_order_id=maker_order.order_id + 1)
        )
        taker_user = self.users[taker]
        taker_order = layout.Order(
            order_id=taker_user.next_order_id,
            market_index=market.index,
            direction=taker_direction,
            base_asset_amount=base,
            slot=self.slot,
            order_type=protocol.OrderType.MARKET,
            base_asset_amount_filled=base,
            quote_asset_amount_filled=quote,
        )
        self._replace_user(
            taker, dataclasses.replace(taker_user, next_order_id=taker_order.order_id + 1)
        )
        signature = self._new_signature()
        record, event = self._fill_record(
            market,
            signature,
            maker=maker,
            maker_order=maker_order,
            taker=taker,
            taker_order=taker_order,
            base=base,
            quote=quote,
            price=price,
            jit=True,
        )
        self._add_transaction(signature, market, [taker, maker], [event], [record])

    def _forged_fill(self, market: Market) -> None:
        """A transaction that never invokes Drift, whose logs claim a Drift fill of a million
        USDC to an attacker's User account, with the id the market's next real fill will get.

        Nothing on chain changes (no truth records it); only a lying node lists it under the
        Drift program and serves its logs. A reader that trusts the logs alone pays for it.
        """
        attacker = self.rng.choice(self.takers)
        base = self._size_for(market, 1_000_000.0)
        order = layout.Order(
            order_id=self.users[attacker].next_order_id,
            market_index=market.index,
            direction=protocol.Direction.LONG,
            base_asset_amount=base,
            slot=self.slot,
            price=market.oracle_price,
            post_only=True,
            base_asset_amount_filled=base,
            quote_asset_amount_filled=FORGED_QUOTE,
        )
        event = layout.order_action_fill(
            ts=self.ts,
            market_index=market.index,
            filler=self.keepers[0],
            fill_record_id=market.next_fill_record_id,  # not advanced: the next real one's id
            base=base,
            quote=FORGED_QUOTE,
            taker=None,
            taker_order=None,
            maker=attacker,
            maker_order=order,
            oracle_price=market.oracle_price,
            jit=False,
        )
        signature = self._new_signature()
        keys = (
            str(self.users[attacker].authority),
            str(attacker),
            str(market.address),
            FORGER_PROGRAM,
            str(market.oracle_address),
        )
        logs = (
            f"Program {DRIFT_PROGRAM} invoke [1]",
            "Program log: Instruction: FillPerpOrder",
            "Program data: " + base64.b64encode(event).decode(),
            f"Program {DRIFT_PROGRAM} consumed 40000 of 1400000 compute units",
            f"Program {DRIFT_PROGRAM} success",
        )
        self.forged.add(signature)
        self.ledger.record(
            signature=signature,
            slot=self.slot,
            block_time=self.ts,
            account_keys=keys,
            logs=logs,
            compute_units=40_300,
            fills=(),
            listed_under=(DRIFT_PROGRAM,),
        )

    def _fill_record(
        self,
        market: Market,
        signature: str,
        *,
        maker: Pubkey,
        maker_order: layout.Order,
        taker: Pubkey,
        taker_order: layout.Order,
        base: int,
        quote: int,
        price: int,
        jit: bool = False,
    ) -> tuple[ledger.Fill, bytes]:
        # The program records the market's counter and then advances it (get_then_update_id).
        fill_record_id = market.next_fill_record_id
        market.next_fill_record_id += 1
        event = layout.order_action_fill(
            ts=self.ts,
            market_index=market.index,
            filler=self.keepers[fill_record_id % len(self.keepers)],
            fill_record_id=fill_record_id,
            base=base,
            quote=quote,
            taker=taker,
            taker_order=taker_order,
            maker=maker,
            maker_order=maker_order,
            oracle_price=market.oracle_price,
            jit=jit,
        )
        self._add_maker_volume(maker, quote)
        record = ledger.Fill(
            market_index=market.index,
            fill_record_id=fill_record_id,
            slot=self.slot,
            ts=self.ts,
            signature=signature,
            maker=str(maker),
            maker_authority=str(self.users[maker].authority),
            maker_order_id=maker_order.order_id,
            taker=str(taker),
            taker_authority=str(self.users[taker].authority),
            taker_order_id=taker_order.order_id,
            base=base,
            quote=quote,
            price=price,
            jit=jit,
        )
        return record, event

    def _add_maker_volume(self, maker: Pubkey, quote: int) -> None:
        """The program's running maker volume: the old sum decays linearly over 30 days."""
        authority = self.users[maker].authority
        volume, last_ts = self.maker_volume_30d.get(authority, (0, self.ts))
        since = min(max(self.ts - last_ts, 0), THIRTY_DAYS_S)
        volume = volume * (THIRTY_DAYS_S - since) // THIRTY_DAYS_S + quote
        self.maker_volume_30d[authority] = (volume, self.ts)
        self.user_stats[layout.user_stats_address(authority)] = layout.encode_user_stats(
            authority,
            len(self.sub_accounts[authority]),
            maker_volume_30d=volume,
            last_maker_volume_30d_ts=self.ts,
        )

    def _apply_maker_fill(self, maker: Pubkey, after: layout.Order, base: int, quote: int) -> None:
        user = self.users[maker]
        if after.remaining == 0:
            # The program resets a completely filled order's slot to the default (Init) order.
            orders = tuple(o for o in user.orders if o.order_id != after.order_id)
        else:
            orders = tuple(after if o.order_id == after.order_id else o for o in user.orders)
        signed = base if after.direction == protocol.Direction.LONG else -base
        user = dataclasses.replace(user, orders=orders)
        positions = _positions(user, (after.market_index, signed, -quote if signed > 0 else quote))
        self._replace_user(maker, dataclasses.replace(user, perp_positions=positions))
        if after.remaining == 0:
            self._place_quote(maker)  # makers replenish what was taken

    # ------------------------------------------------------------ transactions

    def _new_signature(self) -> str:
        # Random bytes in the shape of an ed25519 signature: nothing here is ever signed.
        return str(Signature(self.rng.randbytes(64)))

    def _add_transaction(
        self,
        signature: str,
        market: Market,
        users: list[Pubkey],
        events: list[bytes],
        records: list[ledger.Fill],
    ) -> None:
        keeper = self.keepers[self.rng.randrange(len(self.keepers))]
        keys = [str(keeper)]
        for k in [*users, market.address, layout.DRIFT_PROGRAM_ID, market.oracle_address]:
            if str(k) not in keys:
                keys.append(str(k))
        keys.append(COMPUTE_BUDGET_PROGRAM)
        units = 40_000 + 25_000 * len(events)
        logs = [
            f"Program {COMPUTE_BUDGET_PROGRAM} invoke [1]",
            f"Program {COMPUTE_BUDGET_PROGRAM} success",
            f"Program {DRIFT_PROGRAM} invoke [1]",
            "Program log: Instruction: FillPerpOrder",
        ]
        for event in events:
            logs.append("Program data: " + base64.b64encode(event).decode())
        logs += [
            f"Program {DRIFT_PROGRAM} consumed {units} of 1400000 compute units",
            f"Program {DRIFT_PROGRAM} success",
        ]
        if self.unlist_next > 0:
            self.unlist_next -= 1
            self.unlisted.add(signature)
        if self.truncate_next_logs > 0:
            self.truncate_next_logs -= 1
            # A node cuts logs past its byte limit: everything after the first event is lost.
            logs = [*logs[:5], TRUNCATED_LOG]
        self.ledger.record(
            signature=signature,
            slot=self.slot,
            block_time=self.ts,
            account_keys=tuple(keys),
            logs=tuple(logs),
            compute_units=units + 300,
            fills=tuple(records),
        )

    def state_at(self, slot: int) -> SlotState | None:
        """The ground truth of ``slot``, or ``None`` outside the history kept."""
        if not self.history or not self.history[0].slot <= slot <= self.history[-1].slot:
            return None
        return self.history[slot - self.history[0].slot]


def eligible_price(
    order: layout.Order, market_index: int, slot: int, ts: int, oracle_price: int
) -> int | None:
    """The order's limit price if it rests in this perp market's book now, else None (spec 1.1)."""
    triggered = order.order_type != protocol.OrderType.TRIGGER_LIMIT or order.trigger_condition in (
        protocol.TriggerCondition.TRIGGERED_ABOVE,
        protocol.TriggerCondition.TRIGGERED_BELOW,
    )
    auction_complete = order.auction_duration == 0 or slot - order.slot > order.auction_duration
    eligible = (
        order.status == protocol.OrderStatus.OPEN
        and order.market_type == protocol.MarketType.PERP
        and order.market_index == market_index
        and order.order_type in (protocol.OrderType.LIMIT, protocol.OrderType.TRIGGER_LIMIT)
        and triggered
        and (order.post_only or auction_complete)
        and order.remaining > 0
        and (order.max_ts == 0 or ts <= order.max_ts)
    )
    if not eligible:
        return None
    if order.oracle_price_offset != 0:
        return oracle_price + order.oracle_price_offset
    return order.price


def exact_oracle_price(price: int, exponent: int) -> int:
    """The nearest price at or above ``price`` that every reader decodes to the same integer.

    The program scales a Pyth Lazer price with integers, but driftpy divides in floating point
    (``int(raw / 10**-exponent * 1e6)``), which lands one below for some values. Ground truth must
    not depend on which reader is used, so the simulator only quotes prices where both agree.
    """
    scale = 10 ** (-exponent - 6)
    while int(price * scale / 10**-exponent * protocol.PRICE_PRECISION) != price:
        price += 1
    return price


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: the means here are small)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _positions(
    user: layout.User, fill: tuple[int, int, int] | None = None
) -> tuple[layout.PerpPosition, ...]:
    """Perp positions recomputed from the open orders, keeping (and moving) base amounts."""
    old = {p.market_index: p for p in user.perp_positions}
    markets = sorted({*old, *(o.market_index for o in user.orders if _is_open_perp(o))})
    out = []
    for index in markets:
        prev = old.get(index, layout.PerpPosition(market_index=index))
        base, quote = prev.base_asset_amount, prev.quote_asset_amount
        if fill is not None and fill[0] == index:
            base += fill[1]
            quote += fill[2]
        mine = [o for o in user.orders if o.market_index == index and _is_open_perp(o)]
        bids = sum(o.remaining for o in mine if o.direction == protocol.Direction.LONG)
        asks = sum(o.remaining for o in mine if o.direction == protocol.Direction.SHORT)
        if base == 0 and not mine:
            continue
        out.append(layout.PerpPosition(index, base, quote, bids, -asks, len(mine)))
    return tuple(out[: layout.PERP_POSITION_SLOTS])


def _positions_with(user: layout.User, order: layout.Order) -> tuple[layout.PerpPosition, ...]:
    return _positions(dataclasses.replace(user, orders=(*user.orders, order)))


def _is_open_perp(order: layout.Order) -> bool:
    return (
        order.status == protocol.OrderStatus.OPEN and order.market_type == protocol.MarketType.PERP
    )
