"""Synthetic peg pools (no node) for the peg tests and benchmark, and the brute-force sizing.

Pools are built from a price (base units of B per base unit of A) and a depth (base units of A), as exact
integer states: a Uniswap V2 pair's reserves, a Uniswap V3 pool's state (a full-range position plus one
concentrated around the price, every tick known so quotes are never out of range), a Balancer
ComposableStablePool's balances (its price follows from how unbalanced they are). Floats only place the
prices and depths; every quote is the venues' own integer math.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.units import percent_mul
from strategies.peg.detect import Spread, pool_prices, spreads
from strategies.peg.pegs import FixedTarget, Peg, RateTarget, one_to_one
from strategies.venues import balancer_math as bm
from strategies.venues.balancer_stable import BalancerStableVenue, StablePool, StablePoolState, TokenRate
from strategies.venues.base import Quote, QuoteError, Venue, VenueError
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool

VAULT = "0x" + "fa" * 20


def address(tag: int, kind: int = 0xE0) -> str:
    """A distinct address per (kind, tag)."""
    return "0x" + f"{kind:02x}" + f"{tag:038x}"


def token_pair(low_a: bool = True) -> tuple[str, str]:
    """Two token addresses; token A sorts below token B when `low_a` (token0 = A in Uniswap pools)."""
    lo, hi = "0x" + "a1" * 20, "0x" + "b1" * 20
    return (lo, hi) if low_a else (hi, lo)


def make_peg(
    token_a: str, token_b: str, decimals_a: int = 18, decimals_b: int = 18, *, name: str = "A/B"
) -> Peg:
    return Peg(name, token_a, token_b, one_to_one(decimals_a, decimals_b), "A", "B", decimals_a, decimals_b)


# --------------------------------------------------------------------------------------------- pools


def v2_state(
    pair: str, token_a: str, token_b: str, price: float, depth_a: int
) -> tuple[V2Pair, tuple[int, int]]:
    """A pair holding `depth_a` of A and B at `price` (B per A), and its (reserve0, reserve1)."""
    r_a = max(1000, depth_a)
    r_b = max(1000, int(r_a * price))
    r_a, r_b = min(r_a, 2**111), min(r_b, 2**111)
    if token_a.lower() < token_b.lower():
        return V2Pair(pair, token_a, token_b), (r_a, r_b)
    return V2Pair(pair, token_b, token_a), (r_b, r_a)


def v2_venue(specs: Sequence[tuple[V2Pair, tuple[int, int]]], name: str = "uniswap_v2") -> UniswapV2Venue:
    venue = UniswapV2Venue([p for p, _ in specs], name=name)
    return venue.with_reserves({p.address: r for p, r in specs}, block=1)


def v3_state(
    pool: str,
    token_a: str,
    token_b: str,
    price: float,
    depth_a: int,
    *,
    fee: int = 100,
    concentration: int = 10,
    width_ticks: int = 20,
) -> tuple[V3Pool, v3.PoolState]:
    """A pool at `price` (B per A) with a full-range position worth about `depth_a` of A and one
    `concentration` times as deep within +-width_ticks of the price."""
    spacing = v3.FEE_TICK_SPACING[fee]
    a_is_0 = token_a.lower() < token_b.lower()
    p1_0 = price if a_is_0 else 1 / price  # token1 per token0
    sqrt_price = int(math.sqrt(p1_0) * 2**96)
    sqrt_price = max(v3.MIN_SQRT_RATIO + 1, min(v3.MAX_SQRT_RATIO - 1, sqrt_price))
    tick = v3.get_tick_at_sqrt_ratio(sqrt_price)
    root = math.sqrt(p1_0)
    full = int(depth_a * root) if a_is_0 else int(depth_a / root)
    full = max(10**4, min(full, 2**100))
    lo_full = v3.nearest_usable_tick(v3.MIN_TICK, spacing)
    hi_full = v3.nearest_usable_tick(v3.MAX_TICK, spacing)
    net: dict[int, int] = {lo_full: full, hi_full: -full}
    active = full
    conc = full * concentration
    if conc:
        width = max(1, width_ticks // spacing) * spacing
        lower = (tick // spacing) * spacing - width
        upper = (tick // spacing) * spacing + width
        net[lower] = net.get(lower, 0) + conc
        net[upper] = net.get(upper, 0) - conc
        if lower <= tick < upper:
            active += conc
    token0, token1 = (token_a, token_b) if a_is_0 else (token_b, token_a)
    state = v3.PoolState(sqrt_price, tick, active, fee, spacing, v3.bitmap_from_ticks(net, spacing), net)
    return V3Pool(pool, token0, token1, fee, spacing), state


def v3_venue(specs: Sequence[tuple[V3Pool, v3.PoolState]], name: str = "uniswap_v3") -> UniswapV3Venue:
    venue = UniswapV3Venue([p for p, _ in specs], words_each_side=None, name=name)
    return venue.with_states({p.address: s for p, s in specs}, block=1)


def balancer_state(
    bpt: str,
    tokens: Sequence[str],
    decimals: Sequence[int],
    whole_per_token: int,
    *,
    skew: Sequence[float] | None = None,
    amp: int = 200_000,
    swap_fee: int = 10**14,
    rates: Sequence[int | None] | None = None,
) -> tuple[StablePool, StablePoolState]:
    """A ComposableStablePool of `tokens` (+ its BPT), each holding about `whole_per_token` whole tokens
    times its skew factor (1: balanced), at amplification `amp` (x1000); `rates`: a rate provider's
    rate per token (1e18 = none)."""
    n = len(tokens)
    skew = list(skew) if skew is not None else [1.0] * n
    rates = list(rates) if rates is not None else [None] * n
    order = sorted([*range(n), n], key=lambda i: (tokens[i] if i < n else bpt).lower())
    registered = [tokens[i] if i < n else bpt for i in order]
    bpt_index = order.index(n)
    decs = [decimals[i] if i < n else 18 for i in order]
    providers: list[str | None] = []
    token_rates: list[TokenRate | None] = []
    balances: list[int] = []
    for k, i in enumerate(order):
        if i == n:
            providers.append(None)
            token_rates.append(None)
            balances.append(2**111)
            continue
        rate = rates[i]
        providers.append(address(k, 0x9A) if rate is not None else None)
        token_rates.append(TokenRate(rate, rate, 0, 10**12, rate) if rate is not None else None)
        value = rate if rate is not None else bm.ONE
        whole = int(whole_per_token * skew[i] * 10 ** decs[k]) * bm.ONE // value
        balances.append(max(10**3, whole))
    pool = StablePool(
        address=bpt,
        pool_id=bpt.lower() + "0" * 24,
        vault=VAULT,
        tokens=tuple(registered),
        bpt_index=bpt_index,
        decimals=tuple(decs),
        rate_providers=tuple(providers),
    )
    state = StablePoolState(
        balances=tuple(balances), amp=amp, swap_fee=swap_fee, rates=tuple(token_rates), timestamp=1_000
    )
    return pool, state


def balancer_venue(
    specs: Sequence[tuple[StablePool, StablePoolState]], name: str = "balancer_stable"
) -> BalancerStableVenue:
    venue = BalancerStableVenue([p for p, _ in specs], name=name)
    return venue.with_states({p.address: s for p, s in specs}, block=1)


def mid(venue: Venue, pool: str, token_a: str, token_b: str) -> float:
    """A pool's price of A in B as a float (placing the other pools of a case)."""
    peg = make_peg(token_a, token_b)
    (price,) = [p for p in pool_prices(peg, (1, 1), [venue]) if p.pool == pool]
    return price.price_num / price.price_den


