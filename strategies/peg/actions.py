"""Turn sized peg opportunities into bundles: one `arbitrage` call on our executor contract each.

For each opportunity (best first, at most one per pool in a block: two round trips through one pool
would not both get the price they were sized on):
- the flash source: the Balancer Vault (zero fee) when neither hop swaps on Balancer (its Vault is
  locked during its own flash loan) and the Vault holds the token in a pool we track; else the Aave V3
  Pool, whose premium (percentMul, half up, as the Pool computes it) is taken off the profit;
- the profit in wei: the token's gross profit less the builder's share, converted at the exact quote of
  the builder's share into WETH on Uniswap V3 (the conversion the contract itself makes), less the gas
  at the next block's base fee; below the peg's (or the keeper's) minimum, nothing is sent;
- the calldata: the round trip as one route (one venue, or a Mixed route of one leg when the hops are
  on two venues), amountOutMinimum the quote less `swap_tolerance_bps`, the owner's minimum profit on
  chain covering the minimum plus the gas (rounded up), the builder paid only after that check, expiry
  at the target block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from keeper.chain.units import percent_mul
from keeper.core.actions import Action, SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.errors import KeeperError
from keeper.executors.executor_contract import (
    ArbitrageParams,
    FlashSource,
    HopRoute,
    MixedRoute,
    Route,
    RouteLeg,
    V3Route,
    arbitrage_tag,
    encode_arbitrage,
)
from keeper.executors.fees import next_base_fee
from keeper.logs import kv
from strategies.peg.sizing import PegOpportunity
from strategies.venues.base import Quote, QuoteError, RouteKind, Venue
from strategies.venues.lenders import FlashLiquidity
from strategies.venues.router import best_route, executor_route

log = logging.getLogger("strategies.peg")

BPS = 10_000


@dataclass(frozen=True)
class PegExecutionConfig:
    executor: str
    """Our executor contract (the same one the liquidations use)."""
    weth: str
    builder_share_bps: int = 9_000
    min_profit_wei: int = 0
    """Net profit after gas and the builder's share, wei (a peg's own min_profit_wei overrides it)."""
    gas_estimate: int = 500_000
    """Gas assumed for the simplest arbitrage (a Balancer flash loan, two swaps, the builder paid by
    unwrapping WETH) when pricing before simulation and packing; `gas_for` adds what a route's shape
    costs on top. The transaction's limit is 125% of the estimates, and a round trip needs more gas
    while it runs than it uses once the approvals' refunds are counted (devnet: 456k used for a WETH
    round trip V3 -> V2 on a Vault loan; a USDT one Balancer -> V3 on an Aave loan with the builder paid
    through USDC uses ~720k but runs out of gas at 875k)."""
    gas_aave_loan: int = 150_000
    gas_builder_swap: int = 150_000
    """The builder's share swapped to WETH on Uniswap V3 (token other than WETH)."""
    gas_balancer_hop: int = 60_000
    swap_tolerance_bps: int = 10
    """The route's amountOutMinimum is the exact quote less this share (the on-chain profit check is the
    real guard: the trade is atomic and sized at the exact state)."""
    aave_premium_bps: int = 5
    """The Aave V3 Pool's FLASHLOAN_PREMIUM_TOTAL (read at start)."""
    balancer_lends: frozenset[str] = frozenset()
    """Tokens (lowercase) the Balancer Vault holds in the pools we track: what it can flash-lend."""
    connectors: tuple[str, ...] = ()
    """Tokens a builder-payment route may pass through to reach WETH."""
    max_per_block: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.builder_share_bps < BPS:
            raise ValueError("builder_share_bps must be within 0..9999")


