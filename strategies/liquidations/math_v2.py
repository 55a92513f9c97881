"""Aave V2 (protocol-v2 1.0.1) health factors and liquidation amounts, ported line by line. Pure: no I/O.

Differences from V3 that matter to the wei:
- MathUtils.calculateCompoundedInterest divides the rate by SECONDS_PER_YEAR FIRST (ratePerSecond),
  then squares it in ray; V3 squares first. So variable and stable debt accrue differently.
- Prices are in ETH with 18 decimals (the oracle's base currency); no e-mode, no protocol fee.
- LendingPoolCollateralManager: a flat 50% close factor whatever the health factor; the bonus is
  applied (percentMul) BEFORE dividing by the collateral price, V3 applies it after.

Not modelled: the collateral reserve's available liquidity when receiveAToken=false (the manager
returns NOT_ENOUGH_LIQUIDITY, so liquidationCall reverts, if the aToken holds less underlying than the
collateral to send), and the LendingPool-wide pause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from keeper.chain.units import PERCENTAGE_FACTOR, RAY, percent_div, percent_mul, ray_mul, wad_div
from strategies.liquidations.common import (
    HALF_PERCENT,
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    NO_DEBT_HEALTH_FACTOR,
    AccountData,
    Indexes,
    LiquidationOutcome,
    LiquidationTerms,
    NotLiquidatable,
    ceil_div,
    liquidation_assets,
    reserve_of,
)
from strategies.liquidations.math_v3 import (
    SECONDS_PER_YEAR,
    a_token_balance,
    calculate_available_borrows,
    calculate_linear_interest,
    normalized_income,
    variable_debt_balance,
)
from strategies.liquidations.model import ReserveState, UserPosition, UserReserve

LIQUIDATION_CLOSE_FACTOR_PERCENT = 5000
"""LendingPoolCollateralManager's constant."""


__all__ = [
    "LIQUIDATION_CLOSE_FACTOR_PERCENT",
    "V2Terms",
    "a_token_balance",
    "best_liquidation",
    "calculate_available_borrows",
    "calculate_available_collateral_to_liquidate",
    "calculate_compounded_interest",
    "calculate_linear_interest",
    "liquidation_outcome",
    "liquidation_terms",
    "normalized_debt",
    "normalized_income",
    "normalized_indexes",
    "stable_debt_balance",
    "user_account_data",
    "variable_debt_balance",
]


def calculate_compounded_interest(rate: int, last_update_timestamp: int, timestamp: int) -> int:
    """MathUtils.calculateCompoundedInterest (V2): ratePerSecond = rate / SECONDS_PER_YEAR, then
    RAY + ratePerSecond*exp + exp(exp-1)/2 * rps^2 + exp(exp-1)(exp-2)/6 * rps^3 (powers by rayMul)."""
    if timestamp < last_update_timestamp:
        raise ValueError(f"timestamp {timestamp} is before the last update {last_update_timestamp}")
    exp = timestamp - last_update_timestamp
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    rate_per_second = rate // SECONDS_PER_YEAR
    base_power_two = ray_mul(rate_per_second, rate_per_second)
    base_power_three = ray_mul(base_power_two, rate_per_second)
    second_term = exp * exp_minus_one * base_power_two // 2
    third_term = exp * exp_minus_one * exp_minus_two * base_power_three // 6
    return RAY + rate_per_second * exp + second_term + third_term


def normalized_debt(reserve: ReserveState, timestamp: int) -> int:
    """ReserveLogic.getNormalizedDebt (V2), with V2's compounded interest."""
    if reserve.last_update_timestamp == timestamp:
        return reserve.variable_borrow_index
    interest = calculate_compounded_interest(
        reserve.current_variable_borrow_rate, reserve.last_update_timestamp, timestamp
    )
    return ray_mul(interest, reserve.variable_borrow_index)


def normalized_indexes(reserves: Mapping[str, ReserveState], timestamp: int) -> dict[str, tuple[int, int]]:
    """(normalized income, normalized variable debt) of every reserve at `timestamp`."""
    return {a: (normalized_income(r, timestamp), normalized_debt(r, timestamp)) for a, r in reserves.items()}


def _indexes(reserve: ReserveState, timestamp: int, indexes: Indexes | None) -> tuple[int, int]:
    if indexes is not None:
        cached = indexes.get(reserve.asset)
        if cached is not None:
            return cached
    return normalized_income(reserve, timestamp), normalized_debt(reserve, timestamp)