# --------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    peg: Peg
    target: tuple[int, int]
    venues: list[Venue]
    label: str

    def spread(self) -> Spread | None:
        found = spreads(pool_prices(self.peg, self.target, self.venues))
        return found[0] if found else None


def _depth(rng: random.Random, decimals: int) -> int:
    return int(10 ** rng.uniform(2.0, 8.0) * 10**decimals)


def random_case(rng: random.Random, kinds: tuple[str, str]) -> Case:
    """Two pools of one A/B peg on the venue kinds given ("v2", "v3", "balancer"), one moved off the
    other by -4% .. +4% (often less than the fees, often more), depths from thin to deep."""
    low_a = rng.random() < 0.5
    token_a, token_b = token_pair(low_a)
    decimals_a, decimals_b = rng.choice(((18, 18), (6, 18), (18, 6), (6, 6)))
    peg = make_peg(token_a, token_b, decimals_a, decimals_b)
    unit = 10 ** (decimals_b - decimals_a)  # B base units per A base unit at 1:1
    first_price: float | None = None
    venues: list[Venue] = []
    label = []
    for n, kind in enumerate(kinds):
        move = rng.choice((rng.uniform(-0.04, 0.04), rng.uniform(-0.005, 0.005), rng.uniform(-0.001, 0.001)))
        if kind == "balancer":
            skew = rng.uniform(0.3, 1.7)
            pool, state = balancer_state(
                address(n, 0xBA),
                [token_a, token_b],
                [decimals_a, decimals_b],
                int(10 ** rng.uniform(3.0, 8.0)),
                skew=[skew, 2 - skew],
                amp=rng.choice((5_000, 50_000, 200_000, 1_000_000)),
                swap_fee=rng.choice((10**14, 4 * 10**14)),
            )
            venue: Venue = balancer_venue([(pool, state)], name=f"balancer_{n}")
            price = mid(venue, pool.address, token_a, token_b)
            label.append(f"balancer(skew {skew:.2f})")
        else:
            base = first_price if first_price is not None else unit * rng.uniform(0.97, 1.03)
            price = base * (1 + move)
            depth = _depth(rng, decimals_a)
            if kind == "v2":
                venue = v2_venue([v2_state(address(n, 0x20), token_a, token_b, price, depth)], name=f"v2_{n}")
            else:
                fee = rng.choice((100, 100, 500))
                venue = v3_venue(
                    [
                        v3_state(
                            address(n, 0x30),
                            token_a,
                            token_b,
                            price,
                            depth,
                            fee=fee,
                            concentration=rng.choice((0, 5, 50)),
                            width_ticks=rng.choice((2, 10, 50, 200)),
                        )
                    ],
                    name=f"v3_{n}",
                )
            label.append(f"{kind}({move * 1e4:+.0f}bps, depth 1e{math.log10(depth):.1f})")
        if first_price is None:
            first_price = price
        venues.append(venue)
    return Case(
        peg,
        (peg.target.num, peg.target.den) if isinstance(peg.target, FixedTarget) else (1, 1),
        venues,
        " / ".join(label),
    )


