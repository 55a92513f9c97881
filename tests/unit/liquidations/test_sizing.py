"""Sizer: the chosen (size, route) against brute force on the same state, and the prediction is what the
parameters we pass execute (the Pool's amounts for that debt_to_cover, the exact quote of that sale).

`benchmarks/bench_liquidations.py --sizing` prints the same comparison over 1000+ cases.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.liquidations.sizing import Sizer, maximize_unimodal
from strategies.venues.router import requote
from tests.unit.liquidations.sizing_cases import PREMIUM_BPS, brute_force, random_case, tolerance

seeds = st.integers(min_value=0, max_value=2**64)


@settings(max_examples=120, deadline=None)
@given(seeds)
def test_chosen_size_is_within_a_tenth_of_a_percent_of_brute_force(seed: int) -> None:
    case = random_case(random.Random(seed))
    terms = case.terms
    chosen = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS).best_for_pair(terms)
    brute = brute_force(case)
    if brute is None:
        assert chosen is None
        return
    assert chosen is not None, case.label
    # 0.1% of the best profit, or two collateral units' worth when that is more (sizes are whole units).
    assert chosen.gross_profit >= brute.gross_profit - tolerance(terms, brute.gross_profit), (
        case.label,
        chosen.debt_to_cover,
        brute.debt_to_cover,
    )
    # What we predict is what the request we pass executes, to the wei.
    outcome = terms.outcome(chosen.debt_to_cover)
    assert outcome == chosen.outcome
    sale = requote(case.venues, chosen.route, outcome.collateral_to_liquidator)
    assert sale is not None
    assert sale.amount_out == chosen.swap_out
    premium = (chosen.debt_to_cover * PREMIUM_BPS + 5_000) // 10_000
    assert chosen.flash_premium == premium
    assert chosen.gross_profit == sale.amount_out - outcome.actual_debt_to_cover - premium
    assert 1 <= chosen.debt_to_cover <= terms.max_cover()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**20),
    st.integers(min_value=0, max_value=10**20),
    st.integers(min_value=1, max_value=10**6),
)
def test_maximize_unimodal_finds_the_peak_of_a_concave_function(hi: int, raw_peak: int, slope: int) -> None:
    peak = 1 + raw_peak % hi

    def f(x: int) -> int:
        return -slope * (x - peak) ** 2

    x = maximize_unimodal(f, 1, hi)
    # Within the search window (hi / 20000) of the peak: the profit is flat there.
    assert abs(x - peak) <= max(2, hi // 20_000)


def test_a_deep_pool_takes_the_largest_size_and_a_shallow_one_less() -> None:
    rng = random.Random(11)
    deep = shallow = 0
    for _ in range(200):
        case = random_case(rng)
        ex = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS).best_for_pair(case.terms)
        if ex is None or ex.gross_profit <= 0:
            continue
        if ex.debt_to_cover == case.terms.max_cover():
            deep += 1
        else:
            shallow += 1
    assert deep > 10
    assert shallow > 10


def test_the_request_is_sized_within_what_the_flash_pool_can_lend() -> None:
    """The debtToCover is flash-borrowed whole: with the lender holding less than the best size, the best
    size within that limit is chosen (and predicted exactly), never one that would fail the loan."""
    rng = random.Random(5)
    checked = 0
    for _ in range(200):
        case = random_case(rng)
        free = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS).best_for_pair(case.terms)
        if free is None or free.gross_profit <= 0 or free.debt_to_cover < 4:
            continue
        limit = free.debt_to_cover // 2
        sizer = Sizer(
            case.venues,
            flash_premium_bps=PREMIUM_BPS,
            max_request={case.terms.debt_asset.lower(): limit},
        )
        capped = sizer.best_for_pair(case.terms)
        assert capped is not None and 1 <= capped.debt_to_cover <= limit, case.label
        assert capped.outcome == case.terms.outcome(capped.debt_to_cover)
        assert capped.gross_profit <= free.gross_profit
        checked += 1
    assert checked > 20
