"""Aave V3 math: hand-computed cases and properties (the integration test checks it against the Pool)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.units import RAY, UINT256_MAX, WAD
from strategies.liquidations import math_v3 as m
from strategies.liquidations.common import NotLiquidatable, UnknownReserveError
from strategies.liquidations.model import (
    EModeCategory,
    ReserveConfig,
    ReserveState,
    UserPosition,
    UserReserve,
)
from tests.unit.liquidations.helpers import (
    DAI,
    T0,
    USDC,
    WBTC,
    WETH,
    config_bitmap,
    make_reserve,
    position,
)

YEAR = m.SECONDS_PER_YEAR
USD = 10**8


def market(weth_price: int = 2000 * USD, fee: int = 0) -> dict[str, ReserveState]:
    return {
        WETH: make_reserve(WETH, 0, price=weth_price, ltv=8050, lt=8300, bonus=10500, fee=fee, emode=1),
        USDC: make_reserve(USDC, 1, price=1 * USD, decimals=6, ltv=7700, lt=7900, bonus=10450, fee=fee),
        WBTC: make_reserve(WBTC, 2, price=60_000 * USD, decimals=8, ltv=7300, lt=7800, bonus=10500, fee=fee),
    }


# ------------------------------------------------------------------------------------------ config


def test_config_bitmap_decodes_every_field() -> None:
    data = config_bitmap(
        ltv=8050,
        lt=8300,
        bonus=10500,
        decimals=6,
        stable=True,
        paused=True,
        fee=1000,
        emode=3,
        debt_ceiling=12345,
    )
    c = ReserveConfig.from_bitmap(data)
    assert (c.ltv, c.liquidation_threshold, c.liquidation_bonus, c.decimals) == (8050, 8300, 10500, 6)
    assert (c.active, c.frozen, c.borrowing_enabled, c.stable_borrowing_enabled, c.paused) == (
        True,
        False,
        True,
        True,
        True,
    )
    assert (c.reserve_factor, c.liquidation_protocol_fee, c.emode_category, c.debt_ceiling) == (
        1000,
        1000,
        3,
        12345,
    )
    assert (c.borrow_cap, c.supply_cap, c.unbacked_mint_cap) == (0, 0, 0)
    assert ReserveConfig.from_bitmap((123 << 80) | (456 << 116)).borrow_cap == 123
    assert ReserveConfig.from_bitmap((123 << 80) | (456 << 116)).supply_cap == 456


def test_user_bitmap_bits() -> None:
    p = position({}, collateral=(0, 5), borrowing=(5, 7))
    assert p.is_using_as_collateral(0) and not p.is_borrowing(0)
    assert p.is_using_as_collateral(5) and p.is_borrowing(5)
    assert p.is_borrowing(7) and not p.is_using_as_collateral(7)
    assert not p.is_using_as_collateral_or_borrowing(1)


# ------------------------------------------------------------------------------------------ interest


def test_linear_interest_half_year_at_5_percent() -> None:
    assert m.calculate_linear_interest(5 * RAY // 100, T0, T0 + YEAR // 2) == RAY + RAY // 40


def test_compounded_interest_small_exponents_by_hand() -> None:
    rate = 10 * RAY // 100
    assert m.calculate_compounded_interest(rate, T0, T0) == RAY
    assert m.calculate_compounded_interest(rate, T0, T0 + 1) == RAY + rate // YEAR
    # exp = 2: the second term is 2*1*bp2/2 = bp2, no third term.
    bp2 = (rate * rate + RAY // 2) // RAY // (YEAR * YEAR)
    assert m.calculate_compounded_interest(rate, T0, T0 + 2) == RAY + rate * 2 // YEAR + bp2
    # exp = 3: second = 3*2*bp2/2, third = 3*2*1*bp3/6.
    bp3 = (bp2 * rate + RAY // 2) // RAY // YEAR
    assert m.calculate_compounded_interest(rate, T0, T0 + 3) == RAY + rate * 3 // YEAR + 3 * bp2 + bp3


def test_compounded_interest_one_year_at_100_percent_is_the_truncated_series() -> None:
    # 1 + 1 + 1/2 + 1/6 (minus the tiny per-second corrections): ~2.6667, below e = 2.718.
    value = m.calculate_compounded_interest(RAY, T0, T0 + YEAR)
    assert 2_666_660 * RAY // 1_000_000 < value < 2_666_667 * RAY // 1_000_000


def test_time_going_backwards_is_an_error() -> None:
    with pytest.raises(ValueError):
        m.calculate_compounded_interest(RAY, T0, T0 - 1)


def test_normalized_indexes_use_the_stored_value_in_the_update_block() -> None:
    r = make_reserve(WETH, 0, price=1, liquidity_rate=RAY, variable_rate=RAY, liquidity_index=RAY + 7)
    assert m.normalized_income(r, T0) == RAY + 7
    assert m.normalized_income(r, T0 + YEAR) == ((2 * RAY) * (RAY + 7) + RAY // 2) // RAY
    assert m.normalized_debt(r, T0 + YEAR) == m.calculate_compounded_interest(RAY, T0, T0 + YEAR)


def test_stable_debt_compounds_from_the_users_own_timestamp() -> None:
    b = UserReserve(stable_debt_principal=1000 * 10**6, stable_rate=RAY // 10, stable_last_update=T0 - 100)
    interest = m.calculate_compounded_interest(RAY // 10, T0 - 100, T0)
    assert m.stable_debt_balance(b, T0) == (1000 * 10**6 * interest + RAY // 2) // RAY
    assert m.stable_debt_balance(UserReserve(), T0) == 0


# ------------------------------------------------------------------------------------------ account data


def test_account_data_one_collateral_one_debt_by_hand() -> None:
    reserves = market()
    p = position(
        {
            USDC: UserReserve(scaled_a_token_balance=1000 * 10**6),
            WETH: UserReserve(scaled_variable_debt=WAD // 4),
        },
        collateral=(1,),
        borrowing=(0,),
    )
    a = m.user_account_data(p, reserves, {}, T0)
    # 1000 USDC at $1 = $1000; 0.25 WETH at $2000 = $500. HF = 1000 * 0.79 / 500 = 1.58.
    assert a.as_tuple() == (1000 * USD, 500 * USD, 770 * USD - 500 * USD, 7900, 7700, 158 * WAD // 100)
    assert not a.liquidatable


def test_weighted_averages_round_down() -> None:
    reserves = market()
    p = position(
        {
            USDC: UserReserve(scaled_a_token_balance=1 * 10**6),
            WBTC: UserReserve(scaled_a_token_balance=1),  # 1 sat = $0.0006 = 60000 base units
        },
        collateral=(1, 2),
    )
    a = m.user_account_data(p, reserves, {}, T0)
    total = USD + 60_000
    assert a.total_collateral_base == total
    assert a.ltv == (USD * 7700 + 60_000 * 7300) // total
    assert a.current_liquidation_threshold == (USD * 7900 + 60_000 * 7800) // total
    assert a.health_factor == UINT256_MAX
    assert a.available_borrows_base == (total * a.ltv + 5000) // 10_000


def test_empty_position_and_no_debt_give_max_health_factor() -> None:
    reserves = market()
    empty = UserPosition(user="0x" + "99" * 20, config=0)
    assert m.user_account_data(empty, reserves, {}, T0).as_tuple() == (0, 0, 0, 0, 0, UINT256_MAX)


def test_collateral_bit_and_threshold_gate_the_collateral() -> None:
    reserves = market()
    reserves[DAI] = make_reserve(DAI, 3, price=USD, ltv=0, lt=0, bonus=0)
    balances = {
        USDC: UserReserve(scaled_a_token_balance=1000 * 10**6),
        DAI: UserReserve(scaled_a_token_balance=500 * WAD),
        WETH: UserReserve(scaled_a_token_balance=WAD),
    }
    # USDC collateral; WETH supplied but not collateral; DAI collateral bit set but threshold 0.
    a = m.user_account_data(position(balances, collateral=(1, 3)), reserves, {}, T0)
    assert a.total_collateral_base == 1000 * USD
    assert not a.has_zero_ltv_collateral
    # LTV 0 with a threshold: counts for the threshold, not the LTV, and flags hasZeroLtvCollateral.
    reserves[DAI] = make_reserve(DAI, 3, price=USD, ltv=0, lt=7000, bonus=10500)
    a = m.user_account_data(position(balances, collateral=(1, 3)), reserves, {}, T0)
    assert a.total_collateral_base == 1500 * USD
    assert a.ltv == 1000 * USD * 7700 // (1500 * USD)
    assert a.current_liquidation_threshold == (1000 * 7900 + 500 * 7000) * USD // (1500 * USD)
    assert a.has_zero_ltv_collateral


def test_emode_thresholds_and_price_source() -> None:
    reserves = market()
    cat_no_oracle = {1: EModeCategory(1, 9000, 9300, 10100)}
    p = position(
        {
            WETH: UserReserve(scaled_a_token_balance=WAD),
            USDC: UserReserve(scaled_a_token_balance=1000 * 10**6),
        },
        collateral=(0, 1),
        borrowing=(0,),
        emode=1,
    )
    a = m.user_account_data(p, reserves, cat_no_oracle, T0)
    # WETH (in the category) uses 9000/9300, USDC (outside) its own 7700/7900.
    assert a.total_collateral_base == 3000 * USD
    assert a.ltv == (2000 * 9000 + 1000 * 7700) // 3000
    assert a.current_liquidation_threshold == (2000 * 9300 + 1000 * 7900) // 3000
    # With a category price source, assets of the category are valued at the source's price.
    cat_oracle = {1: EModeCategory(1, 9000, 9300, 10100, price_source=DAI, price=1900 * USD)}
    a = m.user_account_data(p, reserves, cat_oracle, T0)
    assert a.total_collateral_base == 2900 * USD
    with pytest.raises(UnknownReserveError):
        m.user_account_data(p, reserves, {}, T0)


def test_interest_accrues_into_the_account_data() -> None:
    reserves = market()
    reserves[USDC] = make_reserve(
        USDC, 1, price=USD, decimals=6, ltv=7700, lt=7900, bonus=10450, liquidity_rate=RAY // 10
    )
    reserves[WETH] = make_reserve(WETH, 0, price=2000 * USD, ltv=8050, lt=8300, variable_rate=RAY // 5)
    p = position(
        {
            USDC: UserReserve(scaled_a_token_balance=1000 * 10**6),
            WETH: UserReserve(scaled_variable_debt=WAD // 4),
        },
        collateral=(1,),
        borrowing=(0,),
    )
    a = m.user_account_data(p, reserves, {}, T0 + YEAR)
    assert a.total_collateral_base == 1100 * USD  # linear: exactly +10%
    debt = (WAD // 4 * m.calculate_compounded_interest(RAY // 5, T0, T0 + YEAR) + RAY // 2) // RAY
    assert a.total_debt_base == debt * 2000 * USD // WAD


# ------------------------------------------------------------------------------------------ liquidation


def liquidatable_weth_usdc(
    fee: int = 0, weth_price: int = 1800 * USD
) -> tuple[dict[str, ReserveState], UserPosition]:
    """The devnet fact: 10 WETH at $2000 backing 15,000 USDC; WETH to $1800 (HF 0.99)."""
    reserves = market(weth_price=weth_price, fee=fee)
    p = position(
        {
            WETH: UserReserve(scaled_a_token_balance=10 * WAD),
            USDC: UserReserve(scaled_variable_debt=15_000 * 10**6),
        },
        collateral=(0,),
        borrowing=(1,),
    )
    return reserves, p


def test_liquidation_matches_the_devnet_fact() -> None:
    reserves, p = liquidatable_weth_usdc()
    o = m.liquidation_outcome(p, reserves, {}, WETH, USDC, UINT256_MAX, T0)
    assert o.health_factor == 996 * WAD // 1000  # 18000 * 0.83 / 15000
    assert o.close_factor == 5000
    assert o.actual_debt_to_cover == 7500 * 10**6
    assert o.collateral_to_liquidator == 4_374_999_999_999_999_999
    assert (o.protocol_fee, o.variable_debt_burned, o.stable_debt_burned) == (0, 7500 * 10**6, 0)
    assert not o.debt_fully_repaid and not o.collateral_exhausted
    # Bonus value: 4.374999999999999999 WETH * $1800 - $7500 = $374.99...
    assert o.bonus_value_base == 4_374_999_999_999_999_999 * 1800 * USD // WAD - 7500 * USD


def test_protocol_fee_is_a_share_of_the_bonus() -> None:
    reserves, p = liquidatable_weth_usdc(fee=1000)
    o = m.liquidation_outcome(p, reserves, {}, WETH, USDC, UINT256_MAX, T0)
    total = 4_374_999_999_999_999_999
    bonus_part = total - (total * 10_000 + 10_500 // 2) // 10_500
    fee = (bonus_part * 1000 + 5000) // 10_000
    assert (o.collateral_to_liquidator, o.protocol_fee) == (total - fee, fee)
    assert o.protocol_fee_scaled == fee  # index 1 ray


def test_close_factor_switches_at_0_95() -> None:
    assert m.CLOSE_FACTOR_HF_THRESHOLD == 95 * WAD // 100
    reserves, p = liquidatable_weth_usdc()
    half = m.liquidation_outcome(
        p, reserves, {}, WETH, USDC, UINT256_MAX, T0, health_factor=m.CLOSE_FACTOR_HF_THRESHOLD + 1
    )
    full = m.liquidation_outcome(
        p, reserves, {}, WETH, USDC, UINT256_MAX, T0, health_factor=m.CLOSE_FACTOR_HF_THRESHOLD
    )
    assert (half.close_factor, full.close_factor) == (5000, 10000)
    assert half.actual_debt_to_cover == 7500 * 10**6
    # All the debt at 100%: 15,000 USDC needs 8.75 WETH of the 10.
    assert full.actual_debt_to_cover == 15_000 * 10**6
    assert full.debt_fully_repaid


def test_collateral_cap_reduces_the_debt_repaid() -> None:
    reserves, p = liquidatable_weth_usdc(weth_price=1400 * USD)  # HF 0.77: close factor 100%
    o = m.liquidation_outcome(p, reserves, {}, WETH, USDC, UINT256_MAX, T0)
    assert o.collateral_to_liquidator == 10 * WAD and o.collateral_exhausted
    # debt = (1400e8 * 10e18 * 1e6 / (1e8 * 1e18)).percentDiv(10500) = 14000e6 / 1.05
    assert o.actual_debt_to_cover == (14_000 * 10**6 * 10_000 + 10_500 // 2) // 10_500


def test_partial_cover_and_stable_debt_split() -> None:
    reserves, p = liquidatable_weth_usdc()
    p = p.with_reserve(
        USDC,
        UserReserve(
            scaled_variable_debt=1000 * 10**6,
            stable_debt_principal=14_000 * 10**6,
            stable_rate=0,
            stable_last_update=T0,
        ),
    )
    o = m.liquidation_outcome(p, reserves, {}, WETH, USDC, 3000 * 10**6, T0)
    assert o.actual_debt_to_cover == 3000 * 10**6
    assert (o.variable_debt_burned, o.stable_debt_burned) == (1000 * 10**6, 2000 * 10**6)


def test_not_liquidatable_reasons() -> None:
    reserves, p = liquidatable_weth_usdc(weth_price=2000 * USD)
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, {}, WETH, USDC, UINT256_MAX, T0)
    assert e.value.reason == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
    reserves, p = liquidatable_weth_usdc()
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, {}, USDC, USDC, UINT256_MAX, T0)
    assert e.value.reason == "COLLATERAL_CANNOT_BE_LIQUIDATED"
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, {}, WETH, WBTC, UINT256_MAX, T0)
    assert e.value.reason == "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"
    reserves[USDC] = make_reserve(USDC, 1, price=USD, decimals=6, ltv=7700, lt=7900, bonus=10450, paused=True)
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, {}, WETH, USDC, UINT256_MAX, T0)
    assert e.value.reason == "RESERVE_PAUSED"


def test_emode_bonus_and_price_source_in_liquidation() -> None:
    reserves, p = liquidatable_weth_usdc()
    p = UserPosition(p.user, p.config, 1, p.reserves)
    cats = {1: EModeCategory(1, 9000, 9300, 10100, price_source=DAI, price=1800 * USD)}
    # HF with the category threshold 93%: 18000 * 0.93 / 15000 = 1.116 -> not liquidatable.
    with pytest.raises(NotLiquidatable):
        m.liquidation_outcome(p, reserves, cats, WETH, USDC, UINT256_MAX, T0)
    o = m.liquidation_outcome(p, reserves, cats, WETH, USDC, UINT256_MAX, T0, health_factor=WAD - 1)
    assert o.liquidation_bonus == 10100
    # Both prices come from the category source ($1800 each): 7500 USDC -> 7500/1800 WETH * 1.01.
    assert (o.collateral_price, o.debt_price) == (1800 * USD, 1800 * USD)
    # 7500 "USDC" at the source's $1800 is worth more than the 10 WETH: capped at the balance.
    assert o.collateral_to_liquidator == 10 * WAD and o.collateral_exhausted
    debt_needed = 1800 * USD * 10 * WAD * 10**6 // (1800 * USD * WAD)
    assert o.actual_debt_to_cover == (debt_needed * 10_000 + 10_100 // 2) // 10_100


def test_best_liquidation_picks_the_largest_bonus_value() -> None:
    reserves, p = liquidatable_weth_usdc(weth_price=1700 * USD)
    p = p.with_reserve(WBTC, UserReserve(scaled_a_token_balance=10**6))  # 0.01 BTC = $600
    p = UserPosition(p.user, p.config | (1 << 5), p.emode_category, p.reserves)
    best = m.best_liquidation(p, reserves, {}, T0)
    assert best is not None
    options = [m.liquidation_outcome(p, reserves, {}, c, USDC, UINT256_MAX, T0) for c in (WETH, WBTC)]
    assert best.bonus_value_base == max(o.bonus_value_base for o in options)
    assert best.collateral_asset == WETH  # the WBTC is too small to cover half the debt
    healthy, hp = liquidatable_weth_usdc(weth_price=2000 * USD)
    assert m.best_liquidation(hp, healthy, {}, T0) is None


# ------------------------------------------------------------------------------------------ properties

amounts = st.integers(min_value=1, max_value=10**30)
prices = st.integers(min_value=1, max_value=10**14)


@settings(max_examples=200, deadline=None)
@given(coll=amounts, debt=amounts, cp=prices, dp=prices, bump=st.integers(min_value=1, max_value=10**12))
def test_health_factor_falls_when_the_debt_price_rises(
    coll: int, debt: int, cp: int, dp: int, bump: int
) -> None:
    def hf(debt_price: int) -> int:
        reserves = {
            WETH: make_reserve(WETH, 0, price=cp, ltv=8000, lt=8250),
            USDC: make_reserve(USDC, 1, price=debt_price, decimals=6),
        }
        p = position(
            {WETH: UserReserve(scaled_a_token_balance=coll), USDC: UserReserve(scaled_variable_debt=debt)},
            collateral=(0,),
            borrowing=(1,),
        )
        return m.user_account_data(p, reserves, {}, T0).health_factor

    assert hf(dp + bump) <= hf(dp)


@settings(max_examples=200, deadline=None)
@given(coll=amounts, cp=prices)
def test_no_debt_means_max_health_factor(coll: int, cp: int) -> None:
    reserves = {WETH: make_reserve(WETH, 0, price=cp)}
    p = position({WETH: UserReserve(scaled_a_token_balance=coll)}, collateral=(0,))
    assert m.user_account_data(p, reserves, {}, T0).health_factor == UINT256_MAX


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(min_value=0, max_value=10 * RAY),
    dt=st.integers(min_value=0, max_value=5 * YEAR),
    more=st.integers(min_value=0, max_value=YEAR),
)
def test_interest_is_monotone_in_time(rate: int, dt: int, more: int) -> None:
    c1 = m.calculate_compounded_interest(rate, T0, T0 + dt)
    c2 = m.calculate_compounded_interest(rate, T0, T0 + dt + more)
    assert RAY <= c1 <= c2
    assert m.calculate_linear_interest(rate, T0, T0 + dt) <= c1


@settings(max_examples=300, deadline=None)
@given(
    coll=st.integers(min_value=10**6, max_value=10**26),
    debt=st.integers(min_value=10**3, max_value=10**14),
    cp=st.integers(min_value=10**6, max_value=10**13),
    cover=st.integers(min_value=1, max_value=2**256 - 1),
    fee=st.sampled_from([0, 1000, 5000]),
)
def test_liquidation_bounds(coll: int, debt: int, cp: int, cover: int, fee: int) -> None:
    reserves = {
        WETH: make_reserve(WETH, 0, price=cp, ltv=8000, lt=8250, bonus=10500, fee=fee),
        USDC: make_reserve(USDC, 1, price=USD, decimals=6),
    }
    p = position(
        {WETH: UserReserve(scaled_a_token_balance=coll), USDC: UserReserve(scaled_variable_debt=debt)},
        collateral=(0,),
        borrowing=(1,),
    )
    reason = ""
    try:
        o = m.liquidation_outcome(p, reserves, {}, WETH, USDC, cover, T0)
    except NotLiquidatable as exc:
        reason = exc.reason
    if reason:
        assert reason in {"HEALTH_FACTOR_NOT_BELOW_THRESHOLD", "INVALID_BURN_AMOUNT"}
        return
    assert o.actual_debt_to_cover <= min(cover, (debt * o.close_factor + 5000) // 10_000)
    assert o.collateral_to_liquidator + o.protocol_fee <= coll
    assert o.protocol_fee <= o.collateral_to_liquidator
