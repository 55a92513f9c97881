"""VenueValuer on a synthetic crash block (Aave V3 in USD, Aave V2 in ETH, devnet-shaped pools): one
unit (wei) for ranking, costs, pool impact charged only for what is sent, gas budget, reasons, prefetch."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from strategies.liquidations.opportunity import Opportunity
from strategies.liquidations.valuation import (
    SPLIT_LEG_GAS,
    ValuationCosts,
    VenueValuer,
    eth_price_in_base,
)
from strategies.venues.router import requote
from tests.unit.liquidations.crash_block import Crash, addr, crash_block

COSTS = ValuationCosts(base_fee=10 * 10**9, gas_per_liquidation=900_000, builder_share_bps=4_000)


def valuer(crash: Crash) -> VenueValuer:
    return VenueValuer(
        cast(Any, None),
        crash.venues,
        connectors=[addr("WETH"), addr("USDC")],
        flash_premium_bps=5,
        weth=addr("WETH"),
    )


@pytest.fixture(scope="module")
def crash() -> Crash:
    return crash_block(40, seed=3)


def test_ranked_by_net_profit_in_wei_across_markets(crash: Crash) -> None:
    result = valuer(crash).value(crash.opportunities, COSTS, eth_prices=crash.eth_prices)
    assert len(result) >= 2
    assert {o.protocol for o in result} == {"aave-v3", "aave-v2"}
    nets = [o.net_profit_wei for o in result]
    assert all(n is not None for n in nets)
    assert nets == sorted(nets, reverse=True)  # type: ignore[type-var]
    # V2 values in ETH wei and V3 in USD 1e8: raw base-currency values would put every V2 one first.
    by_base = sorted(result, key=lambda o: o.gross_profit_base or 0, reverse=True)
    assert [o.id for o in by_base] != [o.id for o in result]
    for o in result:
        assert o.to_wei is not None and o.profit_wei is not None and o.gross_profit is not None
        num, den = o.to_wei
        terms = next(
            t for t in o.pairs if (t.collateral_asset, t.debt_asset) == (o.collateral_asset, o.debt_asset)
        )
        price = terms.reserves[o.debt_asset].price
        if o.protocol == "aave-v2":
            assert (num, den) == (price, terms.debt_unit)
        else:
            assert (num, den) == (price * 10**18, terms.debt_unit * crash.eth_prices["aave-v3"])
        assert o.profit_wei == o.gross_profit * num // den
        assert o.builder_share_wei == o.profit_wei * COSTS.builder_share_bps // 10_000
        # A split sale pays its second leg's gas too.
        assert o.gas_cost_wei == COSTS.gas_cost_wei + (len(o.route.legs) - 1) * SPLIT_LEG_GAS * COSTS.base_fee
        assert o.net_profit_wei == o.profit_wei - o.builder_share_wei - o.gas_cost_wei
        assert o.net_profit_wei >= COSTS.min_profit_wei
        assert o.gross_profit == o.swap_out - o.repaid - o.flash_premium
        assert o.flash_premium == (o.debt_to_cover * 5 + 5_000) // 10_000
    # Every opportunity is either sent or dropped with a reason.
    assert {o.id for o in crash.opportunities} == {o.id for o in result} | set(result.dropped)


def test_each_is_valued_on_the_state_the_sent_ones_before_it_leave(crash: Crash) -> None:
    """Only the sent sales move the pools: some opportunities ranked high alone are dropped once the
    sales before them are applied, and each sent one's quote is reproduced by applying only the sent
    sales before it."""
    v = valuer(crash)
    result = v.value(crash.opportunities, COSTS, eth_prices=crash.eth_prices)
    late = [i for i, why in result.dropped.items() if why.startswith("after the sales ranked before it")]
    assert late, result.dropped
    working = {venue.name: venue for venue in crash.venues}
    for o in result:
        # The sale quoted again on the state the previous sent sales leave: the same amount, to the wei.
        again = requote(working, o.route, o.collateral_out)
        assert again is not None
        assert again.amount_out == o.swap_out
        for hop in again.hops:
            working[hop.venue] = working[hop.venue].apply(hop)


def test_gas_budget_and_minimum(crash: Crash) -> None:
    v = valuer(crash)
    everything = v.value(crash.opportunities, COSTS, eth_prices=crash.eth_prices)
    assert len(everything) >= 3
    budget = replace(COSTS, gas_budget=2 * COSTS.gas_per_liquidation + 1)
    two = v.value(crash.opportunities, budget, eth_prices=crash.eth_prices)
    assert [o.id for o in two] == [o.id for o in everything[:2]]
    assert [o.swap_out for o in two] == [o.swap_out for o in everything[:2]]
    beyond = {i for i, why in two.dropped.items() if "gas budget" in why}
    assert {o.id for o in everything[2:]} <= beyond
    assert set(two.dropped) == {o.id for o in crash.opportunities} - {o.id for o in two}
    high = replace(COSTS, min_profit_wei=10**30)
    assert v.value(crash.opportunities, high, eth_prices=crash.eth_prices) == []


def test_v3_needs_an_eth_price_and_takes_the_weth_reserve_by_default(crash: Crash) -> None:
    v3_only = [o for o in crash.opportunities if o.protocol == "aave-v3"]
    nameless = VenueValuer(cast(Any, None), crash.venues, connectors=[addr("WETH"), addr("USDC")])
    result = nameless.value(v3_only, COSTS)
    assert list(result) == []
    assert all("ETH price" in why for why in result.dropped.values())
    with_weth = valuer(crash).value(v3_only, COSTS)
    explicit = valuer(crash).value(v3_only, COSTS, eth_prices=crash.eth_prices)
    assert [(o.id, o.net_profit_wei) for o in with_weth] == [(o.id, o.net_profit_wei) for o in explicit]
    market = crash.markets["aave-v3"]
    assert eth_price_in_base(market, addr("WETH")) == crash.eth_prices["aave-v3"]
    assert eth_price_in_base(crash.markets["aave-v2"], addr("WETH"), base_is_eth=True) == 10**18


def test_an_opportunity_without_terms_is_valued_at_its_own_size(crash: Crash) -> None:
    o = next(o for o in crash.opportunities if o.protocol == "aave-v3")
    bare = replace(o, pairs=())
    result = valuer(crash).value(
        [bare], replace(COSTS, min_profit_wei=-(10**30)), eth_prices=crash.eth_prices
    )
    assert [x.debt_to_cover for x in result] == [o.debt_to_cover]
    assert result[0].collateral_out == o.collateral_out
    assert valuer(crash).value([bare], COSTS).dropped[o.id].startswith("no pair terms")


def test_costs_are_checked() -> None:
    with pytest.raises(ValueError, match="builder_share_bps"):
        ValuationCosts(base_fee=1, gas_per_liquidation=1, builder_share_bps=10_000)
    with pytest.raises(ValueError, match=">= 0"):
        ValuationCosts(base_fee=-1, gas_per_liquidation=1)


class _Counting:
    """A venue wrapper counting refreshes (prefetch and the call share one read of the block)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refreshed: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def refresh(self, rpc: Any, block: int) -> None:
        self.refreshed.append(block)


