"""Aave V2 math: hand-computed cases and properties (the integration test checks it against the pool)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.units import RAY, UINT256_MAX, WAD
from strategies.liquidations import math_v2 as m
from strategies.liquidations import math_v3
from strategies.liquidations.common import NotLiquidatable
from strategies.liquidations.model import ReserveState, UserPosition, UserReserve
from tests.unit.liquidations.helpers import T0, USDC, WBTC, WETH, make_reserve, position

YEAR = m.SECONDS_PER_YEAR
USDC_ETH = WAD // 1800  # 555555555555555 wei per USDC
USDT = "0x" + "55" * 20


def market(usdc_price: int = WAD // 2000) -> dict[str, ReserveState]:
    return {
        WETH: make_reserve(WETH, 0, price=WAD, ltv=8000, lt=8250, bonus=10500),
        USDC: make_reserve(USDC, 1, price=usdc_price, decimals=6, ltv=8000, lt=8500, bonus=10500),
        WBTC: make_reserve(WBTC, 2, price=30 * WAD, decimals=8, ltv=7000, lt=7500, bonus=11000),
        USDT: make_reserve(USDT, 3, price=usdc_price, decimals=6, ltv=0, lt=0, bonus=0),
    }


def test_v2_compounding_divides_the_rate_first() -> None:
    rate = 7 * RAY // 100
    rps = rate // YEAR
    assert m.calculate_compounded_interest(rate, T0, T0 + 1) == RAY + rps
    assert m.calculate_compounded_interest(rate, T0, T0 + 2) == RAY + 2 * rps + (rps * rps + RAY // 2) // RAY
    bp2 = (rps * rps + RAY // 2) // RAY
    bp3 = (bp2 * rps + RAY // 2) // RAY
    assert m.calculate_compounded_interest(rate, T0, T0 + 3) == RAY + 3 * rps + 3 * bp2 + bp3
    # Over a year the two versions' roundings differ (this is why V2 has its own function).
    assert m.calculate_compounded_interest(rate, T0, T0 + YEAR) != math_v3.calculate_compounded_interest(
        rate, T0, T0 + YEAR
    )


def test_account_data_in_eth_by_hand() -> None:
    p = position(
        {
            USDC: UserReserve(scaled_a_token_balance=1000 * 10**6),
            USDT: UserReserve(scaled_a_token_balance=5000 * 10**6),  # collateral bit set, threshold 0
            WETH: UserReserve(
                scaled_variable_debt=WAD // 8, stable_debt_principal=WAD // 8, stable_last_update=T0
            ),
        },
        collateral=(1, 3),
        borrowing=(0,),
    )
    a = m.user_account_data(p, market(), T0)
    # 1000 USDC at 1/2000 ETH = 0.5 ETH; debt 0.25 ETH; HF = 0.5 * 0.85 / 0.25 = 1.7.
    assert a.as_tuple() == (WAD // 2, WAD // 4, WAD // 2 * 8 // 10 - WAD // 4, 8500, 8000, 17 * WAD // 10)


def test_no_debt_and_empty() -> None:
    assert m.user_account_data(UserPosition("0x" + "99" * 20, 0), market(), T0).health_factor == UINT256_MAX
    p = position({WETH: UserReserve(scaled_a_token_balance=WAD)}, collateral=(0,))
    a = m.user_account_data(p, market(), T0)
    assert (a.total_collateral_base, a.health_factor, a.available_borrows_base) == (
        WAD,
        UINT256_MAX,
        WAD * 8 // 10,
    )


def test_stable_debt_uses_v2_compounding() -> None:
    b = UserReserve(stable_debt_principal=WAD, stable_rate=RAY // 10, stable_last_update=T0 - 86400)
    interest = m.calculate_compounded_interest(RAY // 10, T0 - 86400, T0)
    assert m.stable_debt_balance(b, T0) == (WAD * interest + RAY // 2) // RAY


def liquidatable(usdc_price: int = USDC_ETH) -> tuple[dict[str, ReserveState], UserPosition]:
    """10 WETH backing 15,000 USDC with USDC worth 1/1800 ETH: HF = 10 * 0.825 / 8.333 = 0.99."""
    p = position(
        {
            WETH: UserReserve(scaled_a_token_balance=10 * WAD),
            USDC: UserReserve(scaled_variable_debt=15_000 * 10**6),
        },
        collateral=(0,),
        borrowing=(1,),
    )
    return market(usdc_price), p


def test_liquidation_applies_the_bonus_before_dividing() -> None:
    reserves, p = liquidatable()
    o = m.liquidation_outcome(p, reserves, WETH, USDC, UINT256_MAX, T0)
    assert o.health_factor < WAD
    assert o.actual_debt_to_cover == 7500 * 10**6
    expected = (USDC_ETH * 7500 * 10**6 * WAD * 10500 + 5000) // 10_000 // (WAD * 10**6)
    assert o.collateral_to_liquidator == expected
    assert (o.protocol_fee, o.protocol_fee_scaled) == (0, 0)


def test_close_factor_is_always_half() -> None:
    reserves, p = liquidatable(usdc_price=WAD // 1000)  # HF 0.55
    o = m.liquidation_outcome(p, reserves, WETH, USDC, UINT256_MAX, T0)
    assert o.health_factor < 95 * WAD // 100
    assert o.close_factor == 5000
    assert o.actual_debt_to_cover == 7500 * 10**6


def test_collateral_cap_reduces_the_debt_repaid() -> None:
    reserves, p = liquidatable(usdc_price=WAD // 500)  # 7500 USDC = 15 ETH > 10 WETH
    o = m.liquidation_outcome(p, reserves, WETH, USDC, UINT256_MAX, T0)
    assert o.collateral_to_liquidator == 10 * WAD and o.collateral_exhausted
    needed = WAD * 10 * WAD * 10**6 // (WAD // 500 * WAD)
    assert o.actual_debt_to_cover == (needed * 10_000 + 10_500 // 2) // 10_500


def test_not_liquidatable_reasons() -> None:
    reserves, p = liquidatable(usdc_price=WAD // 2000)
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, WETH, USDC, UINT256_MAX, T0)
    assert e.value.reason == "LPCM_HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
    reserves, p = liquidatable()
    p = UserPosition(
        p.user, p.config | (1 << 7), 0, {**p.reserves, USDT: UserReserve(scaled_a_token_balance=10**6)}
    )
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, USDT, USDC, UINT256_MAX, T0)
    assert e.value.reason == "LPCM_COLLATERAL_CANNOT_BE_LIQUIDATED"
    with pytest.raises(NotLiquidatable) as e:
        m.liquidation_outcome(p, reserves, WETH, WBTC, UINT256_MAX, T0)
    assert e.value.reason == "LPCM_SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"


def test_best_liquidation() -> None:
    reserves, p = liquidatable()
    best = m.best_liquidation(p, reserves, T0)
    assert best is not None and (best.collateral_asset, best.debt_asset) == (WETH, USDC)
    healthy, hp = liquidatable(usdc_price=WAD // 2000)
    assert m.best_liquidation(hp, healthy, T0) is None


@settings(max_examples=300, deadline=None)
@given(
    coll=st.integers(min_value=10**6, max_value=10**26),
    debt=st.integers(min_value=10**3, max_value=10**14),
    dp=st.integers(min_value=10**9, max_value=10**16),
    cover=st.integers(min_value=1, max_value=2**256 - 1),
)
def test_liquidation_bounds(coll: int, debt: int, dp: int, cover: int) -> None:
    reserves = market(usdc_price=dp)
    p = position(
        {WETH: UserReserve(scaled_a_token_balance=coll), USDC: UserReserve(scaled_variable_debt=debt)},
        collateral=(0,),
        borrowing=(1,),
    )
    reason = ""
    try:
        o = m.liquidation_outcome(p, reserves, WETH, USDC, cover, T0)
    except NotLiquidatable as exc:
        reason = exc.reason
    if reason:
        assert reason in {"LPCM_HEALTH_FACTOR_NOT_BELOW_THRESHOLD", "CT_INVALID_BURN_AMOUNT"}
        return
    assert o.actual_debt_to_cover <= min(cover, (debt * 5000 + 5000) // 10_000)
    assert o.collateral_to_liquidator <= coll


@settings(max_examples=200, deadline=None)
@given(
    coll=st.integers(min_value=1, max_value=10**30),
    debt=st.integers(min_value=1, max_value=10**20),
    dp=st.integers(min_value=1, max_value=10**18),
    bump=st.integers(min_value=1, max_value=10**18),
)
def test_health_factor_falls_when_the_debt_price_rises(coll: int, debt: int, dp: int, bump: int) -> None:
    p = position(
        {WETH: UserReserve(scaled_a_token_balance=coll), USDC: UserReserve(scaled_variable_debt=debt)},
        collateral=(0,),
        borrowing=(1,),
    )
    hf = [m.user_account_data(p, market(price), T0).health_factor for price in (dp, dp + bump)]
    assert hf[1] <= hf[0]
