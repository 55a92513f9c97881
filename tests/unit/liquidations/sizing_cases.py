"""Random liquidation terms and pool states for the sizing tests and benchmark, and the brute force.

A case is one (collateral, debt) pair of a position (V3 or V2 terms: 6/8/18 decimals, e-mode-like
bonuses, V3 protocol fee, collateral that runs out or not, either close factor) and venues trading the
pair: a Uniswap V2 pair and/or a Uniswap V3 pool (a full-range position plus a concentrated one),
priced near the oracle and from very deep to much too shallow for the position (so the best size is
sometimes the largest and sometimes well inside). All state is exact integers; floats only place the
prices and depths when building a case.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.units import RAY, ray_mul
from strategies.liquidations.common import LiquidationTerms
from strategies.liquidations.math_v2 import V2Terms
from strategies.liquidations.math_v3 import V3Terms
from strategies.liquidations.sizing import Execution, Sizer
from strategies.venues.base import Venue
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool

COLL = "0x" + "c1" * 20
DEBT = "0x" + "d1" * 20
PAIR = "0x" + "e2" * 20
POOL = "0x" + "e3" * 20
PREMIUM_BPS = 5


@dataclass(frozen=True)
class Case:
    terms: LiquidationTerms
    venues: dict[str, Venue]
    label: str


def random_terms(rng: random.Random, *, v3_terms: bool | None = None) -> LiquidationTerms:
    is_v3 = rng.random() < 0.6 if v3_terms is None else v3_terms
    dc, dd = rng.choice((6, 8, 18)), rng.choice((6, 8, 18))
    base = 10**8 if is_v3 else 10**18  # USD 1e8 (V3) or ETH wei (V2)
    usd_c = 10 ** rng.uniform(-0.5, 4.7)  # $0.3 .. $50k
    usd_d = 10 ** rng.uniform(-0.1, 3.6) if rng.random() < 0.5 else 1.0
    eth_usd = 3000.0
    pc = max(1, int(usd_c * base / (1 if is_v3 else eth_usd)))
    pd = max(1, int(usd_d * base / (1 if is_v3 else eth_usd)))
    bonus = rng.choice((10100, 10250, 10500, 10750, 11000, 11500))
    fee = rng.choice((0, 1000, 2000)) if is_v3 else 0
    # Position size in USD, and how much collateral backs the debt (below 1: the collateral runs out).
    debt_usd = 10 ** rng.uniform(-1, 6.5)
    cover = rng.choice((0.5, 0.9, 1.02, 1.2, 2.0, 5.0))
    income = RAY + rng.randrange(0, RAY // 5)
    debt_index = RAY + rng.randrange(0, RAY // 5)
    balance_target = int(debt_usd * cover / usd_c * 10**dc) + 1
    scaled = balance_target * RAY // income + 1
    variable = int(debt_usd / usd_d * 10**dd) + 1
    stable = rng.choice((0, 0, variable // 3))
    cls = V3Terms if is_v3 else V2Terms
    return cls(
        collateral_asset=COLL,
        debt_asset=DEBT,
        health_factor=10**18 - rng.randrange(1, 2 * 10**17),
        close_factor=rng.choice((5000, 10000)) if is_v3 else 5000,
        liquidation_bonus=bonus,
        liquidation_protocol_fee=fee,
        collateral_price=pc,
        debt_price=pd,
        collateral_unit=10**dc,
        debt_unit=10**dd,
        user_collateral_balance=ray_mul(scaled, income),
        user_collateral_scaled=scaled,
        collateral_income=income,
        user_variable_debt=variable - stable,
        user_stable_debt=stable,
        debt_index=debt_index,
    )


def _v2_venue(rng: random.Random, rate: float, depth_coll: int) -> UniswapV2Venue:
    """A pair holding `depth_coll` collateral units and debt at `rate` debt units per collateral unit."""
    venue = UniswapV2Venue([V2Pair(PAIR, COLL, DEBT)] if COLL < DEBT else [V2Pair(PAIR, DEBT, COLL)])
    r_coll = max(1000, depth_coll)
    r_debt = max(1000, int(r_coll * rate))
    r0, r1 = (r_coll, r_debt) if COLL < DEBT else (r_debt, r_coll)
    return venue.with_reserves({PAIR: (min(r0, 2**111), min(r1, 2**111))}, block=1)


def _v3_venue(rng: random.Random, rate: float, depth_coll: int) -> UniswapV3Venue | None:
    """A pool at `rate` (debt units per collateral unit) with a full-range position worth about
    `depth_coll` collateral and a concentrated one around the price."""
    fee, spacing = rng.choice(((500, 10), (3000, 60)))
    token0, token1 = (COLL, DEBT) if COLL < DEBT else (DEBT, COLL)
    price = rate if token0 == COLL else 1 / rate  # token1 per token0
    if not 1e-30 < price < 1e30:
        return None
    tick = math.floor(math.log(price) / math.log(1.0001))
    tick = max(v3.MIN_TICK + 10 * spacing, min(v3.MAX_TICK - 10 * spacing, tick))
    lo_full = v3.nearest_usable_tick(v3.MIN_TICK, spacing)
    hi_full = v3.nearest_usable_tick(v3.MAX_TICK, spacing)
    # Liquidity L ~ amount0 * sqrtP: collateral depth in token0 or token1 terms.
    sqrt_p = math.sqrt(price)
    full = int(depth_coll * sqrt_p) if token0 == COLL else int(depth_coll / sqrt_p)
    full = max(10**6, min(full, 2**100))
    width = rng.choice((2, 10, 50)) * spacing
    lower = (tick // spacing) * spacing - width
    upper = (tick // spacing) * spacing + width
    conc = full * rng.choice((0, 1, 5))
    net: dict[int, int] = {lo_full: full, hi_full: -full}
    if conc:
        net[lower] = net.get(lower, 0) + conc
        net[upper] = net.get(upper, 0) - conc
    active = full + (conc if lower <= tick < upper else 0)
    state = v3.PoolState(
        v3.get_sqrt_ratio_at_tick(tick), tick, active, fee, spacing, v3.bitmap_from_ticks(net, spacing), net
    )
    venue = UniswapV3Venue([V3Pool(POOL, token0, token1, fee, spacing)], words_each_side=None)
    return venue.with_states({POOL: state}, block=1)


def random_case(rng: random.Random) -> Case:
    terms = random_terms(rng)
    # Debt units per collateral unit at the oracle, moved by up to +-4% (the pool may be cheaper).
    oracle_rate = terms.collateral_price * terms.debt_unit / (terms.debt_price * terms.collateral_unit)
    rate = oracle_rate * rng.uniform(0.96, 1.03)
    depth = max(1000, int(terms.user_collateral_balance * 10 ** rng.uniform(-0.5, 3.5)))
    venues: dict[str, Venue] = {}
    kinds = rng.choice(("v2", "v3", "both"))
    if kinds in ("v2", "both"):
        v2 = _v2_venue(rng, rate, depth)
        venues[v2.name] = v2
    if kinds in ("v3", "both"):
        v3v = _v3_venue(rng, rate * rng.uniform(0.99, 1.01), max(1000, int(depth * rng.uniform(0.3, 3))))
        if v3v is not None:
            venues[v3v.name] = v3v
    if not venues:
        v2 = _v2_venue(rng, rate, depth)
        venues[v2.name] = v2
    label = f"{type(terms).__name__} {kinds} depth x{depth / max(1, terms.user_collateral_balance):.2g}"
    return Case(terms, venues, label)


def brute_force(case: Case, *, grid: int = 400, refine: int = 200) -> Execution | None:
    """The best execution over `grid` sizes evenly spread on [1, max_cover], then every size (or `refine`
    evenly spread ones) around the best of them, each on the best route for its own size."""
    sizer = Sizer(case.venues, flash_premium_bps=PREMIUM_BPS)
    terms = case.terms
    top = terms.max_cover()

    def run(d: int) -> Execution | None:
        try:
            at = terms.outcome(d)
        except Exception:
            return None
        if at.collateral_to_liquidator <= 0:
            return None
        route = sizer.route_at(terms, at.collateral_to_liquidator)
        return None if route is None else sizer.execute(terms, route, d)

    best: Execution | None = None

    def consider(ex: Execution | None) -> None:
        nonlocal best
        if ex is not None and (best is None or ex.gross_profit > best.gross_profit):
            best = ex

    sizes = sorted({max(1, top * i // grid) for i in range(1, grid + 1)} | {top})
    for d in sizes:
        consider(run(d))
    if best is None:
        return None
    centre = best.debt_to_cover
    step = max(1, top // grid)
    lo, hi = max(1, centre - step), min(top, centre + step)
    around = range(lo, hi + 1, max(1, (hi - lo) // refine))
    for d in around:
        consider(run(d))
    return best


def tolerance(terms: LiquidationTerms, best: int) -> int:
    """How far below the brute force's profit a size may be: 0.1% of it, or two collateral units' worth
    at the oracle (plus 2 units of rounding) when that is more: sizes are in whole collateral units."""
    unit = -(-terms.collateral_price * terms.debt_unit // (terms.debt_price * terms.collateral_unit))
    return max(abs(best) // 1000, 2 * unit + 2)
