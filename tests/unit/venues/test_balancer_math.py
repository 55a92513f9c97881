"""Balancer stable math (strategies/venues/balancer_math.py) and the venue's quoting on synthetic states.

The reference here is independent of the port: the real StableSwap invariant and out balance solved by
bisection in 110-digit decimals. The port must never pay more than the exact curve (the pool rounds in
its own favour) and stay within a documented distance of it; the rest are properties (monotonicity,
no profitable round trip, exact-out buys what it says, dust, the Vault's limits, marginal prices) and
the venue's handling of token rate caches, pauses and state updates.
"""

from __future__ import annotations

import decimal
import random
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strategies.venues import balancer_math as bm
from strategies.venues.balancer_stable import BalancerStableVenue, StablePool, StablePoolState, TokenRate
from strategies.venues.base import QuoteError, VenueError

_CTX = decimal.Context(prec=110)
ONE = bm.ONE
LST_RATE = 1_180_000_000_000_000_000


# --------------------------------------------------------------------------- exact reference (real)


def _f(ann: Decimal, balances: list[Decimal], d: Decimal) -> Decimal:
    """F(D) = Ann*S + D - Ann*D - D^(n+1) / (n^n P): decreasing in D, zero at the invariant."""
    n = len(balances)
    s = sum(balances, Decimal(0))
    p = Decimal(1)
    for b in balances:
        p = _CTX.multiply(p, b)
    return _CTX.subtract(
        _CTX.add(_CTX.multiply(ann, s), _CTX.multiply(1 - ann, d)),
        _CTX.divide(_CTX.power(d, n + 1), _CTX.multiply(Decimal(n) ** n, p)),
    )


def real_invariant(amp: int, balances: list[int]) -> Decimal:
    bals = [Decimal(b) for b in balances]
    ann = Decimal(amp * len(bals)) / Decimal(bm.AMP_PRECISION)
    lo, hi = Decimal(0), sum(bals, Decimal(0))
    for _ in range(420):
        mid = _CTX.divide(lo + hi, 2)
        lo, hi = (mid, hi) if _f(ann, bals, mid) > 0 else (lo, mid)
    return _CTX.divide(lo + hi, 2)


def real_balance(amp: int, balances: list[Decimal], d: Decimal, index: int) -> Decimal:
    """The balance of `index` that keeps invariant d, the others as given (F increases with it)."""
    ann = Decimal(amp * len(balances)) / Decimal(bm.AMP_PRECISION)

    def g(y: Decimal) -> Decimal:
        return _f(ann, [y if k == index else b for k, b in enumerate(balances)], d)

    hi = d
    while g(hi) < 0:
        hi *= 2
    lo = hi / Decimal(10) ** 60
    for _ in range(520):
        mid = _CTX.divide(lo + hi, 2)
        lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
    return _CTX.divide(lo + hi, 2)


def real_out(
    amp: int, balances: list[int], factors: list[int], i: int, j: int, amount: int
) -> tuple[Decimal, Decimal]:
    """(raw out, new upscaled out balance) for `amount` (already net of the fee) of token i, on the exact
    curve through the pool's upscaled balances, no rounding anywhere."""
    up = [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)]
    d = real_invariant(amp, up)
    moved = [Decimal(u) for u in up]
    moved[i] += _CTX.divide(Decimal(amount) * factors[i], ONE)
    y = real_balance(amp, moved, d, j)
    return _CTX.divide((up[j] - y) * ONE, Decimal(factors[j])), y


def real_in(
    amp: int, balances: list[int], factors: list[int], i: int, j: int, want: int, fee: int
) -> tuple[Decimal, Decimal]:
    """(raw in with the fee, new upscaled in balance) that buys `want` raw of token j on the exact
    curve, no rounding."""
    up = [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)]
    d = real_invariant(amp, up)
    moved = [Decimal(u) for u in up]
    moved[j] -= _CTX.divide(Decimal(want) * factors[j], ONE)
    y = real_balance(amp, moved, d, i)
    net = _CTX.divide((y - up[i]) * ONE, Decimal(factors[i]))
    return _CTX.divide(net, 1 - Decimal(fee) / ONE), y


