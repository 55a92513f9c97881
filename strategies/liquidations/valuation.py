"""Value opportunities at the block's exact pool state: pair, size, route and profit in wei after all costs.

For each liquidatable position (`Opportunity` with its `pairs`), `Sizer` picks the (collateral, debt,
debt_to_cover) with the largest profit of the whole execution: the collateral liquidationCall seizes for
exactly that request, sold on the best route (the venues' exact quotes), minus the debt repaid and the
Aave V3 flash premium on the borrowed amount; converted to wei with the market's oracle prices, minus the
builder's share and the gas (`ValuationCosts`).

Ranking and pool impact. All positions are first valued alone on the block's state, in one unit for
every market (`net_profit_wei`: V2's ETH base and V3's USD base are both converted to wei). Then the
best remaining one is taken, again and again: if a sale already SENT traded a token pair its routes use,
it is valued again on the state the sent ones leave and put back in the ranking; otherwise it is sent
if it clears the minimum and fits the block's gas budget. A dropped one does not move the pools for the
ones after it. The result lists the opportunities to send in the order taken (by net_profit_wei,
descending: a sale only lowers what a later one in the same direction gets), with the reason for every
one dropped.

The venues' state can be read ahead: `prefetch(block)` starts the read at the block's arrival (the
strategy does so when the block is likely to need it), concurrently with the protocols' refresh, and the
valuation of that same block uses it; a prefetch for another block is cancelled, never used.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.chain.units import percent_mul
from keeper.errors import KeeperError
from keeper.logs import kv
from strategies.liquidations.common import LiquidationOutcome, LiquidationTerms
from strategies.liquidations.model import MarketState
from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.sizing import UNBOUNDED, Execution, PlanCache, Sizer
from strategies.venues.base import Pair, Venue, pair_key
from strategies.venues.lenders import FlashLiquidity, read_flash_premium_bps
from strategies.venues.router import Route, best_route

log = logging.getLogger("strategies.liquidations")

AAVE_V3_FLASHLOAN_PREMIUM_BPS = 5
SPLIT_LEG_GAS = 120_000
"""Gas a split sale's second leg adds (one more swap, its transfers and approvals): charged to a split
route's opportunity and required of its gain."""
WAD = 10**18
BPS = 10_000


@dataclass(frozen=True, slots=True)
class ValuationCosts:
    """What executing one liquidation costs besides the trade, for one block."""

    base_fee: int
    """Wei per gas the target block charges (its base fee, plus any tip the sender adds)."""
    gas_per_liquidation: int
    """Gas one liquidation is assumed to use."""
    builder_share_bps: int = 0
    """Share of the gross profit (in wei, after the flash premium) paid to the builder."""
    min_profit_wei: int = 0
    """An opportunity is sent only if its net_profit_wei is at least this."""
    gas_budget: int | None = None
    """Total gas the block's liquidations may use (None: no limit)."""
    below_minimum: str = "below minimum"
    """How a drop under `min_profit_wei` is explained (protocol mode: the subsidy budget left today)."""
    loss_making_sales: bool = False
    """Protocol mode: a position whose sale cannot repay the loan plus premium at any size is valued too
    (at the largest size: the position must go; the executor sends it subsidized by the owner) and kept
    when its whole loss fits `min_profit_wei`; otherwise it is dropped as unprofitable."""

    def __post_init__(self) -> None:
        if self.base_fee < 0 or self.gas_per_liquidation < 0:
            raise ValueError("base_fee and gas_per_liquidation must be >= 0")
        if not 0 <= self.builder_share_bps < BPS:
            raise ValueError("builder_share_bps must be within 0..9999")

    @property
    def gas_cost_wei(self) -> int:
        return self.base_fee * self.gas_per_liquidation


NO_COSTS = ValuationCosts(base_fee=0, gas_per_liquidation=0)


class Valuation(list[Opportunity]):
    """The opportunities to send, best first (a list, so callers that iterate a list keep working), and
    `dropped`: opportunity id (as given to the valuer) -> why it is not in the list."""

    def __init__(self, items: Iterable[Opportunity] = (), dropped: Mapping[str, str] | None = None) -> None:
        super().__init__(items)
        self.dropped: dict[str, str] = dict(dropped or {})


