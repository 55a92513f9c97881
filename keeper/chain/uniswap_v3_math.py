"""Uniswap V3 math, ported exactly from v3-core 1.0.1 / v3-periphery 1.4.4 (Solidity 0.7).

Everything is integer math with the contracts' own rounding, so a swap simulated here from a pool's
state (slot0, liquidity, tick bitmap words and each initialized tick's liquidityNet) gives the same
amounts as `UniswapV3Pool.swap` (and hence QuoterV2 and SwapRouter) to the wei.

Ported: FullMath (mulDiv, mulDivRoundingUp), UnsafeMath.divRoundingUp, TickMath (getSqrtRatioAtTick,
getTickAtSqrtRatio, bit for bit, including the log2 approximation and its tickLow/tickHi correction),
SqrtPriceMath, SwapMath.computeSwapStep, LiquidityMath.addDelta, TickBitmap.nextInitializedTickWithinOneWord
and the swap loop of UniswapV3Pool.swap, plus periphery's LiquidityAmounts.

The swap loop walks the tick bitmap one 256-bit word at a time exactly as the pool does: a step also
ends at a word boundary even when no tick is initialized there, and since each step rounds on its own,
skipping those stops would change results by a wei now and then. So the state holds the raw bitmap
words, not just a list of initialized ticks.

Where the contracts revert, these functions raise `UniswapV3MathError` with the contract's reason
string (or a short description where the contract reverts without one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import isqrt

MAX_UINT256 = 2**256 - 1
MAX_UINT160 = 2**160 - 1
MAX_UINT128 = 2**128 - 1
MAX_INT256 = 2**255 - 1
Q96 = 2**96
Q128 = 2**128
Q192 = 2**192

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

FEE_DENOMINATOR = 1_000_000
"""Fees are in hundredths of a bip (pips): 500 = 0.05%, 3000 = 0.3%."""

# The tick spacing v3-core's factory enables for each fee (plus 100 -> 1, enabled by governance on mainnet
# and by our devnet deploy).
FEE_TICK_SPACING: dict[int, int] = {100: 1, 500: 10, 3000: 60, 10000: 200}


class UniswapV3MathError(ValueError):
    """The contract would revert with these inputs."""


# --------------------------------------------------------------------------------------------- FullMath


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a * b / denominator); reverts (raises) if denominator is 0 or the result overflows uint256."""
    if denominator <= 0:
        raise UniswapV3MathError("FullMath: denominator is zero")
    result = a * b // denominator
    if result > MAX_UINT256:
        raise UniswapV3MathError("FullMath: result overflows uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a * b / denominator), as FullMath.mulDivRoundingUp."""
    result = mul_div(a, b, denominator)
    if (a * b) % denominator > 0:
        if result >= MAX_UINT256:
            raise UniswapV3MathError("FullMath: result overflows uint256")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp: ceil(x / y); like the EVM, division by zero gives 0."""
    if y == 0:
        return 0
    return x // y + (1 if x % y > 0 else 0)


# --------------------------------------------------------------------------------------------- TickMath

_TICK_FACTORS: tuple[tuple[int, int], ...] = (
    (0x2, 0xFFF97272373D413259A46990580E213A),
    (0x4, 0xFFF2E50F5F656932EF12357CF3C7FDCC),
    (0x8, 0xFFE5CACA7E10E4E61C3624EAA0941CD0),
    (0x10, 0xFFCB9843D60F6159C9DB58835C926644),
    (0x20, 0xFF973B41FA98C081472E6896DFB254C0),
    (0x40, 0xFF2EA16466C96A3843EC78B326B52861),
    (0x80, 0xFE5DEE046A99A2A811C461F1969C3053),
    (0x100, 0xFCBE86C7900A88AEDCFFC83B479AA3A4),
    (0x200, 0xF987A7253AC413176F2B074CF7815E54),
    (0x400, 0xF3392B0822B70005940C7A398E4B70F3),
    (0x800, 0xE7159475A2C29B7443B29C7FA6E889D9),
    (0x1000, 0xD097F3BDFD2022B8845AD8F792AA5825),
    (0x2000, 0xA9F746462D870FDF8A65DC1F90E061E5),
    (0x4000, 0x70D869A156D2A1B890BB3DF62BAF32F7),
    (0x8000, 0x31BE135F97D08FD981231505542FCFA6),
    (0x10000, 0x9AA508B5B7A84E1C677DE54F3E99BC9),
    (0x20000, 0x5D6AF8DEDB81196699C329225EE604),
    (0x40000, 0x2216E584F5FA1EA926041BEDFE98),
    (0x80000, 0x48A170391F7DC42444E8FA2),
)


def get_sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick) * 2^96 as TickMath.getSqrtRatioAtTick computes it (rounded up from Q128.128)."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise UniswapV3MathError("T")
    ratio = 0xFFFCB933BD6FAD37AA2D162D1A594001 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose sqrt ratio is <= sqrt_price_x96 (TickMath.getTickAtSqrtRatio, bit for bit)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise UniswapV3MathError("R")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141  # 128.128 number
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


# -------------------------------------------------------------------------------------- SqrtPriceMath


def _to_uint160(x: int) -> int:
    if x > MAX_UINT160:
        raise UniswapV3MathError("SafeCast: uint160 overflow")
    return x


def get_next_sqrt_price_from_amount0_rounding_up(
    sqrt_p_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    if amount == 0:
        return sqrt_p_x96
    numerator1 = liquidity << 96
    product = (amount * sqrt_p_x96) & MAX_UINT256  # the EVM multiplication wraps
    no_overflow = product // amount == sqrt_p_x96
    if add:
        if no_overflow:
            denominator = (numerator1 + product) & MAX_UINT256
            if denominator >= numerator1:
                return mul_div_rounding_up(numerator1, sqrt_p_x96, denominator)
        # LowGasSafeMath.add reverts on overflow
        inner = numerator1 // sqrt_p_x96 + amount
        if inner > MAX_UINT256:
            raise UniswapV3MathError("LowGasSafeMath: add overflow")
        return div_rounding_up(numerator1, inner) & MAX_UINT160
    if not (no_overflow and numerator1 > product):
        raise UniswapV3MathError("SqrtPriceMath: amount0 out of range")
    denominator = numerator1 - product
    return _to_uint160(mul_div_rounding_up(numerator1, sqrt_p_x96, denominator))


def get_next_sqrt_price_from_amount1_rounding_down(
    sqrt_p_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    if add:
        quotient = (amount << 96) // liquidity if amount <= MAX_UINT160 else mul_div(amount, Q96, liquidity)
        total = sqrt_p_x96 + quotient
        if total > MAX_UINT256:
            raise UniswapV3MathError("LowGasSafeMath: add overflow")
        return _to_uint160(total)
    if amount <= MAX_UINT160:
        quotient = div_rounding_up(amount << 96, liquidity)
    else:
        quotient = mul_div_rounding_up(amount, Q96, liquidity)
    if not sqrt_p_x96 > quotient:
        raise UniswapV3MathError("SqrtPriceMath: amount1 out of range")
    return sqrt_p_x96 - quotient


def get_next_sqrt_price_from_input(
    sqrt_p_x96: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    if sqrt_p_x96 <= 0 or liquidity <= 0:
        raise UniswapV3MathError("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount0_rounding_up(sqrt_p_x96, liquidity, amount_in, True)
    return get_next_sqrt_price_from_amount1_rounding_down(sqrt_p_x96, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(
    sqrt_p_x96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    if sqrt_p_x96 <= 0 or liquidity <= 0:
        raise UniswapV3MathError("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount1_rounding_down(sqrt_p_x96, liquidity, amount_out, False)
    return get_next_sqrt_price_from_amount0_rounding_up(sqrt_p_x96, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """Token0 between two prices for `liquidity` (SqrtPriceMath.getAmount0Delta, unsigned)."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    numerator1 = liquidity << 96
    numerator2 = sqrt_b_x96 - sqrt_a_x96
    if sqrt_a_x96 <= 0:
        raise UniswapV3MathError("SqrtPriceMath: zero price")
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b_x96), sqrt_a_x96)
    return mul_div(numerator1, numerator2, sqrt_b_x96) // sqrt_a_x96