def stable_debt_balance(balances: UserReserve, timestamp: int) -> int:
    """StableDebtToken.balanceOf (V2): principal.rayMul(V2 compounded interest since the user's update)."""
    if balances.stable_debt_principal == 0:
        return 0
    interest = calculate_compounded_interest(balances.stable_rate, balances.stable_last_update, timestamp)
    return ray_mul(balances.stable_debt_principal, interest)


def user_account_data(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    timestamp: int,
    *,
    indexes: Indexes | None = None,
) -> AccountData:
    """LendingPool.getUserAccountData: GenericLogic.calculateUserAccountData (ETH base) then
    calculateAvailableBorrowsETH. Per asset: `price * aToken.balanceOf / unit` and
    `price * (stable.balanceOf + variable.balanceOf) / unit`, each rounded down."""
    if position.config == 0:
        return AccountData(0, 0, 0, 0, 0, NO_DEBT_HEALTH_FACTOR)
    total_collateral = total_debt = avg_ltv = avg_lt = 0
    for asset, balances in position.reserves.items():
        reserve = reserve_of(reserves, asset)
        rid = reserve.id
        if not position.is_using_as_collateral_or_borrowing(rid):
            continue
        cfg = reserve.config
        unit = 10**cfg.decimals
        price = reserve.price
        income, debt_index = _indexes(reserve, timestamp, indexes)
        if cfg.liquidation_threshold != 0 and position.is_using_as_collateral(rid):
            value = price * a_token_balance(balances.scaled_a_token_balance, income) // unit
            total_collateral += value
            avg_ltv += value * cfg.ltv
            avg_lt += value * cfg.liquidation_threshold
        if position.is_borrowing(rid):
            debt = stable_debt_balance(balances, timestamp)
            debt += variable_debt_balance(balances.scaled_variable_debt, debt_index)
            total_debt += price * debt // unit
    avg_ltv = avg_ltv // total_collateral if total_collateral > 0 else 0
    avg_lt = avg_lt // total_collateral if total_collateral > 0 else 0
    # GenericLogic.calculateHealthFactorFromBalances
    health_factor = (
        NO_DEBT_HEALTH_FACTOR
        if total_debt == 0
        else wad_div(percent_mul(total_collateral, avg_lt), total_debt)
    )
    return AccountData(
        total_collateral_base=total_collateral,
        total_debt_base=total_debt,
        available_borrows_base=calculate_available_borrows(total_collateral, total_debt, avg_ltv),
        current_liquidation_threshold=avg_lt,
        ltv=avg_ltv,
        health_factor=health_factor,
    )


def calculate_available_collateral_to_liquidate(
    *,
    collateral_price: int,
    debt_price: int,
    collateral_unit: int,
    debt_unit: int,
    debt_to_cover: int,
    user_collateral_balance: int,
    liquidation_bonus: int,
) -> tuple[int, int]:
    """LendingPoolCollateralManager._calculateAvailableCollateralToLiquidate: (collateral, debt needed)."""
    max_collateral = percent_mul(debt_price * debt_to_cover * collateral_unit, liquidation_bonus) // (
        collateral_price * debt_unit
    )
    if max_collateral > user_collateral_balance:
        collateral = user_collateral_balance
        debt_needed = percent_div(
            collateral_price * collateral * debt_unit // (debt_price * collateral_unit), liquidation_bonus
        )
        return collateral, debt_needed
    return max_collateral, debt_to_cover


@dataclass(frozen=True, slots=True)
class V2Terms(LiquidationTerms):
    """Aave V2 terms: the bonus applied before the price division, no protocol fee, ETH-based prices."""

    base_is_eth: ClassVar[bool] = True
    burn_error: ClassVar[str] = "CT_INVALID_BURN_AMOUNT"

    def collateral_amounts(self, debt_to_liquidate: int) -> tuple[int, int, int]:
        collateral, needed = calculate_available_collateral_to_liquidate(
            collateral_price=self.collateral_price,
            debt_price=self.debt_price,
            collateral_unit=self.collateral_unit,
            debt_unit=self.debt_unit,
            debt_to_cover=debt_to_liquidate,
            user_collateral_balance=self.user_collateral_balance,
            liquidation_bonus=self.liquidation_bonus,
        )
        return collateral, min(debt_to_liquidate, needed), 0

    def _max_collateral(self, debt_to_liquidate: int) -> int:
        return percent_mul(
            self.debt_price * debt_to_liquidate * self.collateral_unit, self.liquidation_bonus
        ) // (self.collateral_price * self.debt_unit)

    def _min_request_for(self, collateral: int) -> int:
        # percentMul(v, bonus) // (cp * du) >= collateral  <=>  v * bonus + HALF >= collateral * cp * du * 1e4
        v_min = ceil_div(
            collateral * self.collateral_price * self.debt_unit * PERCENTAGE_FACTOR - HALF_PERCENT,
            self.liquidation_bonus,
        )
        return ceil_div(v_min, self.debt_price * self.collateral_unit)


