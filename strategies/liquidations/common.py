"""What the V3 and V2 math modules share: result records, errors and the base-currency valuation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keeper.chain.units import UINT256_MAX, WAD
from strategies.liquidations.model import ReserveState, UserPosition

Indexes = Mapping[str, tuple[int, int]]
"""asset -> (normalized income, normalized variable debt) at one timestamp: computed once per block."""

HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
"""1e18: a position with a health factor below this can be liquidated."""
NO_DEBT_HEALTH_FACTOR = UINT256_MAX
"""type(uint256).max: what the Pool answers as health factor when there is no debt."""


class LiquidationMathError(Exception):
    """Base of the errors the pure math raises."""


class UnknownReserveError(LiquidationMathError, KeyError):
    """A position refers to a reserve (or e-mode category) the local state does not hold."""


class NotLiquidatable(LiquidationMathError):
    """The Pool would reject this liquidationCall; `reason` is Aave's error name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class AccountData:
    """`getUserAccountData(user)`: values in the oracle's base currency, ltv/threshold in bps."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int
    has_zero_ltv_collateral: bool = False
    """V3's sixth return of GenericLogic.calculateUserAccountData (not part of getUserAccountData)."""

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """The six values in `getUserAccountData`'s order."""
        return (
            self.total_collateral_base,
            self.total_debt_base,
            self.available_borrows_base,
            self.current_liquidation_threshold,
            self.ltv,
            self.health_factor,
        )

    @property
    def liquidatable(self) -> bool:
        return self.health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


@dataclass(frozen=True, slots=True)
class LiquidationOutcome:
    """What one `liquidationCall(collateral, debt, user, debt_to_cover, receiveAToken)` moves.

    Amounts are in each asset's own base units. `collateral_to_liquidator` is what the liquidator
    receives (underlying, or aTokens with receiveAToken) and what the `LiquidationCall` event reports
    as liquidatedCollateralAmount; `protocol_fee` (V3) is taken from the user's aTokens on top of it and
    sent to the treasury as aTokens (`protocol_fee_scaled` is the treasury's scaled-balance increase).
    """

    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    """What the liquidator asked for."""
    actual_debt_to_cover: int
    """What the Pool takes from the liquidator (and burns from the user's debt)."""
    collateral_to_liquidator: int
    protocol_fee: int
    protocol_fee_scaled: int
    variable_debt_burned: int
    stable_debt_burned: int
    health_factor: int
    """The user's health factor before the liquidation."""
    close_factor: int
    """Basis points of the user's debt in `debt_asset` that may be repaid."""
    liquidation_bonus: int
    """1e4 + bonus, as applied (the e-mode bonus when it applies)."""
    user_collateral_balance: int
    user_variable_debt: int
    user_stable_debt: int
    collateral_price: int
    debt_price: int
    collateral_unit: int
    debt_unit: int
    collateral_exhausted: bool = False
    """The user's whole collateral balance goes (liquidator + treasury, before V3's 1-wei fee cap): the
    Pool clears the user's collateral bit for this reserve."""

    @property
    def user_total_debt(self) -> int:
        return self.user_variable_debt + self.user_stable_debt

    @property
    def collateral_value_base(self) -> int:
        """Value of `collateral_to_liquidator` in the base currency (rounded down)."""
        return self.collateral_to_liquidator * self.collateral_price // self.collateral_unit

    @property
    def debt_value_base(self) -> int:
        """Value of `actual_debt_to_cover` in the base currency (rounded down)."""
        return self.actual_debt_to_cover * self.debt_price // self.debt_unit

    @property
    def bonus_value_base(self) -> int:
        """Gross gain in the base currency: collateral received minus debt repaid, before swap costs,
        gas and flash-loan premium. Prices are the ones the Pool used for this liquidation."""
        return self.collateral_value_base - self.debt_value_base

    @property
    def debt_fully_repaid(self) -> bool:
        return self.actual_debt_to_cover == self.user_total_debt


def value_in_base(amount: int, price: int, unit: int) -> int:
    """`amount * price / unit`, rounded down: the per-asset valuation GenericLogic uses."""
    return amount * price // unit


def reserve_of(reserves: Mapping[str, ReserveState], asset: str) -> ReserveState:
    reserve = reserves.get(asset)
    if reserve is None:
        raise UnknownReserveError(f"reserve {asset} is not known locally")
    return reserve


def liquidation_assets(
    position: UserPosition, reserves: Mapping[str, ReserveState]
) -> tuple[list[str], list[str]]:
    """(collateral assets, debt assets) a liquidation of `position` can take / repay, in position order."""
    collaterals: list[str] = []
    debts: list[str] = []
    for asset, balances in position.reserves.items():
        rid = reserve_of(reserves, asset).id
        if position.is_using_as_collateral(rid) and balances.scaled_a_token_balance:
            collaterals.append(asset)
        if position.is_borrowing(rid) and (balances.scaled_variable_debt or balances.stable_debt_principal):
            debts.append(asset)
    return collaterals, debts
