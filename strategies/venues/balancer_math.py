"""Balancer V2 stable math in exact integers: FixedPoint, Math, StableMath and the ComposableStablePool
swap path (BaseGeneralPool fees and scaling), ported from balancer-v2-monorepo (pool-stable 2023, the
bytecode of the `20230206-composable-stable-pool-v3` deployment).

Every operation rounds exactly as the Solidity does and raises `BalancerMathError` where the contract
reverts (checked overflow/underflow, a Newton iteration that does not converge, a balance above the
Vault's 112 bits), with the contract's error name. Amounts are uint256 in Python ints.

Swap path of a ComposableStablePool (`BaseGeneralPool._swapGivenIn` / `_swapGivenOut`, then
`ComposableStablePool._onRegularSwap`), for a swap between two of its tokens (not its BPT):

- GIVEN_IN: the swap fee is taken from the raw amount first (`amount - amount.mulUp(fee)`), then the
  amount and every balance are upscaled (`mulDown` by the scaling factor), the BPT balance is dropped,
  the invariant is computed from the upscaled balances at the current amplification, the out balance is
  solved for, `out = balanceOut - newBalanceOut - 1`, and downscaled rounding down (`divDown`).
- GIVEN_OUT: upscale, solve for the in balance, `in = newBalanceIn - balanceIn + 1`, downscale rounding
  up (`divUp`), then the fee is added on top (`amount.divUp(fee.complement())`).

Scaling factor of a token: `(1e18 * 10**(18 - decimals)).mulDown(rate)`, where rate is the pool's cached
token rate (1e18 without a rate provider; the BPT's is 1e18).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AMP_PRECISION",
    "MAX_BALANCE",
    "MAX_UINT256",
    "ONE",
    "BalancerMathError",
    "add_swap_fee_amount",
    "calc_in_given_out",
    "calc_out_given_in",
    "calculate_invariant",
    "complement",
    "div_down",
    "div_up",
    "downscale_down",
    "downscale_up",
    "fp_div_down",
    "fp_div_up",
    "fp_mul_down",
    "fp_mul_up",
    "marginal_price",
    "scaling_factor",
    "subtract_swap_fee_amount",
    "swap_given_in",
    "swap_given_out",
    "token_balance_given_invariant",
    "upscale",
]

ONE = 10**18
AMP_PRECISION = 1_000
MAX_UINT256 = 2**256 - 1
MAX_BALANCE = 2**112 - 1
"""The Vault stores a pool's balance of a token (cash + managed) in 112 bits."""
_LOOP_LIMIT = 255


class BalancerMathError(ArithmeticError):
    """The pool (or the Vault) would revert with this error."""


# ---------------------------------------------------------------------------------- Math (checked)


def _add(a: int, b: int) -> int:
    c = a + b
    if c > MAX_UINT256:
        raise BalancerMathError("ADD_OVERFLOW")
    return c


def _sub(a: int, b: int) -> int:
    if b > a:
        raise BalancerMathError("SUB_OVERFLOW")
    return a - b


def _mul(a: int, b: int) -> int:
    c = a * b
    if c > MAX_UINT256:
        raise BalancerMathError("MUL_OVERFLOW")
    return c


def _wrap(a: int) -> int:
    """Solidity 0.7 unchecked arithmetic (plain `*`, `+`, `-`): modulo 2**256."""
    return a % (MAX_UINT256 + 1)


def div_down(a: int, b: int) -> int:
    """`Math.divDown`."""
    if b == 0:
        raise BalancerMathError("ZERO_DIVISION")
    return a // b


def div_up(a: int, b: int) -> int:
    """`Math.divUp`: 0 for a == 0, else 1 + (a - 1) / b."""
    if b == 0:
        raise BalancerMathError("ZERO_DIVISION")
    return 0 if a == 0 else 1 + (a - 1) // b


# ------------------------------------------------------------------------------------ FixedPoint


def fp_mul_down(a: int, b: int) -> int:
    return _mul(a, b) // ONE


def fp_mul_up(a: int, b: int) -> int:
    product = _mul(a, b)
    return 0 if product == 0 else (product - 1) // ONE + 1


def fp_div_down(a: int, b: int) -> int:
    if b == 0:
        raise BalancerMathError("ZERO_DIVISION")
    return 0 if a == 0 else _mul(a, ONE) // b


def fp_div_up(a: int, b: int) -> int:
    if b == 0:
        raise BalancerMathError("ZERO_DIVISION")
    return 0 if a == 0 else (_mul(a, ONE) - 1) // b + 1


def complement(x: int) -> int:
    return ONE - x if x < ONE else 0


