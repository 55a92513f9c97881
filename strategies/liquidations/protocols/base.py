"""What the liquidation strategy needs from a lending protocol.

Every implementation passes the shared conformance suite in tests/conformance/test_lending_protocols.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from strategies.liquidations.common import AccountData, LiquidationOutcome
from strategies.liquidations.model import MarketState, UserPosition


class LendingProtocol(Protocol):
    name: str
    """"aave-v3", "aave-v2", ..."""
    pool: str
    """The contract `liquidationCall` goes to."""
    market: MarketState | None
    positions: Mapping[str, UserPosition]
    """Tracked borrowers (users with debt), by checksummed address."""

    def log_addresses(self) -> list[str]:
        """Contracts whose logs can change a tracked position (pool, aTokens)."""
        ...

    def touched_users(self, logs: Iterable[Mapping[str, Any]]) -> set[str]:
        """Users whose position the given raw logs (eth_getLogs objects) may have changed."""
        ...

    async def initial_sync(self, head: int, *, chunk_blocks: int = 5_000) -> None:
        """Market state at `head`, every borrower found in the logs since deployment, their positions."""
        ...

    async def refresh(
        self,
        block_number: int,
        block_hash: str,
        *,
        reorged_users: Iterable[str] = (),
        timestamp: int | None = None,
    ) -> set[str]:
        """One new block, in one round trip: the logs since the last refreshed block and the market
        (indexes, rates, prices) in one batch; then the positions of the users those logs (or a reorg)
        touched. `timestamp` is the block's, from its header. Returns the users that were re-read."""
        ...

    def indexes(self, market: MarketState | None = None) -> dict[str, tuple[int, int]]:
        """Every reserve's (normalized income, normalized debt) at the market's timestamp."""
        ...

    def account(
        self,
        user: str,
        market: MarketState | None = None,
        *,
        indexes: Mapping[str, tuple[int, int]] | None = None,
    ) -> AccountData:
        """Exact `getUserAccountData` at the market's block timestamp (or the given market state)."""
        ...

    def best_liquidation(
        self,
        user: str,
        market: MarketState | None = None,
        *,
        indexes: Mapping[str, tuple[int, int]] | None = None,
    ) -> LiquidationOutcome | None:
        """The (collateral, debt) pair with the largest bonus, exactly as `liquidationCall` computes it."""
        ...
