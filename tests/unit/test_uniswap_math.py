"""Uniswap V2/V3 math ports: vectors from Uniswap's own test suites plus hypothesis properties."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3

E18 = 10**18
ticks = st.integers(min_value=v3.MIN_TICK, max_value=v3.MAX_TICK)
sqrt_prices = st.integers(min_value=v3.MIN_SQRT_RATIO, max_value=v3.MAX_SQRT_RATIO - 1)
uint128 = st.integers(min_value=0, max_value=v3.MAX_UINT128)
uint256 = st.integers(min_value=0, max_value=v3.MAX_UINT256)


def encode_price_sqrt_js(reserve1: int, reserve0: int) -> int:
    """v3-core's test helper `encodePriceSqrt` (bignumber.js: sqrt to 20 decimals half-up, then floor)."""
    with localcontext() as ctx:
        ctx.prec = 100
        root = (Decimal(reserve1) / Decimal(reserve0)).sqrt()
        root = root.quantize(Decimal(1).scaleb(-20), rounding=ROUND_HALF_UP)
        return int((root * (2**96)).to_integral_value(rounding=ROUND_FLOOR))


# ------------------------------------------------------------------------------------------ V2


def test_v2_get_amount_out_matches_formula() -> None:
    # 1 WETH into 1000 WETH / 2,000,000 USDC: 997 * 2e12 * 1e18 / (1000e18 * 1000 + 997e18)
    out = v2.get_amount_out(E18, 1000 * E18, 2_000_000 * 10**6)
    assert out == 997 * E18 * 2_000_000 * 10**6 // (1000 * E18 * 1000 + 997 * E18)
    assert out == 1_992_013_962


def test_v2_get_amount_in_inverts_get_amount_out() -> None:
    reserve_in, reserve_out = 1234 * E18, 5_678_000 * 10**6
    need = v2.get_amount_in(10_000 * 10**6, reserve_in, reserve_out)
    assert v2.get_amount_out(need, reserve_in, reserve_out) >= 10_000 * 10**6
    assert v2.get_amount_out(need - 1, reserve_in, reserve_out) < 10_000 * 10**6


def test_v2_reverts_like_the_library() -> None:
    with pytest.raises(ValueError, match="INSUFFICIENT_INPUT_AMOUNT"):
        v2.get_amount_out(0, 1, 1)
    with pytest.raises(ValueError, match="INSUFFICIENT_LIQUIDITY"):
        v2.get_amount_out(1, 0, 1)
    with pytest.raises(ValueError, match="INSUFFICIENT_LIQUIDITY"):
        v2.get_amount_in(10, 100, 10)


@given(
    st.integers(min_value=1, max_value=2**112),
    st.integers(min_value=1, max_value=2**112 - 1),
    st.integers(min_value=1, max_value=2**112 - 1),
)
def test_v2_fee_bps_30_is_the_library_997_over_1000(amount: int, r_in: int, r_out: int) -> None:
    library = amount * 997 * r_out // (r_in * 1000 + amount * 997)
    assert v2.get_amount_out(amount, r_in, r_out) == library
    assume(amount < r_out)
    assert v2.get_amount_in(amount, r_in, r_out) == r_in * amount * 1000 // ((r_out - amount) * 997) + 1


@given(
    st.integers(min_value=1, max_value=2**100),
    st.integers(min_value=1000, max_value=2**112 - 1),
    st.integers(min_value=1000, max_value=2**112 - 1),
)
def test_v2_amount_in_is_minimal(amount_out: int, r_in: int, r_out: int) -> None:
    assume(amount_out < r_out)
    need = v2.get_amount_in(amount_out, r_in, r_out)
    assert v2.get_amount_out(need, r_in, r_out) >= amount_out
    # getAmountIn adds 1 after flooring, so it can overshoot the minimum by at most 1
    if need > 2:
        assert v2.get_amount_out(need - 2, r_in, r_out) < amount_out


def test_v2_path() -> None:
    reserves = [(100 * E18, 200_000 * 10**6), (300_000 * 10**6, 300_000 * E18)]
    amounts = v2.get_amounts_out(E18, reserves)
    assert amounts[1] == v2.get_amount_out(E18, *reserves[0])
    assert amounts[2] == v2.get_amount_out(amounts[1], *reserves[1])
    back = v2.get_amounts_in(amounts[2], reserves)
    assert back[-1] == amounts[2] and back[0] <= E18