def get_amount1_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """Token1 between two prices for `liquidity` (SqrtPriceMath.getAmount1Delta, unsigned)."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)
    return mul_div(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)


def get_amount0_delta_signed(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int) -> int:
    """Signed variant: rounds up when adding liquidity, down (and negative) when removing."""
    if liquidity < 0:
        return -get_amount0_delta(sqrt_a_x96, sqrt_b_x96, -liquidity, False)
    return get_amount0_delta(sqrt_a_x96, sqrt_b_x96, liquidity, True)


def get_amount1_delta_signed(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int) -> int:
    if liquidity < 0:
        return -get_amount1_delta(sqrt_a_x96, sqrt_b_x96, -liquidity, False)
    return get_amount1_delta(sqrt_a_x96, sqrt_b_x96, liquidity, True)


# ------------------------------------------------------------------------------------------- SwapMath


@dataclass(frozen=True, slots=True)
class SwapStep:
    sqrt_ratio_next_x96: int
    amount_in: int
    amount_out: int
    fee_amount: int


def compute_swap_step(
    sqrt_ratio_current_x96: int,
    sqrt_ratio_target_x96: int,
    liquidity: int,
    amount_remaining: int,
    fee_pips: int,
) -> SwapStep:
    """SwapMath.computeSwapStep: amount_remaining > 0 is exact input, < 0 exact output."""
    zero_for_one = sqrt_ratio_current_x96 >= sqrt_ratio_target_x96
    exact_in = amount_remaining >= 0
    amount_in = 0
    amount_out = 0

    if exact_in:
        amount_remaining_less_fee = mul_div(amount_remaining, FEE_DENOMINATOR - fee_pips, FEE_DENOMINATOR)
        amount_in = (
            get_amount0_delta(sqrt_ratio_target_x96, sqrt_ratio_current_x96, liquidity, True)
            if zero_for_one
            else get_amount1_delta(sqrt_ratio_current_x96, sqrt_ratio_target_x96, liquidity, True)
        )
        if amount_remaining_less_fee >= amount_in:
            sqrt_ratio_next_x96 = sqrt_ratio_target_x96
        else:
            sqrt_ratio_next_x96 = get_next_sqrt_price_from_input(
                sqrt_ratio_current_x96, liquidity, amount_remaining_less_fee, zero_for_one
            )
    else:
        amount_out = (
            get_amount1_delta(sqrt_ratio_target_x96, sqrt_ratio_current_x96, liquidity, False)
            if zero_for_one
            else get_amount0_delta(sqrt_ratio_current_x96, sqrt_ratio_target_x96, liquidity, False)
        )
        if -amount_remaining >= amount_out:
            sqrt_ratio_next_x96 = sqrt_ratio_target_x96
        else:
            sqrt_ratio_next_x96 = get_next_sqrt_price_from_output(
                sqrt_ratio_current_x96, liquidity, -amount_remaining, zero_for_one
            )

    reached = sqrt_ratio_target_x96 == sqrt_ratio_next_x96

    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_ratio_next_x96, sqrt_ratio_current_x96, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_ratio_next_x96, sqrt_ratio_current_x96, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(sqrt_ratio_current_x96, sqrt_ratio_next_x96, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(sqrt_ratio_current_x96, sqrt_ratio_next_x96, liquidity, False)

    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining

    if exact_in and sqrt_ratio_next_x96 != sqrt_ratio_target_x96:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR - fee_pips)
    return SwapStep(sqrt_ratio_next_x96, amount_in, amount_out, fee_amount)


# ---------------------------------------------------------------------------- LiquidityMath, TickBitmap


def add_delta(x: int, y: int) -> int:
    """LiquidityMath.addDelta: uint128 + int128, reverting 'LS' on underflow and 'LA' on overflow."""
    z = x + y
    if z < 0:
        raise UniswapV3MathError("LS")
    if z > MAX_UINT128:
        raise UniswapV3MathError("LA")
    return z


def tick_position(compressed: int) -> tuple[int, int]:
    """TickBitmap.position: (word, bit) of a compressed tick (tick // spacing)."""
    return compressed >> 8, compressed & 0xFF


def compress_tick(tick: int, tick_spacing: int) -> int:
    """tick / spacing rounded towards negative infinity, as the bitmap does."""
    return tick // tick_spacing


def next_initialized_tick_within_one_word(
    bitmap: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord over `bitmap` (word position -> 256-bit word)."""
    compressed = compress_tick(tick, tick_spacing)
    if lte:
        word_pos, bit_pos = tick_position(compressed)
        mask = (1 << bit_pos) - 1 + (1 << bit_pos)
        masked = bitmap.get(word_pos, 0) & mask
        if masked:
            msb = masked.bit_length() - 1
            return (compressed - (bit_pos - msb)) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    word_pos, bit_pos = tick_position(compressed + 1)
    mask = ~((1 << bit_pos) - 1) & MAX_UINT256
    masked = bitmap.get(word_pos, 0) & mask
    if masked:
        lsb = (masked & -masked).bit_length() - 1
        return (compressed + 1 + (lsb - bit_pos)) * tick_spacing, True
    return (compressed + 1 + (255 - bit_pos)) * tick_spacing, False


def bitmap_from_ticks(ticks: Iterable[int], tick_spacing: int) -> dict[int, int]:
    """The bitmap words a pool holds when exactly `ticks` are initialized (each a multiple of spacing)."""
    words: dict[int, int] = {}
    for tick in ticks:
        if tick % tick_spacing:
            raise UniswapV3MathError(f"tick {tick} is not a multiple of spacing {tick_spacing}")
        word_pos, bit_pos = tick_position(tick // tick_spacing)
        words[word_pos] = words.get(word_pos, 0) | (1 << bit_pos)
    return words


def ticks_from_bitmap(bitmap: Mapping[int, int], tick_spacing: int) -> list[int]:
    """The initialized ticks recorded in bitmap words, ascending."""
    out: list[int] = []
    for word_pos in sorted(bitmap):
        word = bitmap[word_pos]
        while word:
            low = word & -word
            bit = low.bit_length() - 1
            out.append(((word_pos << 8) + bit) * tick_spacing)
            word ^= low
    return out


# ----------------------------------------------------------------------------------------- Pool swap


@dataclass(frozen=True, slots=True)
class PoolState:
    """What `UniswapV3Pool.swap` reads: slot0's price and tick, in-range liquidity, fee, spacing, the
    bitmap words and `liquidityNet` of every initialized tick the swap may cross."""

    sqrt_price_x96: int
    tick: int
    liquidity: int
    fee: int
    tick_spacing: int
    bitmap: Mapping[int, int]
    liquidity_net: Mapping[int, int]
    word_bounds: tuple[int, int] | None = None
    """Inclusive range of bitmap word positions that were read; None = all words. A swap that needs a
    word outside it raises instead of silently treating the unread words as empty."""


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount0: int
    """Pool's token0 delta: positive = paid into the pool, negative = paid out."""
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks_crossed: int
    """Initialized ticks the swap crossed (each changed the in-range liquidity by its liquidityNet)."""

    def state_after(self, before: PoolState) -> PoolState:
        """The pool's state after this swap (bitmap and ticks unchanged)."""
        return PoolState(
            self.sqrt_price_x96,
            self.tick,
            self.liquidity,
            before.fee,
            before.tick_spacing,
            before.bitmap,
            before.liquidity_net,
            before.word_bounds,
        )


def swap(
    state: PoolState, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
) -> SwapResult:
    """The loop of UniswapV3Pool.swap. amount_specified > 0: exact input; < 0: exact output.

    `sqrt_price_limit_x96=None` means no limit (MIN_SQRT_RATIO + 1 / MAX_SQRT_RATIO - 1, what SwapRouter
    and QuoterV2 use for a zero limit). The swap stops early when the limit is reached (the pool does not
    revert then: amounts are partial); check the result if that matters.
    """
    if amount_specified == 0:
        raise UniswapV3MathError("AS")
    if sqrt_price_limit_x96 is None:
        sqrt_price_limit_x96 = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
    if zero_for_one:
        if not (MIN_SQRT_RATIO < sqrt_price_limit_x96 < state.sqrt_price_x96):
            raise UniswapV3MathError("SPL")
    elif not (state.sqrt_price_x96 < sqrt_price_limit_x96 < MAX_SQRT_RATIO):
        raise UniswapV3MathError("SPL")

    exact_input = amount_specified > 0
    remaining = amount_specified
    calculated = 0
    sqrt_price = state.sqrt_price_x96
    tick = state.tick
    liquidity = state.liquidity
    crossed = 0

    while remaining != 0 and sqrt_price != sqrt_price_limit_x96:
        step_start = sqrt_price
        if state.word_bounds is not None:
            compressed = compress_tick(tick, state.tick_spacing)
            word = compressed >> 8 if zero_for_one else (compressed + 1) >> 8
            if not state.word_bounds[0] <= word <= state.word_bounds[1]:
                raise UniswapV3MathError(f"swap reaches bitmap word {word}, outside the words read")
        tick_next, initialized = next_initialized_tick_within_one_word(
            state.bitmap, tick, state.tick_spacing, zero_for_one
        )
        tick_next = max(MIN_TICK, min(MAX_TICK, tick_next))
        sqrt_price_next = get_sqrt_ratio_at_tick(tick_next)
        if zero_for_one:
            target = sqrt_price_limit_x96 if sqrt_price_next < sqrt_price_limit_x96 else sqrt_price_next
        else:
            target = sqrt_price_limit_x96 if sqrt_price_next > sqrt_price_limit_x96 else sqrt_price_next
        step = compute_swap_step(sqrt_price, target, liquidity, remaining, state.fee)
        sqrt_price = step.sqrt_ratio_next_x96
        if exact_input:
            remaining -= step.amount_in + step.fee_amount
            calculated -= step.amount_out
        else:
            remaining += step.amount_out
            calculated += step.amount_in + step.fee_amount

        if sqrt_price == sqrt_price_next:
            if initialized:
                net = state.liquidity_net.get(tick_next)
                if net is None:
                    raise UniswapV3MathError(f"liquidityNet of initialized tick {tick_next} not provided")
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
                crossed += 1
            tick = tick_next - 1 if zero_for_one else tick_next
        elif sqrt_price != step_start:
            tick = get_tick_at_sqrt_ratio(sqrt_price)

    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    return SwapResult(amount0, amount1, sqrt_price, tick, liquidity, crossed)


def quote_exact_input_single(state: PoolState, zero_for_one: bool, amount_in: int) -> int:
    """What SwapRouter.exactInputSingle / QuoterV2.quoteExactInputSingle return with no price limit.

    Raises if the pool cannot absorb the whole input (the router would pay out for less input; the
    router's exactInputSingle still succeeds in that case, so callers that rely on it check `swap`)."""
    result = swap(state, zero_for_one, amount_in)
    paid_in = result.amount0 if zero_for_one else result.amount1
    if paid_in != amount_in:
        raise UniswapV3MathError("price limit reached before the whole input was swapped")
    return -(result.amount1 if zero_for_one else result.amount0)


def quote_exact_output_single(state: PoolState, zero_for_one: bool, amount_out: int) -> int:
    """Input needed for an exact output (SwapRouter.exactOutputSingle with no price limit)."""
    result = swap(state, zero_for_one, -amount_out)
    received = -(result.amount1 if zero_for_one else result.amount0)
    if received != amount_out:
        raise UniswapV3MathError("price limit reached before the whole output was swapped")
    return result.amount0 if zero_for_one else result.amount1


# ------------------------------------------------------------------ LiquidityAmounts (v3-periphery)


def _to_uint128(x: int) -> int:
    if x > MAX_UINT128:
        raise UniswapV3MathError("LiquidityAmounts: uint128 overflow")
    return x


def get_liquidity_for_amount0(sqrt_a_x96: int, sqrt_b_x96: int, amount0: int) -> int:
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    intermediate = mul_div(sqrt_a_x96, sqrt_b_x96, Q96)
    return _to_uint128(mul_div(amount0, intermediate, sqrt_b_x96 - sqrt_a_x96))


def get_liquidity_for_amount1(sqrt_a_x96: int, sqrt_b_x96: int, amount1: int) -> int:
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    return _to_uint128(mul_div(amount1, Q96, sqrt_b_x96 - sqrt_a_x96))


def get_liquidity_for_amounts(
    sqrt_price_x96: int, sqrt_a_x96: int, sqrt_b_x96: int, amount0: int, amount1: int
) -> int:
    """LiquidityAmounts.getLiquidityForAmounts: what NonfungiblePositionManager.mint adds."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    if sqrt_price_x96 <= sqrt_a_x96:
        return get_liquidity_for_amount0(sqrt_a_x96, sqrt_b_x96, amount0)
    if sqrt_price_x96 < sqrt_b_x96:
        return min(
            get_liquidity_for_amount0(sqrt_price_x96, sqrt_b_x96, amount0),
            get_liquidity_for_amount1(sqrt_a_x96, sqrt_price_x96, amount1),
        )
    return get_liquidity_for_amount1(sqrt_a_x96, sqrt_b_x96, amount1)


def get_amounts_for_liquidity(
    sqrt_price_x96: int, sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int
) -> tuple[int, int]:
    """LiquidityAmounts.getAmountsForLiquidity (rounded down; the pool itself charges rounded up)."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    if sqrt_price_x96 <= sqrt_a_x96:
        return get_amount0_delta(sqrt_a_x96, sqrt_b_x96, liquidity, False), 0
    if sqrt_price_x96 < sqrt_b_x96:
        return (
            get_amount0_delta(sqrt_price_x96, sqrt_b_x96, liquidity, False),
            get_amount1_delta(sqrt_a_x96, sqrt_price_x96, liquidity, False),
        )
    return 0, get_amount1_delta(sqrt_a_x96, sqrt_b_x96, liquidity, False)


# ---------------------------------------------------------------------------------------- Prices


def encode_sqrt_price_x96(amount1: int, amount0: int) -> int:
    """floor(sqrt(amount1 / amount0) * 2^96), exact: the sqrtPriceX96 at which `amount0` base units of
    token0 are worth `amount1` base units of token1."""
    if amount0 <= 0 or amount1 <= 0:
        raise ValueError("amounts must be positive")
    return isqrt((amount1 << 192) // amount0)


def nearest_usable_tick(tick: int, tick_spacing: int) -> int:
    """The multiple of tick_spacing nearest to tick (ties towards +inf), kept within MIN/MAX_TICK."""
    rounded = ((tick + tick_spacing // 2) // tick_spacing) * tick_spacing
    if rounded < MIN_TICK:
        rounded += tick_spacing
    elif rounded > MAX_TICK:
        rounded -= tick_spacing
    return rounded


def floor_tick(tick: int, tick_spacing: int) -> int:
    return (tick // tick_spacing) * tick_spacing
