"""LiquidationTerms: the Pool's amounts for any debt_to_cover of one pair, and the request that seizes the
whole collateral (property tests on random V3/V2 terms; the devnet test checks them against liquidationCall).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.units import RAY, UINT256_MAX
from strategies.liquidations import math_v3
from strategies.liquidations.common import LiquidationTerms, NotLiquidatable
from strategies.liquidations.model import UserReserve
from tests.unit.liquidations.helpers import T0, USDC, WETH, make_reserve, position
from tests.unit.liquidations.sizing_cases import random_terms

seeds = st.integers(min_value=0, max_value=2**64)


def _first_capped(terms: LiquidationTerms) -> int | None:
    """The smallest capped request, by bisection (independent of the closed form)."""
    cap = terms.max_liquidatable_debt
    if cap <= 0 or not terms.capped(cap):
        return None
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        if terms.capped(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


@settings(max_examples=400, deadline=None)
@given(seeds)
def test_seize_all_cover_is_the_smallest_request_that_takes_the_whole_balance(seed: int) -> None:
    terms = random_terms(random.Random(seed))
    cover = terms.seize_all_cover()
    first = _first_capped(terms)
    if cover is None:
        assert first is None
        assert terms.max_cover() == terms.max_liquidatable_debt
        return
    assert first is not None
    _, needed, _ = terms.collateral_amounts(min(first, terms.max_liquidatable_debt))
    assert cover == max(first, needed)
    assert terms.max_cover() == cover
    try:
        outcome = terms.outcome(cover)
    except NotLiquidatable:
        return  # a dust balance: the Pool would revert whatever the request
    assert outcome.collateral_exhausted
    assert outcome.actual_debt_to_cover <= cover  # the flash loan of `cover` pays what the Pool pulls
    assert outcome.actual_debt_to_cover == terms.outcome(UINT256_MAX).actual_debt_to_cover
    assert outcome.collateral_to_liquidator == terms.outcome(UINT256_MAX).collateral_to_liquidator


@settings(max_examples=400, deadline=None)
@given(seeds, st.integers(min_value=1, max_value=10**30))
def test_smallest_request_seizes_the_same_and_the_one_below_seizes_less(seed: int, raw: int) -> None:
    terms = random_terms(random.Random(seed))
    d = 1 + raw % max(1, terms.max_cover())
    smallest = terms.smallest_request(d)
    assert 1 <= smallest <= d
    assert terms.max_collateral(smallest) == terms.max_collateral(d)
    if smallest > 1:
        assert terms.max_collateral(smallest - 1) < terms.max_collateral(d)
    # The collateral never falls as the request grows, and the Pool never takes more than asked
    # below the whole-collateral request.
    a, b = sorted((d, 1 + raw // 7 % max(1, terms.max_cover())))
    assert (
        terms.collateral_amounts(min(a, terms.max_liquidatable_debt))[0]
        <= terms.collateral_amounts(min(b, terms.max_liquidatable_debt))[0]
    )
    if not terms.capped(d):
        assert terms.collateral_amounts(min(d, terms.max_liquidatable_debt))[1] == min(
            d, terms.max_liquidatable_debt
        )


def test_passing_the_repaid_debt_leaves_collateral_dust_the_seize_all_request_does_not() -> None:
    """The audit's finding (d): with the rounded-down debt the capped branch repays passed as debtToCover,
    the Pool derives the collateral from that debt and seizes less than the whole balance."""
    reserves = {
        WETH: make_reserve(WETH, 0, price=200_099_560_964, fee=1000, liquidity_index=RAY + 12345),
        USDC: make_reserve(USDC, 1, price=10**8, decimals=6),
    }
    p = position(
        {
            WETH: UserReserve(scaled_a_token_balance=10**18 + 287_606_570_384_453),
            USDC: UserReserve(scaled_variable_debt=2100 * 10**6),
        },
        collateral=(0,),
        borrowing=(1,),
    )
    terms = math_v3.liquidation_terms(p, reserves, {}, WETH, USDC, T0, health_factor=9 * 10**17)
    everything = terms.outcome(UINT256_MAX)
    assert everything.collateral_exhausted
    old_way = terms.outcome(everything.actual_debt_to_cover)
    assert not old_way.collateral_exhausted
    dust = terms.user_collateral_balance - old_way.collateral_to_liquidator - old_way.protocol_fee
    assert 0 < dust < 10**9  # under a cent of WETH: one USDC unit's worth of collateral
    cover = terms.seize_all_cover()
    assert cover is not None and cover > everything.actual_debt_to_cover
    new_way = terms.outcome(cover)
    assert new_way.collateral_exhausted
    assert (new_way.actual_debt_to_cover, new_way.collateral_to_liquidator) == (
        everything.actual_debt_to_cover,
        everything.collateral_to_liquidator,
    )
    # best_liquidation passes the whole-collateral request and carries the pair's terms.
    best = math_v3.best_liquidation(p, reserves, {}, T0)
    assert best is not None
    assert best.debt_to_cover == cover
    assert best.collateral_exhausted
    assert [t.collateral_asset for t in best.pairs] == [WETH]
