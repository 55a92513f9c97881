"""The background arbitrageur's exact swap sizing (keeper/devnet/arbitrageur.py), against the pools' math."""

from __future__ import annotations

from math import isqrt

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3
from keeper.devnet.anvil import DEFAULT_MNEMONIC
from keeper.devnet.arbitrageur import (
    ARBITRAGEUR,
    ARBITRAGEUR_KEY,
    gap_bps_x,
    v2_amount_in_to_price,
    v2_partial_target,
    v3_partial_target,
)
from keeper.errors import DevnetError

reserves = st.integers(min_value=10**6, max_value=10**30)


def test_arbitrageur_account_is_dev_account_10() -> None:
    Account.enable_unaudited_hdwallet_features()
    derived = Account.from_mnemonic(DEFAULT_MNEMONIC, account_path="m/44'/60'/0'/0/10")
    assert derived.address == ARBITRAGEUR
    assert "0x" + derived.key.hex() == ARBITRAGEUR_KEY


@given(reserves, reserves, st.integers(min_value=1, max_value=9_999))
def test_v2_amount_is_the_largest_that_does_not_overshoot(r_in: int, r_out: int, drop_bps: int) -> None:
    # target: the input token's price (out per in) drop_bps below the current one
    num, den = r_out * (10_000 - drop_bps), r_in * 10_000
    x = v2_amount_in_to_price(r_in, r_out, num, den)

    def price_at_least_target(amount: int) -> bool:
        out = v2.get_amount_out(amount, r_in, r_out) if amount > 0 else 0
        return (r_out - out) * den >= num * (r_in + amount)

    assert x >= 0
    assert price_at_least_target(x)
    assert not price_at_least_target(x + 1)


def test_v2_amount_on_a_realistic_pair_lands_on_the_target_to_a_unit() -> None:
    # 25,000 WETH / 50M USDC (6 decimals); oracle 10% lower: sell WETH until 1,800 USDC per WETH.
    r_weth, r_usdc = 25_000 * 10**18, 50_000_000 * 10**6
    x = v2_amount_in_to_price(r_weth, r_usdc, 1_800 * 10**6, 10**18)
    out = v2.get_amount_out(x, r_weth, r_usdc)
    new_weth, new_usdc = r_weth + x, r_usdc - out
    assert new_usdc * 10**18 >= 1_800 * 10**6 * new_weth  # not past the target
    # one more USDC unit out would be past it: the pool is on the target to the last unit of USDC
    assert (new_usdc - 1) * 10**18 < 1_800 * 10**6 * new_weth


def test_v2_nothing_to_sell_when_already_at_or_below_target() -> None:
    assert v2_amount_in_to_price(10**20, 10**20, 1, 1) == 0
    assert v2_amount_in_to_price(10**20, 10**20, 2, 1) == 0


@given(
    st.integers(min_value=2**80, max_value=2**120),
    st.integers(min_value=1, max_value=10**30),
    st.integers(min_value=1, max_value=10**30),
    st.integers(min_value=1, max_value=10_000),
)
def test_v3_partial_target_is_between_the_price_and_the_oracle(
    sqrt_price: int, num: int, den: int, speed: int
) -> None:
    oracle_sqrt = isqrt((num << 192) // den)
    if not v3.MIN_SQRT_RATIO < oracle_sqrt < v3.MAX_SQRT_RATIO:
        return
    target = v3_partial_target(sqrt_price, num, den, speed)
    assert min(sqrt_price, oracle_sqrt) - 1 <= target <= max(sqrt_price, oracle_sqrt) + 1
    if speed == 10_000:
        assert abs(target - oracle_sqrt) <= 1


def test_v3_partial_target_closes_the_given_share_of_the_price_gap() -> None:
    sqrt_price = 2**96  # price 1
    target = v3_partial_target(sqrt_price, 80, 100, 5_000)  # oracle 0.8: half way is 0.9
    assert target * target <= 9 * 2**192 // 10 < (target + 1) * (target + 1)


def test_speed_out_of_range_is_refused() -> None:
    with pytest.raises(DevnetError):
        v3_partial_target(2**96, 1, 1, 0)
    with pytest.raises(DevnetError):
        v2_partial_target(1, 1, 1, 1, 10_001)


def test_gap_bps() -> None:
    assert gap_bps_x(90, 100, 1, 1) == 1_000
    assert gap_bps_x(110, 100, 1, 1) == 1_000
    assert gap_bps_x(1, 1, 1, 1) == 0
    assert gap_bps_x(2000, 1, 1800, 1) == 1_111