def slack(amp: int, balances: list[int], factors: list[int], k: int, solved: Decimal) -> int:
    """How far the port may be from the exact curve, in raw units of token k whose balance the swap
    solves for (`solved`: the exact new balance, upscaled). The invariant and the solved balance are
    exact to their last digits only (1e-14 of the invariant here), and the solver's constant term rounds
    D^2 / (Ann * P_D) up before multiplying it by AMP_PRECISION and the old balance, which moves the
    solved balance by up to about AMP_PRECISION * old / new upscaled units."""
    up = [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)]
    d = bm.calculate_invariant(amp, up)
    units = 4 + d // 10**14 + int(bm.AMP_PRECISION * up[k] / max(solved, Decimal(1)))
    return 2 + units * ONE // factors[k]


def prices(amp: int, balances: list[int], factors: list[int]) -> bool:
    """Whether the pool can compute its invariant at all: at amp 1 with 4-5 tokens 100x apart the
    Newton iteration does not converge in 255 steps, and every swap reverts (see
    test_a_pool_that_cannot_compute_its_invariant_reverts_every_swap)."""
    try:
        bm.calculate_invariant(amp, [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)])
    except bm.BalancerMathError:
        return False
    return True


# ------------------------------------------------------------------------------------ pool states

DECIMALS = st.sampled_from([6, 8, 18])
RATES = st.one_of(st.just(ONE), st.just(LST_RATE), st.integers(9 * 10**17, 2 * 10**18))
AMPS = st.sampled_from([1, 10, 50, 200, 1000, 5000]).map(lambda a: a * bm.AMP_PRECISION)