def liquidation_terms(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    collateral_asset: str,
    debt_asset: str,
    timestamp: int,
    *,
    health_factor: int | None = None,
    indexes: Indexes | None = None,
) -> V2Terms:
    """LendingPoolCollateralManager.liquidationCall up to the size (validation as
    ValidationLogic.validateLiquidationCall; raises NotLiquidatable where the pool reverts at any size)."""
    collateral = reserve_of(reserves, collateral_asset)
    debt = reserve_of(reserves, debt_asset)
    if health_factor is None:
        health_factor = user_account_data(position, reserves, timestamp, indexes=indexes).health_factor

    _, debt_index = _indexes(debt, timestamp, indexes)
    debt_balances = position.balances(debt_asset)
    user_stable_debt = stable_debt_balance(debt_balances, timestamp)
    user_variable_debt = variable_debt_balance(debt_balances.scaled_variable_debt, debt_index)

    # ValidationLogic.validateLiquidationCall (V2 returns error codes; LendingPool then reverts).
    if not (collateral.config.active and debt.config.active):
        raise NotLiquidatable("VL_NO_ACTIVE_RESERVE")
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise NotLiquidatable("LPCM_HEALTH_FACTOR_NOT_BELOW_THRESHOLD", f"health factor {health_factor}")
    if collateral.config.liquidation_threshold == 0 or not position.is_using_as_collateral(collateral.id):
        raise NotLiquidatable("LPCM_COLLATERAL_CANNOT_BE_LIQUIDATED", collateral.asset)
    if user_stable_debt == 0 and user_variable_debt == 0:
        raise NotLiquidatable("LPCM_SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", debt.asset)

    income, _ = _indexes(collateral, timestamp, indexes)
    scaled = position.balances(collateral_asset).scaled_a_token_balance
    return V2Terms(
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        health_factor=health_factor,
        close_factor=LIQUIDATION_CLOSE_FACTOR_PERCENT,
        liquidation_bonus=collateral.config.liquidation_bonus,
        liquidation_protocol_fee=0,
        collateral_price=collateral.price,
        debt_price=debt.price,
        collateral_unit=collateral.unit,
        debt_unit=debt.unit,
        user_collateral_balance=a_token_balance(scaled, income),
        user_collateral_scaled=scaled,
        collateral_income=income,
        user_variable_debt=user_variable_debt,
        user_stable_debt=user_stable_debt,
        debt_index=debt_index,
        reserves=reserves,
    )


def liquidation_outcome(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int,
    timestamp: int,
    *,
    receive_a_token: bool = False,
    health_factor: int | None = None,
    indexes: Indexes | None = None,
) -> LiquidationOutcome:
    """LendingPoolCollateralManager.liquidationCall's amounts (validation as
    ValidationLogic.validateLiquidationCall; raises NotLiquidatable where the pool reverts)."""
    terms = liquidation_terms(
        position,
        reserves,
        collateral_asset,
        debt_asset,
        timestamp,
        health_factor=health_factor,
        indexes=indexes,
    )
    return terms.outcome(debt_to_cover, receive_a_token=receive_a_token)


def best_liquidation(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    timestamp: int,
    *,
    receive_a_token: bool = False,
    indexes: Indexes | None = None,
) -> LiquidationOutcome | None:
    """The (collateral, debt) pair with the largest `bonus_value_base` at its largest useful size
    (`max_cover`), carrying every valid pair's terms in `pairs`; or None."""
    account = user_account_data(position, reserves, timestamp, indexes=indexes)
    if not account.liquidatable:
        return None
    collaterals, debts = liquidation_assets(position, reserves)
    best: LiquidationOutcome | None = None
    pairs: list[LiquidationTerms] = []
    for collateral_asset in collaterals:
        for debt_asset in debts:
            try:
                terms = liquidation_terms(
                    position,
                    reserves,
                    collateral_asset,
                    debt_asset,
                    timestamp,
                    health_factor=account.health_factor,
                    indexes=indexes,
                )
                outcome = terms.outcome(terms.max_cover(), receive_a_token=receive_a_token)
            except NotLiquidatable:
                continue
            pairs.append(terms)
            if best is None or outcome.bonus_value_base > best.bonus_value_base:
                best = outcome
    return None if best is None else replace(best, pairs=tuple(pairs))
