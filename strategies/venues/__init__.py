"""Trading venues: local pool state refreshed per block, exact integer quotes, best routes.

- `base`: the `Venue` Protocol, `Quote`, errors.
- `uniswap_v3`, `uniswap_v2`, `balancer_stable` (Balancer V2 ComposableStablePool): one module per venue.
- `router`: `best_route` over venues, direct or two hops via connector tokens (each hop on any venue: a
  Mixed route when they differ), `best_split` (a sale divided over two paths by bps), with the executor's
  route.
"""

from strategies.venues.balancer_stable import BalancerStableVenue, StablePool, load_stable_pools
from strategies.venues.base import (
    InsufficientLiquidity,
    OutsideReadRange,
    Quote,
    QuoteError,
    StateNotLoaded,
    Venue,
    VenueError,
)
from strategies.venues.router import Route, best_route
from strategies.venues.uniswap_v2 import UniswapV2Venue, V2Pair, load_v2_pairs
from strategies.venues.uniswap_v3 import UniswapV3Venue, V3Pool, load_v3_pools

__all__ = [
    "BalancerStableVenue",
    "InsufficientLiquidity",
    "OutsideReadRange",
    "Quote",
    "QuoteError",
    "Route",
    "StablePool",
    "StateNotLoaded",
    "UniswapV2Venue",
    "UniswapV3Venue",
    "V2Pair",
    "V3Pool",
    "Venue",
    "VenueError",
    "best_route",
    "load_stable_pools",
    "load_v2_pairs",
    "load_v3_pools",
]


def _static_protocol_check(v3: UniswapV3Venue, v2: UniswapV2Venue, bal: BalancerStableVenue) -> list[Venue]:
    """Never called: makes mypy check that every implementation satisfies the Venue Protocol."""
    return [v3, v2, bal]
