"""A synthetic crash block: an Aave V3 and an Aave V2 market, pools shaped like the devnet's, and N
liquidatable positions (for the valuer's tests and the sizing benchmark; no RPC).

Tokens: WETH, WBTC (8 decimals), wstETH, USDC and USDT (6 decimals), DAI. Venues: Uniswap V3 WETH/USDC
0.05% and 0.3%, WBTC/WETH 0.3%, wstETH/WETH 0.01%, USDC/USDT and DAI/USDC 0.01% (each a full-range
position plus a band of +-2% around the price, several million dollars deep), Uniswap V2 pairs WETH/USDC,
WETH/USDT, WETH/DAI, WBTC/WETH, wstETH/WETH (shallower). Positions borrow stables (and some WETH against
WBTC/wstETH) at a health factor just above 1 before ETH falls by `crash`; some are in e-mode (V3).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from keeper.chain import uniswap_v3_math as v3
from keeper.chain.units import RAY
from strategies.liquidations import math_v2, math_v3
from strategies.liquidations.model import EModeCategory, MarketState, ReserveState, UserPosition, UserReserve
from strategies.liquidations.opportunity import Opportunity
from strategies.venues.base import Venue
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool
from tests.unit.liquidations.helpers import T0, bits, make_reserve

TOKENS: dict[str, tuple[str, int, float]] = {
    "WETH": ("0x" + "0e" * 20, 18, 2500.0),
    "WBTC": ("0x" + "0b" * 20, 8, 60000.0),
    "wstETH": ("0x" + "05" * 20, 18, 2900.0),
    "USDC": ("0x" + "0c" * 20, 6, 1.0),
    "USDT": ("0x" + "07" * 20, 6, 1.0),
    "DAI": ("0x" + "0d" * 20, 18, 1.0),
}
V3_POOLS = [("WETH", "USDC", 500, 8e6), ("WETH", "USDC", 3000, 3e6), ("WBTC", "WETH", 3000, 4e6)]
V3_POOLS += [("wstETH", "WETH", 100, 4e6), ("USDC", "USDT", 100, 5e6), ("DAI", "USDC", 100, 5e6)]
V2_PAIRS = [("WETH", "USDC", 2e6), ("WETH", "USDT", 1e6), ("WETH", "DAI", 1e6), ("WBTC", "WETH", 1e6)]
V2_PAIRS += [("wstETH", "WETH", 1e6)]
ETH_CORRELATED = 1
"""The V3 e-mode category of WETH and wstETH."""


def addr(symbol: str) -> str:
    return TOKENS[symbol][0]


def _price(symbol: str, eth_usd: float) -> float:
    usd = TOKENS[symbol][2]
    if symbol == "WETH":
        return eth_usd
    if symbol == "wstETH":
        return eth_usd * usd / 2500.0
    return usd


def _units(symbol: str, usd: float, eth_usd: float) -> int:
    return int(usd / _price(symbol, eth_usd) * 10 ** TOKENS[symbol][1])


def _v3_pool(
    a: str, b: str, fee: int, depth_usd: float, eth_usd: float, salt: int
) -> tuple[V3Pool, v3.PoolState]:
    t0, t1 = sorted((a, b), key=lambda s: addr(s))
    spacing = v3.FEE_TICK_SPACING[fee]
    # token1 base units per token0 base unit
    price = _price(t0, eth_usd) / _price(t1, eth_usd) * 10 ** (TOKENS[t1][1] - TOKENS[t0][1])
    tick = math.floor(math.log(price) / math.log(1.0001))
    amount0 = _units(t0, depth_usd / 2, eth_usd)
    full = int(amount0 * math.sqrt(price))
    band = max(spacing, (200 // spacing) * spacing)
    lower, upper = (tick // spacing) * spacing - band, (tick // spacing) * spacing + band
    conc = full * 20
    net = {
        v3.nearest_usable_tick(v3.MIN_TICK, spacing): full,
        v3.nearest_usable_tick(v3.MAX_TICK, spacing): -full,
    }
    net[lower] = net.get(lower, 0) + conc
    net[upper] = net.get(upper, 0) - conc
    state = v3.PoolState(
        v3.get_sqrt_ratio_at_tick(tick),
        tick,
        full + conc,
        fee,
        spacing,
        v3.bitmap_from_ticks(net, spacing),
        net,
    )
    address = "0x" + f"{salt:02x}" * 20
    return V3Pool(address, addr(t0), addr(t1), fee, spacing), state


def venues(eth_usd: float, depth: float = 1.0) -> list[Venue]:
    """The pools at an ETH price of `eth_usd`, `depth` times as deep as listed (both venues already hold
    their state)."""
    pools, states = [], {}
    for i, (a, b, fee, usd) in enumerate(V3_POOLS):
        pool, state = _v3_pool(a, b, fee, usd * depth, eth_usd, 0x30 + i)
        pools.append(pool)
        states[pool.address] = state
    uv3 = UniswapV3Venue(pools, words_each_side=None).with_states(states, block=1)
    pairs, reserves = [], {}
    for i, (a, b, usd) in enumerate(V2_PAIRS):
        t0, t1 = sorted((a, b), key=lambda s: addr(s))
        address = "0x" + f"{0x60 + i:02x}" * 20
        pairs.append(V2Pair(address, addr(t0), addr(t1)))
        reserves[address] = (_units(t0, usd * depth / 2, eth_usd), _units(t1, usd * depth / 2, eth_usd))
    uv2 = UniswapV2Venue(pairs).with_reserves(reserves, block=1)
    return [uv3, uv2]


def market(eth_usd: float, *, v2: bool = False) -> MarketState:
    """An Aave market at `eth_usd`: V3 prices in USD 1e8 (fee 10% of the bonus), V2 in ETH wei."""
    reserves: dict[str, ReserveState] = {}
    params = {
        "WETH": (8000, 8250, 10500),
        "WBTC": (7300, 7800, 10500),
        "wstETH": (6900, 8100, 10600),
        "USDC": (7700, 8000, 10450),
        "USDT": (7500, 7800, 10450),
        "DAI": (6300, 7700, 10500),
    }
    for rid, (symbol, (address, decimals, _)) in enumerate(TOKENS.items()):
        usd = _price(symbol, eth_usd)
        price = int(usd / eth_usd * 10**18) if v2 else int(usd * 10**8)
        ltv, lt, bonus = params[symbol]
        reserves[address] = make_reserve(
            address,
            rid,
            price=price,
            decimals=decimals,
            ltv=ltv,
            lt=lt,
            bonus=bonus,
            fee=0 if v2 else 1000,
            emode=ETH_CORRELATED if symbol in ("WETH", "wstETH") and not v2 else 0,
        )
    cats = {} if v2 else {ETH_CORRELATED: EModeCategory(ETH_CORRELATED, 9000, 9300, 10100)}
    return MarketState(reserves, cats, block_number=1, timestamp=T0)


@dataclass(frozen=True)
class Crash:
    venues: list[Venue]
    markets: dict[str, MarketState]
    opportunities: list[Opportunity]
    eth_prices: dict[str, int]


def crash_block(
    n: int, *, seed: int = 1, eth_before: float = 2500.0, crash: float = 0.8, depth: float = 1.0
) -> Crash:
    """N liquidatable positions (about 60% on V3) after ETH falls from `eth_before` to `crash` times it,
    with pools `depth` times as deep as listed."""
    rng = random.Random(seed)
    eth_after = eth_before * crash
    m3, m2 = market(eth_after), market(eth_after, v2=True)
    opps: list[Opportunity] = []
    i = 0
    while len(opps) < n:
        i += 1
        is_v3 = rng.random() < 0.6
        m = m3 if is_v3 else m2
        coll = rng.choice(("WETH", "WETH", "WETH", "WBTC", "wstETH"))
        debt = rng.choice(("USDC", "USDC", "USDT", "DAI") if coll == "WETH" else ("USDC", "WETH"))
        emode = ETH_CORRELATED if is_v3 and coll == "wstETH" and debt == "WETH" and rng.random() < 0.5 else 0
        usd = 10 ** rng.uniform(3, 5.7)  # $1k .. $500k of collateral before the crash
        c_res, d_res = m.reserves[addr(coll)], m.reserves[addr(debt)]
        lt = 9300 if emode else c_res.config.liquidation_threshold
        hf_before = rng.uniform(1.01, 1.2)
        debt_usd = usd * lt / 10_000 / hf_before
        coll_units = _units(coll, usd, eth_before)
        debt_units = _units(debt, debt_usd, eth_before)
        position = UserPosition(
            user="0x" + f"{i:040x}",
            config=bits(collateral=(c_res.id,), borrowing=(d_res.id,)),
            emode_category=emode,
            reserves={
                addr(coll): UserReserve(scaled_a_token_balance=coll_units * RAY // c_res.liquidity_index),
                addr(debt): UserReserve(scaled_variable_debt=debt_units * RAY // d_res.variable_borrow_index),
            },
        )
        if is_v3:
            outcome = math_v3.best_liquidation(position, m.reserves, m.emode_categories, m.timestamp)
        else:
            outcome = math_v2.best_liquidation(position, m.reserves, m.timestamp)
        if outcome is None:
            continue
        name = "aave-v3" if is_v3 else "aave-v2"
        opps.append(Opportunity.from_outcome(name, "0x" + "9a" * 20, position.user, outcome, 1, T0))
    return Crash(
        venues(eth_after, depth),
        {"aave-v3": m3, "aave-v2": m2},
        opps,
        {"aave-v3": m3.reserves[addr("WETH")].price, "aave-v2": 10**18},
    )