@st.composite
def pools(draw: st.DrawFn, min_size: int = 0) -> tuple[int, list[int], list[int]]:
    """(amp, raw balances, scaling factors): 2-5 tokens, each worth 0.1x-10x of 10**size tokens
    (upscaled), size from min_size to 9."""
    n = draw(st.integers(2, 5))
    factors = [bm.scaling_factor(draw(DECIMALS), draw(RATES)) for _ in range(n)]
    size = draw(st.integers(min_size, 9))
    balances = []
    for f in factors:
        value = 10**size * draw(st.integers(10**17, 10**19))  # upscaled value: 0.1x..10x of 10**size tokens
        balances.append(max(1, value * ONE // f))
    return draw(AMPS), balances, factors


def amount_for(rng: random.Random, balance: int) -> int:
    return max(1, int(balance * 10 ** rng.uniform(-12, 0.3)))


# ----------------------------------------------------------------------------------------- tests


@given(st.integers(0, 2**127), st.integers(0, 2**128))
def test_fixed_point_rounds_down_and_up(a: int, b: int) -> None:
    exact = Fraction(a * b, ONE)
    assert bm.fp_mul_down(a, b) == exact.__floor__()
    assert bm.fp_mul_up(a, b) == exact.__ceil__()
    if b:
        quotient = Fraction(a * ONE, b)
        assert bm.fp_div_down(a, b) == quotient.__floor__()
        assert bm.fp_div_up(a, b) == quotient.__ceil__()
        assert bm.div_up(a, b) == Fraction(a, b).__ceil__()


def test_checked_arithmetic_reverts_like_the_pool() -> None:
    with pytest.raises(bm.BalancerMathError, match="MUL_OVERFLOW"):
        bm.fp_mul_down(2**200, 2**60)
    with pytest.raises(bm.BalancerMathError, match="ZERO_DIVISION"):
        bm.fp_div_up(1, 0)
    with pytest.raises(bm.BalancerMathError, match="SUB_OVERFLOW"):
        bm.subtract_swap_fee_amount(1, 2 * ONE)
    assert bm.complement(ONE + 1) == 0 and bm.complement(10**14) == ONE - 10**14
    assert bm.scaling_factor(6) == 10**30 and bm.scaling_factor(18, LST_RATE) == LST_RATE
    assert bm.scaling_factor(6, LST_RATE) == LST_RATE * 10**12


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("amp", [1_000, 50_000, 1_000_000, 5_000_000])
def test_invariant_of_a_balanced_pool_is_the_sum(n: int, amp: int) -> None:
    for x in (1, 10**6, 10**24 + 7, 10**33):
        assert bm.calculate_invariant(amp, [x] * n) == n * x


@settings(max_examples=150, deadline=None)
@given(pools())
def test_invariant_converges_to_the_real_root(pool: tuple[int, list[int], list[int]]) -> None:
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    up = [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)]
    d = bm.calculate_invariant(amp, up)
    real = real_invariant(amp, up)
    assert abs(Decimal(d) - real) <= 2 + real / Decimal(10**15)
    assert bm.calculate_invariant(amp, []) == 0 and bm.calculate_invariant(amp, [0, 0]) == 0


@settings(max_examples=200, deadline=None)
@given(pools(), st.randoms(use_true_random=False), st.sampled_from([0, 10**14, 4 * 10**15, 10**17]))
def test_out_given_in_never_exceeds_the_exact_curve(
    pool: tuple[int, list[int], list[int]], rng: random.Random, fee: int
) -> None:
    """The pool rounds every step in its favour: never more than the exact curve pays for the amount net
    of the fee, and at most `slack` less."""
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    i, j = rng.sample(range(len(balances)), 2)
    amount = amount_for(rng, balances[i])
    real, solved = real_out(amp, balances, factors, i, j, bm.subtract_swap_fee_amount(amount, fee))
    error = ""
    try:
        out = bm.swap_given_in(amp, fee, balances, factors, i, j, amount)
    except bm.BalancerMathError as exc:
        error = str(exc)
    if error:  # dust: the solved balance is not below the current one
        assert error == "SUB_OVERFLOW" and real < 2
        return
    assert out <= real
    assert out >= real - slack(amp, balances, factors, j, solved)


@settings(max_examples=60, deadline=None)
@given(pools(), st.randoms(use_true_random=False), st.sampled_from([0, 10**14, 10**16]))
def test_out_is_monotone_in_the_amount_in(
    pool: tuple[int, list[int], list[int]], rng: random.Random, fee: int
) -> None:
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    i, j = rng.sample(range(len(balances)), 2)
    amounts = sorted({amount_for(rng, balances[i]) for _ in range(25)} | {1, 2, 3, balances[i]})
    outs = []
    for a in amounts:
        try:
            outs.append(bm.swap_given_in(amp, fee, balances, factors, i, j, a))
        except bm.BalancerMathError:
            assert not outs  # only the smallest amounts revert (dust), never one above a quotable one
    assert outs == sorted(outs)


@settings(max_examples=80, deadline=None)
@given(pools(), st.randoms(use_true_random=False), st.sampled_from([0, 10**14, 10**16]))
def test_a_round_trip_never_profits(
    pool: tuple[int, list[int], list[int]], rng: random.Random, fee: int
) -> None:
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    i, j = rng.sample(range(len(balances)), 2)
    amount = amount_for(rng, balances[i])
    try:
        out = bm.swap_given_in(amp, fee, balances, factors, i, j, amount)
        after = list(balances)
        after[i] += amount
        after[j] -= out
        back = bm.swap_given_in(amp, fee, after, factors, j, i, out)
    except bm.BalancerMathError:
        return  # dust on one of the legs: nothing comes back
    assert back <= amount


@settings(max_examples=80, deadline=None)
@given(pools(), st.randoms(use_true_random=False), st.sampled_from([0, 10**14, 10**16]))
def test_exact_out_asks_at_least_the_exact_curve(
    pool: tuple[int, list[int], list[int]], rng: random.Random, fee: int
) -> None:
    """GIVEN_OUT rounds the input up: never less than the exact curve needs (fee added on top), and at
    most `slack` more."""
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    i, j = rng.sample(range(len(balances)), 2)
    want = max(1, int(balances[j] * 10 ** rng.uniform(-10, -0.05)))
    paid = bm.swap_given_out(amp, fee, balances, factors, i, j, want)
    real, solved = real_in(amp, balances, factors, i, j, want, fee)
    assert paid >= real
    assert paid <= real + slack(amp, balances, factors, i, solved)
    with pytest.raises(bm.BalancerMathError):
        bm.swap_given_out(amp, fee, balances, factors, i, j, balances[j] + 1)


def test_a_pool_that_cannot_compute_its_invariant_reverts_every_swap() -> None:
    amp, balances, factors = 1_000, [759_755, 10_000_000, 100_000, 100_000, 100_000], [10**30] * 5
    with pytest.raises(bm.BalancerMathError, match="STABLE_INVARIANT_DIDNT_CONVERGE"):
        bm.calculate_invariant(amp, [bm.upscale(b, f) for b, f in zip(balances, factors, strict=True)])
    for amount in (1, 10**3, 10**6):
        with pytest.raises(bm.BalancerMathError, match="STABLE_INVARIANT_DIDNT_CONVERGE"):
            bm.swap_given_in(amp, 0, balances, factors, 0, 1, amount)
    assert not prices(amp, balances, factors)
    assert prices(amp * 50, balances, factors)  # a higher amp keeps the same balances priceable


def test_fee_is_taken_from_the_amount_in_rounding_up() -> None:
    amp, balances, factors = 1_000_000, [10**12, 10**12], [10**30, 10**30]  # two 6-decimal tokens
    # 1 raw unit at any fee leaves nothing to swap; at fee 0 it is swapped
    with pytest.raises(bm.BalancerMathError):
        bm.swap_given_in(amp, 10**14, balances, factors, 0, 1, 1)
    assert bm.subtract_swap_fee_amount(10_001, 10**14) == 9_999  # fee 1.0001 rounds up to 2
    assert bm.swap_given_in(amp, 10**14, balances, factors, 0, 1, 10_001) == bm.swap_given_in(
        amp, 0, balances, factors, 0, 1, 9_999
    )
    outs = [bm.swap_given_in(amp, fee, balances, factors, 0, 1, 10**9) for fee in (0, 10**14, 10**16, 10**17)]
    assert outs == sorted(outs, reverse=True) and len(set(outs)) == 4


def test_dust_between_decimals() -> None:
    """1 raw unit of a 6-decimal token into a balanced pool pays just under 1e12 of an 18-decimal one;
    zero in reverts (the solved balance is not below the current one)."""
    amp, balances, factors = 1_000_000, [10**13, 10**25], [10**30, ONE]
    out = bm.swap_given_in(amp, 0, balances, factors, 0, 1, 1)
    assert 0 < out < 10**12
    assert out <= real_out(amp, balances, factors, 0, 1, 1)[0]
    with pytest.raises(bm.BalancerMathError, match="SUB_OVERFLOW"):
        bm.swap_given_in(amp, 0, balances, factors, 0, 1, 0)


def test_vault_balance_limit() -> None:
    amp, factors = 50_000, [ONE, ONE]
    balances = [bm.MAX_BALANCE - 10**6, bm.MAX_BALANCE // 2]
    assert bm.swap_given_in(amp, 0, balances, factors, 0, 1, 10**6) > 0
    with pytest.raises(bm.BalancerMathError, match="BALANCE_TOTAL_OVERFLOW"):
        bm.swap_given_in(amp, 0, balances, factors, 0, 1, 10**6 + 1)


@settings(max_examples=100, deadline=None)
@given(pools(), st.randoms(use_true_random=False))
def test_marginal_prices_bound_a_swap(pool: tuple[int, list[int], list[int]], rng: random.Random) -> None:
    """The curve is convex: a swap pays at most the marginal price before it and at least the marginal
    price after it (up to the pool's rounding, `slack`)."""
    amp, balances, factors = pool
    assume(prices(amp, balances, factors))
    i, j = rng.sample(range(len(balances)), 2)
    amount = max(1, int(balances[i] * 10 ** rng.uniform(-9, -0.5)))
    try:
        out = bm.swap_given_in(amp, 0, balances, factors, i, j, amount)
    except bm.BalancerMathError:
        return  # dust
    before = bm.marginal_price(amp, balances, factors, i, j)
    assert out * before[1] <= amount * before[0]
    after_balances = list(balances)
    after_balances[i] += amount
    after_balances[j] -= out
    try:
        after = bm.marginal_price(amp, after_balances, factors, i, j)
    except bm.BalancerMathError as exc:
        error = str(exc)
    else:
        error = ""
    if error:  # so lopsided the pool cannot compute its invariant any more (its next swap reverts)
        assert error == "STABLE_INVARIANT_DIDNT_CONVERGE"
        return
    solved = Decimal(bm.upscale(after_balances[j], factors[j]))
    assert (out + slack(amp, balances, factors, j, solved)) * after[1] >= amount * after[0]
    assert after[0] * before[1] <= before[0] * after[1]  # selling token i lowers its price


def test_marginal_price_of_a_balanced_rate_pool_is_the_rate() -> None:
    lst = 10**24  # LST raw, 18 decimals, rate 1.18: worth exactly 1.18e24 WETH upscaled
    balances, factors = [lst, lst * LST_RATE // ONE], [LST_RATE, ONE]
    assert (
        bm.marginal_price(50_000, balances, factors, 0, 1)[0] * ONE
        == bm.marginal_price(50_000, balances, factors, 0, 1)[1] * LST_RATE
    )
    num, den = bm.marginal_price(50_000, balances, factors, 1, 0)
    assert num * LST_RATE == den * ONE


# ------------------------------------------------------------------------------ venue on synthetic pools

WETH = "0x" + "11" * 20
LST = "0x" + "22" * 20
BPT = "0x" + "33" * 20
BPT2 = "0x" + "44" * 20
PROVIDER = "0x" + "55" * 20
VAULT = "0x" + "66" * 20

LST_POOL = StablePool(
    address=BPT,
    pool_id="0x" + "33" * 20 + "00" * 12,
    vault=VAULT,
    tokens=(WETH, LST, BPT),
    bpt_index=2,
    decimals=(18, 18, 18),
    rate_providers=(None, PROVIDER, None),
)
OTHER_POOL = StablePool(
    address=BPT2,
    pool_id="0x" + "44" * 20 + "00" * 12,
    vault=VAULT,
    tokens=(WETH, BPT2, LST),
    bpt_index=1,
    decimals=(18, 18, 18),
    rate_providers=(None, None, None),
)


def lst_state(*, cached: int, provider: int | None, expires: int, timestamp: int = 1_000) -> StablePoolState:
    lst = 10**24
    return StablePoolState(
        balances=(lst * LST_RATE // ONE, lst, 2**111),
        amp=50_000,
        swap_fee=10**14,
        rates=(None, TokenRate(cached, cached, 0, expires, provider), None),
        timestamp=timestamp,
    )


def test_venue_quotes_with_the_rate_the_swap_would_use() -> None:
    new_rate = LST_RATE * 101 // 100
    state = lst_state(cached=LST_RATE, provider=new_rate, expires=1_000)  # cached in the block read
    same_block = BalancerStableVenue([LST_POOL], swap_time_offset=0).with_states({BPT: state}, block=7)
    next_block = BalancerStableVenue([LST_POOL]).with_states({BPT: state}, block=7)
    amount = 10**21
    balances = [state.balances[0], state.balances[1]]
    q0 = same_block.quote_exact_in(LST, WETH, amount)
    q1 = next_block.quote_exact_in(LST, WETH, amount)
    assert q0 is not None and q1 is not None
    assert q0.amount_out == bm.swap_given_in(50_000, 10**14, balances, [ONE, LST_RATE], 1, 0, amount)
    assert q1.amount_out == bm.swap_given_in(50_000, 10**14, balances, [ONE, new_rate], 1, 0, amount)
    assert q1.amount_out > q0.amount_out  # the LST is worth more at the new rate
    assert (q0.token_in, q0.token_out, q0.pool, q0.block, q0.fee) == (LST, WETH, BPT, 7, 10**14)
    # the swap refreshes an expired cache (next block: expires = the swap's timestamp + duration 0)
    after0, after1 = q0.state_after, q1.state_after
    assert isinstance(after0, StablePoolState) and isinstance(after1, StablePoolState)
    assert after0.rates == state.rates
    assert after1.rates[1] == TokenRate(new_rate, LST_RATE, 0, 1_001, new_rate)
    assert after1.balances == (state.balances[0] - q1.amount_out, state.balances[1] + amount, 2**111)
    # a provider that reverts only matters once the cache has expired
    broken = lst_state(cached=LST_RATE, provider=None, expires=1_000)
    cached_only = BalancerStableVenue([LST_POOL], swap_time_offset=0).with_states({BPT: broken})
    q_cached = cached_only.quote_exact_in(LST, WETH, amount)
    assert q_cached is not None and q_cached.amount_out == q0.amount_out
    with pytest.raises(QuoteError, match="rate provider"):
        BalancerStableVenue([LST_POOL]).with_states({BPT: broken}).quote_exact_in(LST, WETH, amount)


def test_venue_apply_quote_exact_out_and_pool_choice() -> None:
    state = lst_state(cached=LST_RATE, provider=LST_RATE, expires=0)
    other = StablePoolState(
        balances=(10**22, 2**111, 10**22),  # LST priced 1:1 here: WETH is cheap to buy with LST
        amp=200_000,
        swap_fee=4 * 10**14,
        rates=(None, None, None),
        timestamp=1_000,
    )
    venue = BalancerStableVenue([LST_POOL, OTHER_POOL]).with_states({BPT: state, BPT2.upper(): other})
    assert venue.pools(LST, WETH) == (BPT, BPT2)
    assert venue.pairs() == frozenset({(WETH, LST)})
    best = venue.quote_exact_in(LST, WETH, 10**20)
    assert best is not None and best.pool == BPT  # the rate-aware pool pays ~1.18 WETH per LST
    there = venue.quote_exact_in(LST, WETH, 10**20, pool=BPT2)
    assert there is not None and there.amount_out < best.amount_out
    moved = venue.apply(best)
    assert moved.state(BPT) == best.state_after and moved.state(BPT2) == other
    assert venue.state(BPT) == state  # the original is untouched
    again = moved.quote_exact_in(LST, WETH, 10**20, pool=BPT)
    assert again is not None and again.amount_out < best.amount_out
    # exact out: the pool's GIVEN_OUT math at the same scaling factors
    buy = venue.quote_exact_out(LST, WETH, 10**20, pool=BPT)
    assert buy is not None and buy.amount_out == 10**20
    balances = [state.balances[0], state.balances[1]]
    assert buy.amount_in == bm.swap_given_out(50_000, 10**14, balances, [ONE, LST_RATE], 1, 0, 10**20)
    bought = venue.apply(buy).state(BPT)
    assert bought.balances == (state.balances[0] - 10**20, state.balances[1] + buy.amount_in, 2**111)
    with pytest.raises(QuoteError):
        venue.quote_exact_out(LST, WETH, state.balances[0] + 1, pool=BPT)
    # what is not a swap between listed tokens
    assert venue.quote_exact_in(LST, BPT, 10**18) is None  # the BPT is a join, not a listed token
    assert venue.quote_exact_in(LST, LST, 10**18) is None
    assert venue.quote_exact_in(LST, WETH, 10**18, pool="0x" + "77" * 20) is None
    with pytest.raises(ValueError):
        venue.quote_exact_in(LST, WETH, 0)
    with pytest.raises(VenueError):
        venue.apply(replace(there, venue="x"))


def test_venue_prices_pause_and_errors() -> None:
    state = lst_state(cached=LST_RATE, provider=LST_RATE, expires=0)
    venue = BalancerStableVenue([LST_POOL]).with_states({BPT: state})
    num, den = venue.mid_price(LST, WETH, BPT) or (0, 1)
    assert num * ONE == den * LST_RATE  # balanced in value: one LST is worth exactly the rate in WETH
    spot = venue.spot_rate(LST, WETH, BPT)
    assert spot is not None and spot[0] * den == num * spot[1] * (ONE - 10**14) // ONE
    quote = venue.quote_exact_in(LST, WETH, 10**22)
    assert quote is not None
    after = venue.marginal_rate(quote)
    assert after is not None and after[0] * spot[1] < spot[0] * after[1]  # selling LST lowers its price
    assert venue.mid_price(LST, BPT, BPT) is None
    paused = BalancerStableVenue([LST_POOL]).with_states({BPT: replace(state, paused=True)})
    with pytest.raises(QuoteError, match="paused"):
        paused.quote_exact_in(LST, WETH, 10**18)
    with pytest.raises(VenueError):
        venue.with_states({"0x" + "77" * 20: state})
    with pytest.raises(ValueError):
        BalancerStableVenue([LST_POOL, LST_POOL])
    with pytest.raises(ValueError):
        BalancerStableVenue([LST_POOL], swap_time_offset=-1)
    fresh = BalancerStableVenue([LST_POOL])
    with pytest.raises(VenueError):
        fresh.quote_exact_in(LST, WETH, 10**18)
