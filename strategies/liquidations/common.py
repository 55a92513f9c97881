"""What the V3 and V2 math modules share: result records, errors and the base-currency valuation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from keeper.chain.units import PERCENTAGE_FACTOR, UINT256_MAX, WAD, percent_mul, ray_div, ray_mul
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
    pairs: tuple[LiquidationTerms, ...] = field(default=(), compare=False, repr=False)
    """Set by `best_liquidation`: the terms of every valid (collateral, debt) pair of the position, so a
    valuer can size and pick the pair by what the sale returns."""

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


@dataclass(frozen=True, slots=True)
class LiquidationTerms:
    """One (collateral, debt) pair of one position at one block timestamp: everything
    `liquidationCall(collateral, debt, user, debtToCover, false)` reads, so that `outcome(debt_to_cover)`
    for any size is a few integer operations (no account recomputation), equal to the Pool's amounts.

    Built (and validated: the Pool's own checks that do not depend on the size) by
    `math_v3.liquidation_terms` / `math_v2.liquidation_terms`; the subclass holds the protocol's
    `_calculateAvailableCollateralToLiquidate`.
    """

    collateral_asset: str
    debt_asset: str
    health_factor: int
    close_factor: int
    liquidation_bonus: int
    """1e4 + bonus, as applied (the e-mode bonus when it applies)."""
    liquidation_protocol_fee: int
    """V3's share of the bonus for the treasury (bps); 0 on V2."""
    collateral_price: int
    """The prices the Pool uses for this liquidation (V3 e-mode: the category's price source)."""
    debt_price: int
    collateral_unit: int
    debt_unit: int
    user_collateral_balance: int
    user_collateral_scaled: int
    collateral_income: int
    user_variable_debt: int
    user_stable_debt: int
    debt_index: int
    reserves: Mapping[str, ReserveState] = field(default_factory=dict, compare=False, repr=False)
    """The market's reserves at this block (oracle prices, for converting amounts to ETH)."""

    base_is_eth: ClassVar[bool] = False
    """Whether the oracle's base currency is ETH with 18 decimals (Aave V2), so prices are wei."""
    burn_error: ClassVar[str] = "INVALID_BURN_AMOUNT"

    @property
    def user_total_debt(self) -> int:
        return self.user_variable_debt + self.user_stable_debt

    @property
    def max_liquidatable_debt(self) -> int:
        """The close-factor cap on what one call may repay."""
        return percent_mul(self.user_total_debt, self.close_factor)

    def collateral_amounts(self, debt_to_liquidate: int) -> tuple[int, int, int]:
        """(collateral to the liquidator, debt actually repaid, protocol fee) for the close-factor-capped
        request `debt_to_liquidate`: the protocol's _calculateAvailableCollateralToLiquidate."""
        raise NotImplementedError

    def capped(self, debt_to_cover: int) -> bool:
        """Whether the Pool takes the collateral-capped branch (seizes the whole balance) for this request."""
        return (
            self._max_collateral(min(debt_to_cover, self.max_liquidatable_debt))
            > self.user_collateral_balance
        )

    def _max_collateral(self, debt_to_liquidate: int) -> int:
        raise NotImplementedError

    def _min_request_for(self, collateral: int) -> int:
        """The smallest request x with `_max_collateral(x) >= collateral` (closed form; collateral >= 1)."""
        raise NotImplementedError

    def max_collateral(self, debt_to_cover: int) -> int:
        """The collateral the bonus formula gives for this request, before the cap at the user's balance
        (at most balance + 1: any value above the balance means the capped branch)."""
        request = min(debt_to_cover, self.max_liquidatable_debt)
        return min(self._max_collateral(request), self.user_collateral_balance + 1) if request > 0 else 0

    def request_for(self, collateral: int) -> int:
        """The smallest request whose `max_collateral` is at least `collateral` (>= 1); requests from it up
        to the next step seize the same collateral. Not capped by the close factor."""
        x = max(1, self._min_request_for(collateral))
        while x > 1 and self.max_collateral(x - 1) >= collateral:
            x -= 1
        cap = self.max_liquidatable_debt
        while x <= cap and self.max_collateral(x) < collateral:
            x += 1
        return x

    def smallest_request(self, debt_to_cover: int) -> int:
        """The smallest request that seizes the same collateral as `debt_to_cover` (the collateral is a step
        function of the request: any request above the first of its step repays more for nothing). For a
        request in the collateral-capped branch: the smallest request still in it."""
        if self.collateral_price <= 0 or self.debt_price <= 0 or self.liquidation_bonus <= 0:
            return debt_to_cover
        target = self.max_collateral(debt_to_cover)
        if target <= 0:
            return min(debt_to_cover, 1)
        return min(debt_to_cover, self.request_for(target))

    def seize_all_cover(self) -> int | None:
        """The debt_to_cover to pass so that the Pool seizes the user's WHOLE collateral balance: the smallest
        request that makes it take the collateral-capped branch, raised to the debt it then repays when that
        is larger (the flash loan must cover what the Pool pulls). None when the close factor does not allow
        reaching the whole balance.

        Passing the debt the capped branch repays (rounded down) instead would make the Pool derive the
        collateral from that debt and seize less, leaving dust.
        """
        if self.collateral_price <= 0 or self.debt_price <= 0 or self.liquidation_bonus <= 0:
            return None
        cap = self.max_liquidatable_debt
        if cap <= 0 or not self.capped(cap):
            return None
        x = self.request_for(self.user_collateral_balance + 1)
        _, needed, _ = self.collateral_amounts(min(x, cap))
        return max(x, needed)

    def max_cover(self) -> int:
        """The largest useful debt_to_cover: the whole-collateral request, else the close-factor maximum."""
        seize_all = self.seize_all_cover()
        return self.max_liquidatable_debt if seize_all is None else seize_all

    def outcome(self, debt_to_cover: int, *, receive_a_token: bool = False) -> LiquidationOutcome:
        """What `liquidationCall(collateral, debt, user, debt_to_cover, receive_a_token)` moves. Raises
        NotLiquidatable where the Pool reverts (a burn that rounds to 0 scaled)."""
        requested = min(debt_to_cover, self.max_liquidatable_debt)
        to_liquidator, actual_debt, fee = self.collateral_amounts(requested)
        exhausted = to_liquidator + fee == self.user_collateral_balance

        # _burnDebtTokens: variable debt first, the rest from stable debt.
        if self.user_variable_debt >= actual_debt:
            variable_burned, stable_burned = actual_debt, 0
        else:
            variable_burned, stable_burned = self.user_variable_debt, actual_debt - self.user_variable_debt
        if variable_burned != 0 and ray_div(variable_burned, self.debt_index) == 0:
            raise NotLiquidatable(self.burn_error, "debt to burn rounds to 0 scaled")
        income = self.collateral_income
        if not receive_a_token and ray_div(to_liquidator, income) == 0:
            raise NotLiquidatable(self.burn_error, "collateral to burn rounds to 0 scaled")

        # V3's treasury transfer: capped at the user's remaining scaled balance ("1 wei imprecision").
        fee_scaled = 0
        if fee != 0:
            remaining_scaled = self.user_collateral_scaled - ray_div(to_liquidator, income)
            fee_scaled = ray_div(fee, income)
            if fee_scaled > remaining_scaled:
                fee = ray_mul(remaining_scaled, income)
                fee_scaled = ray_div(fee, income)

        return LiquidationOutcome(
            collateral_asset=self.collateral_asset,
            debt_asset=self.debt_asset,
            debt_to_cover=debt_to_cover,
            actual_debt_to_cover=actual_debt,
            collateral_to_liquidator=to_liquidator,
            protocol_fee=fee,
            protocol_fee_scaled=fee_scaled,
            variable_debt_burned=variable_burned,
            stable_debt_burned=stable_burned,
            health_factor=self.health_factor,
            close_factor=self.close_factor,
            liquidation_bonus=self.liquidation_bonus,
            user_collateral_balance=self.user_collateral_balance,
            user_variable_debt=self.user_variable_debt,
            user_stable_debt=self.user_stable_debt,
            collateral_price=self.collateral_price,
            debt_price=self.debt_price,
            collateral_unit=self.collateral_unit,
            debt_unit=self.debt_unit,
            collateral_exhausted=exhausted,
        )


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up (b > 0)."""
    return -(-a // b)


HALF_PERCENT = PERCENTAGE_FACTOR // 2
"""PercentageMath.HALF_PERCENTAGE_FACTOR."""
