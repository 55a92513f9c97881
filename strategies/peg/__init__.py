"""Peg-spread arbitrage: pegs as data (`pegs`), detection of the spreads between pools (`detect`), and the
exact profit-maximizing size of each (`sizing`)."""

from strategies.peg.detect import PoolPrice, Spread, find_spreads, pool_prices, spreads
from strategies.peg.pegs import (
    MAINNET_PEGS,
    FixedTarget,
    Peg,
    PegConfigError,
    PegPreset,
    PegTargetError,
    RateTarget,
    TargetReader,
    check_venues,
    devnet_pegs,
    load_pegs,
    preset_pegs,
)
from strategies.peg.sizing import PegOpportunity, best_opportunities, disjoint, size_spread

__all__ = [
    "MAINNET_PEGS",
    "FixedTarget",
    "Peg",
    "PegConfigError",
    "PegOpportunity",
    "PegPreset",
    "PegTargetError",
    "PoolPrice",
    "RateTarget",
    "Spread",
    "TargetReader",
    "best_opportunities",
    "check_venues",
    "devnet_pegs",
    "disjoint",
    "find_spreads",
    "load_pegs",
    "pool_prices",
    "preset_pegs",
    "size_spread",
    "spreads",
]
