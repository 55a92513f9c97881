"""Peg detection on synthetic pool states: prices, deviations, spreads against the fees, filters."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any, Self

import pytest

from strategies.peg.detect import find_spreads, pegs_touching, pool_prices, pool_rates, spreads
from strategies.peg.pegs import Peg, RateTarget
from strategies.venues.base import Pair, Quote, RouteKind, pair_key
from strategies.venues.uniswap_v2 import UniswapV2Venue
from strategies.venues.uniswap_v3 import UniswapV3Venue
from tests.unit.peg.cases import (
    address,
    balancer_state,
    balancer_venue,
    make_peg,
    token_pair,
    v2_state,
    v2_venue,
    v3_state,
    v3_venue,
)


def ratio(fraction: tuple[int, int]) -> float:
    return fraction[0] / fraction[1]


@pytest.mark.parametrize("low_a", [True, False])
def test_v2_prices_are_the_reserve_ratio_and_the_fee(low_a: bool) -> None:
    a, b = token_pair(low_a)
    pair, reserves = v2_state(address(1, 0x20), a, b, 2.0, 10**21)
    venue = v2_venue([(pair, reserves)])
    rates = pool_rates(venue, pair.address, a, b)
    assert rates is not None
    price, sell, buy = rates
    assert ratio(price) == pytest.approx(2.0, rel=1e-12)
    assert ratio(sell) == pytest.approx(2.0 * 0.997, rel=1e-12)
    assert ratio(buy) == pytest.approx(0.5 * 0.997, rel=1e-12)
    peg = make_peg(a, b)
    (pp,) = pool_prices(peg, (19, 10), [venue])  # target 1.9: A is 5.26% dear here
    assert pp.deviation_bps == pytest.approx((2.0 / 1.9 - 1) * 1e4)
    assert (pp.venue, pp.pool, pp.price) == (venue, pair.address, price)


@pytest.mark.parametrize("low_a", [True, False])
def test_v3_price_is_sqrt_price_squared(low_a: bool) -> None:
    a, b = token_pair(low_a)
    pool, state = v3_state(address(1, 0x30), a, b, 1.0015, 10**22, fee=500)
    venue = v3_venue([(pool, state)])
    rates = pool_rates(venue, pool.address, a, b)
    assert rates is not None
    price, sell, buy = rates
    assert ratio(price) == pytest.approx(1.0015, rel=1e-9)
    assert ratio(sell) == pytest.approx(1.0015 * 0.9995, rel=1e-9)
    assert ratio(buy) == pytest.approx(0.9995 / 1.0015, rel=1e-9)
    # an infinitesimal swap pays the spot rate: a tiny exact quote is just below it
    q = venue.quote_exact_in(a, b, 10**12, pool=pool.address)
    assert q is not None and q.amount_out / 10**12 == pytest.approx(ratio(sell), rel=1e-6)


def test_balancer_price_is_the_pools_mid_price_with_its_decimals() -> None:
    usdc, dai = token_pair(True)
    pool, state = balancer_state(address(1, 0xBA), [usdc, dai], [6, 18], 10**6)
    venue = balancer_venue([(pool, state)])
    rates = pool_rates(venue, pool.address, usdc, dai)
    assert rates is not None
    price, sell, buy = rates
    assert price == venue.mid_price(usdc, dai, pool.address)
    assert ratio(price) == pytest.approx(1e12, rel=1e-9)  # balanced: 1 USDC unit = 1e12 DAI units
    assert ratio(sell) == pytest.approx(1e12 * 0.9999, rel=1e-9)
    skewed = balancer_venue([balancer_state(address(1, 0xBA), [usdc, dai], [6, 18], 10**6, skew=[0.5, 1.5])])
    rates = pool_rates(skewed, pool.address, usdc, dai)
    assert rates is not None and ratio(rates[0]) > 1.001e12  # USDC scarce: dear


def test_pools_without_state_or_spot_rates_are_left_out() -> None:
    a, b = token_pair(True)
    pair, _ = v2_state(address(1, 0x20), a, b, 1.0, 10**21)
    unread = UniswapV2Venue([pair])  # never refreshed
    assert pool_rates(unread, pair.address, a, b) is None
    assert pool_prices(make_peg(a, b), (1, 1), [unread]) == []
    pool, _state = v3_state(address(1, 0x30), a, b, 1.0, 10**21)
    assert pool_rates(UniswapV3Venue([pool]), pool.address, a, b) is None


class SpotOnly:
    """A venue known only through the Venue Protocol plus `spot_rate` (fixed rates, 1% fee)."""

    name = "spot_only"
    kind = RouteKind.UNISWAP_V2
    block = 1

    def __init__(self, a: str, b: str, price: float) -> None:
        self.a, self.b, self.price = a, b, price

    def pairs(self) -> frozenset[Pair]:
        return frozenset({pair_key(self.a, self.b)})

    def pools(self, token_a: str, token_b: str) -> tuple[str, ...]:
        return ("0x" + "cd" * 20,) if pair_key(token_a, token_b) == pair_key(self.a, self.b) else ()

    async def refresh(self, rpc: Any, block: int) -> None:
        return None

    def quote_exact_in(
        self, token_in: str, token_out: str, amount_in: int, *, pool: str | None = None
    ) -> Quote | None:
        return None

    def apply(self, quote: Quote) -> Self:
        return copy.copy(self)

    def spot_rate(self, token_in: str, token_out: str, pool: str) -> tuple[int, int]:
        p = int(self.price * 10**6)
        return (99 * p, 100 * 10**6) if token_in == self.a else (99 * 10**6, 100 * p)


def test_other_venues_are_priced_from_their_spot_rates() -> None:
    a, b = token_pair(True)
    venue = SpotOnly(a, b, 1.25)
    rates = pool_rates(venue, "0x" + "cd" * 20, a, b)
    assert rates is not None
    assert ratio(rates[0]) == pytest.approx(1.25, rel=1e-12)
    assert ratio(rates[1]) == pytest.approx(1.25 * 0.99)


def two_pool_market(v2_price: float, v3_price: float) -> tuple[Peg, list[Any]]:
    a, b = token_pair(True)
    v2 = v2_venue([v2_state(address(1, 0x20), a, b, v2_price, 10**24)])
    v3 = v3_venue([v3_state(address(1, 0x30), a, b, v3_price, 10**24, fee=100)])
    return make_peg(a, b), [v2, v3]


def test_spread_is_oriented_and_exceeds_the_fees_only_past_them() -> None:
    # V2 fee 30 bps + V3 fee 1 bp: the round trip needs a spread above ~31 bps
    peg, venues = two_pool_market(1.0, 1.0025)
    (spread,) = spreads(pool_prices(peg, (1, 1), venues))
    assert spread.cheap.venue is venues[0] and spread.rich.venue is venues[1]
    assert spread.spread_bps == pytest.approx(25, abs=0.1)
    assert spread.fees_bps == pytest.approx(31, abs=0.2)
    assert spread.edge_bps == pytest.approx(25 - 31, abs=0.2)
    assert not spread.exceeds_fees()
    assert find_spreads([peg], {}, venues) == []
    peg, venues = two_pool_market(1.0050, 1.0)  # now A is cheap on V3
    (spread,) = spreads(pool_prices(peg, (1, 1), venues))
    assert spread.cheap.venue is venues[1] and spread.rich.venue is venues[0]
    assert spread.edge_bps == pytest.approx(50 - 31, abs=0.3)
    assert spread.exceeds_fees() and spread.exceeds_fees(flash_fee_bps=5)
    assert not spread.exceeds_fees(flash_fee_bps=25)
    assert find_spreads([peg], {}, venues) == [spread]
    assert find_spreads([peg], {}, venues, flash_fee_bps=25) == []
    # the round trip is exactly the product of the two infinitesimal rates
    num, den = spread.round_trip
    expected = (
        spread.cheap.buy_rate[0] * spread.rich.sell_rate[0],
        spread.cheap.buy_rate[1] * spread.rich.sell_rate[1],
    )
    assert num * expected[1] == den * expected[0]


def test_deviation_is_against_the_target() -> None:
    peg, venues = two_pool_market(1.0, 1.0)
    rate_peg = replace(peg, target=RateTarget("0x" + "55" * 20))
    prices = pool_prices(rate_peg, (102, 100), venues)
    assert [round(p.deviation_bps) for p in prices] == [round((1 / 1.02 - 1) * 1e4)] * 2


def test_find_spreads_filters() -> None:
    a, b = token_pair(True)
    c, d = address(7, 0xC0), address(8, 0xD0)
    v2 = v2_venue(
        [
            v2_state(address(1, 0x20), a, b, 1.0, 10**24),
            v2_state(address(2, 0x20), c, d, 1.0, 10**24),
        ]
    )
    v3 = v3_venue(
        [
            v3_state(address(1, 0x30), a, b, 1.01, 10**24),
            v3_state(address(2, 0x30), a, b, 1.0, 10**24, fee=500),
            v3_state(address(3, 0x30), c, d, 1.02, 10**24),
        ]
    )
    ab, cd = make_peg(a, b, name="ab"), make_peg(c, d, name="cd")
    cd_rate = replace(cd, target=RateTarget("0x" + "55" * 20))
    found = find_spreads([ab, cd], {}, [v2, v3])
    assert {(s.peg.name, s.cheap.pool, s.rich.pool) for s in found} == {
        ("ab", address(1, 0x20), address(1, 0x30)),
        ("ab", address(2, 0x30), address(1, 0x30)),
        ("cd", address(2, 0x20), address(3, 0x30)),
    }
    assert [s.edge_bps for s in found] == sorted((s.edge_bps for s in found), reverse=True)
    # a rate-target peg whose target was not read is skipped
    assert {s.peg.name for s in find_spreads([ab, cd_rate], {}, [v2, v3])} == {"ab"}
    assert {s.peg.name for s in find_spreads([ab, cd_rate], {"cd": (1, 1)}, [v2, v3])} == {"ab", "cd"}
    # changed pools: only spreads with one of them
    changed = find_spreads(
        [ab, cd], {}, [v2, v3], changed_pools=[address(2, 0x30).upper().replace("0X", "0x")]
    )
    assert [(s.cheap.pool, s.rich.pool) for s in changed] == [(address(2, 0x30), address(1, 0x30))]
    assert pegs_touching([ab, cd], [v2, v3], [address(3, 0x30)]) == [cd]
    # a peg limited to some venues only sees their pools
    only_v3 = replace(ab, venues=("uniswap_v3",))
    assert [(s.cheap.pool, s.rich.pool) for s in find_spreads([only_v3], {}, [v2, v3])] == [
        (address(2, 0x30), address(1, 0x30))
    ]
    assert math.isfinite(found[0].spread_bps)