# ---------------------------------------------------------------------------------- ScalingHelpers


def scaling_factor(decimals: int, rate: int = ONE) -> int:
    """`_scalingFactors()[i]` of a ComposableStablePool: `(ONE * 10**(18 - decimals)).mulDown(rate)`."""
    if not 0 <= decimals <= 18:
        raise BalancerMathError("SUB_OVERFLOW")  # Math.sub(18, decimals) in _computeScalingFactor
    return fp_mul_down(ONE * 10 ** (18 - decimals), rate)


def upscale(amount: int, factor: int) -> int:
    return fp_mul_down(amount, factor)


def downscale_down(amount: int, factor: int) -> int:
    return fp_div_down(amount, factor)


def downscale_up(amount: int, factor: int) -> int:
    return fp_div_up(amount, factor)


def subtract_swap_fee_amount(amount: int, fee: int) -> int:
    """`BasePool._subtractSwapFeeAmount`: the fee amount is rounded up."""
    return _sub(amount, fp_mul_up(amount, fee))


def add_swap_fee_amount(amount: int, fee: int) -> int:
    """`BasePool._addSwapFeeAmount`: amount / (1 - fee), rounded up."""
    return fp_div_up(amount, complement(fee))


# -------------------------------------------------------------------------------------- StableMath


def calculate_invariant(amp: int, balances: Sequence[int]) -> int:
    """`StableMath._calculateInvariant`: Newton's method on D, every division rounding down.

    amp: the amplification parameter times AMP_PRECISION (`getAmplificationParameter().value`)."""
    n = len(balances)
    total = 0
    for b in balances:
        total = _add(total, b)
    if total == 0:
        return 0
    invariant = total
    amp_times_total = _wrap(amp * n)
    for _ in range(_LOOP_LIMIT):
        d_p = invariant
        for b in balances:
            d_p = div_down(_mul(d_p, invariant), _mul(b, n))
        prev = invariant
        numerator = _mul(_add(div_down(_mul(amp_times_total, total), AMP_PRECISION), _mul(d_p, n)), invariant)
        denominator = _add(
            div_down(_mul(_wrap(amp_times_total - AMP_PRECISION), invariant), AMP_PRECISION),
            _mul(n + 1, d_p),
        )
        invariant = div_down(numerator, denominator)
        if abs(invariant - prev) <= 1:
            return invariant
    raise BalancerMathError("STABLE_INVARIANT_DIDNT_CONVERGE")


def token_balance_given_invariant(amp: int, balances: Sequence[int], invariant: int, index: int) -> int:
    """`StableMath._getTokenBalanceGivenInvariantAndAllOtherBalances`: the balance of token `index` that
    keeps `invariant` with every other balance as given (rounded up overall)."""
    n = len(balances)
    amp_times_total = _wrap(amp * n)
    total = balances[0]
    p_d = _wrap(balances[0] * n)
    for j in range(1, n):
        p_d = div_down(_mul(_mul(p_d, balances[j]), n), invariant)
        total = _add(total, balances[j])
    total = _wrap(total - balances[index])
    inv2 = _mul(invariant, invariant)
    c = _mul(_mul(div_up(inv2, _mul(amp_times_total, p_d)), AMP_PRECISION), balances[index])
    b = _add(total, _mul(div_down(invariant, amp_times_total), AMP_PRECISION))
    balance = div_up(_add(inv2, c), _add(invariant, b))
    for _ in range(_LOOP_LIMIT):
        prev = balance
        balance = div_up(_add(_mul(balance, balance), c), _sub(_add(_mul(balance, 2), b), invariant))
        if abs(balance - prev) <= 1:
            return balance
    raise BalancerMathError("STABLE_GET_BALANCE_DIDNT_CONVERGE")


def calc_out_given_in(
    amp: int, balances: Sequence[int], index_in: int, index_out: int, amount_in: int, invariant: int
) -> int:
    """`StableMath._calcOutGivenIn` on upscaled balances (BPT excluded): rounded down, minus 1."""
    moved = list(balances)
    moved[index_in] = _add(moved[index_in], amount_in)
    final_out = token_balance_given_invariant(amp, moved, invariant, index_out)
    return _sub(_sub(balances[index_out], final_out), 1)


def calc_in_given_out(
    amp: int, balances: Sequence[int], index_in: int, index_out: int, amount_out: int, invariant: int
) -> int:
    """`StableMath._calcInGivenOut` on upscaled balances (BPT excluded): rounded up, plus 1."""
    moved = list(balances)
    moved[index_out] = _sub(moved[index_out], amount_out)
    final_in = token_balance_given_invariant(amp, moved, invariant, index_in)
    return _add(_sub(final_in, balances[index_in]), 1)


