"""Peg sizing: the profit-maximizing size of each spread worth closing, on the venues' exact math. Pure.

For a spread (A cheap on pool X, dear on pool Y) and the borrowed token T (B by default: buy A with B on
X, sell it for B on Y; or A: sell A for B on Y, buy A back on X), the profit of a size x is

    profit(x) = out_2(out_1(x)) - x - flash_fee(x)                  (T's base units)

with each out the venue's exact quote (`quote_exact_in`; the second hop is quoted on the venue after the
first when both pools are on one venue) and flash_fee(x) = percentMul(x, flash_fee_bps) (Aave V3's
premium; 0 for Balancer's flash loans). Every AMM's output is concave in its input, so profit is concave:
it rises while the round trip's marginal rate m1(x) * m2(out_1(x)) is above 1 + flash fee, then falls.

Search:
- Uniswap V2 - V2: the two pairs compose into out = E x / (F + G x); the peak has a closed form, then the
  exact quotes around it (+-2 units) pick the integer size.
- Otherwise, root of the slope s(x) = m1 * m2 - (1 + fee) from the venues' `marginal_rate(quote)`
  (the derivative of the exact output at that input): bracketed by [0, H] where H is the size at which
  the first pool's marginal rate alone falls to (1 + fee) / (second pool's spot rate) (the venue's
  `amount_in_for_rate`; Uniswap V2 and V3), or by probing up from the pool's depth (Balancer); then the
  Illinois method down to a bracket [a, b] with b - a <= b / RESOLUTION. Concavity and profit(0) = 0
  give profit(a) >= (1 - 1/RESOLUTION) * best for a below the peak: within 0.05%.
- Venues without marginal rates: golden-section search over exact profits (unimodal).
A quote that fails (InsufficientLiquidity, OutsideReadRange, a revert) bounds the size from above.
When a unit of the token bought is worth more than a unit of the one paid (DAI -> USDC), the output of
the best size is a whole number of coarse units: the smallest input that still buys it (the venue's
exact-output math) is evaluated too. The best size evaluated wins (ties: the smaller).
Measured against brute force: tests/unit/peg, benchmarks/bench_peg.py (1000 random states: every
profit of at least 1000 units of the token bought within 0.1%; below that, within two such units).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from keeper.chain import uniswap_v2_math as v2
from keeper.chain import uniswap_v3_math as v3
from keeper.chain.units import percent_mul
from strategies.peg.detect import BPS, Fraction, Spread, find_spreads, target_of
from strategies.peg.pegs import Peg
from strategies.venues.balancer_stable import BalancerStableVenue
from strategies.venues.base import Quote, QuoteError, Venue, VenueError
from strategies.venues.uniswap_v2 import UniswapV2Venue
from strategies.venues.uniswap_v3 import UniswapV3Venue

__all__ = [
    "RESOLUTION",
    "Borrow",
    "PegOpportunity",
    "best_opportunities",
    "disjoint",
    "size_spread",
]

Borrow = Literal["b", "a", "best"]
"""Which token is flash-borrowed and counts the profit: B, A, or whichever gives more (valued in B)."""

RESOLUTION = 2000
"""The slope search stops at a bracket of b / RESOLUTION sizes (profit within 1 / RESOLUTION of the peak)."""
MAX_STEPS = 60
PROBE_GROWTH = 8
V2_POLISH = 2


@dataclass(frozen=True, slots=True)
class PegOpportunity:
    """One round trip closing a spread: borrow `amount_in` of token_in, swap it on hops[0] and the
    output back on hops[1] (both exact quotes at the venues' state), repay, keep the profit."""

    peg: Peg
    token_in: str
    """The borrowed token, in which the profit is made: peg.token_b, or peg.token_a."""
    amount_in: int
    hops: tuple[Quote, Quote]
    amount_out: int
    """hops[1].amount_out."""
    profit: int
    """amount_out - amount_in - flash_fee, in token_in's base units (before gas and the builder's share)."""
    flash_fee: int
    profit_b: int
    """profit valued in token B at the peg's target (equal to profit when token_in is B); the ranking key."""
    spread: Spread

    @property
    def pools(self) -> tuple[str, str]:
        return (self.hops[0].pool, self.hops[1].pool)


@dataclass(frozen=True, slots=True)
class _Point:
    x: int
    first: Quote
    second: Quote
    second_venue: Venue
    profit: int
    fee: int


class _Trip:
    """Borrow token T, swap it for M on pool 1, M back for T on pool 2."""

    def __init__(self, v1: Venue, p1: str, v2: Venue, p2: str, t: str, m: str, flash_fee_bps: int) -> None:
        self.v1, self.p1, self.v2, self.p2, self.t, self.m = v1, p1, v2, p2, t, m
        self.flash_fee_bps = flash_fee_bps
        self.seen: dict[int, _Point | None] = {}
        self.has_rates = hasattr(v1, "marginal_rate") and hasattr(v2, "marginal_rate")
        self.best: _Point | None = None

    def at(self, x: int) -> _Point | None:
        """The exact round trip of size x, or None where a quote fails (too small or too large)."""
        if x in self.seen:
            return self.seen[x]
        point: _Point | None = None
        if x > 0:
            try:
                q1 = self.v1.quote_exact_in(self.t, self.m, x, pool=self.p1)
                if q1 is not None and q1.amount_out > 0:
                    venue = self.v2.apply(q1) if self.v2 is self.v1 else self.v2
                    q2 = venue.quote_exact_in(self.m, self.t, q1.amount_out, pool=self.p2)
                    if q2 is not None:
                        fee = percent_mul(x, self.flash_fee_bps)
                        point = _Point(x, q1, q2, venue, q2.amount_out - x - fee, fee)
            except (QuoteError, VenueError, ValueError, ArithmeticError):
                point = None
        self.seen[x] = point
        if point is not None and (
            self.best is None or (point.profit, -point.x) > (self.best.profit, -self.best.x)
        ):
            self.best = point  # ties: the smaller size
        return point

    def slope(self, point: _Point) -> float | None:
        """m1 * m2 - (1 + flash fee) at the point (None: a venue gives no marginal rates)."""
        r1 = _marginal(self.v1, point.first)
        r2 = _marginal(point.second_venue, point.second)
        if r1 is None or r2 is None:
            return None
        return _ratio(r1[0] * r2[0] * BPS, r1[1] * r2[1] * (BPS + self.flash_fee_bps)) - 1.0


def _marginal(venue: Venue, quote: Quote) -> Fraction | None:
    fn = getattr(venue, "marginal_rate", None)
    if fn is None:
        return None
    rate = fn(quote)
    if rate is None or rate[1] <= 0:
        return None
    return (int(rate[0]), int(rate[1]))


def _ratio(num: int, den: int) -> float:
    """num / den as a float, for huge ints too."""
    return num / den


# ------------------------------------------------------------------------------------------ searches


def _v2_closed_form(trip: _Trip) -> int | None:
    """The real-valued peak of two Uniswap V2 swaps, floored; None if the venues are not both V2."""
    if not (isinstance(trip.v1, UniswapV2Venue) and isinstance(trip.v2, UniswapV2Venue)):
        return None
    first = _v2_side(trip.v1, trip.p1, trip.t, trip.m)
    second = _v2_side(trip.v2, trip.p2, trip.m, trip.t)
    if first is None or second is None:
        return None
    (a1, b1, g1), (a2, b2, g2) = first, second
    # out = g1 g2 b1 b2 x / (1e8 a1 a2 + x g1 (1e4 a2 + g2 b1)); out' = E F / (F + G x)^2 = 1 + fee
    e = g1 * g2 * b1 * b2
    f = BPS * BPS * a1 * a2
    g = g1 * (BPS * a2 + g2 * b1)
    root = math.isqrt(e * f * BPS // (BPS + trip.flash_fee_bps))
    return (root - f) // g if root > f else 0


def _v2_side(venue: UniswapV2Venue, pool: str, t_in: str, t_out: str) -> tuple[int, int, int] | None:
    """(reserve in, reserve out, 1e4 - fee bps) of a pair for a swap t_in -> t_out."""
    spot = venue.spot_rate(t_in, t_out, pool)  # (gamma * r_out, 1e4 * r_in)
    back = venue.spot_rate(t_out, t_in, pool)  # (gamma * r_in, 1e4 * r_out)
    if spot is None or back is None:
        return None
    r_in, r_out = spot[1] // BPS, back[1] // BPS
    if r_in <= 0 or r_out <= 0:
        return None
    return r_in, r_out, spot[0] // r_out


def _upper_bound(trip: _Trip, second_spot: Fraction) -> int | None:
    """A size beyond which the slope is negative: where pool 1's own marginal rate falls to
    (1 + fee) / (pool 2's spot rate). None if the venue cannot say."""
    fn = getattr(trip.v1, "amount_in_for_rate", None)
    if fn is None:
        return None
    rate = ((BPS + trip.flash_fee_bps) * second_spot[1], BPS * second_spot[0])
    try:
        bound = fn(trip.t, trip.m, trip.p1, rate)
    except (VenueError, ArithmeticError, ValueError):
        return None
    return int(bound) + 1 if bound is not None else None


def _trim(trip: _Trip, point: _Point) -> None:
    """Evaluates the smallest input that still buys `point`'s first-hop output (the venue's exact-output
    math), when the venue has one: when the token bought is coarse (USDC bought with DAI), the sizes
    between are paid for nothing."""
    amount = _exact_output_input(trip.v1, trip.p1, trip.t, trip.m, point.first.amount_out)
    if amount is not None and 0 < amount < point.x:
        trip.at(amount)


def _exact_output_input(venue: Venue, pool: str, t_in: str, t_out: str, amount_out: int) -> int | None:
    """The input the pool asks for exactly `amount_out` (None if the venue cannot say)."""
    try:
        if isinstance(venue, UniswapV2Venue):
            side = _v2_side(venue, pool, t_in, t_out)
            if side is None:
                return None
            r_in, r_out, gamma = side
            return v2.get_amount_in(amount_out, r_in, r_out, BPS - gamma)
        if isinstance(venue, UniswapV3Venue):
            info, state = venue.pool_info(pool), venue.state(pool)
            zero_for_one = t_in.lower() == info.token0.lower()
            result = v3.swap(state, zero_for_one, -amount_out)
            paid_out = -(result.amount1 if zero_for_one else result.amount0)
            return (result.amount0 if zero_for_one else result.amount1) if paid_out == amount_out else None
        if isinstance(venue, BalancerStableVenue):
            quote = venue.quote_exact_out(t_in, t_out, amount_out, pool=pool)
            return quote.amount_in if quote is not None else None
    except (VenueError, ArithmeticError, ValueError):
        return None
    return None


def _depth(venue: Venue, pool: str, token: str, other: str) -> int | None:
    """About how much of `token` the pool holds (a scale for the first probe)."""
    try:
        if isinstance(venue, BalancerStableVenue):
            info, state = venue.pool_info(pool), venue.state(pool)
            i = info.index(token)
            return state.balances[i] if i is not None else None
        if isinstance(venue, UniswapV2Venue):
            spot = venue.spot_rate(token, other, pool)  # (gamma * r_out, 1e4 * r_in)
            return spot[1] // BPS if spot is not None else None
        if isinstance(venue, UniswapV3Venue):
            info3, state3 = venue.pool_info(pool), venue.state(pool)
            if state3.sqrt_price_x96 <= 0:
                return None
            if token.lower() == info3.token0.lower():
                return (state3.liquidity << 96) // state3.sqrt_price_x96
            return (state3.liquidity * state3.sqrt_price_x96) >> 96
    except (VenueError, ValueError):
        return None
    return None


def _slope_search(trip: _Trip, s0: float, hi: int | None, guess: int) -> None:
    """The root of the slope on [0, hi] (Illinois), or on a bracket found by probing up from `guess` by
    factors of PROBE_GROWTH when hi is unknown. A size that cannot be quoted, or whose slope the venues
    cannot give (a pool drained to dust), bounds the bracket from above."""
    a, sa = 0, s0
    b: int | None = None
    sb: float | None = None  # None with b set: no slope there (b cannot be quoted, or has no rate)

    def probe(x: int) -> float | None:
        point = trip.at(x)
        return None if point is None else trip.slope(point)

    if hi is not None and hi > 0:
        s = probe(hi)
        if s is None or s <= 0:
            b, sb = hi, s
        else:
            a, sa = hi, s
    if b is None:
        x = max(1, guess, a + 1)
        for _ in range(MAX_STEPS):
            s = probe(x)
            if s is None or s <= 0:
                b, sb = x, s
                break
            a, sa = x, s
            x *= PROBE_GROWTH
        if b is None:
            return  # rises as far as it was probed: the largest size evaluated wins
    side = 0
    for _ in range(MAX_STEPS):
        if b - a <= max(1, b // RESOLUTION):
            break
        if sb is None:
            # no slope at b: bisect (geometrically while the bracket spans orders of magnitude)
            x = math.isqrt(a * b) if a > 0 and b > 16 * a else (a + b) // 2
        else:
            x = a + int((b - a) * (sa / (sa - sb))) if sa > sb else (a + b) // 2
            margin = max(1, (b - a) // 64)
            x = min(max(x, a + margin), b - margin)
        if not a < x < b:
            break
        s = probe(x)
        if s is None:
            b, sb, side = x, None, 0
        elif s > 0:
            a, sa = x, s
            if side == 1 and sb is not None:
                sb /= 2
            side = 1
        else:
            b, sb = x, s
            if side == -1:
                sa /= 2
            side = -1
    if a > 0:
        trip.at(a)


def _golden_search(trip: _Trip, guess: int) -> None:
    """Golden-section search over exact profits (unimodal), on a bracket found on a grid of factors of
    PROBE_GROWTH around `guess`: up while the profit rises, else down while it rises going down."""

    def value(x: int) -> float:
        point = trip.at(x) if x > 0 else None
        return -math.inf if point is None else float(point.profit)

    x = max(1, guess)
    up, down = value(x * PROBE_GROWTH), value(x)
    if up > down:
        lo, x = x, x * PROBE_GROWTH
        for _ in range(MAX_STEPS):
            if value(x * PROBE_GROWTH) <= value(x):
                break
            lo, x = x, x * PROBE_GROWTH
        a, b = lo, x * PROBE_GROWTH
    else:
        hi = x * PROBE_GROWTH
        for _ in range(MAX_STEPS):
            if x <= 1 or (value(x // PROBE_GROWTH) <= value(x) and value(x) > -math.inf):
                break
            hi, x = x, x // PROBE_GROWTH
        a, b = max(1, x // PROBE_GROWTH), hi
    inv_phi = (math.sqrt(5) - 1) / 2
    x1 = b - int((b - a) * inv_phi)
    x2 = a + int((b - a) * inv_phi)
    for _ in range(3 * MAX_STEPS):
        if b - a <= max(2, b // RESOLUTION) or not a <= x1 <= x2 <= b:
            break
        if value(x1) < value(x2):
            a, x1 = x1, x2
            x2 = a + int((b - a) * inv_phi)
        else:
            b, x2 = x2, x1
            x1 = b - int((b - a) * inv_phi)
    for x in range(a, b + 1) if b - a <= 4 else (a, b):
        value(x)


def size_spread(
    spread: Spread, target: Fraction, *, token_in: str | None = None, flash_fee_bps: int = 0
) -> PegOpportunity | None:
    """The most profitable round trip over the spread's two pools borrowing `token_in` (the peg's
    token B by default, or its token A), or None when no size makes a profit (after the flash fee)."""
    peg = spread.peg
    t = peg.token_b if token_in is None else token_in
    if t.lower() == peg.token_b.lower():
        t, m = peg.token_b, peg.token_a
        first, second = spread.cheap, spread.rich  # buy A where it is cheap, sell it where it is dear
        first_rate, second_rate = first.buy_rate, second.sell_rate
    elif t.lower() == peg.token_a.lower():
        t, m = peg.token_a, peg.token_b
        first, second = spread.rich, spread.cheap  # sell A where it is dear, buy it back where it is cheap
        first_rate, second_rate = first.sell_rate, second.buy_rate
    else:
        raise ValueError(f"{peg.label}: token_in {token_in} is neither of its tokens")
    if not spread.exceeds_fees(flash_fee_bps):
        return None
    trip = _Trip(first.venue, first.pool, second.venue, second.pool, t, m, flash_fee_bps)
    peak = _v2_closed_form(trip)
    if peak is not None:
        for x in range(max(1, peak - V2_POLISH), peak + V2_POLISH + 1):
            trip.at(x)
    else:
        s0 = _ratio(
            first_rate[0] * second_rate[0] * BPS, first_rate[1] * second_rate[1] * (BPS + flash_fee_bps)
        )
        s0 -= 1.0
        hi = _upper_bound(trip, second_rate)
        depth = _depth(first.venue, first.pool, t, m)
        guess = max(1, depth // 256) if depth is not None else 10**6
        if trip.has_rates:
            _slope_search(trip, s0, hi, guess)
        else:
            _golden_search(trip, max(1, hi // 4) if hi is not None else guess)
    if trip.best is not None and first_rate[0] < first_rate[1]:
        # a unit of the token bought is worth more than a unit of the one paid: pay only what buys it
        _trim(trip, trip.best)
    best = trip.best
    if best is None or best.profit <= 0:
        return None
    profit_b = best.profit if t == peg.token_b else best.profit * target[0] // target[1]
    return PegOpportunity(
        peg=peg,
        token_in=t,
        amount_in=best.x,
        hops=(best.first, best.second),
        amount_out=best.second.amount_out,
        profit=best.profit,
        flash_fee=best.fee,
        profit_b=profit_b,
        spread=spread,
    )


def best_opportunities(
    pegs: Iterable[Peg],
    targets: Mapping[str, Fraction],
    venues: Sequence[Venue],
    changed_pools: Collection[str] | None = None,
    *,
    borrow: Borrow = "b",
    flash_fee_bps: int = 0,
) -> list[PegOpportunity]:
    """Every spread worth closing, sized (one opportunity per pool pair), most profitable first (by
    profit valued in token B at the target).

    targets: peg name -> (num, den), what `TargetReader` read (pegs with a fixed target may be absent;
    pegs with a rate target that is absent are skipped). changed_pools: only the spreads with at least
    one pool among these addresses are sized; an opportunity depends only on its two pools' states, so
    the caller keeps its previous ones between unchanged pools and replaces the rest (the ranking uses
    the target, which moves with a rate target: re-rank them). borrow: which token each round trip
    borrows (see `Borrow`). Opportunities sharing a pool conflict: see `disjoint`."""
    out: list[PegOpportunity] = []
    for spread in find_spreads(
        pegs, targets, venues, flash_fee_bps=flash_fee_bps, changed_pools=changed_pools
    ):
        target = target_of(spread.peg, targets)
        if target is None:
            continue
        tokens = {"b": (spread.peg.token_b,), "a": (spread.peg.token_a,)}.get(
            borrow, (spread.peg.token_b, spread.peg.token_a)
        )
        best: PegOpportunity | None = None
        for token in tokens:
            found = size_spread(spread, target, token_in=token, flash_fee_bps=flash_fee_bps)
            if found is not None and (best is None or found.profit_b > best.profit_b):
                best = found
        if best is not None:
            out.append(best)
    out.sort(key=lambda o: o.profit_b, reverse=True)
    return out


def disjoint(opportunities: Iterable[PegOpportunity]) -> list[PegOpportunity]:
    """The opportunities (in the order given: best first) that share no pool with an earlier one kept:
    what can all execute against the state they were sized on."""
    used: set[str] = set()
    out: list[PegOpportunity] = []
    for opp in opportunities:
        keys = {p.lower() for p in opp.pools}
        if keys & used:
            continue
        used |= keys
        out.append(opp)
    return out