async def test_prefetch_is_used_by_the_same_block_only(crash: Crash) -> None:
    venues = [_Counting(v) for v in crash.venues]
    v = VenueValuer(cast(Any, None), cast(Any, venues), connectors=[addr("WETH")], weth=addr("WETH"))
    v.prefetch(7)
    await asyncio.sleep(0)
    result = await v(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    assert isinstance(result, list)
    assert all(c.refreshed == [7] for c in venues)
    v.prefetch(8)
    await v(cast(list[Opportunity], []), 9)
    assert all(c.refreshed[-1] == 9 for c in venues)


async def test_a_blocks_later_valuations_reuse_its_read_until_the_next_block(crash: Crash) -> None:
    """A backrun valued after the block's own valuation (or a second backrun) reads nothing again; the
    next block (even a reorg's, with the same number) is read again."""
    venues = [_Counting(v) for v in crash.venues]
    v = VenueValuer(cast(Any, None), cast(Any, venues), connectors=[addr("WETH")], weth=addr("WETH"))
    v.prefetch(7)
    first = await v(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    again = await v(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    assert [o.id for o in first] == [o.id for o in again]
    assert all(c.refreshed == [7] for c in venues)
    v.prefetch(None)  # the same number again (a reorg), no prefetch: read once more
    await v(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    assert all(c.refreshed == [7, 7] for c in venues)
    # A caller that never calls prefetch (not block-driven) always reads.
    w = VenueValuer(cast(Any, None), cast(Any, venues), connectors=[addr("WETH")], weth=addr("WETH"))
    await w(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    await w(crash.opportunities[:3], 7, COSTS, eth_prices=crash.eth_prices)
    assert all(c.refreshed == [7, 7, 7, 7] for c in venues)


def test_protocol_mode_values_loss_making_sales_at_the_largest_size(crash: Crash) -> None:
    """`loss_making_sales` (protocol mode): a position whose sale cannot repay the loan at any size is not
    dropped as unprofitable but valued at its largest size (the position must go), its loss in wei
    (shortfall and gas) within the minimum; searcher mode never returns one."""
    searcher = valuer(crash).value(crash.opportunities, COSTS, eth_prices=crash.eth_prices)
    assert all(o.gross_profit is not None and o.gross_profit > 0 for o in searcher)
    costs = replace(COSTS, min_profit_wei=-(10**30), loss_making_sales=True, gas_budget=None)
    protocol = valuer(crash).value(crash.opportunities, costs, eth_prices=crash.eth_prices)
    assert not any(why.startswith("unprofitable") for why in protocol.dropped.values())
    losing = [o for o in protocol if o.gross_profit is not None and o.gross_profit <= 0]
    assert losing, searcher.dropped
    for o in losing:
        terms = next(
            t for t in o.pairs if (t.collateral_asset, t.debt_asset) == (o.collateral_asset, o.debt_asset)
        )
        top = terms.outcome(terms.smallest_request(terms.max_cover()))
        assert o.debt_to_cover == top.debt_to_cover
        assert o.collateral_out == top.collateral_to_liquidator
        assert o.net_profit_wei is not None and o.profit_wei is not None
        assert o.builder_share_wei == 0 and o.net_profit_wei == o.profit_wei - o.gas_cost_wei < 0
    # Searcher mode dropped each of them.
    assert {o.id for o in losing} <= set(searcher.dropped)