# ------------------------------------------------------------------------- ComposableStablePool swaps


def _check_indexes(n: int, index_in: int, index_out: int) -> None:
    if not (0 <= index_in < n and 0 <= index_out < n) or index_in == index_out:
        raise ValueError(f"bad token indexes {index_in}, {index_out} for {n} tokens")


def swap_given_in(
    amp: int,
    swap_fee: int,
    balances: Sequence[int],
    scaling_factors: Sequence[int],
    index_in: int,
    index_out: int,
    amount_in: int,
) -> int:
    """Raw amount out of a GIVEN_IN swap of raw `amount_in` between two non-BPT tokens.

    balances, scaling_factors: raw balances and scaling factors of the pool's tokens WITHOUT its BPT
    (indexes into these). Also checks what the Vault checks: the in balance stays below 2**112 and the
    out amount does not exceed the out balance."""
    _check_indexes(len(balances), index_in, index_out)
    if len(scaling_factors) != len(balances):
        raise ValueError("one scaling factor per balance")
    if _add(balances[index_in], amount_in) > MAX_BALANCE:
        raise BalancerMathError("BALANCE_TOTAL_OVERFLOW")
    after_fee = subtract_swap_fee_amount(amount_in, swap_fee)
    up = [upscale(b, f) for b, f in zip(balances, scaling_factors, strict=True)]
    up_in = upscale(after_fee, scaling_factors[index_in])
    invariant = calculate_invariant(amp, up)
    out = downscale_down(
        calc_out_given_in(amp, up, index_in, index_out, up_in, invariant), scaling_factors[index_out]
    )
    _sub(balances[index_out], out)  # Vault: decreaseCash
    return out


def swap_given_out(
    amp: int,
    swap_fee: int,
    balances: Sequence[int],
    scaling_factors: Sequence[int],
    index_in: int,
    index_out: int,
    amount_out: int,
) -> int:
    """Raw amount in (fee included) of a GIVEN_OUT swap paying raw `amount_out` (same conventions as
    `swap_given_in`)."""
    _check_indexes(len(balances), index_in, index_out)
    if len(scaling_factors) != len(balances):
        raise ValueError("one scaling factor per balance")
    up = [upscale(b, f) for b, f in zip(balances, scaling_factors, strict=True)]
    up_out = upscale(amount_out, scaling_factors[index_out])
    invariant = calculate_invariant(amp, up)
    amount_in = downscale_up(
        calc_in_given_out(amp, up, index_in, index_out, up_out, invariant), scaling_factors[index_in]
    )
    amount_in = add_swap_fee_amount(amount_in, swap_fee)
    _sub(balances[index_out], amount_out)  # Vault: decreaseCash
    if _add(balances[index_in], amount_in) > MAX_BALANCE:
        raise BalancerMathError("BALANCE_TOTAL_OVERFLOW")
    return amount_in


def marginal_price(
    amp: int, balances: Sequence[int], scaling_factors: Sequence[int], index_in: int, index_out: int
) -> tuple[int, int]:
    """(num, den): raw units of token `index_out` per raw unit of token `index_in` for an infinitesimal
    trade at the pool's current balances, before the swap fee: minus the slope of the invariant's level
    set through the upscaled balances, at the invariant the pool computes, converted to raw units.

    With Ann = amp * n / AMP_PRECISION and the StableSwap invariant F = Ann*S + D - Ann*D - D^(n+1)/(n^n*P),
    dF/dx_i = Ann + D^(n+1) / (n^n * P * x_i), and the price is (dF/dx_i) / (dF/dx_o). Exact rational."""
    _check_indexes(len(balances), index_in, index_out)
    up = [upscale(b, f) for b, f in zip(balances, scaling_factors, strict=True)]
    if any(b == 0 for b in up):
        raise BalancerMathError("ZERO_DIVISION")
    n = len(up)
    invariant = calculate_invariant(amp, up)
    product = 1
    for b in up:
        product *= b
    d_term = AMP_PRECISION * invariant ** (n + 1)
    a_term = amp * n ** (n + 1) * product
    x_in, x_out = up[index_in], up[index_out]
    # upscaled out per upscaled in = x_out * (a_term * x_in + d_term) / (x_in * (a_term * x_out + d_term));
    # raw out per raw in = that * sf_in / sf_out
    num = x_out * (a_term * x_in + d_term) * scaling_factors[index_in]
    den = x_in * (a_term * x_out + d_term) * scaling_factors[index_out]
    return num, den
