"""Peg detection: every pool's price against the peg's target, every pool pair's spread, and the spreads
worth sizing. Pure: no I/O; the venues are already refreshed (or set to a known state).

For a peg (token A, token B, target) and a pool trading A/B, `PoolPrice` holds, as exact fractions in
base units:
- `price`: B per A at the pool's current state before the fee (Uniswap V2: reserve ratio; V3: sqrtP^2;
  Balancer: the StableSwap marginal price with the token rates the next swap uses), and its deviation
  from the target in bps;
- `sell_rate` (B out per A in) and `buy_rate` (A out per B in): what an infinitesimal swap pays, fee
  included.

A `Spread` joins the pool where A is cheapest (`cheap`: buy A there) with one where it is dearest
(`rich`: sell A there). Its round trip `cheap.buy_rate * rich.sell_rate` is what an infinitesimal
B -> A -> B trip returns per unit (it is the same for A -> B -> A): the spread exceeds the two pools' fees
(plus a flash-loan fee) exactly when the round trip is above 1 + flash fee, and only then is there a
size that makes money (the profit of a size is concave: it starts at that slope and only falls).

Venues: Uniswap V2 and V3 and Balancer stable pools are read through their public state; any other
venue with `spot_rate(token_in, token_out, pool)` works too (its mid price is then the geometric mean of
the two spot rates, for reporting only). Pools whose state is missing or cannot be priced are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from strategies.peg.pegs import Peg
from strategies.venues.balancer_math import ONE as BALANCER_ONE
from strategies.venues.balancer_stable import BalancerStableVenue
from strategies.venues.base import Venue, VenueError, addr_key
from strategies.venues.uniswap_v2 import UniswapV2Venue
from strategies.venues.uniswap_v3 import UniswapV3Venue

__all__ = [
    "BPS",
    "PoolPrice",
    "Spread",
    "find_spreads",
    "pegs_touching",
    "pool_prices",
    "pool_rates",
    "spreads",
    "target_of",
]

BPS = 10_000
Fraction = tuple[int, int]
"""(num, den), both > 0."""
Rates = tuple[Fraction, Fraction, Fraction]
"""(price, sell_rate, buy_rate) of a pool: see `PoolPrice`."""


@dataclass(frozen=True, slots=True)
class PoolPrice:
    """One pool's price of a peg's token A in token B (base units), at the venue's current state."""

    peg: Peg
    venue: Venue
    pool: str
    price_num: int
    price_den: int
    """price_num / price_den: base units of B per base unit of A, before the pool's fee."""
    sell_rate: Fraction
    """B out per A in for an infinitesimal swap, fee included."""
    buy_rate: Fraction
    """A out per B in for an infinitesimal swap, fee included."""
    deviation_bps: float
    """(price / target - 1) * 10,000: negative when A is cheap on this pool."""

    @property
    def price(self) -> Fraction:
        return (self.price_num, self.price_den)


@dataclass(frozen=True, slots=True)
class Spread:
    """Two pools of one peg: A is cheaper on `cheap` than on `rich`."""

    peg: Peg
    cheap: PoolPrice
    rich: PoolPrice
    round_trip: Fraction
    """cheap.buy_rate * rich.sell_rate: units back per unit of an infinitesimal round trip, fees included."""
    spread_bps: float
    """(rich.price / cheap.price - 1) * 10,000."""
    edge_bps: float
    """(round_trip - 1) * 10,000: the spread after both pools' fees (negative: the fees eat it)."""

    @property
    def fees_bps(self) -> float:
        """The two pools' fees on the round trip, in bps of it."""
        return self.spread_bps - self.edge_bps

    def exceeds_fees(self, flash_fee_bps: int = 0) -> bool:
        """Whether the round trip returns more than 1 + flash fee per unit (some size is profitable)."""
        num, den = self.round_trip
        return num * BPS > den * (BPS + flash_fee_bps)

    @property
    def pools(self) -> tuple[str, str]:
        return (self.cheap.pool, self.rich.pool)


# ------------------------------------------------------------------------------------------ pool rates


def pool_rates(venue: Venue, pool: str, token_a: str, token_b: str) -> Rates | None:
    """(price, sell_rate, buy_rate) of a pool (see `PoolPrice`), or None when the venue cannot price it
    (no state, not a pool of the pair, a venue without spot rates)."""
    try:
        if isinstance(venue, UniswapV3Venue):
            return _v3_rates(venue, pool, token_a)
        if isinstance(venue, UniswapV2Venue):
            return _v2_rates(venue, pool, token_a, token_b)
        if isinstance(venue, BalancerStableVenue):
            return _balancer_rates(venue, pool, token_a, token_b)
        return _generic_rates(venue, pool, token_a, token_b)
    except (VenueError, ArithmeticError, ValueError):
        return None


def _v3_rates(venue: UniswapV3Venue, pool: str, token_a: str) -> Rates | None:
    info = venue.pool_info(pool)
    sqrt_price = venue.state(pool).sqrt_price_x96
    if sqrt_price <= 0:
        return None
    square, q192 = sqrt_price * sqrt_price, 1 << 192
    keep, whole = 1_000_000 - info.fee, 1_000_000
    price = (square, q192) if token_a.lower() == info.token0.lower() else (q192, square)
    return price, (price[0] * keep, price[1] * whole), (price[1] * keep, price[0] * whole)


