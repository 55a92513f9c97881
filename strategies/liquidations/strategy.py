"""The liquidation strategy: every tracked borrower of every configured lending protocol, each block.

Per new block, for each protocol (concurrently): one batched read of the block's logs and the market
(indexes, rates, prices), a re-read of the few users the logs touched, the float screen over all rows,
and the exact integer math for the candidates only. The result is the list of `Opportunity` for that
block (`self.opportunities`), valued at the block's pool state when a `valuer` is given.

Time comes from the block (the market's timestamp), never from the wall clock, so a replay gives the same
result. "Prices as they will be after pending tx X" is `detect(price_overrides=...)`.

Backruns of pending price updates (`PendingTx` events): a `transmit` to an aggregator the markets read
(`OracleWatch`) is decoded; the positions the new prices make liquidatable (not those already
liquidatable at the last block: the next-block path has them) are detected under those prices, valued on
the pools the next-block path's sales leave, and turned into one bundle for the next block: [the pending
updates' signed bytes, our transactions already sent for that block, our new liquidations]. If the
updates land without us, the next block's ordinary path takes over; if they never land, the bundle
cannot land either and nothing is spent.

Latency: each protocol's refresh is one round trip (the block's timestamp comes from the NewBlock), and
the venues' state at the block is read concurrently with the refresh (`prefetch="always"`, the default:
the block that matters is the crash block, the first in which anything is liquidatable, so a prefetch
decided by the last block's state would miss exactly that one), or only when the block is likely to
need valuation (`prefetch="near"`: the last block had opportunities, or a position within
`prefetch_margin` of liquidation), to save the read on quiet chains.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from keeper.chain.mevshare import MevShareHint
from keeper.core.actions import Action, ForeignTx, HintedTx, SubmitBundle
from keeper.core.events import Event, NewBlock, PendingTx
from keeper.logs import kv
from strategies.liquidations.common import LiquidationMathError
from strategies.liquidations.model import MarketState
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.oracle_watch import MarketOracle, OracleWatch, PendingPrices
from strategies.liquidations.protocols.aave_common import AaveAdapter
from strategies.liquidations.screen import Screen
from strategies.liquidations.stuck import StuckWatch, reasons_by_position
from strategies.liquidations.valuation import ValuationCosts

log = logging.getLogger("strategies.liquidations")


class Valuer(Protocol):
    """Values (sizes, routes, ranks) a block's liquidatable positions at the venues' state of `block`;
    `costs` is what executing each one costs (see `VenueValuer`)."""

    async def __call__(
        self,
        opportunities: Sequence[Opportunity],
        block: int,
        costs: ValuationCosts | None = None,
        *,
        after: Sequence[Opportunity] = (),
    ) -> list[Opportunity]: ...


ActionBuilder = Callable[[Sequence[Opportunity], NewBlock], Awaitable[list[Action]]]
CostModel = Callable[[NewBlock], ValuationCosts]

REORG_MEMORY = 64


class LiquidationStrategy:
    name = "liquidations"

    def __init__(
        self,
        protocols: Sequence[AaveAdapter],
        *,
        valuer: Valuer | None = None,
        actions: ActionBuilder | None = None,
        costs: CostModel | None = None,
        screen_margin: float = 5e-4,
        prefetch_margin: float = 0.02,
        prefetch: str = "always",
        stuck_after_blocks: int = 10,
    ) -> None:
        if not protocols:
            raise ValueError("the liquidation strategy needs at least one protocol")
        self.protocols = list(protocols)
        self.screens = {p.name: Screen(margin=screen_margin) for p in self.protocols}
        self.valuer = valuer
        self.action_builder = actions
        self.costs = costs
        """Execution costs per block (gas, builder share, minimum, gas budget) the valuer ranks and
        sizes with; None: the valuer's defaults (no costs)."""
        self.opportunities: list[Opportunity] = []
        """The last block's opportunities to act on: valued, ranked by net profit in wei, within the
        gas budget (all liquidatable ones when there is no valuer)."""
        self.liquidatable: list[Opportunity] = []
        """The last block's liquidatable positions, before valuation."""
        self.dropped: dict[str, str] = {}
        """Why the valuer left a liquidatable position out (unprofitable, no route, budget)."""
        self.last_timings: dict[str, float] = {}
        self.candidates_checked = 0
        self.prefetch_margin = prefetch_margin
        if prefetch not in ("always", "near"):
            raise ValueError('prefetch must be "always" or "near"')
        self.prefetch_mode = prefetch
        self.lowest_health_factor = math.inf
        """The lowest float health factor the screens saw in the last `detect()`."""
        self.prefetched = False
        """Whether the last block's venue state was read ahead (concurrently with the refresh)."""
        self.synced = asyncio.Event()
        """Set once the initial sync from logs is done."""
        self.oracle_watch = OracleWatch()
        self.stuck_watch = StuckWatch(stuck_after_blocks)
        """Positions that stay liquidatable (an alert metric and a log line saying why)."""
        self.last_block: NewBlock | None = None
        self.backrun_stats = {"updates": 0, "actions": 0, "no_raw": 0, "nothing_new": 0}
        self._backrun_seen: set[bytes] = set()
        self._pending_updates: dict[bytes, PendingPrices] = {}
        self._hint_users: set[tuple[str, str]] = set()
        self._hint_opportunities: list[Opportunity] = []
        """What the block's earlier backruns by hash liquidate (they execute before a later one's)."""
        """The price updates heard since the last block (what the block's backrun bundle carries)."""
        self.backrun_timings: dict[str, float] = {}
        self._touched: deque[tuple[int, dict[str, set[str]]]] = deque(maxlen=REORG_MEMORY)
        self._indexes: dict[str, tuple[MarketState, Mapping[str, tuple[int, int]]]] = {}

    async def sync_state(self, head: int | None = None) -> None:
        if head is None:
            head = await self.protocols[0].rpc.block_number()
        await asyncio.gather(*(p.initial_sync(head) for p in self.protocols))
        for p in self.protocols:
            assert p.market is not None
            self.screens[p.name].rebuild(p.positions, p.market)
        await self._refresh_oracle_watch(head)
        self.synced.set()

    async def _refresh_oracle_watch(self, block: int) -> None:
        markets = [
            MarketOracle(p.name, p.reader.oracle, sorted(p.market.reserves))
            for p in self.protocols
            if p.market is not None
        ]
        await self.oracle_watch.refresh(self.protocols[0].rpc, markets, block)

    async def process_event(self, event: Event) -> list[Action]:
        if isinstance(event, NewBlock):
            return await self.on_block(event)
        if isinstance(event, PendingTx):
            return await self.on_pending(event)
        if isinstance(event, MevShareHint):
            return await self.on_hint(event)
        return []

    async def on_hint(self, hint: MevShareHint) -> list[Action]:
        """A private price update seen as a MEV-Share hint (Chainlink SVR) -> a backrun by hash.

        The hint must carry the `transmit` calldata (the SVR hints do) to be priced. Each hinted update
        is backrun on its own, [its hash, our liquidations]; positions the next-block path or another
        backrun of this block already has are left alone."""
        block = self.last_block
        if block is None or self.action_builder is None or hint.hash in self._backrun_seen:
            return []
        t0 = time.perf_counter()
        matcher = self.oracle_watch.hint_matcher
        updates = matcher.match(hint)
        if not updates:
            if matcher.mentions(hint):
                self.backrun_stats["hints_unpriced"] = self.backrun_stats.get("hints_unpriced", 0) + 1
            return []
        self._backrun_seen.add(hint.hash)
        self.backrun_stats["hints"] = self.backrun_stats.get("hints", 0) + 1
        overrides: dict[str, dict[str, int]] = {}
        for update in updates:
            for market, asset in self.oracle_watch.aggregators.get(update.aggregator, []):
                overrides.setdefault(market, {})[asset] = update.answer
        already = {(o.protocol, o.user) for o in self.liquidatable} | self._hint_users
        # A later hinted update lands after the earlier ones and their backruns (the sender's nonce order):
        # value on the pools their sales leave, within what is left of the gas budget.
        found, actions = await self._backrun_liquidations(
            block, overrides, already, t0, after=[*self.opportunities, *self._hint_opportunities]
        )
        if not found:
            return []
        backruns: list[Action] = [
            replace(
                a,
                strategy=f"{self.name}-backrun",
                txs=(HintedTx(hint.hash), *a.txs),
                meta={**a.meta, "backrun": "0x" + hint.hash.hex(), "via": "mev-share"},
            )
            for a in actions
            if isinstance(a, SubmitBundle)
        ]
        self._hint_users |= {(o.protocol, o.user) for o in found}
        sent = {a.opportunity_id for a in backruns if isinstance(a, SubmitBundle)}
        self._hint_opportunities += [o for o in found if o.id in sent]
        self.backrun_stats["actions"] += len(backruns)
        if backruns:
            log.info(
                "backrunning a hinted price update",
                extra=kv(hint="0x" + hint.hash.hex(), liquidations=len(backruns), target=block.number + 1),
            )
        return backruns

    async def on_pending(self, tx: PendingTx) -> list[Action]:
        """A pending price update -> the block's backrun bundle (see the module docstring).

        All the updates heard since the last block go into one bundle, in each sender's nonce order (an
        oracle's transmitter sends several at once: a later one cannot land without the earlier ones),
        followed by the liquidations their prices make possible together. Each new update rebuilds that
        bundle; the executor replaces the previous version at the builders.
        """
        block = self.last_block
        if block is None or self.action_builder is None or tx.hash in self._backrun_seen:
            return []
        t0 = time.perf_counter()
        pending = self.oracle_watch.prices(tx)
        if pending is None:
            return []
        self._backrun_seen.add(tx.hash)
        self.backrun_stats["updates"] += 1
        if tx.raw is None:
            self.backrun_stats["no_raw"] += 1
            if self.backrun_stats["no_raw"] <= 3 or self.backrun_stats["no_raw"] % 100 == 0:
                log.warning(
                    "price update without its signed bytes (the node's fields do not rebuild to its hash); "
                    "not backrun",
                    extra=kv(tx="0x" + tx.hash.hex(), count=self.backrun_stats["no_raw"]),
                )
            return []
        self._pending_updates[tx.hash] = pending
        chain = sorted(self._pending_updates.values(), key=lambda p: (p.tx.sender, p.tx.nonce))
        overrides: dict[str, dict[str, int]] = {}
        for update in chain:
            for market, prices in update.overrides.items():
                overrides.setdefault(market, {}).update(prices)
        # Positions the next-block path already has are left to it (its bundle is carried in ours).
        already = {(o.protocol, o.user) for o in self.liquidatable}
        found, actions = await self._backrun_liquidations(block, overrides, already, t0)
        if not found:
            return []
        prefix = tuple(ForeignTx(raw=u.tx.raw, hash=u.tx.hash) for u in chain if u.tx.raw is not None)
        backruns: list[Action] = []
        for action in actions:
            if isinstance(action, SubmitBundle):
                backruns.append(
                    replace(
                        action,
                        strategy=f"{self.name}-backrun",
                        txs=(*prefix, *action.txs),
                        meta={**action.meta, "backrun": "0x" + tx.hash.hex()},
                    )
                )
        self.backrun_stats["actions"] += len(backruns)
        if backruns:
            log.info(
                "backrunning price updates",
                extra=kv(updates=len(prefix), liquidations=len(backruns), target=block.number + 1),
            )
        return backruns

    async def _backrun_liquidations(
        self,
        block: NewBlock,
        overrides: Mapping[str, Mapping[str, int]],
        already: set[tuple[str, str]],
        t0: float,
        after: Sequence[Opportunity] | None = None,
    ) -> tuple[list[Opportunity], list[Action]]:
        """The positions `overrides` make liquidatable that are not in `already`, valued after the block's
        other liquidations (`after`: those sent before these in the block; default the block's own), and
        the actions for them (`backrun_timings` from `t0`)."""
        if after is None:
            after = self.opportunities
        assert self.action_builder is not None
        # Only the positions holding a repriced asset can change; those already liquidatable are left out.
        found = self.detect(price_overrides=overrides, only_repriced=True, exclude=already)
        t1 = time.perf_counter()
        if not found:
            self.backrun_stats["nothing_new"] += 1
            self.backrun_timings = {"detect": t1 - t0, "value": 0.0, "build": 0.0, "total": t1 - t0}
            return [], []
        if self.valuer is not None:
            # The bundle carries the block's other liquidations (sent for the same block) before these:
            # value these on the pools those sales leave, within what is left of the gas budget.
            costs = self.costs(block) if self.costs is not None else None
            if costs is not None and costs.gas_budget is not None:
                used = len(after) * costs.gas_per_liquidation
                costs = replace(costs, gas_budget=max(costs.gas_budget - used, 0))
            found = list(await self.valuer(found, block.number, costs, after=after))
        t2 = time.perf_counter()
        actions = await self.action_builder(found, block)
        t3 = time.perf_counter()
        self.backrun_timings = {"detect": t1 - t0, "value": t2 - t1, "build": t3 - t2, "total": t3 - t0}
        return found, actions

    def _needs_venues_soon(self) -> bool:
        if self.prefetch_mode == "always":
            return True
        return bool(self.opportunities) or self.lowest_health_factor < 1.0 + self.prefetch_margin

    async def on_block(self, block: NewBlock) -> list[Action]:
        t0 = time.perf_counter()
        self.last_block = block
        self._backrun_seen.clear()
        self._pending_updates.clear()
        self._hint_users.clear()
        self._hint_opportunities = []
        if self.oracle_watch.due(block.number):
            await self._refresh_oracle_watch(block.number)
        prefetch: Callable[[int | None], None] | None = getattr(self.valuer, "prefetch", None)
        self.prefetched = prefetch is not None and self._needs_venues_soon()
        if prefetch is not None:
            prefetch(block.number if self.prefetched else None)
        reorged: dict[str, set[str]] = {p.name: set() for p in self.protocols}
        if block.reorged:
            # The replaced blocks' logs touched these users: their state must be read again.
            for number, touched in self._touched:
                if number >= block.number:
                    for name, users in touched.items():
                        reorged[name] |= users
        touched_lists = await asyncio.gather(
            *(
                p.refresh(
                    block.number,
                    "0x" + block.hash.hex(),
                    reorged_users=reorged[p.name],
                    timestamp=block.timestamp,
                )
                for p in self.protocols
            )
        )
        t1 = time.perf_counter()
        touched = {p.name: users for p, users in zip(self.protocols, touched_lists, strict=True)}
        self._touched.append((block.number, touched))
        for p in self.protocols:
            assert p.market is not None
            self.screens[p.name].update(touched[p.name], p.positions, p.market)
        found = self.detect()
        self.liquidatable = found
        t2 = time.perf_counter()
        self.dropped = {}
        if self.valuer is not None and found:
            costs = self.costs(block) if self.costs is not None else None
            valued = await self.valuer(found, block.number, costs)
            self.dropped = dict(getattr(valued, "dropped", {}))
            found = list(valued)
        t3 = time.perf_counter()
        self.opportunities = found
        self.last_timings = {
            "refresh": t1 - t0,
            "detect": t2 - t1,
            "value": t3 - t2,
            "build": 0.0,
            "total": t3 - t0,
        }
        if found:
            log.info(
                "liquidatable positions",
                extra=kv(block=block.number, count=len(found), ms=round((t3 - t0) * 1000, 2)),
            )
        actions: list[Action] = []
        if self.action_builder is not None and found:
            actions = await self.action_builder(found, block)
            t4 = time.perf_counter()
            self.last_timings["build"] = t4 - t3
            self.last_timings["total"] = t4 - t0
        self._alert_stuck(block.number)
        return actions

    def _alert_stuck(self, block: int) -> None:
        skipped: Mapping[str, str] = getattr(self.action_builder, "skipped", {})
        reasons = reasons_by_position(self.dropped, skipped)
        due = self.stuck_watch.update(block, ((o.protocol, o.user) for o in self.liquidatable), reasons)
        for s in due:
            log.warning(
                "position still liquidatable",
                extra=kv(market=s.market, user=s.user, blocks=s.blocks, since=s.since_block, reason=s.reason),
            )

    def detect(
        self,
        *,
        price_overrides: Mapping[str, Mapping[str, int]] | None = None,
        only_repriced: bool = False,
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[Opportunity]:
        """Every liquidatable position's best liquidation at the current markets, exact.

        `price_overrides` maps protocol name -> {asset: price} to evaluate the state as it will be after
        a pending oracle update (nothing else changes). With `only_repriced`, only the positions holding
        a repriced asset are evaluated: every other one's result is the one at the current prices.
        `exclude`: (protocol, user) pairs not to evaluate (e.g. those already liquidatable).
        """
        out: list[Opportunity] = []
        checked = 0
        lowest = math.inf
        for p in self.protocols:
            market = p.market
            if market is None:
                continue
            indexes = self._indexes_of(p, market)  # prices do not enter the indexes
            overrides = (price_overrides or {}).get(p.name)
            if overrides:
                market = with_prices(market, overrides)
            elif only_repriced:
                continue
            # Screen rows hold balances and thresholds only; prices and indexes come from `market`.
            screen = self.screens[p.name]
            repriced = overrides.keys() if overrides and only_repriced else None
            for user in screen.candidates(market, indexes, repriced=repriced):
                if exclude and (p.name, user) in exclude:
                    continue
                checked += 1
                try:
                    outcome = p.best_liquidation(user, market, indexes=indexes)
                except (LiquidationMathError, KeyError) as exc:
                    log.warning(
                        "cannot evaluate position", extra=kv(protocol=p.name, user=user, error=str(exc))
                    )
                    continue
                if outcome is not None:
                    out.append(
                        Opportunity.from_outcome(
                            p.name, p.pool, user, outcome, market.block_number, market.timestamp
                        )
                    )
            lowest = min(lowest, screen.lowest_health_factor)
        self.candidates_checked = checked
        if not price_overrides:
            self.lowest_health_factor = lowest
        out.sort(key=lambda o: o.bonus_value_base, reverse=True)
        return out

    def _indexes_of(self, p: AaveAdapter, market: MarketState) -> Mapping[str, tuple[int, int]]:
        """The market's normalized indexes, computed once per market state (per block)."""
        cached = self._indexes.get(p.name)
        if cached is not None and cached[0] is market:
            return cached[1]
        indexes = p.indexes(market)
        self._indexes[p.name] = (market, indexes)
        return indexes

    def protocol(self, name: str) -> AaveAdapter:
        for p in self.protocols:
            if p.name == name:
                return p
        raise KeyError(name)


def with_prices(market: MarketState, prices: Mapping[str, int]) -> MarketState:
    """The market with some oracle prices replaced (the state after a pending price update)."""
    reserves = dict(market.reserves)
    for asset, price in prices.items():
        if asset in reserves:
            reserves[asset] = reserves[asset].with_price(price)
    return replace(market, reserves=reserves)
