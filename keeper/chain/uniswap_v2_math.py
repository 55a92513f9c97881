"""Uniswap V2 swap math, exactly as `UniswapV2Library` (v2-periphery) computes it.

`getAmountOut`: amountIn * 997 * reserveOut / (reserveIn * 1000 + amountIn * 997), floored.
`getAmountIn`: reserveIn * amountOut * 1000 / ((reserveOut - amountOut) * 997) + 1.
The fee is expressed in basis points (30 = 0.3%, the Uniswap V2 fee); with fee_bps=30 the results equal
the library's to the wei (numerator and denominator are both scaled by 10, so every floor is the same).
Forks with other fees (e.g. 25 bps) use the same formula with their fee.

Inputs the library would revert on raise `ValueError` with the library's reason string.
"""

from __future__ import annotations

from collections.abc import Sequence

FEE_DENOMINATOR = 10_000
DEFAULT_FEE_BPS = 30


def _check_fee(fee_bps: int) -> int:
    if not 0 <= fee_bps < FEE_DENOMINATOR:
        raise ValueError(f"fee_bps out of range: {fee_bps}")
    return FEE_DENOMINATOR - fee_bps


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS) -> int:
    """Output for an exact `amount_in`, as UniswapV2Library.getAmountOut."""
    if amount_in <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    gamma = _check_fee(fee_bps)
    amount_in_with_fee = amount_in * gamma
    numerator = amount_in_with_fee * reserve_out
    denominator = reserve_in * FEE_DENOMINATOR + amount_in_with_fee
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS) -> int:
    """Input needed for an exact `amount_out`, as UniswapV2Library.getAmountIn."""
    if amount_out <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    if amount_out >= reserve_out:
        # The library's SafeMath `sub` reverts for amount_out > reserve_out; amount_out == reserve_out
        # divides by zero. Either way the router reverts.
        raise ValueError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    gamma = _check_fee(fee_bps)
    numerator = reserve_in * amount_out * FEE_DENOMINATOR
    denominator = (reserve_out - amount_out) * gamma
    return numerator // denominator + 1


def get_amounts_out(
    amount_in: int, reserves: Sequence[tuple[int, int]], fee_bps: int = DEFAULT_FEE_BPS
) -> list[int]:
    """Amounts along a path, as UniswapV2Library.getAmountsOut; `reserves[i]` = (reserve_in, reserve_out)
    of hop i."""
    amounts = [amount_in]
    for reserve_in, reserve_out in reserves:
        amounts.append(get_amount_out(amounts[-1], reserve_in, reserve_out, fee_bps))
    return amounts


def get_amounts_in(
    amount_out: int, reserves: Sequence[tuple[int, int]], fee_bps: int = DEFAULT_FEE_BPS
) -> list[int]:
    """Amounts along a path, as UniswapV2Library.getAmountsIn; `reserves[i]` = (reserve_in, reserve_out)
    of hop i (in path order, first hop first)."""
    amounts = [amount_out]
    for reserve_in, reserve_out in reversed(reserves):
        amounts.insert(0, get_amount_in(amounts[0], reserve_in, reserve_out, fee_bps))
    return amounts


def quote(amount_a: int, reserve_a: int, reserve_b: int) -> int:
    """UniswapV2Library.quote: the equivalent amount of B at the reserves ratio (no fee), floored."""
    if amount_a <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_AMOUNT")
    if reserve_a <= 0 or reserve_b <= 0:
        raise ValueError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    return amount_a * reserve_b // reserve_a