# --------------------------------------------------------------------------------------- TickMath


def test_tick_math_constants() -> None:
    assert v3.get_sqrt_ratio_at_tick(v3.MIN_TICK) == v3.MIN_SQRT_RATIO == 4295128739
    assert v3.get_sqrt_ratio_at_tick(v3.MAX_TICK) == v3.MAX_SQRT_RATIO
    assert v3.MAX_SQRT_RATIO == 1461446703485210103287273052203988822378723970342
    assert v3.get_sqrt_ratio_at_tick(0) == 2**96
    assert v3.get_tick_at_sqrt_ratio(v3.MIN_SQRT_RATIO) == v3.MIN_TICK
    assert v3.get_tick_at_sqrt_ratio(v3.MAX_SQRT_RATIO - 1) == v3.MAX_TICK - 1
    assert v3.get_tick_at_sqrt_ratio(2**96) == 0
    # values from v3-core's TickMath tests (min tick + 1, max tick - 1)
    assert v3.get_sqrt_ratio_at_tick(v3.MIN_TICK + 1) == 4295343490
    assert v3.get_sqrt_ratio_at_tick(v3.MAX_TICK - 1) == 1461373636630004318706518188784493106690254656249


def test_tick_math_bounds() -> None:
    with pytest.raises(v3.UniswapV3MathError, match="T"):
        v3.get_sqrt_ratio_at_tick(v3.MAX_TICK + 1)
    with pytest.raises(v3.UniswapV3MathError, match="T"):
        v3.get_sqrt_ratio_at_tick(v3.MIN_TICK - 1)
    with pytest.raises(v3.UniswapV3MathError, match="R"):
        v3.get_tick_at_sqrt_ratio(v3.MIN_SQRT_RATIO - 1)
    with pytest.raises(v3.UniswapV3MathError, match="R"):
        v3.get_tick_at_sqrt_ratio(v3.MAX_SQRT_RATIO)