def _v2_rates(venue: UniswapV2Venue, pool: str, token_a: str, token_b: str) -> Rates | None:
    sell = venue.spot_rate(token_a, token_b, pool)  # (gamma * r_b, 1e4 * r_a)
    buy = venue.spot_rate(token_b, token_a, pool)  # (gamma * r_a, 1e4 * r_b)
    if sell is None or buy is None or sell[0] <= 0 or buy[0] <= 0:
        return None
    # price = r_b / r_a = sell / gamma * 1e4 ... from the two spot rates' denominators (1e4 * r).
    return (buy[1], sell[1]), sell, buy


def _balancer_rates(venue: BalancerStableVenue, pool: str, token_a: str, token_b: str) -> Rates | None:
    price = venue.mid_price(token_a, token_b, pool)
    if price is None or price[0] <= 0 or price[1] <= 0:
        return None
    keep = BALANCER_ONE - venue.state(pool).swap_fee
    if keep <= 0:
        return None
    return price, (price[0] * keep, price[1] * BALANCER_ONE), (price[1] * keep, price[0] * BALANCER_ONE)


def _generic_rates(venue: Venue, pool: str, token_a: str, token_b: str) -> Rates | None:
    spot = getattr(venue, "spot_rate", None)
    if spot is None:
        return None
    sell, buy = spot(token_a, token_b, pool), spot(token_b, token_a, pool)
    if sell is None or buy is None or min(*sell, *buy) <= 0:
        return None
    # price^2 = sell / buy (the fee cancels); 64 fractional bits are plenty for reporting
    scale = 1 << 64
    root = math.isqrt(sell[0] * buy[1] * scale * scale // (sell[1] * buy[0]))
    if root <= 0:
        return None
    return (root, scale), (int(sell[0]), int(sell[1])), (int(buy[0]), int(buy[1]))


def _bps(num: int, den: int) -> float:
    """(num / den - 1) * 10,000 as a float (num, den may be far beyond float range)."""
    return (num - den) * BPS / den


# ------------------------------------------------------------------------------------------- detection


def target_of(peg: Peg, targets: Mapping[str, Fraction]) -> Fraction | None:
    """The peg's target from `targets` (by peg name), or its fixed target; None when it has not been read."""
    target = targets.get(peg.name)
    return target if target is not None else peg.fixed()


def pool_prices(peg: Peg, target: Fraction, venues: Iterable[Venue]) -> list[PoolPrice]:
    """Every pool trading the peg's pair on the venues it allows, priced (pools that cannot be priced
    are left out), in venue then pool order."""
    t_num, t_den = target
    out: list[PoolPrice] = []
    for venue in venues:
        if not peg.allows(venue.name):
            continue
        for pool in venue.pools(peg.token_a, peg.token_b):
            rates = pool_rates(venue, pool, peg.token_a, peg.token_b)
            if rates is None:
                continue
            (p_num, p_den), sell, buy = rates
            out.append(
                PoolPrice(peg, venue, pool, p_num, p_den, sell, buy, _bps(p_num * t_den, p_den * t_num))
            )
    return out


def spreads(prices: Sequence[PoolPrice]) -> list[Spread]:
    """Every pair of the pools (cheap side first), best round trip first."""
    out: list[Spread] = []
    for i, first in enumerate(prices):
        for second in prices[i + 1 :]:
            if first.price_num * second.price_den <= second.price_num * first.price_den:
                cheap, rich = first, second
            else:
                cheap, rich = second, first
            rt = (cheap.buy_rate[0] * rich.sell_rate[0], cheap.buy_rate[1] * rich.sell_rate[1])
            out.append(
                Spread(
                    cheap.peg,
                    cheap,
                    rich,
                    rt,
                    _bps(rich.price_num * cheap.price_den, rich.price_den * cheap.price_num),
                    _bps(*rt),
                )
            )
    out.sort(key=lambda s: s.edge_bps, reverse=True)
    return out


def pegs_touching(pegs: Iterable[Peg], venues: Sequence[Venue], pools: Collection[str]) -> list[Peg]:
    """The pegs with at least one pool (on a venue they allow) among `pools` (addresses, any case)."""
    keys = {addr_key(p) for p in pools}
    return [
        peg
        for peg in pegs
        if any(
            addr_key(pool) in keys
            for venue in venues
            if peg.allows(venue.name)
            for pool in venue.pools(peg.token_a, peg.token_b)
        )
    ]


def find_spreads(
    pegs: Iterable[Peg],
    targets: Mapping[str, Fraction],
    venues: Sequence[Venue],
    *,
    flash_fee_bps: int = 0,
    changed_pools: Collection[str] | None = None,
) -> list[Spread]:
    """The spreads worth sizing, over every peg whose target is known (best round trip first): those
    whose round trip exceeds 1 + flash fee.

    changed_pools: only the spreads with at least one pool among these addresses (a spread depends on
    its two pools' states only, so the caller keeps the ones between unchanged pools from before)."""
    keys = None if changed_pools is None else {addr_key(p) for p in changed_pools}
    chosen = list(pegs) if keys is None else pegs_touching(pegs, venues, keys)
    out: list[Spread] = []
    for peg in chosen:
        target = target_of(peg, targets)
        if target is None:
            continue
        for spread in spreads(pool_prices(peg, target, venues)):
            if not spread.exceeds_fees(flash_fee_bps):
                continue
            if keys is None or addr_key(spread.cheap.pool) in keys or addr_key(spread.rich.pool) in keys:
                out.append(spread)
    out.sort(key=lambda s: s.edge_bps, reverse=True)
    return out