def eth_price_in_base(market: MarketState, weth: str, *, base_is_eth: bool = False) -> int | None:
    """The price of one ETH (1e18 wei) in the market's base currency: the oracle's WETH price (Aave V3,
    USD 1e8), or 1e18 when the base currency is ETH itself (Aave V2). None when WETH is not listed."""
    if base_is_eth:
        return WAD
    reserve = market.reserves.get(weth)
    if reserve is None:
        wanted = weth.lower()
        reserve = next((r for a, r in market.reserves.items() if a.lower() == wanted), None)
    return reserve.price if reserve is not None and reserve.price > 0 else None


class VenueValuer:
    def __init__(
        self,
        rpc: RpcClient,
        venues: Sequence[Venue],
        *,
        connectors: Sequence[str] = (),
        flash_premium_bps: int = AAVE_V3_FLASHLOAN_PREMIUM_BPS,
        weth: str | None = None,
        lenders: FlashLiquidity | None = None,
    ) -> None:
        self.rpc = rpc
        self.lenders = lenders
        """What the flash pool can lend, read with the venues: each liquidation's request (flash-borrowed
        whole) is sized within it, so none fails for want of the Pool's liquidity."""
        self.venues = list(venues)
        self.connectors = tuple(connectors)
        self.flash_premium_bps = flash_premium_bps
        self.weth = weth
        """WETH's address: its oracle price converts V3 amounts to wei when `eth_prices` does not."""
        self._prefetch: tuple[int, asyncio.Task[None]] | None = None
        self._per_block = False
        self._read_at: int | None = None
        """The block the venues' state was read at since the last `prefetch` call (the last new block):
        the block's later valuations (its backruns) use that state without reading it again. Only for a
        caller that calls `prefetch` on every block (the strategy): others always read."""
        self._paths: dict[tuple[str, str], list[Route]] = {}
        self._tops: dict[int, tuple[LiquidationTerms, LiquidationOutcome | None]] = {}
        self._used: dict[str, set[Pair]] = {}
        self._planned: PlanCache = {}
        self._spots: dict[tuple[int, str, str, str], tuple[int, int] | None] = {}
        self._version = 0
        """How many sales the working pool state holds (keys the sizers' per-state caches)."""
        self.last_quotes = 0
        """Route quotes the last valuation made."""

    async def _refresh(self, block: int) -> None:
        reads = [v.refresh(self.rpc, block) for v in self.venues]
        if self.lenders is not None:
            reads.append(self.lenders.refresh(self.rpc, block))
        await asyncio.gather(*reads)

    def prefetch(self, block: int | None) -> None:
        """Starts reading every venue's state at `block` now (None: nothing); `__call__` for `block`
        uses it. Whatever an earlier call started is cancelled: a read is only ever used by the block
        it was started for (the strategy calls this once per block, so a reorged block with the same
        number never gets the replaced block's read)."""
        if self._prefetch is not None:
            self._prefetch[1].cancel()  # a venue installs its state only at the end of its read
            self._prefetch = None
        self._read_at = None  # a new block (perhaps a reorg's, with the same number): read it again
        self._per_block = True
        if block is None:
            return
        task = asyncio.create_task(self._refresh(block), name=f"venues:prefetch:{block}")
        task.add_done_callback(_retrieve)
        self._prefetch = (block, task)

    async def refresh_venues(self, block: int) -> None:
        """Every venue's state at `block`: the prefetched read when there is one for `block`, or the read
        an earlier valuation of the same block made (until the next `prefetch` call: valuations never
        change the venues' state, they work on copies)."""
        if self._read_at == block and self._prefetch is None:
            return
        prefetched, self._prefetch = self._prefetch, None
        if prefetched is not None:
            started, task = prefetched
            if started == block:
                try:
                    await task
                    self._read_at = block if self._per_block else None
                    return
                except Exception as exc:  # read again below: an error that persists is raised from there
                    log.debug("venue prefetch failed; reading again", extra=kv(block=block, error=str(exc)))
            else:
                task.cancel()
        self._read_at = None
        await self._refresh(block)
        self._read_at = block if self._per_block else None

    async def __call__(
        self,
        opportunities: Sequence[Opportunity],
        block: int,
        costs: ValuationCosts | None = None,
        *,
        eth_prices: Mapping[str, int] | None = None,
        after: Sequence[Opportunity] = (),
    ) -> Valuation:
        """Reads the venues at `block` (or uses the prefetched read) and values: see `value`."""
        await self.refresh_venues(block)
        return self.value(opportunities, costs or NO_COSTS, eth_prices=eth_prices, after=after)

    def value(
        self,
        opportunities: Sequence[Opportunity],
        costs: ValuationCosts,
        *,
        eth_prices: Mapping[str, int] | None = None,
        after: Sequence[Opportunity] = (),
    ) -> Valuation:
        """The opportunities to send at the venues' current state, ranked, each sized and valued on the
        state the ones before it leave; the others in `dropped` with the reason.

        `eth_prices`: protocol name -> price of one ETH in that market's base currency (`eth_price_in_base`);
        for V3 markets missing there, the market's own WETH price (`weth`) is used. V2 needs none.
        `after`: valued opportunities that execute before these in the same block (e.g. the block's
        liquidations a backrun bundle carries ahead of its own): their sales are applied first, in order.
        """
        working = {v.name: v for v in self.venues}
        for sent in after:
            for hop in getattr(sent.route, "hops", ()):
                working[hop.venue] = working[hop.venue].apply(hop)
        self._paths = {}
        self._tops = {}
        self._used = {}
        self._planned = {}
        self._spots = {}
        self._version = 0
        dropped: dict[str, str] = {}
        quotes = 0
        # Lazy greedy on net profit in wei. Every position starts with an upper bound of its net profit
        # (the paths' spot rates: no slippage; no quote once a pair's paths are known); the entry on top is
        # valued exactly on the current state (the state the sales sent so far leave) and put back, and is
        # sent when it is on top with an exact value no sent sale has touched since (a sale only lowers
        # what a later one in the same direction gets, so bounds and older values are upper bounds).
        heap: list[tuple[int, str, int, int, Opportunity, Opportunity | None]] = []
        for i, opp in enumerate(opportunities):
            key, n = self._upper_bound(opp, working, costs, eth_prices)
            quotes += n
            if isinstance(key, str):
                dropped[opp.id] = key
            elif key < costs.min_profit_wei:
                dropped[opp.id] = (
                    f"{costs.below_minimum}: at most {key} wei net at any size < {costs.min_profit_wei}"
                )
            else:
                heap.append((-key, opp.id, i, 0, opp, None))
        heapq.heapify(heap)
        out: list[Opportunity] = []
        sent_pairs: list[frozenset[Pair]] = []
        gas_used = 0
        while heap:
            if costs.gas_budget is not None and gas_used + costs.gas_per_liquidation > costs.gas_budget:
                for neg_key, _, _, _, rest_original, rest in heap:
                    if rest is not None and self._below(rest, costs) is not None:
                        dropped[rest_original.id] = f"{self._below(rest, costs)}"
                    else:
                        dropped[rest_original.id] = (
                            f"beyond the block's gas budget ({gas_used} of {costs.gas_budget} gas used; "
                            f"at most {-neg_key} wei net)"
                        )
                break
            neg_key, _, i, seen, original, valued = heapq.heappop(heap)
            stale = any(self._pairs_used(original) & pairs for pairs in sent_pairs[seen:])
            if stale:
                # Tighten the key with the bound on the current state first (no quote): only a position
                # still in the lead is valued again.
                bound, n = self._upper_bound(original, working, costs, eth_prices)
                quotes += n
                if isinstance(bound, str):
                    dropped[original.id] = f"after the sales ranked before it: {bound}"
                    continue
                key = min(-neg_key, bound)
                if key < costs.min_profit_wei:
                    dropped[original.id] = (
                        f"after the sales ranked before it: {costs.below_minimum}: at most {key} wei net "
                        f"< {costs.min_profit_wei}"
                    )
                    continue
                if heap and key < -heap[0][0]:
                    heapq.heappush(heap, (-key, original.id, i, len(sent_pairs), original, None))
                    continue
            if valued is None or stale:
                fresh, n = self._value_one(original, working, costs, eth_prices)
                quotes += n
                if isinstance(fresh, str):
                    dropped[original.id] = f"after the sales ranked before it: {fresh}" if out else fresh
                else:
                    heapq.heappush(heap, (-_net(fresh), fresh.id, i, len(sent_pairs), original, fresh))
                continue
            reason = self._below(valued, costs)
            if reason is not None:  # the best remaining is below the minimum: so is everything after it
                prefix = "after the sales ranked before it: " if out else ""
                dropped[original.id] = prefix + reason
                for neg_key, _, _, _, rest_original, _rest in heap:
                    dropped[rest_original.id] = (
                        f"{prefix}{costs.below_minimum}: at most {-neg_key} wei net < {costs.min_profit_wei}"
                    )
                break
            out.append(valued)
            gas_used += costs.gas_per_liquidation
            touched: set[Pair] = set()
            for hop in valued.route.hops:
                working[hop.venue] = working[hop.venue].apply(hop)
                touched.add(pair_key(hop.token_in, hop.token_out))
            sent_pairs.append(frozenset(touched))
            self._version = len(sent_pairs)
        self.last_quotes = quotes
        return Valuation(out, dropped)

    # -------------------------------------------------------------------------------------- internals

    @staticmethod
    def _below(opp: Opportunity, costs: ValuationCosts) -> str | None:
        assert opp.gross_profit is not None
        assert opp.net_profit_wei is not None
        if opp.gross_profit <= 0 and not costs.loss_making_sales:
            return (
                f"unprofitable: the sale returns {opp.swap_out} for {opp.repaid} repaid "
                f"+ {opp.flash_premium} premium"
            )
        if opp.net_profit_wei < costs.min_profit_wei:
            return (
                f"{costs.below_minimum}: net {opp.net_profit_wei} wei (gross {opp.profit_wei}, builder "
                f"{opp.builder_share_wei}, gas {opp.gas_cost_wei}) < {costs.min_profit_wei}"
            )
        return None

    def _pairs_used(self, opp: Opportunity) -> set[Pair]:
        """Token pairs any route of any of the position's pairs may trade (direct or via a connector)."""
        cached = self._used.get(opp.id)
        if cached is not None:
            return cached
        used: set[Pair] = set()
        assets = [(t.collateral_asset, t.debt_asset) for t in opp.pairs] or [
            (opp.collateral_asset, opp.debt_asset)
        ]
        for c, d in assets:
            used.add(pair_key(c, d))
            for x in self.connectors:
                used.add(pair_key(c, x))
                used.add(pair_key(x, d))
        self._used[opp.id] = used
        return used

    def _eth_price(
        self, opp: Opportunity, terms: LiquidationTerms, eth_prices: Mapping[str, int] | None
    ) -> int | None:
        if terms.base_is_eth:
            return WAD
        if eth_prices is not None and opp.protocol in eth_prices:
            return eth_prices[opp.protocol]
        if self.weth is None:
            return None
        reserve = terms.reserves.get(self.weth)
        return reserve.price if reserve is not None and reserve.price > 0 else None

    def _to_wei(
        self, opp: Opportunity, terms: LiquidationTerms, eth_prices: Mapping[str, int] | None
    ) -> tuple[int, int] | None:
        """Debt-asset units -> wei, from the debt reserve's own oracle price (not an e-mode category's)."""
        reserve = terms.reserves.get(terms.debt_asset)
        price = reserve.price if reserve is not None else terms.debt_price
        if price <= 0:
            return None
        if terms.base_is_eth:
            return (price, terms.debt_unit)
        eth = self._eth_price(opp, terms, eth_prices)
        if eth is None or eth <= 0:
            return None
        return (price * WAD, terms.debt_unit * eth)

    def _upper_bound(
        self,
        opp: Opportunity,
        venues: Mapping[str, Venue],
        costs: ValuationCosts,
        eth_prices: Mapping[str, int] | None,
    ) -> tuple[int | str, int]:
        """An upper bound of the position's net profit in wei on `venues` (any pair, any size), or why it
        cannot be valued; with the quotes made."""
        if not opp.pairs:
            return UNBOUNDED, 0  # valued exactly when it reaches the top
        sizer = self._sizer(venues)
        best: int | None = None
        reason = "no valid (collateral, debt) pair"
        try:
            for terms in opp.pairs:
                to_wei = self._to_wei(opp, terms, eth_prices)
                if to_wei is None:
                    reason = f"no ETH price to convert {terms.debt_asset} amounts to wei"
                    continue
                bound = sizer.bound(terms)
                if bound is None:
                    reason = f"no route sells {terms.collateral_asset} for {terms.debt_asset}"
                    continue
                if bound >= UNBOUNDED:
                    return UNBOUNDED, sizer.quotes
                wei = -(-bound * to_wei[0] // to_wei[1])  # rounded up: still a bound
                net = wei - max(0, wei) * costs.builder_share_bps // BPS - costs.gas_cost_wei
                best = net if best is None else max(best, net)
        except (KeeperError, ValueError) as exc:
            return f"cannot value: {exc}", sizer.quotes
        return (reason if best is None else best), sizer.quotes

    def _sizer(self, venues: Mapping[str, Venue]) -> Sizer:
        return Sizer(
            venues,
            connectors=self.connectors,
            flash_premium_bps=self.flash_premium_bps,
            paths=self._paths,
            tops=self._tops,
            planned=self._planned,
            version=self._version,
            spots=self._spots,
            max_request=self.lenders.aave_available if self.lenders is not None else None,
        )

    def _value_one(
        self,
        opp: Opportunity,
        venues: Mapping[str, Venue],
        costs: ValuationCosts,
        eth_prices: Mapping[str, int] | None,
    ) -> tuple[Opportunity | str, int]:
        """The best (pair, size, route) of one position on `venues`, valued; or why there is none."""
        sizer = self._sizer(venues)
        best: tuple[int, Execution, tuple[int, int]] | None = None
        reason = "no valid (collateral, debt) pair"
        try:
            if not opp.pairs:
                return self._value_fixed(opp, venues, costs, eth_prices), 1
            for terms in opp.pairs:
                to_wei = self._to_wei(opp, terms, eth_prices)
                if to_wei is None:
                    reason = f"no ETH price to convert {terms.debt_asset} amounts to wei"
                    continue
                leg_cost = _split_leg_cost(costs, to_wei)
                ex = sizer.best_for_pair(terms, floor=_floor(costs, to_wei), leg_cost=leg_cost)
                if ex is None:
                    reason = (
                        f"{costs.below_minimum}: no size of {terms.collateral_asset}/{terms.debt_asset} "
                        "can pay the gas, the builder's share and the minimum"
                        if sizer.below_floor
                        else f"no route sells {terms.collateral_asset} for {terms.debt_asset}"
                    )
                    continue
                if costs.loss_making_sales and ex.gross_profit <= 0:
                    # Protocol mode, no size repays the loan: the largest one (the position must go).
                    ex = _largest(sizer, terms) or ex
                # Pairs compared by gross profit in wei less a split's extra gas (its value to us).
                wei = ex.gross_profit * to_wei[0] // to_wei[1] - _split_gas_wei(costs, ex.route) * BPS // max(
                    1, BPS - costs.builder_share_bps
                )
                if best is None or wei > best[0]:
                    best = (wei, ex, to_wei)
        except (KeeperError, ValueError) as exc:
            log.warning("cannot value opportunity", extra=kv(id=opp.id, error=str(exc)))
            return f"cannot value: {exc}", sizer.quotes
        if best is None:
            return reason, sizer.quotes
        _, ex, to_wei = best
        valued = opp.valued(
            outcome=ex.outcome,
            swap_out=ex.swap_out,
            route=ex.route,
            flash_premium=ex.flash_premium,
            to_wei=to_wei,
            gas_cost_wei=costs.gas_cost_wei + _split_gas_wei(costs, ex.route),
            builder_share_bps=costs.builder_share_bps,
        )
        return valued, sizer.quotes

    def _value_fixed(
        self,
        opp: Opportunity,
        venues: Mapping[str, Venue],
        costs: ValuationCosts,
        eth_prices: Mapping[str, int] | None,
    ) -> Opportunity | str:
        """An opportunity without pair terms (built by hand): valued at its own size; converted to wei
        with its `debt_price` and the protocol's entry in `eth_prices` (none: not valued)."""
        eth = (eth_prices or {}).get(opp.protocol)
        if eth is None or eth <= 0 or opp.debt_price <= 0:
            return "no pair terms and no ETH price for its market: cannot value in wei"
        route = best_route(
            list(venues.values()),
            opp.collateral_asset,
            opp.debt_asset,
            opp.collateral_out,
            via=[c for c in self.connectors if c not in (opp.collateral_asset, opp.debt_asset)],
            skip_errors=True,
        )
        if route is None:
            return f"no route sells {opp.collateral_asset} for {opp.debt_asset}"
        return opp.valued(
            swap_out=route.amount_out,
            route=route,
            flash_premium=percent_mul(opp.debt_to_cover, self.flash_premium_bps),
            to_wei=(opp.debt_price * WAD, opp.debt_unit * eth),
            gas_cost_wei=costs.gas_cost_wei,
            builder_share_bps=costs.builder_share_bps,
        )


