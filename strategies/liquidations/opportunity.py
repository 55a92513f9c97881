"""A liquidatable position and everything the executor needs to act on it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from strategies.liquidations.common import LiquidationOutcome


@dataclass(frozen=True, slots=True)
class Opportunity:
    """Amounts are exact, in each asset's base units, as `liquidationCall` computes them at `timestamp`.

    `id` names the (protocol, user, collateral, debt) liquidation; the executor pairs it with a target
    block for de-duplication. The swap fields are filled by the valuation step (the venue quote for
    selling `collateral_out` into the debt asset at the block's pool state).
    """

    id: str
    protocol: str
    pool: str
    user: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    collateral_out: int
    protocol_fee: int
    liquidation_bonus: int
    close_factor: int
    health_factor: int
    collateral_value_base: int
    debt_value_base: int
    bonus_value_base: int
    block_number: int
    timestamp: int
    debt_price: int = 0
    """Oracle price of the debt asset in the protocol's base currency (the one the Pool used)."""
    debt_unit: int = 1
    flash_premium: int = 0
    swap_out: int | None = None
    """Debt-asset units received for `collateral_out` on `route` (None: no route valued yet)."""
    route: Any = None
    gross_profit: int | None = None
    """swap_out - debt_to_cover - flash_premium, in debt-asset units: before gas and builder payment."""
    gross_profit_base: int | None = None
    """gross_profit in the protocol's base currency (oracle price)."""

    @classmethod
    def from_outcome(
        cls, protocol: str, pool: str, user: str, outcome: LiquidationOutcome, block: int, timestamp: int
    ) -> Opportunity:
        return cls(
            id=f"{protocol}:{user}:{outcome.collateral_asset}:{outcome.debt_asset}",
            protocol=protocol,
            pool=pool,
            user=user,
            collateral_asset=outcome.collateral_asset,
            debt_asset=outcome.debt_asset,
            debt_to_cover=outcome.actual_debt_to_cover,
            collateral_out=outcome.collateral_to_liquidator,
            protocol_fee=outcome.protocol_fee,
            liquidation_bonus=outcome.liquidation_bonus,
            close_factor=outcome.close_factor,
            health_factor=outcome.health_factor,
            collateral_value_base=outcome.collateral_value_base,
            debt_value_base=outcome.debt_value_base,
            bonus_value_base=outcome.bonus_value_base,
            block_number=block,
            timestamp=timestamp,
            debt_price=outcome.debt_price,
            debt_unit=outcome.debt_unit,
        )

    def valued(self, *, swap_out: int, route: Any, flash_premium: int) -> Opportunity:
        """With the venue quote for selling `collateral_out` into the debt asset."""
        gross = swap_out - self.debt_to_cover - flash_premium
        magnitude = abs(gross) * self.debt_price // self.debt_unit  # rounded towards zero
        return replace(
            self,
            swap_out=swap_out,
            route=route,
            flash_premium=flash_premium,
            gross_profit=gross,
            gross_profit_base=magnitude if gross >= 0 else -magnitude,
        )
