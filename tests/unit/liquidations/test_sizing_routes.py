"""Sizing with routes across venues and split sales: the sizer splits a sale only when it pays the
second leg's cost, never does worse than without splits, and its tangent bound (used to skip paths) is
above the best profit of the path at any size; the valuer's sales, split or mixed, are each valued on the
state the ones sent before leave (their hops applied in order)."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

import strategies.liquidations.sizing as sizing
from strategies.liquidations.sizing import Sizer
from strategies.liquidations.valuation import SPLIT_LEG_GAS, ValuationCosts, VenueValuer
from strategies.venues.base import Venue
from strategies.venues.router import requote
from tests.unit.liquidations.crash_block import addr, crash_block
from tests.unit.liquidations.sizing_cases import (
    PREMIUM_BPS,
    Case,
    _v2_venue,
    _v3_venue,
    brute_force,
    random_terms,
)


def two_pool_case(rng: random.Random) -> Case | None:
    """A position whose collateral sells on a V2 pair and a V3 pool of similar depth, both near the
    oracle and about as deep as the collateral (the price impact of one pool is material)."""
    terms = random_terms(rng)
    oracle = terms.collateral_price * terms.debt_unit / (terms.debt_price * terms.collateral_unit)
    depth = max(10**4, int(terms.user_collateral_balance * 10 ** rng.uniform(0.5, 2.0)))
    v2 = _v2_venue(rng, oracle * rng.uniform(0.985, 1.0), depth)
    v3 = _v3_venue(rng, oracle * rng.uniform(0.985, 1.0), int(depth * rng.uniform(0.5, 2)))
    if v3 is None:
        return None
    return Case(terms, {v2.name: v2, v3.name: v3}, "v2+v3")


def test_splits_never_lose_and_pay_their_leg(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    split_wins = 0
    for _ in range(150):
        case = two_pool_case(rng)
        if case is None:
            continue
        leg_cost = rng.choice((0, 0, 10**3, 10**6))
        with_split = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS).best_for_pair(
            case.terms, leg_cost=leg_cost
        )
        monkeypatch.setattr(sizing, "SPLIT_IMPACT_BPS", 10**9)
        alone = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS).best_for_pair(case.terms)
        monkeypatch.undo()
        if alone is None:
            assert with_split is None
            continue
        assert with_split is not None
        assert with_split.debt_to_cover == alone.debt_to_cover  # a split keeps the best single size
        if with_split.route.is_split:
            split_wins += 1
            assert with_split.gross_profit >= alone.gross_profit + max(1, leg_cost)
            legs = with_split.route.legs
            assert with_split.route.amount_in == with_split.outcome.collateral_to_liquidator
            assert with_split.route.executor_route.split(with_split.route.amount_in) == [  # type: ignore[union-attr]
                leg[0].amount_in for leg in legs
            ]
            again = requote(case.venues, with_split.route, with_split.route.amount_in)
            assert again is not None and again.amount_out == with_split.swap_out
            assert with_split.gross_profit == (
                with_split.swap_out - with_split.outcome.actual_debt_to_cover - with_split.flash_premium
            )
        else:
            assert with_split.gross_profit == alone.gross_profit
    assert split_wins >= 10


def test_the_tangent_bound_is_above_the_paths_best_profit() -> None:
    rng = random.Random(12)
    checked = 0
    for _ in range(120):
        case = two_pool_case(rng)
        if case is None:
            continue
        for name, venue in case.venues.items():
            single = Case(case.terms, {name: venue}, name)
            sizer = Sizer(single.venues, flash_premium_bps=PREMIUM_BPS)
            top = sizer.top(case.terms)
            if top is None or top.collateral_to_liquidator <= 0:
                continue
            routes = sizer.routes_at(case.terms, top.collateral_to_liquidator)
            if not routes:
                continue
            seed = sizer.execute(case.terms, routes[0], top.debt_to_cover, outcome=top)
            brute = brute_force(single)
            if seed is None or brute is None:
                continue
            bound = sizer.tangent_bound(seed)
            assert bound is not None
            assert bound >= brute.gross_profit, (single.label, bound, brute.gross_profit)
            checked += 1
    assert checked >= 100


def test_a_split_must_pay_its_legs_gas_in_the_valuer() -> None:
    """At 0 base fee a split only needs to gain 1 unit; at a high base fee the same block splits less."""
    block = crash_block(40, seed=3, depth=1.0)
    connectors = [addr("WETH"), addr("USDC")]
    counts = []
    for base_fee in (0, 10**12):
        valuer = VenueValuer(cast(Any, None), block.venues, connectors=connectors, flash_premium_bps=5)
        costs = ValuationCosts(base_fee=base_fee, gas_per_liquidation=900_000, builder_share_bps=5_000)
        result = valuer.value(block.opportunities, costs, eth_prices=block.eth_prices)
        for o in result:
            extra = (len(o.route.legs) - 1) * SPLIT_LEG_GAS * base_fee
            assert o.gas_cost_wei == costs.gas_cost_wei + extra
        counts.append(sum(o.route.is_split for o in result))
    assert counts[0] >= 1 and counts[1] <= counts[0]


@pytest.mark.parametrize("depth", [1.0, 20.0])
def test_every_sale_is_valued_on_the_state_the_ones_before_it_leave(depth: float) -> None:
    block = crash_block(60, seed=5, depth=depth)
    valuer = VenueValuer(
        cast(Any, None), block.venues, connectors=[addr("WETH"), addr("USDC")], flash_premium_bps=5
    )
    costs = ValuationCosts(base_fee=10**9, gas_per_liquidation=900_000, builder_share_bps=5_000)
    result = valuer.value(block.opportunities, costs, eth_prices=block.eth_prices)
    assert result
    working: dict[str, Venue] = {v.name: v for v in block.venues}
    kinds = set()
    for o in result:
        route = o.route
        kinds.add("split" if route.is_split else route.venue)
        again = requote(working, route, o.collateral_out)
        assert again is not None and again.hops == route.hops and again.amount_out == o.swap_out
        for hop in route.hops:
            working[hop.venue] = working[hop.venue].apply(hop)
    if depth == 1.0:
        assert "split" in kinds