def _floor(costs: ValuationCosts, to_wei: tuple[int, int]) -> int | None:
    """The smallest gross profit (debt-asset units) whose net can reach `min_profit_wei`: gross in wei,
    less the builder's share, less gas; never below 1 (an execution must gain something). None in
    protocol mode (`loss_making_sales`): a loss on the sale is acceptable."""
    if costs.loss_making_sales:
        return None
    need = costs.min_profit_wei + costs.gas_cost_wei
    if need <= 0:
        return 1
    gross_wei = -(-need * BPS // (BPS - costs.builder_share_bps))
    num, den = to_wei
    return max(1, gross_wei * den // num)  # rounded down: a bound, never above the true floor


def _largest(sizer: Sizer, terms: LiquidationTerms) -> Execution | None:
    """The execution of the pair's largest useful request on the path that sells its collateral best."""
    top = sizer.top(terms)
    if top is None or top.collateral_to_liquidator <= 0:
        return None
    routes = sizer.routes_at(terms, top.collateral_to_liquidator)
    return sizer.execute(terms, routes[0], top.debt_to_cover, outcome=top) if routes else None


def _split_gas_wei(costs: ValuationCosts, route: Route) -> int:
    """The gas a split route's extra legs cost beyond `gas_per_liquidation`, in wei."""
    return (len(route.legs) - 1) * SPLIT_LEG_GAS * costs.base_fee


def _split_leg_cost(costs: ValuationCosts, to_wei: tuple[int, int]) -> int:
    """What a split's second leg must gain (gross, debt-asset units) to pay its gas after the builder's
    share, rounded up."""
    gas = SPLIT_LEG_GAS * costs.base_fee
    if gas <= 0:
        return 0
    gross_wei = -(-gas * BPS // max(1, BPS - costs.builder_share_bps))
    num, den = to_wei
    return -(-gross_wei * den // num)


def _net(opp: Opportunity) -> int:
    assert opp.net_profit_wei is not None
    return opp.net_profit_wei


def _retrieve(task: asyncio.Task[None]) -> None:
    """A prefetch nobody waited for must not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


async def build_valuer(
    rpc: RpcClient,
    *,
    v3_pools: Sequence[str],
    v2_pairs: Sequence[str],
    connectors: Sequence[str],
    flash_pool: str | None,
    weth: str | None = None,
    balancer_vault: str | None = None,
    balancer_pools: Sequence[str] = (),
) -> VenueValuer:
    """Venues from pool addresses (one batched read of their fixed parameters) and the flash premium:
    Uniswap V3 pools, V2 pairs and Balancer V2 ComposableStablePools (of `balancer_vault`)."""
    from strategies.venues.loading import VenueAddresses, load_venues

    venues = await load_venues(
        rpc,
        VenueAddresses(
            v3_pools=v3_pools,
            v2_pairs=v2_pairs,
            balancer_vault=balancer_vault,
            balancer_pools=balancer_pools,
        ),
    )
    premium = await read_flash_premium_bps(rpc, flash_pool) if flash_pool else AAVE_V3_FLASHLOAN_PREMIUM_BPS
    lenders: FlashLiquidity | None = None
    if flash_pool:
        tokens = sorted({t for v in venues for pair in v.pairs() for t in pair})
        lenders = FlashLiquidity(tokens, vault=None, aave_pool=flash_pool)
        await lenders.load(rpc)
    return VenueValuer(
        rpc, venues, connectors=connectors, flash_premium_bps=premium, weth=weth, lenders=lenders
    )


def devnet_balancer(deployment: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(Vault, stable pool addresses) of a devnet deployment record; (None, []) without Balancer."""
    balancer = deployment.get("balancer") or {}
    vault = str(balancer["vault"]) if balancer.get("vault") else None
    pools = [str(p["address"]) for p in dict(balancer.get("pools") or {}).values()]
    return vault, pools if vault else []


async def devnet_valuer(rpc: RpcClient, deployment: dict[str, object]) -> VenueValuer:
    """The valuer for a devnet deployment record (`deployments/devnet.json`'s "deployment")."""
    d: dict[str, dict[str, object]] = deployment  # type: ignore[assignment]
    tokens: dict[str, dict[str, object]] = d["tokens"]  # type: ignore[assignment]
    v3_pools: dict[str, str] = d["uniswap_v3"]["pools"]  # type: ignore[assignment]
    v2_pairs: dict[str, str] = d["uniswap_v2"]["pairs"]  # type: ignore[assignment]
    vault, pools = devnet_balancer(deployment)
    return await build_valuer(
        rpc,
        v3_pools=list(v3_pools.values()),
        v2_pairs=list(v2_pairs.values()),
        connectors=[str(tokens["WETH"]["address"]), str(tokens["USDC"]["address"])],
        flash_pool=str(d["aave_v3"]["pool"]),
        weth=str(tokens["WETH"]["address"]),
        balancer_vault=vault,
        balancer_pools=pools,
    )