@given(ticks)
def test_sqrt_ratio_is_close_to_the_real_value(tick: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 120
        exact = Decimal("1.0001") ** tick
        exact = exact.sqrt() * (2**96)
        got = Decimal(v3.get_sqrt_ratio_at_tick(tick))
        # Uniswap documents the result as accurate to well under 1 part in 10^8 near the edges; in the
        # middle far better. Rounding up from Q128.128 means the absolute error is below 1 + rel err.
        assert abs(got - exact) <= exact * Decimal("1e-8") + 1


@given(ticks)
def test_tick_round_trip(tick: int) -> None:
    assume(tick < v3.MAX_TICK)
    assert v3.get_tick_at_sqrt_ratio(v3.get_sqrt_ratio_at_tick(tick)) == tick


@given(st.integers(min_value=v3.MIN_TICK, max_value=v3.MAX_TICK - 1))
def test_sqrt_ratio_is_strictly_increasing(tick: int) -> None:
    assert v3.get_sqrt_ratio_at_tick(tick) < v3.get_sqrt_ratio_at_tick(tick + 1)


@given(sqrt_prices)
def test_tick_at_sqrt_ratio_is_the_greatest_tick_below(price: int) -> None:
    tick = v3.get_tick_at_sqrt_ratio(price)
    assert v3.get_sqrt_ratio_at_tick(tick) <= price
    assert tick == v3.MAX_TICK or v3.get_sqrt_ratio_at_tick(tick + 1) > price


@given(st.integers(min_value=v3.MIN_TICK + 1, max_value=v3.MAX_TICK - 1))
def test_tick_at_sqrt_ratio_one_below_a_tick(tick: int) -> None:
    assert v3.get_tick_at_sqrt_ratio(v3.get_sqrt_ratio_at_tick(tick) - 1) == tick - 1


# --------------------------------------------------------------------------------------- FullMath


@given(uint256, uint256, st.integers(min_value=1, max_value=v3.MAX_UINT256))
def test_mul_div(a: int, b: int, d: int) -> None:
    exact, rem = divmod(a * b, d)
    if exact > v3.MAX_UINT256:
        with pytest.raises(v3.UniswapV3MathError):
            v3.mul_div(a, b, d)
        return
    assert v3.mul_div(a, b, d) == exact
    if rem and exact == v3.MAX_UINT256:
        with pytest.raises(v3.UniswapV3MathError):
            v3.mul_div_rounding_up(a, b, d)
    else:
        assert v3.mul_div_rounding_up(a, b, d) == exact + (1 if rem else 0)


def test_div_rounding_up_by_zero_is_zero_like_the_evm() -> None:
    assert v3.div_rounding_up(5, 0) == 0
    assert v3.div_rounding_up(5, 2) == 3
    assert v3.div_rounding_up(4, 2) == 2


# ---------------------------------------------------------------------------------- SqrtPriceMath
# Vectors from v3-core test/SqrtPriceMath.spec.ts


def test_next_sqrt_price_from_input_vectors() -> None:
    p1 = encode_price_sqrt_js(1, 1)
    assert p1 == 2**96
    assert v3.get_next_sqrt_price_from_input(p1, E18, E18 // 10, False) == 87150978765690771352898345369
    assert v3.get_next_sqrt_price_from_input(p1, E18, E18 // 10, True) == 72025602285694852357767227579
    assert v3.get_next_sqrt_price_from_input(p1, 10 * E18, 2**100, True) == 624999999995069620
    assert v3.get_next_sqrt_price_from_input(p1, 1, v3.MAX_UINT256 // 2, True) == 1
    assert v3.get_next_sqrt_price_from_input(1, 1, 2**255, True) == 1
    assert v3.get_next_sqrt_price_from_input(p1, E18 // 10, 0, True) == p1
    assert v3.get_next_sqrt_price_from_input(p1, E18 // 10, 0, False) == p1
    with pytest.raises(v3.UniswapV3MathError):
        v3.get_next_sqrt_price_from_input(0, 0, E18 // 10, False)
    with pytest.raises(v3.UniswapV3MathError):
        v3.get_next_sqrt_price_from_input(1, 0, E18 // 10, True)
    with pytest.raises(v3.UniswapV3MathError):
        v3.get_next_sqrt_price_from_input(2**160 - 1, 1024, 1024, False)


def test_next_sqrt_price_from_output_vectors() -> None:
    p1 = 2**96
    price = 20282409603651670423947251286016
    assert v3.get_next_sqrt_price_from_output(p1, E18, E18 // 10, False) == 88031291682515930659493278152
    assert v3.get_next_sqrt_price_from_output(p1, E18, E18 // 10, True) == 71305346262837903834189555302
    assert v3.get_next_sqrt_price_from_output(p1, E18 // 10, 0, True) == p1
    # v3-core 1.0.1 requires sqrtP > quotient, so taking exactly the virtual reserves of token1 reverts
    # (an older revision of the test expected 0 here)
    for amount, zero_for_one in ((4, False), (5, False), (262144, True), (262145, True)):
        with pytest.raises(v3.UniswapV3MathError):
            v3.get_next_sqrt_price_from_output(price, 1024, amount, zero_for_one)
    for zero_for_one in (True, False):
        with pytest.raises(v3.UniswapV3MathError):
            v3.get_next_sqrt_price_from_output(p1, 1, v3.MAX_UINT256, zero_for_one)


def test_amount_deltas_vectors() -> None:
    p1 = encode_price_sqrt_js(1, 1)
    p121 = encode_price_sqrt_js(121, 100)
    assert v3.get_amount0_delta(p121, p1, E18, True) == 90909090909090910
    assert v3.get_amount0_delta(p121, p1, E18, False) == 90909090909090909
    assert v3.get_amount1_delta(p1, p121, E18, True) == 100000000000000000
    assert v3.get_amount1_delta(p1, p121, E18, False) == 99999999999999999
    assert v3.get_amount0_delta(encode_price_sqrt_js(2, 1), p1, 0, True) == 0
    hi, lo = encode_price_sqrt_js(2**96, 1), encode_price_sqrt_js(2**90, 1)
    assert v3.get_amount0_delta(hi, lo, E18, True) == v3.get_amount0_delta(hi, lo, E18, False) + 1


def test_sqrt_p_times_sqrt_q_overflows_vector() -> None:
    sqrt_p = 1025574284609383690408304870162715216695788925244
    liquidity = 50015962439936049619261659728067971248
    sqrt_q = v3.get_next_sqrt_price_from_input(sqrt_p, liquidity, 406, True)
    assert sqrt_q == 1025574284609383582644711336373707553698163132913
    assert v3.get_amount0_delta(sqrt_p, sqrt_q, liquidity, True) == 406


@given(sqrt_prices, sqrt_prices, uint128)
def test_amount_delta_rounding(a: int, b: int, liquidity: int) -> None:
    for fn in (v3.get_amount0_delta, v3.get_amount1_delta):
        up, down = fn(a, b, liquidity, True), fn(a, b, liquidity, False)
        assert 0 <= up - down <= 1
    assert v3.get_amount0_delta_signed(a, b, liquidity) == v3.get_amount0_delta(a, b, liquidity, True)
    assert v3.get_amount1_delta_signed(a, b, -liquidity) == -v3.get_amount1_delta(a, b, liquidity, False)


# --------------------------------------------------------------------------------------- SwapMath
# Vectors from v3-core test/SwapMath.spec.ts


def test_swap_step_capped_at_target() -> None:
    price, target = encode_price_sqrt_js(1, 1), encode_price_sqrt_js(101, 100)
    for amount in (E18, -E18):
        step = v3.compute_swap_step(price, target, 2 * E18, amount, 600)
        assert step.amount_in == 9975124224178055
        assert step.fee_amount == 5988667735148
        assert step.amount_out == 9925619580021728
        assert step.sqrt_ratio_next_x96 == target


def test_swap_step_fully_spent() -> None:
    price = encode_price_sqrt_js(1, 1)
    step = v3.compute_swap_step(price, encode_price_sqrt_js(1000, 100), 2 * E18, E18, 600)
    assert (step.amount_in, step.fee_amount, step.amount_out) == (
        999400000000000000,
        600000000000000,
        666399946655997866,
    )
    assert step.sqrt_ratio_next_x96 == v3.get_next_sqrt_price_from_input(
        price, 2 * E18, E18 - 600000000000000, False
    )

    step = v3.compute_swap_step(price, encode_price_sqrt_js(10000, 100), 2 * E18, -E18, 600)
    assert (step.amount_in, step.fee_amount, step.amount_out) == (2 * E18, 1200720432259356, E18)


def test_swap_step_edge_vectors() -> None:
    step = v3.compute_swap_step(
        417332158212080721273783715441582, 1452870262520218020823638996, 159344665391607089467575320103, -1, 1
    )
    assert (step.amount_in, step.fee_amount, step.amount_out) == (1, 1, 1)
    assert step.sqrt_ratio_next_x96 == 417332158212080721273783715441581

    step = v3.compute_swap_step(2, 1, 1, 3915081100057732413702495386755767, 1)
    assert (step.amount_in, step.fee_amount, step.amount_out, step.sqrt_ratio_next_x96) == (
        39614081257132168796771975168,
        39614120871253040049813,
        0,
        1,
    )

    step = v3.compute_swap_step(2413, 79887613182836312, 1985041575832132834610021537970, 10, 1872)
    assert (step.amount_in, step.fee_amount, step.amount_out, step.sqrt_ratio_next_x96) == (0, 10, 0, 2413)

    sqrt_p = 20282409603651670423947251286016
    step = v3.compute_swap_step(sqrt_p, sqrt_p * 11 // 10, 1024, -4, 3000)
    assert (step.amount_out, step.sqrt_ratio_next_x96, step.amount_in, step.fee_amount) == (
        0,
        sqrt_p * 11 // 10,
        26215,
        79,
    )
    step = v3.compute_swap_step(sqrt_p, sqrt_p * 9 // 10, 1024, -263000, 3000)
    assert (step.amount_out, step.sqrt_ratio_next_x96, step.amount_in, step.fee_amount) == (
        26214,
        sqrt_p * 9 // 10,
        1,
        1,
    )


@given(
    sqrt_prices,
    sqrt_prices,
    st.integers(min_value=1, max_value=v3.MAX_UINT128),
    st.integers(min_value=-(2**200), max_value=2**200).filter(lambda x: x != 0),
    st.integers(min_value=1, max_value=999_999),
)
def test_swap_step_invariants(current: int, target: int, liquidity: int, remaining: int, fee: int) -> None:
    # Properties from v3-core's SwapMathEchidnaTest
    try:
        step = v3.compute_swap_step(current, target, liquidity, remaining, fee)
    except v3.UniswapV3MathError:
        assume(False)
        return
    if remaining < 0:
        assert step.amount_out <= -remaining
    else:
        assert step.amount_in + step.fee_amount <= remaining
    if current == target:
        assert step.amount_in == step.amount_out == step.fee_amount == 0
        assert step.sqrt_ratio_next_x96 == target
    # next price is between current and target (inclusive)
    if current <= target:
        assert current <= step.sqrt_ratio_next_x96 <= target
    else:
        assert target <= step.sqrt_ratio_next_x96 <= current
    # didn't reach the target, so the entire amount must have been consumed
    if step.sqrt_ratio_next_x96 != target and current != target:
        if remaining < 0:
            assert step.amount_out == -remaining
        else:
            assert step.amount_in + step.fee_amount == remaining


# ----------------------------------------------------------------------------- bitmap and swap loop


def test_next_initialized_tick_within_one_word() -> None:
    # v3-core TickBitmap tests: initialized ticks -200, -55, -4, 70, 78, 84, 139, 240, 535 with spacing 1
    bitmap = v3.bitmap_from_ticks([-200, -55, -4, 70, 78, 84, 139, 240, 535], 1)
    nxt = v3.next_initialized_tick_within_one_word
    assert nxt(bitmap, 78, 1, False) == (84, True)
    assert nxt(bitmap, -55, 1, False) == (-4, True)
    assert nxt(bitmap, 77, 1, False) == (78, True)
    assert nxt(bitmap, -56, 1, False) == (-55, True)
    assert nxt(bitmap, 255, 1, False) == (511, False)
    assert nxt(bitmap, -257, 1, False) == (-200, True)
    assert nxt(bitmap, 340, 1, False) == (511, False)
    assert nxt(bitmap, 328, 1, False) == (511, False)
    assert nxt(bitmap, 508, 1, False) == (511, False)
    assert nxt(bitmap, 78, 1, True) == (78, True)
    assert nxt(bitmap, 79, 1, True) == (78, True)
    assert nxt(bitmap, 258, 1, True) == (256, False)
    assert nxt(bitmap, 256, 1, True) == (256, False)
    assert nxt(bitmap, 72, 1, True) == (70, True)
    assert nxt(bitmap, -257, 1, True) == (-512, False)
    assert nxt(bitmap, 1023, 1, True) == (768, False)
    assert nxt(bitmap, 900, 1, True) == (768, False)
    assert v3.ticks_from_bitmap(bitmap, 1) == [-200, -55, -4, 70, 78, 84, 139, 240, 535]


def _pool(
    liquidity: int, positions: list[tuple[int, int, int]], tick: int, spacing: int, fee: int
) -> v3.PoolState:
    """A pool at `tick`'s price with `positions` (lower, upper, liquidity)."""
    net: dict[int, int] = {}
    active = 0
    for lower, upper, amount in positions:
        net[lower] = net.get(lower, 0) + amount
        net[upper] = net.get(upper, 0) - amount
        if lower <= tick < upper:
            active += amount
    assert active == liquidity
    return v3.PoolState(
        v3.get_sqrt_ratio_at_tick(tick),
        tick,
        liquidity,
        fee,
        spacing,
        v3.bitmap_from_ticks(net, spacing),
        net,
    )


def test_swap_within_one_range_is_one_step() -> None:
    state = _pool(10**20, [(-6000, 6000, 10**20)], 0, 60, 3000)
    result = v3.swap(state, True, 10**15)
    step = v3.compute_swap_step(
        state.sqrt_price_x96, v3.get_sqrt_ratio_at_tick(-60 * 256), 10**20, 10**15, 3000
    )
    # one step: the bitmap word boundary (-15360) is beyond the reached price
    assert result.amount0 == 10**15 == step.amount_in + step.fee_amount
    assert result.amount1 == -step.amount_out
    assert result.sqrt_price_x96 == step.sqrt_ratio_next_x96
    assert result.tick == v3.get_tick_at_sqrt_ratio(step.sqrt_ratio_next_x96)
    assert result.ticks_crossed == 0


def test_swap_crosses_ticks_and_updates_liquidity() -> None:
    positions = [(-887220, 887220, 10**18), (-600, 600, 10**20), (1200, 3000, 10**19)]
    state = _pool(10**18 + 10**20, positions, 0, 60, 3000)

    def active(tick: int) -> int:
        return sum(amount for lower, upper, amount in positions if lower <= tick < upper)

    for amount in (10**19, 10**20, 10**21):
        for zero_for_one in (True, False):
            result = v3.swap(state, zero_for_one, amount)
            assert result.liquidity == active(result.tick)
            assert (result.amount0 if zero_for_one else result.amount1) == amount
    up = v3.swap(state, False, 4 * 10**18)  # one for zero: through 600, into [1200, 3000)
    assert up.ticks_crossed == 2 and 1200 <= up.tick < 3000
    assert up.liquidity == 10**18 + 10**19
    down = v3.swap(state, True, 10**21)
    assert down.ticks_crossed == 1 and down.tick < -600 and down.liquidity == 10**18
    # exact output for what exact input gave needs no more than that input
    needed = v3.quote_exact_output_single(state, False, -up.amount0)
    assert needed <= 4 * 10**18
    assert v3.quote_exact_input_single(state, False, needed) >= -up.amount0


def test_swap_price_limit_and_errors() -> None:
    state = _pool(10**20, [(-6000, 6000, 10**20)], 0, 60, 3000)
    limit = v3.get_sqrt_ratio_at_tick(-10)
    partial = v3.swap(state, True, 10**30, limit)
    assert partial.sqrt_price_x96 == limit and partial.amount0 < 10**30
    with pytest.raises(v3.UniswapV3MathError, match="SPL"):
        v3.swap(state, True, 10**15, state.sqrt_price_x96)
    with pytest.raises(v3.UniswapV3MathError, match="AS"):
        v3.swap(state, True, 0)
    with pytest.raises(v3.UniswapV3MathError):
        v3.quote_exact_input_single(state, True, 10**30)  # runs out of liquidity
    bounded = v3.PoolState(
        state.sqrt_price_x96, 0, 10**20, 3000, 60, state.bitmap, state.liquidity_net, word_bounds=(0, 0)
    )
    with pytest.raises(v3.UniswapV3MathError, match="outside the words read"):
        v3.swap(bounded, True, 10**25)


@given(st.integers(min_value=1, max_value=10**24), st.booleans())
def test_swap_exact_in_is_monotonic(amount: int, zero_for_one: bool) -> None:
    positions = [(-887220, 887220, 10**18), (-600, 600, 10**20), (1200, 3000, 10**19), (-3000, -1200, 10**19)]
    state = _pool(10**18 + 10**20, positions, 0, 60, 3000)
    a = v3.swap(state, zero_for_one, amount)
    b = v3.swap(state, zero_for_one, amount + 1)
    out_a = -(a.amount1 if zero_for_one else a.amount0)
    out_b = -(b.amount1 if zero_for_one else b.amount0)
    assert 0 <= out_a <= out_b


def test_liquidity_amounts_round_trip() -> None:
    p = v3.encode_sqrt_price_x96(2000 * 10**6, E18)
    lo, hi = v3.get_sqrt_ratio_at_tick(-201000), v3.get_sqrt_ratio_at_tick(-199000)
    liquidity = v3.get_liquidity_for_amounts(p, lo, hi, 10 * E18, 20_000 * 10**6)
    a0, a1 = v3.get_amounts_for_liquidity(p, lo, hi, liquidity)
    assert a0 <= 10 * E18 and a1 <= 20_000 * 10**6
    # the binding side is used (almost) entirely
    assert max(a0 * 10**6 // (10 * E18), a1 * 10**6 // (20_000 * 10**6)) >= 999_999


def test_encode_sqrt_price() -> None:
    assert v3.encode_sqrt_price_x96(1, 1) == 2**96
    assert v3.encode_sqrt_price_x96(121, 100) == 87150978765690771352898345369  # floor(1.1 * 2^96)
    p = v3.encode_sqrt_price_x96(2000 * 10**6, E18)
    assert p * p <= (2000 * 10**6 << 192) // E18 < (p + 1) * (p + 1)
