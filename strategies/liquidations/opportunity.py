"""A liquidatable position and everything the executor needs to act on it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from strategies.liquidations.common import LiquidationOutcome, LiquidationTerms


@dataclass(frozen=True, slots=True)
class Opportunity:
    """Amounts are exact, in each asset's base units, as `liquidationCall` computes them at `timestamp`
    for the request `debt_to_cover` (what we pass, and what the executor flash-borrows).

    `id` names the (protocol, user, collateral, debt) liquidation; the executor pairs it with a target
    block for de-duplication. Detection fills the liquidation at its largest useful size; the valuer
    (`VenueValuer`) then picks the pair and the size by the profit of the whole execution and fills the
    sale (`swap_out` on `route`), the flash premium and the profit in wei after all costs.
    """

    id: str
    protocol: str
    pool: str
    user: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    """The `debtToCover` to pass to liquidationCall, and the flash-loan amount. When the whole collateral
    is seized it can exceed `debt_repaid` (the request that makes the Pool take the collateral-capped
    branch); the difference goes back to the flash pool."""
    collateral_out: int
    """Collateral the liquidator receives (the `LiquidationCall` event's liquidatedCollateralAmount)."""
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
    debt_repaid: int | None = None
    """What the Pool takes from the liquidator (the event's debtToCover); None: `debt_to_cover`."""
    collateral_exhausted: bool = False
    """The user's whole balance of `collateral_asset` is seized (no dust left)."""
    pairs: tuple[LiquidationTerms, ...] = field(default=(), compare=False, repr=False)
    """Every valid (collateral, debt) pair of the position: what the valuer sizes and chooses from."""
    flash_premium: int = 0
    """Aave V3 flash-loan premium on `debt_to_cover`, in debt-asset units."""
    swap_out: int | None = None
    """Debt-asset units the route pays for exactly `collateral_out` at the valued pool state (None: not
    valued). The action builder sets the router's amountOutMinimum from it, with a tolerance."""
    route: Any = None
    gross_profit: int | None = None
    """swap_out - debt_repaid - flash_premium, in debt-asset units: before gas and builder payment."""
    gross_profit_base: int | None = None
    """gross_profit in the protocol's base currency (oracle price)."""
    to_wei: tuple[int, int] | None = None
    """Debt-asset units -> wei as (num, den): wei = amount * num // den, from the market's oracle prices
    (V3: debt price in USD 1e8 * 1e18 / (debt unit * WETH price); V2: debt price in ETH wei / debt unit)."""
    profit_wei: int | None = None
    """gross_profit in wei (after the flash premium; before gas and the builder's share)."""
    builder_share_wei: int = 0
    gas_cost_wei: int = 0
    net_profit_wei: int | None = None
    """profit_wei - builder_share_wei - gas_cost_wei: what the owner keeps. Opportunities rank by it."""

    @property
    def repaid(self) -> int:
        """Debt the Pool takes (the request when not recorded separately)."""
        return self.debt_to_cover if self.debt_repaid is None else self.debt_repaid

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
            debt_to_cover=outcome.debt_to_cover,
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
            debt_repaid=outcome.actual_debt_to_cover,
            collateral_exhausted=outcome.collateral_exhausted,
            pairs=outcome.pairs,
        )

    def sized(self, outcome: LiquidationOutcome) -> Opportunity:
        """This position with another (collateral, debt, debt_to_cover) of the same user at the same block
        (`outcome` from one of `pairs`); valuation fields are cleared."""
        return replace(
            self,
            **_sized_fields(self, outcome),
            flash_premium=0,
            swap_out=None,
            route=None,
            gross_profit=None,
            gross_profit_base=None,
            to_wei=None,
            profit_wei=None,
            builder_share_wei=0,
            gas_cost_wei=0,
            net_profit_wei=None,
        )

    def valued(
        self,
        *,
        swap_out: int,
        route: Any,
        flash_premium: int,
        to_wei: tuple[int, int] | None = None,
        gas_cost_wei: int = 0,
        builder_share_bps: int = 0,
        outcome: LiquidationOutcome | None = None,
    ) -> Opportunity:
        """With the venue quote for selling `collateral_out` into the debt asset, and, given `to_wei`, the
        profit in wei after the flash premium (`profit_wei`) and after gas and the builder's share
        (`net_profit_wei`; the share is taken from the gross profit as the action builder prices it).
        `outcome`: another liquidation of the same position (as `sized`) that the quote is for."""
        fields: dict[str, Any] = {} if outcome is None else _sized_fields(self, outcome)
        repaid = outcome.actual_debt_to_cover if outcome is not None else self.repaid
        debt_price = outcome.debt_price if outcome is not None else self.debt_price
        debt_unit = outcome.debt_unit if outcome is not None else self.debt_unit
        gross = swap_out - repaid - flash_premium
        magnitude = abs(gross) * debt_price // debt_unit  # rounded towards zero
        profit_wei = net = None
        share = 0
        if to_wei is not None:
            profit_wei = _convert(gross, to_wei)
            share = profit_wei * builder_share_bps // 10_000 if profit_wei > 0 else 0
            net = profit_wei - share - gas_cost_wei
        return replace(
            self,
            **fields,
            swap_out=swap_out,
            route=route,
            flash_premium=flash_premium,
            gross_profit=gross,
            gross_profit_base=magnitude if gross >= 0 else -magnitude,
            to_wei=to_wei,
            profit_wei=profit_wei,
            builder_share_wei=share,
            gas_cost_wei=gas_cost_wei if to_wei is not None else 0,
            net_profit_wei=net,
        )


def _sized_fields(opp: Opportunity, outcome: LiquidationOutcome) -> dict[str, Any]:
    return {
        "id": f"{opp.protocol}:{opp.user}:{outcome.collateral_asset}:{outcome.debt_asset}",
        "collateral_asset": outcome.collateral_asset,
        "debt_asset": outcome.debt_asset,
        "debt_to_cover": outcome.debt_to_cover,
        "collateral_out": outcome.collateral_to_liquidator,
        "protocol_fee": outcome.protocol_fee,
        "liquidation_bonus": outcome.liquidation_bonus,
        "close_factor": outcome.close_factor,
        "collateral_value_base": outcome.collateral_value_base,
        "debt_value_base": outcome.debt_value_base,
        "bonus_value_base": outcome.bonus_value_base,
        "debt_price": outcome.debt_price,
        "debt_unit": outcome.debt_unit,
        "debt_repaid": outcome.actual_debt_to_cover,
        "collateral_exhausted": outcome.collateral_exhausted,
    }


def _convert(amount: int, to_wei: tuple[int, int]) -> int:
    """amount * num // den, rounded towards zero (a loss is not made to look larger than it is)."""
    num, den = to_wei
    magnitude = abs(amount) * num // den
    return magnitude if amount >= 0 else -magnitude
