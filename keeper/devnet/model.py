"""Plain records shared by the devnet deploy modules (what was deployed where)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenInfo:
    symbol: str
    address: str
    decimals: int


# Starting prices, USD with 8 decimals (Chainlink USD feeds use 8). Integers, exact.
DEFAULT_PRICES_USD: dict[str, int] = {
    "WETH": 2_000_00000000,
    "USDC": 1_00000000,
    "USDT": 1_00000000,
    "DAI": 1_00000000,
    "WBTC": 60_000_00000000,
    "wstETH": 2_360_00000000,
}

# The LST's exchange rate (ETH per LST, 18 decimals) at deployment: 1.18 ETH.
DEFAULT_LST_RATE = 1_180000000000000000