@dataclass(frozen=True, slots=True)
class PricedArbitrage:
    """An opportunity with its execution decided: source, fee, profit in the token and in wei."""

    opportunity: PegOpportunity
    source: FlashSource
    flash_fee: int
    gross: int
    """amount_out - amount_in - flash_fee: the contract's balance gain (token units)."""
    builder_share: int
    to_wei: tuple[int, int]
    """(num, den): wei per token unit, from the exact quote of the builder's share (or 1:1 for WETH)."""
    coinbase_route: V3Route | None
    coinbase_out: int
    gas_cost_wei: int
    gas: int
    """Gas assumed for it (`PegActions.gas_for`)."""

    @property
    def profit_wei(self) -> int:
        """The owner's profit (after the builder's share), before gas."""
        num, den = self.to_wei
        return (self.gross - self.builder_share) * num // den

    @property
    def net_profit_wei(self) -> int:
        return self.profit_wei - self.gas_cost_wei


def opportunity_id(opp: PegOpportunity) -> str:
    """Stable across blocks for one round trip (pools and direction): a spread that persists is one
    opportunity (the executor numbers its episodes)."""
    first, second = opp.hops
    return f"peg:{opp.peg.name}:{first.pool}>{second.pool}:{opp.token_in}"


class PegActions:
    """The peg strategy's action builder (see the module docstring)."""

    def __init__(
        self,
        config: PegExecutionConfig,
        *,
        flash: FlashLiquidity | None = None,
        strategy_name: str = "peg",
    ) -> None:
        self.config = config
        self.flash = flash
        """What the lenders hold (refreshed by the strategy each block); None: not checked."""
        self.strategy_name = strategy_name
        self.skipped: dict[str, str] = {}
        self.priced: dict[str, PricedArbitrage] = {}

    def price(self, opp: PegOpportunity, block: NewBlock, venues: Sequence[Venue]) -> PricedArbitrage | str:
        """The execution of `opp` in the block after `block`, or why it is not worth sending."""
        cfg = self.config
        token = opp.token_in
        balancer_hop = any(h.kind is RouteKind.BALANCER_V2 for h in opp.hops)
        use_vault = not balancer_hop and token.lower() in cfg.balancer_lends
        if self.flash is not None:
            # Size within what the lenders hold: a larger loan reverts. Balancer first (no fee).
            vault_has, aave_has = self.flash.available().get(token.lower(), (0, 0))
            use_vault = use_vault and vault_has >= opp.amount_in
            if not use_vault and aave_has < opp.amount_in:
                cap = max(aave_has, vault_has if not balancer_hop else 0)
                if cap <= 0:
                    return f"no flash-loan source can lend {token}"
                resized = resize(opp, cap, venues)
                if resized is None:
                    return f"cannot re-quote the round trip at the lenders' limit ({cap})"
                opp = resized
                use_vault = not balancer_hop and vault_has >= opp.amount_in
        if use_vault:
            source, fee = FlashSource.BALANCER_VAULT, 0
        else:
            source, fee = FlashSource.AAVE_V3, percent_mul(opp.amount_in, cfg.aave_premium_bps)
        gross = opp.amount_out - opp.amount_in - fee
        if gross <= 0:
            return f"unprofitable after the flash fee ({fee}): the round trip returns {opp.amount_out}"
        share = gross * cfg.builder_share_bps // BPS
        base_fee = next_base_fee(block.base_fee_per_gas, block.gas_used, block.gas_limit)
        gas = self.gas_for(opp, source)
        gas_cost = base_fee * gas
        coinbase_route: V3Route | None = None
        coinbase_out = 0
        if token.lower() == cfg.weth.lower():
            to_wei = (1, 1)
        else:
            # The builder's share is converted after the round trip, on the pools it leaves (the round
            # trip may have moved the very pool the conversion goes through).
            v3 = [v for v in after_round_trip(venues, opp) if v.kind is RouteKind.UNISWAP_V3]
            probe = max(share, gross // 10, 1)
            try:
                route = best_route(v3, token, cfg.weth, probe, via=list(cfg.connectors), skip_errors=True)
            except (QuoteError, ValueError):
                route = None
            if route is None or not isinstance(route.executor_route, V3Route) or route.amount_out <= 0:
                return f"no Uniswap V3 route values {token} in ETH (and pays the builder)"
            to_wei = (route.amount_out, probe)
            if share > 0:
                coinbase_route = route.executor_route
                if probe != share:
                    try:
                        paid = best_route(
                            v3, token, cfg.weth, share, via=list(cfg.connectors), skip_errors=True
                        )
                    except (QuoteError, ValueError):
                        paid = None
                    if paid is None or not isinstance(paid.executor_route, V3Route):
                        return f"no Uniswap V3 route pays the builder's share of {token} in ETH"
                    coinbase_route, coinbase_out = paid.executor_route, paid.amount_out
                else:
                    coinbase_out = route.amount_out
        return PricedArbitrage(
            opportunity=opp,
            source=source,
            flash_fee=fee,
            gross=gross,
            builder_share=share,
            to_wei=to_wei,
            coinbase_route=coinbase_route,
            coinbase_out=coinbase_out,
            gas_cost_wei=gas_cost,
            gas=gas,
        )

    def gas_for(self, opp: PegOpportunity, source: FlashSource) -> int:
        """Gas assumed for `opp` by its shape (see `PegExecutionConfig.gas_estimate`)."""
        cfg = self.config
        gas = cfg.gas_estimate
        if source is FlashSource.AAVE_V3:
            gas += cfg.gas_aave_loan
        if opp.token_in.lower() != cfg.weth.lower():
            gas += cfg.gas_builder_swap
        return gas + cfg.gas_balancer_hop * sum(h.kind is RouteKind.BALANCER_V2 for h in opp.hops)

    async def __call__(
        self, opportunities: Sequence[PegOpportunity], block: NewBlock, venues: Sequence[Venue]
    ) -> list[Action]:
        cfg = self.config
        self.skipped = {}
        self.priced = {}
        used_pools: set[str] = set()
        actions: list[Action] = []
        for opp in opportunities:
            oid = opportunity_id(opp)
            pools = {p.lower() for p in opp.pools}
            if pools & used_pools:
                self.skipped[oid] = "shares a pool with a better opportunity of this block"
                continue
            if len(actions) >= cfg.max_per_block:
                self.skipped[oid] = "over the per-block action limit"
                continue
            try:
                priced = self.price(opp, block, venues)
                if isinstance(priced, str):
                    self.skipped[oid] = priced
                    continue
                self.priced[oid] = priced
                minimum = opp.peg.min_profit_wei if opp.peg.min_profit_wei is not None else cfg.min_profit_wei
                if priced.net_profit_wei < minimum:
                    self.skipped[oid] = (
                        f"below minimum: net {priced.net_profit_wei} wei (gas ~{priced.gas_cost_wei}, "
                        f"builder share {priced.builder_share} {opp.token_in}) < {minimum}"
                    )
                    continue
                actions.append(self._action(oid, priced, block, venues, minimum))
            except (KeeperError, ValueError) as exc:
                self.skipped[oid] = f"cannot build: {exc}"
                continue
            used_pools |= pools
        if self.skipped:
            log.debug("peg opportunities skipped", extra=kv(block=block.number, count=len(self.skipped)))
        return actions

    def _action(
        self, oid: str, priced: PricedArbitrage, block: NewBlock, venues: Sequence[Venue], minimum: int
    ) -> SubmitBundle:
        cfg = self.config
        opp = priced.opportunity
        num, den = priced.to_wei
        target = block.number + 1
        floor_wei = max(minimum + priced.gas_cost_wei, 0)
        min_profit = -(-floor_wei * den // num)
        keep = BPS - cfg.swap_tolerance_bps
        tag = arbitrage_tag(oid, target)
        params = ArbitrageParams(
            source=priced.source,
            token=opp.token_in,
            amount=opp.amount_in,
            route=round_trip_route(opp.hops, venues),
            min_out=opp.amount_out * keep // BPS,
            min_profit=min_profit,
            coinbase_bps=cfg.builder_share_bps,
            max_block=target,
            tag=tag,
            coinbase_route=priced.coinbase_route,
            coinbase_min_out=priced.coinbase_out * keep // BPS,
        )
        first, second = opp.hops
        return SubmitBundle(
            opportunity_id=oid,
            strategy=self.strategy_name,
            target_block=target,
            txs=(
                TxIntent(
                    to=cfg.executor,
                    data=encode_arbitrage(params),
                    gas_estimate=priced.gas,
                    batchable=True,
                ),
            ),
            expected_profit_wei=priced.profit_wei,
            min_profit_wei=minimum,
            profit_token=opp.token_in,
            profit_to_wei=priced.to_wei,
            meta={
                "protocol": "peg",
                "tag": params.tag_hex,
                "peg": opp.peg.name,
                "token_in": opp.token_in,
                "amount_in": opp.amount_in,
                "amount_out": opp.amount_out,
                "buy": f"{first.venue}:{first.pool}",
                "sell": f"{second.venue}:{second.pool}",
                "flash_source": priced.source.name.lower(),
                "flash_fee": priced.flash_fee,
                "gross_profit": priced.gross,
                "net_profit_wei": priced.net_profit_wei,
                "detected_block": block.number,
                "block_timestamp": block.timestamp,
            },
        )


def resize(opp: PegOpportunity, amount_in: int, venues: Sequence[Venue]) -> PegOpportunity | None:
    """The same round trip (same pools, same direction) quoted for `amount_in` on `venues`; None when a
    pool cannot quote it or it is not profitable before fees."""
    by_name = {v.name: v for v in venues}
    first, second = opp.hops
    v1, v2 = by_name.get(first.venue), by_name.get(second.venue)
    if v1 is None or v2 is None or amount_in <= 0:
        return None
    try:
        q1 = v1.quote_exact_in(first.token_in, first.token_out, amount_in, pool=first.pool)
        if q1 is None or q1.amount_out <= 0:
            return None
        after = v1.apply(q1) if v2 is v1 else v2
        q2 = after.quote_exact_in(second.token_in, second.token_out, q1.amount_out, pool=second.pool)
    except QuoteError:
        return None
    if q2 is None or q2.amount_out <= amount_in:
        return None
    return replace(
        opp,
        amount_in=amount_in,
        hops=(q1, q2),
        amount_out=q2.amount_out,
        profit=q2.amount_out - amount_in - opp.flash_fee * amount_in // max(opp.amount_in, 1),
    )


def after_round_trip(venues: Sequence[Venue], opp: PegOpportunity) -> list[Venue]:
    """The venues (same order) in the state the round trip's swaps leave: each hop's quote applied to
    its venue, in order (the second hop was quoted on the state the first left when they share one)."""
    by_name = {v.name: v for v in venues}
    for hop in opp.hops:
        venue = by_name.get(hop.venue)
        if venue is not None:
            by_name[hop.venue] = venue.apply(hop)
    return [by_name.get(v.name, v) for v in venues]


def _pool_ids(venues: Sequence[Venue]) -> Callable[[str], str]:
    lookups = [f for f in (getattr(v, "pool_id", None) for v in venues) if callable(f)]

    def lookup(pool: str) -> str:
        for f in lookups:
            try:
                found = f(pool)
            except (KeyError, ValueError, KeeperError):
                continue
            if found:
                return str(found)
        raise ValueError(f"no Balancer pool id for {pool}")

    return lookup


def round_trip_route(hops: Sequence[Quote], venues: Sequence[Venue]) -> Route:
    """The executor route of the hops: one venue's own route when they share it, else a Mixed route of
    one leg whose hops are each venue's route."""
    ids = _pool_ids(venues)
    if all(h.venue == hops[0].venue and h.kind is hops[0].kind for h in hops):
        return executor_route(hops, pool_ids=ids)
    hop_routes: list[HopRoute] = []
    for hop in hops:
        route = executor_route([hop], pool_ids=ids)
        if isinstance(route, MixedRoute):  # pragma: no cover - one hop is never a Mixed route
            raise TypeError("a hop of a round trip cannot be a Mixed route")
        hop_routes.append(route)
    return MixedRoute((RouteLeg(BPS, tuple(hop_routes)),))


__all__ = [
    "PegActions",
    "PegExecutionConfig",
    "PricedArbitrage",
    "opportunity_id",
    "round_trip_route",
]
