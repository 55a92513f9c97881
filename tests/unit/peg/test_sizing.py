"""Peg sizing against brute force on random exact states, and what the opportunities hold."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from typing import Any, Self

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.units import percent_mul
from strategies.peg.detect import pool_prices, spreads
from strategies.peg.pegs import RateTarget
from strategies.peg.sizing import PegOpportunity, best_opportunities, disjoint, size_spread
from strategies.venues.base import Pair, Quote, QuoteError, RouteKind, pair_key
from strategies.venues.uniswap_v3 import UniswapV3Venue
from tests.unit.peg.cases import (
    address,
    brute_force,
    make_peg,
    random_case,
    random_swaps,
    round_trip,
    token_pair,
    v2_state,
    v2_venue,
    v3_state,
    v3_venue,
)
from tests.unit.peg.cases import market as cases_market

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_against_brute_force(kinds: tuple[str, str], seed: int, flash_fee_bps: int = 0) -> None:
    case = random_case(random.Random(seed), kinds)
    spread = case.spread()
    if spread is None:
        return
    peg = case.peg
    num, den = case.target
    for borrow_b in (True, False):
        if borrow_b:
            t, m, first, second = peg.token_b, peg.token_a, spread.cheap, spread.rich
            unit = -(-num // den)  # one base unit of A (bought and sold) in B
        else:
            t, m, first, second = peg.token_a, peg.token_b, spread.rich, spread.cheap
            unit = -(-den // num)
        opp = size_spread(spread, case.target, token_in=t, flash_fee_bps=flash_fee_bps)
        best = brute_force(
            round_trip(first.venue, first.pool, second.venue, second.pool, t, m, flash_fee_bps)
        )
        ours = opp.profit if opp is not None else 0
        where = (
            f"{case.label}, borrow {'B' if borrow_b else 'A'}, seed {seed}: ours {ours}, brute force {best}"
        )
        if best is None or best[1] <= 0:
            assert opp is None or opp.profit > 0, where
            continue
        # within 0.1%; below ~1000 units of the token bought the rounding of that token decides (dust)
        assert ours >= best[1] - max(best[1] // 1000, 2 * unit + 2), where
        if best[1] >= 2000 * (unit + 1):
            assert ours >= best[1] - best[1] // 1000, where
        if opp is not None:
            check_exact(opp, flash_fee_bps)


def check_exact(opp: PegOpportunity, flash_fee_bps: int) -> None:
    """The opportunity is the venues' exact quotes: hop 2 sells hop 1's output on the state after it."""
    first, second = opp.hops
    spread = opp.spread
    v1, v2 = (
        (spread.cheap.venue, spread.rich.venue)
        if opp.token_in == opp.peg.token_b
        else (spread.rich.venue, spread.cheap.venue)
    )
    again = v1.quote_exact_in(first.token_in, first.token_out, opp.amount_in, pool=first.pool)
    assert again == first and first.token_in == opp.token_in
    after = v2.apply(first) if v2 is v1 else v2
    assert (
        after.quote_exact_in(second.token_in, second.token_out, first.amount_out, pool=second.pool) == second
    )
    assert opp.amount_out == second.amount_out and second.token_out == opp.token_in
    assert opp.flash_fee == percent_mul(opp.amount_in, flash_fee_bps)
    assert opp.profit == opp.amount_out - opp.amount_in - opp.flash_fee > 0


@PROPERTY
@given(st.integers(0, 2**32))
def test_v2_v2_closed_form_matches_brute_force(seed: int) -> None:
    check_against_brute_force(("v2", "v2"), seed)


@PROPERTY
@given(st.integers(0, 2**32))
def test_v2_v3_matches_brute_force(seed: int) -> None:
    check_against_brute_force(("v2", "v3"), seed)


@PROPERTY
@given(st.integers(0, 2**32))
def test_v3_balancer_matches_brute_force(seed: int) -> None:
    check_against_brute_force(("v3", "balancer"), seed)
    check_against_brute_force(("balancer", "v3"), seed)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from([("v3", "v3"), ("balancer", "balancer"), ("v2", "balancer")]))
def test_other_pairs_with_a_flash_fee_match_brute_force(seed: int, kinds: tuple[str, str]) -> None:
    check_against_brute_force(kinds, seed, flash_fee_bps=5)


def market() -> tuple[Any, list[Any]]:
    a, b = token_pair(True)
    v2 = v2_venue([v2_state(address(1, 0x20), a, b, 1.0, 10**24)])
    v3 = v3_venue(
        [
            v3_state(address(1, 0x30), a, b, 1.012, 10**24, fee=100),
            v3_state(address(2, 0x30), a, b, 0.995, 10**23, fee=500),
        ]
    )
    return make_peg(a, b), [v2, v3]


def test_best_opportunities_ranks_every_spread_and_respects_borrow() -> None:
    peg, venues = market()
    found = best_opportunities([peg], {}, venues)
    assert len(found) == 3  # every pool pair's spread beats its fees
    assert [o.profit_b for o in found] == sorted((o.profit_b for o in found), reverse=True)
    for opp in found:
        assert opp.token_in == peg.token_b and opp.profit == opp.profit_b
        check_exact(opp, 0)
    # the two V3 pools are on one venue: the second hop is quoted after the first
    same = [o for o in found if o.hops[0].venue == o.hops[1].venue]
    assert len(same) == 1 and {same[0].hops[0].pool, same[0].hops[1].pool} == {
        address(1, 0x30),
        address(2, 0x30),
    }
    borrow_a = best_opportunities([peg], {}, venues, borrow="a")
    assert all(o.token_in == peg.token_a for o in borrow_a) and len(borrow_a) == 3
    either = best_opportunities([peg], {}, venues, borrow="best")
    for opp in either:
        by_pair = [o for o in [*found, *borrow_a] if o.spread.pools == opp.spread.pools]
        assert opp.profit_b == max(o.profit_b for o in by_pair)
    # only the spreads of the pools that changed
    changed = best_opportunities([peg], {}, venues, changed_pools=[address(2, 0x30)])
    assert {o.spread.pools for o in changed} == {
        o.spread.pools for o in found if address(2, 0x30) in o.spread.pools
    }
    # disjoint: the best, then what shares no pool with it
    kept = disjoint(found)
    assert kept[0] == found[0] and len(kept) == 1  # three pools, every pair shares one
    # a flash fee lowers every profit by exactly the premium on the same sizes, or moves the size
    with_fee = best_opportunities([peg], {}, venues, flash_fee_bps=5)
    assert all(o.flash_fee == percent_mul(o.amount_in, 5) > 0 for o in with_fee)
    assert sum(o.profit for o in with_fee) < sum(o.profit for o in found)


def test_borrowing_a_counts_the_profit_in_b_at_the_target() -> None:
    peg, venues = market()
    rate_peg = replace(peg, target=RateTarget("0x" + "55" * 20))
    assert best_opportunities([rate_peg], {}, venues) == []  # no target read yet
    found = best_opportunities([rate_peg], {peg.name: (3, 2)}, venues, borrow="a")
    assert found and all(o.profit_b == o.profit * 3 // 2 for o in found)


def test_no_opportunity_below_the_fees() -> None:
    a, b = token_pair(False)
    v2 = v2_venue([v2_state(address(1, 0x20), a, b, 1.0, 10**24)])
    v3 = v3_venue([v3_state(address(1, 0x30), a, b, 1.002, 10**24, fee=100)])
    peg = make_peg(a, b)
    assert best_opportunities([peg], {}, [v2, v3]) == []
    (spread,) = spreads(pool_prices(peg, (1, 1), [v2, v3]))
    assert size_spread(spread, (1, 1)) is None
    with pytest.raises(ValueError, match="neither of its tokens"):
        size_spread(spread, (1, 1), token_in=address(9, 0x99))


def test_a_pool_read_only_near_its_price_bounds_the_size() -> None:
    """A V3 pool whose state was read a few words around the price: quotes past them raise
    OutsideReadRange, so the size stops there, and the result is still exact and profitable."""
    a, b = token_pair(True)
    v2 = v2_venue([v2_state(address(1, 0x20), a, b, 1.0, 10**26)])
    pool, state = v3_state(address(1, 0x30), a, b, 1.05, 10**22, fee=100, concentration=0)
    word = v3.compress_tick(state.tick, state.tick_spacing) >> 8
    bounded = replace(state, word_bounds=(word, word))  # the price may fall to the word's first tick
    venue = UniswapV3Venue([pool], words_each_side=1).with_states({pool.address: bounded}, block=1)
    peg = make_peg(a, b)
    (opp,) = best_opportunities([peg], {}, [v2, venue])
    unbounded = best_opportunities([peg], {}, [v2, v3_venue([(pool, state)])])[0]
    assert 0 < opp.profit < unbounded.profit
    with pytest.raises(QuoteError):
        venue.quote_exact_in(a, b, opp.amount_in * 2, pool=pool.address)
    check_exact(opp, 0)


class ConstantProduct:
    """A Venue Protocol-only pool (no spot or marginal rates): x * y = k with a 0.3% fee."""

    kind = RouteKind.UNISWAP_V2
    block = 1

    def __init__(self, name: str, a: str, b: str, ra: int, rb: int) -> None:
        self.name, self.a, self.b, self.reserves = name, a, b, {a: ra, b: rb}
        self.pool = address(len(name), 0xCC)

    def pairs(self) -> frozenset[Pair]:
        return frozenset({pair_key(self.a, self.b)})

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return (self.pool,) if pair_key(token_a, token_b) == pair_key(self.a, self.b) else ()

    async def refresh(self, rpc: Any, block: int) -> None:
        return None

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        r_in, r_out = self.reserves[token_in], self.reserves[token_out]
        out = amount_in * 997 * r_out // (r_in * 1000 + amount_in * 997)
        after = {token_in: r_in + amount_in, token_out: r_out - out}
        return Quote(self.name, self.kind, self.pool, token_in, token_out, amount_in, out, 30, 1, after)

    def apply(self, quote: Quote) -> Self:
        out = copy.copy(self)
        out.reserves = dict(quote.state_after)
        return out

    def spot_rate(self, token_in: str, token_out: str, pool: str) -> tuple[int, int]:
        return (997 * self.reserves[token_out], 1000 * self.reserves[token_in])


def test_venues_without_marginal_rates_are_sized_by_golden_section() -> None:
    a, b = token_pair(True)
    cheap = ConstantProduct("x", a, b, 10**22, 10**22)
    dear = ConstantProduct("yy", a, b, 10**23, 103 * 10**21)
    peg = make_peg(a, b)
    (opp,) = best_opportunities([peg], {}, [cheap, dear])
    best = brute_force(round_trip(cheap, cheap.pool, dear, dear.pool, b, a, 0))
    assert best is not None and opp.profit >= best[1] - best[1] // 1000
    assert opp.hops[0].pool == cheap.pool and opp.hops[1].pool == dear.pool


def test_changed_pools_give_exactly_the_full_results_touching_them() -> None:
    """What the 5-of-50 block evaluates equals the full evaluation's opportunities with a changed pool
    (so the caller may keep its previous ones between unchanged pools)."""
    rng = random.Random(7)
    base = cases_market(rng, 6)
    left_out = 0
    for _ in range(5):
        before, _ = random_swaps(rng, base, 8, max_fraction=2e-2)  # spreads from an earlier block
        venues, changed = random_swaps(rng, replace(base, venues=before), 5, max_fraction=2e-2)
        keys = {c.lower() for c in changed}
        full = best_opportunities(base.pegs, base.targets, venues)
        part = best_opportunities(base.pegs, base.targets, venues, changed_pools=changed)
        touching = [o for o in full if {p.lower() for p in o.pools} & keys]
        assert [(o.spread.pools, o.amount_in, o.profit) for o in part] == [
            (o.spread.pools, o.amount_in, o.profit) for o in touching
        ]
        left_out += len(full) - len(part)
    assert left_out > 0