# ---------------------------------------------------------------------------------------- brute force


def round_trip(
    first: Venue, p1: str, second: Venue, p2: str, t: str, m: str, flash_fee_bps: int
) -> Callable[[int], int | None]:
    """profit(x) of borrowing x of t, t -> m on p1, m -> t on p2 (None where a quote fails)."""

    def profit(x: int) -> int | None:
        try:
            q1: Quote | None = first.quote_exact_in(t, m, x, pool=p1)
            if q1 is None or q1.amount_out <= 0:
                return None
            venue = second.apply(q1) if second is first else second
            q2 = venue.quote_exact_in(m, t, q1.amount_out, pool=p2)
        except (QuoteError, VenueError, ValueError, ArithmeticError):
            return None
        if q2 is None:
            return None
        return q2.amount_out - x - percent_mul(x, flash_fee_bps)

    return profit


def brute_force(
    profit: Callable[[int], int | None], *, grid: int = 200, refine: int = 100
) -> tuple[int, int] | None:
    """(size, profit) of the best size found by brute force: sizes doubled from 1 until past the peak
    (the profit negative again after being positive, or a failed quote after a good one), `grid` sizes
    evenly spread below that, then `refine` sizes around the best, twice, then every size when few."""
    x, seen_good, top = 1, False, None
    while x < 2**128:
        value = profit(x)
        if value is not None and value > 0:
            seen_good = True
        elif seen_good:
            top = x
            break
        x *= 2
    if top is None:
        return None
    best: tuple[int, int] | None = None

    def scan(xs: range | list[int]) -> None:
        nonlocal best
        for x in xs:
            value = profit(x)
            if value is not None and (best is None or value > best[1]):
                best = (x, value)

    scan(sorted({max(1, top * i // grid) for i in range(1, grid + 1)}))
    step = max(1, top // grid)
    for _ in range(3):
        if best is None:
            return None
        lo, hi = max(1, best[0] - step), best[0] + step
        if hi - lo <= 2 * refine:
            scan(range(lo, hi + 1))
            break
        step = max(1, (hi - lo) // refine)
        scan(range(lo, hi + 1, step))
    return best


# ------------------------------------------------------------------------------------ a whole market


@dataclass(frozen=True)
class MarketPool:
    venue: int
    """Index into Market.venues."""
    address: str
    token_a: str
    token_b: str
    depth_a: int
    depth_b: int


@dataclass(frozen=True)
class Market:
    pegs: list[Peg]
    targets: dict[str, tuple[int, int]]
    venues: list[Venue]
    pools: list[MarketPool]


def market(rng: random.Random, n_pegs: int = 10, *, jitter_bps: float = 2.0) -> Market:
    """`n_pegs` pegs, each on five pools (Uniswap V2, a V2 fork, Uniswap V3 at 0.01% and 0.05%, a
    Balancer stable pool): 5 * n_pegs pools on four venues, priced within +-jitter_bps of the target.
    Every fifth peg is LST-like (a rate target of ~1.1, the Balancer pool's rate provider at that rate);
    the others are 1:1 with 6 or 18 decimals."""
    decimals = ((18, 18), (6, 6), (6, 18), (18, 6))
    pegs: list[Peg] = []
    targets: dict[str, tuple[int, int]] = {}
    v2a: list[tuple[V2Pair, tuple[int, int]]] = []
    v2b: list[tuple[V2Pair, tuple[int, int]]] = []
    v3s: list[tuple[V3Pool, v3.PoolState]] = []
    bals: list[tuple[StablePool, StablePoolState]] = []
    pools: list[MarketPool] = []
    for i in range(n_pegs):
        token_a, token_b = address(i, 0xA0), address(i, 0xB0)
        if rng.random() < 0.5:
            token_a, token_b = address(i, 0xB8), address(i, 0xA8)
        lst = i % 5 == 4
        da, db = (18, 18) if lst else decimals[i % len(decimals)]
        name = f"peg{i}"
        if lst:
            rate = 10**18 + rng.randrange(0, 2 * 10**17)
            target: tuple[int, int] = (rate, 10**18)
            peg = Peg(name, token_a, token_b, RateTarget(address(i, 0x5C)), f"A{i}", f"B{i}", da, db)
        else:
            rate = None
            peg = Peg(name, token_a, token_b, one_to_one(da, db), f"A{i}", f"B{i}", da, db)
            fixed = peg.fixed()
            assert fixed is not None
            target = fixed
        pegs.append(peg)
        targets[name] = target
        price = target[0] / target[1]
        whole = int(10 ** rng.uniform(5.0, 7.0))

        def jitter() -> float:
            return price * (1 + rng.uniform(-jitter_bps, jitter_bps) / 1e4)

        depth = whole * 10**da
        spec2 = v2_state(address(i, 0x20), token_a, token_b, jitter(), depth)
        v2a.append(spec2)
        pools.append(MarketPool(0, spec2[0].address, token_a, token_b, depth, int(depth * price)))
        spec2b = v2_state(address(i, 0x21), token_a, token_b, jitter(), depth // 3)
        v2b.append(spec2b)
        pools.append(MarketPool(1, spec2b[0].address, token_a, token_b, depth // 3, int(depth * price) // 3))
        for k, fee in enumerate((100, 500)):
            spec3 = v3_state(
                address(i, 0x30 + k),
                token_a,
                token_b,
                jitter(),
                depth // 4,
                fee=fee,
                concentration=20,
                width_ticks=20 if fee == 100 else 100,
            )
            v3s.append(spec3)
            pools.append(MarketPool(2, spec3[0].address, token_a, token_b, depth, int(depth * price)))
        skew = 1 + rng.uniform(-0.02, 0.02)
        specb = balancer_state(
            address(i, 0xBA),
            [token_a, token_b],
            [da, db],
            whole,
            skew=[skew, 2 - skew],
            amp=rng.choice((50_000, 200_000, 1_000_000)),
            rates=[rate, None],
        )
        bals.append(specb)
        pools.append(MarketPool(3, specb[0].address, token_a, token_b, depth, int(depth * price)))
    venues: list[Venue] = [
        v2_venue(v2a, "uniswap_v2"),
        v2_venue(v2b, "sushiswap"),
        v3_venue(v3s, "uniswap_v3"),
        balancer_venue(bals, "balancer_stable"),
    ]
    return Market(pegs, targets, venues, pools)


def random_swaps(
    rng: random.Random, mk: Market, n: int, *, max_fraction: float = 3e-3
) -> tuple[list[Venue], list[str]]:
    """The market's venues after one random swap on each of `n` distinct pools (either direction, up to
    `max_fraction` of the pool's depth, log-uniform), and those pools."""
    venues = list(mk.venues)
    chosen = rng.sample(mk.pools, n)
    for pool in chosen:
        if rng.random() < 0.5:
            t_in, t_out, depth = pool.token_a, pool.token_b, pool.depth_a
        else:
            t_in, t_out, depth = pool.token_b, pool.token_a, pool.depth_b
        amount = max(
            1, int(depth * 10 ** rng.uniform(math.log10(max_fraction) - 3, math.log10(max_fraction)))
        )
        venue = venues[pool.venue]
        try:
            quote = venue.quote_exact_in(t_in, t_out, amount, pool=pool.address)
        except (QuoteError, VenueError):
            continue
        if quote is not None:
            venues[pool.venue] = venue.apply(quote)
    return venues, [p.address for p in chosen]
