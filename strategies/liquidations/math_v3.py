"""Aave V3 (core-v3 1.19.x) health factors and liquidation amounts, ported line by line. Pure: no I/O.

Every function names the Solidity it mirrors; the integer operations and their order are the same, so
results equal the Pool's to the wei. `timestamp` is the block timestamp the Pool would see (for a
prediction: the target block's).

Not modelled (the caller checks them): the PriceOracleSentinel (none on L1), a reserve's available
liquidity for receiveAToken=false (the aToken must hold enough underlying to pay the liquidator),
and the liquidator's side (allowance, isolation-mode rules for the aTokens received). This version has
no "dust" rule: V3.3's minimum leftover (MIN_LEFTOVER_BASE, forcing a full liquidation when less than
$1000 would remain) does not exist in 1.19.3; the close factor is the only cap.
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
    UnknownReserveError,
    ceil_div,
    liquidation_assets,
    reserve_of,
)
from strategies.liquidations.model import EModeCategory, ReserveState, UserPosition, UserReserve

SECONDS_PER_YEAR = 365 * 24 * 3600
"""MathUtils.SECONDS_PER_YEAR (365 days, leap years ignored)."""
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
"""LiquidationLogic: 50% of the debt while the health factor is above CLOSE_FACTOR_HF_THRESHOLD."""
MAX_LIQUIDATION_CLOSE_FACTOR = 10000
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
"""0.95e18: at or below it, the whole debt may be repaid at once."""

"""asset -> (normalized income, normalized variable debt) at one timestamp; see `normalized_indexes`."""


# ------------------------------------------------------------------------------------------- interest


def calculate_linear_interest(rate: int, last_update_timestamp: int, timestamp: int) -> int:
    """MathUtils.calculateLinearInterest: RAY + rate * dt / SECONDS_PER_YEAR."""
    if timestamp < last_update_timestamp:
        raise ValueError(f"timestamp {timestamp} is before the last update {last_update_timestamp}")
    return RAY + rate * (timestamp - last_update_timestamp) // SECONDS_PER_YEAR


def calculate_compounded_interest(rate: int, last_update_timestamp: int, timestamp: int) -> int:
    """MathUtils.calculateCompoundedInterest (V3): the 3-term binomial expansion of (1 + r/yr)^dt, with
    V3's order of operations (rate squared in ray, then divided by SECONDS_PER_YEAR^2)."""
    if timestamp < last_update_timestamp:
        raise ValueError(f"timestamp {timestamp} is before the last update {last_update_timestamp}")
    exp = timestamp - last_update_timestamp
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR
    second_term = exp * exp_minus_one * base_power_two // 2
    third_term = exp * exp_minus_one * exp_minus_two * base_power_three // 6
    return RAY + rate * exp // SECONDS_PER_YEAR + second_term + third_term


def normalized_income(reserve: ReserveState, timestamp: int) -> int:
    """ReserveLogic.getNormalizedIncome (= Pool.getReserveNormalizedIncome)."""
    if reserve.last_update_timestamp == timestamp:
        return reserve.liquidity_index
    interest = calculate_linear_interest(
        reserve.current_liquidity_rate, reserve.last_update_timestamp, timestamp
    )
    return ray_mul(interest, reserve.liquidity_index)


def normalized_debt(reserve: ReserveState, timestamp: int) -> int:
    """ReserveLogic.getNormalizedDebt (= Pool.getReserveNormalizedVariableDebt)."""
    if reserve.last_update_timestamp == timestamp:
        return reserve.variable_borrow_index
    interest = calculate_compounded_interest(
        reserve.current_variable_borrow_rate, reserve.last_update_timestamp, timestamp
    )
    return ray_mul(interest, reserve.variable_borrow_index)


def normalized_indexes(reserves: Mapping[str, ReserveState], timestamp: int) -> dict[str, tuple[int, int]]:
    """Both indexes of every reserve at `timestamp`: compute once per block, share across positions."""
    return {a: (normalized_income(r, timestamp), normalized_debt(r, timestamp)) for a, r in reserves.items()}


def _indexes(reserve: ReserveState, timestamp: int, indexes: Indexes | None) -> tuple[int, int]:
    if indexes is not None:
        cached = indexes.get(reserve.asset)
        if cached is not None:
            return cached
    return normalized_income(reserve, timestamp), normalized_debt(reserve, timestamp)


# ------------------------------------------------------------------------------------------- balances


def a_token_balance(scaled_balance: int, income: int) -> int:
    """AToken.balanceOf: scaledBalance.rayMul(normalizedIncome)."""
    return ray_mul(scaled_balance, income)


def variable_debt_balance(scaled_balance: int, debt_index: int) -> int:
    """VariableDebtToken.balanceOf: 0 if no scaled balance, else scaledBalance.rayMul(normalizedDebt)."""
    if scaled_balance == 0:
        return 0
    return ray_mul(scaled_balance, debt_index)


def stable_debt_balance(balances: UserReserve, timestamp: int) -> int:
    """StableDebtToken.balanceOf: principal.rayMul(compounded interest at the user's stable rate since
    the user's last stable-debt update). Same formula in V3 1.19 and V2."""
    if balances.stable_debt_principal == 0:
        return 0
    interest = calculate_compounded_interest(balances.stable_rate, balances.stable_last_update, timestamp)
    return ray_mul(balances.stable_debt_principal, interest)


# ------------------------------------------------------------------------------------------- account data


def calculate_available_borrows(total_collateral_base: int, total_debt_base: int, ltv: int) -> int:
    """GenericLogic.calculateAvailableBorrows."""
    available = percent_mul(total_collateral_base, ltv)
    return 0 if available < total_debt_base else available - total_debt_base


def _emode(position: UserPosition, emode_categories: Mapping[int, EModeCategory]) -> EModeCategory | None:
    if position.emode_category == 0:
        return None
    category = emode_categories.get(position.emode_category)
    if category is None:
        raise UnknownReserveError(f"e-mode category {position.emode_category} is not known locally")
    return category


def user_account_data(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    emode_categories: Mapping[int, EModeCategory],
    timestamp: int,
    *,
    indexes: Indexes | None = None,
) -> AccountData:
    """Pool.getUserAccountData = PoolLogic.executeGetUserAccountData: GenericLogic.calculateUserAccountData
    then calculateAvailableBorrows.

    Per asset, collateral is `scaledBalance.rayMul(income) * price / unit` and debt is
    `price * (scaledVariable.rayMul(debtIndex) + stableBalance) / unit` (each rounded down, then
    summed); averages are value-weighted and rounded down; HF = percentMul(collateral, avgLT) wadDiv debt.
    In e-mode, assets of the user's category use the category's LTV/threshold, and its oracle price
    when the category has a price source.
    """
    if position.config == 0:
        return AccountData(0, 0, 0, 0, 0, NO_DEBT_HEALTH_FACTOR, False)
    category = _emode(position, emode_categories)
    user_cat = position.emode_category
    emode_ltv = emode_lt = emode_price = 0
    if category is not None:
        emode_ltv, emode_lt = category.ltv, category.liquidation_threshold
        emode_price = category.price if category.has_price_source else 0

    total_collateral = total_debt = avg_ltv = avg_lt = 0
    has_zero_ltv_collateral = False
    for asset, balances in position.reserves.items():
        reserve = reserve_of(reserves, asset)
        rid = reserve.id
        if not position.is_using_as_collateral_or_borrowing(rid):
            continue
        cfg = reserve.config
        unit = 10**cfg.decimals
        price = emode_price if emode_price != 0 and user_cat == cfg.emode_category else reserve.price
        income, debt_index = _indexes(reserve, timestamp, indexes)

        if cfg.liquidation_threshold != 0 and position.is_using_as_collateral(rid):
            value = ray_mul(balances.scaled_a_token_balance, income) * price // unit
            total_collateral += value
            in_emode = user_cat != 0 and cfg.emode_category == user_cat
            if cfg.ltv != 0:
                avg_ltv += value * (emode_ltv if in_emode else cfg.ltv)
            else:
                has_zero_ltv_collateral = True
            avg_lt += value * (emode_lt if in_emode else cfg.liquidation_threshold)

        if position.is_borrowing(rid):
            debt = variable_debt_balance(balances.scaled_variable_debt, debt_index)
            debt += stable_debt_balance(balances, timestamp)
            total_debt += price * debt // unit

    avg_ltv = avg_ltv // total_collateral if total_collateral else 0
    avg_lt = avg_lt // total_collateral if total_collateral else 0
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
        has_zero_ltv_collateral=has_zero_ltv_collateral,
    )


# ------------------------------------------------------------------------------------------- liquidation


@dataclass(frozen=True, slots=True)
class CollateralAmounts:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate's three returns."""

    collateral_to_liquidator: int
    debt_amount_needed: int
    protocol_fee: int


def calculate_available_collateral_to_liquidate(
    *,
    collateral_price: int,
    debt_price: int,
    collateral_unit: int,
    debt_unit: int,
    debt_to_cover: int,
    user_collateral_balance: int,
    liquidation_bonus: int,
    liquidation_protocol_fee: int,
) -> CollateralAmounts:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate (V3 1.19)."""
    base_collateral = (debt_price * debt_to_cover * collateral_unit) // (collateral_price * debt_unit)
    max_collateral = percent_mul(base_collateral, liquidation_bonus)
    if max_collateral > user_collateral_balance:
        collateral = user_collateral_balance
        debt_needed = percent_div(
            (collateral_price * collateral * debt_unit) // (debt_price * collateral_unit), liquidation_bonus
        )
    else:
        collateral = max_collateral
        debt_needed = debt_to_cover
    if liquidation_protocol_fee != 0:
        bonus_collateral = collateral - percent_div(collateral, liquidation_bonus)
        fee = percent_mul(bonus_collateral, liquidation_protocol_fee)
        return CollateralAmounts(collateral - fee, debt_needed, fee)
    return CollateralAmounts(collateral, debt_needed, 0)


def _validate(
    position: UserPosition, collateral: ReserveState, debt: ReserveState, health_factor: int, total_debt: int
) -> None:
    """ValidationLogic.validateLiquidationCall (no PriceOracleSentinel), in the same order."""
    if not (collateral.config.active and debt.config.active):
        raise NotLiquidatable("RESERVE_INACTIVE")
    if collateral.config.paused or debt.config.paused:
        raise NotLiquidatable("RESERVE_PAUSED")
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise NotLiquidatable("HEALTH_FACTOR_NOT_BELOW_THRESHOLD", f"health factor {health_factor}")
    if collateral.config.liquidation_threshold == 0 or not position.is_using_as_collateral(collateral.id):
        raise NotLiquidatable("COLLATERAL_CANNOT_BE_LIQUIDATED", collateral.asset)
    if total_debt == 0:
        raise NotLiquidatable("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", debt.asset)


@dataclass(frozen=True, slots=True)
class V3Terms(LiquidationTerms):
    """Aave V3 (1.19) terms: V3's collateral formula (bonus applied after the price division) and fee."""

    base_is_eth: ClassVar[bool] = False
    burn_error: ClassVar[str] = "INVALID_BURN_AMOUNT"

    def collateral_amounts(self, debt_to_liquidate: int) -> tuple[int, int, int]:
        a = calculate_available_collateral_to_liquidate(
            collateral_price=self.collateral_price,
            debt_price=self.debt_price,
            collateral_unit=self.collateral_unit,
            debt_unit=self.debt_unit,
            debt_to_cover=debt_to_liquidate,
            user_collateral_balance=self.user_collateral_balance,
            liquidation_bonus=self.liquidation_bonus,
            liquidation_protocol_fee=self.liquidation_protocol_fee,
        )
        return a.collateral_to_liquidator, a.debt_amount_needed, a.protocol_fee

    def _max_collateral(self, debt_to_liquidate: int) -> int:
        base = (self.debt_price * debt_to_liquidate * self.collateral_unit) // (
            self.collateral_price * self.debt_unit
        )
        return percent_mul(base, self.liquidation_bonus)

    def _min_request_for(self, collateral: int) -> int:
        # percentMul(base, bonus) >= collateral  <=>  base * bonus + HALF >= collateral * 1e4
        base_min = ceil_div(collateral * PERCENTAGE_FACTOR - HALF_PERCENT, self.liquidation_bonus)
        # base(x) = debtPrice * x * collateralUnit / (collateralPrice * debtUnit), rounded down
        return ceil_div(
            base_min * self.collateral_price * self.debt_unit, self.debt_price * self.collateral_unit
        )


def liquidation_terms(
    position: UserPosition,
    reserves: Mapping[str, ReserveState],
    emode_categories: Mapping[int, EModeCategory],
    collateral_asset: str,
    debt_asset: str,
    timestamp: int,
    *,
    health_factor: int | None = None,
    indexes: Indexes | None = None,
) -> V3Terms:
    """LiquidationLogic.executeLiquidationCall up to the size: _calculateDebt, validateLiquidationCall and
    _getConfigurationData. Raises NotLiquidatable where the Pool reverts whatever the size."""
    collateral = reserve_of(reserves, collateral_asset)
    debt = reserve_of(reserves, debt_asset)
    if health_factor is None:
        health_factor = user_account_data(
            position, reserves, emode_categories, timestamp, indexes=indexes
        ).health_factor

    # _calculateDebt
    _, debt_index = _indexes(debt, timestamp, indexes)
    debt_balances = position.balances(debt_asset)
    user_variable_debt = variable_debt_balance(debt_balances.scaled_variable_debt, debt_index)
    user_stable_debt = stable_debt_balance(debt_balances, timestamp)
    close_factor = (
        DEFAULT_LIQUIDATION_CLOSE_FACTOR
        if health_factor > CLOSE_FACTOR_HF_THRESHOLD
        else MAX_LIQUIDATION_CLOSE_FACTOR
    )

    _validate(position, collateral, debt, health_factor, user_variable_debt + user_stable_debt)

    # _getConfigurationData
    bonus = collateral.config.liquidation_bonus
    collateral_price, debt_price = collateral.price, debt.price
    category = _emode(position, emode_categories)
    if category is not None:
        if collateral.config.emode_category == position.emode_category:
            bonus = category.liquidation_bonus
            if category.has_price_source:
                collateral_price = category.price
        if category.has_price_source:
            debt_price = category.price

    income, _ = _indexes(collateral, timestamp, indexes)
    scaled = position.balances(collateral_asset).scaled_a_token_balance
    return V3Terms(
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        health_factor=health_factor,
        close_factor=close_factor,
        liquidation_bonus=bonus,
        liquidation_protocol_fee=collateral.config.liquidation_protocol_fee,
        collateral_price=collateral_price,
        debt_price=debt_price,
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
    emode_categories: Mapping[int, EModeCategory],
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int,
    timestamp: int,
    *,
    receive_a_token: bool = False,
    health_factor: int | None = None,
    indexes: Indexes | None = None,
) -> LiquidationOutcome:
    """LiquidationLogic.executeLiquidationCall's amounts: _calculateDebt, validateLiquidationCall,
    _getConfigurationData, _calculateAvailableCollateralToLiquidate, _burnDebtTokens' split, and the
    treasury transfer's 1-wei cap on the protocol fee. Raises NotLiquidatable where the Pool reverts.

    `health_factor` may be passed when already computed for this position at `timestamp`.
    """
    terms = liquidation_terms(
        position,
        reserves,
        emode_categories,
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
    emode_categories: Mapping[int, EModeCategory],
    timestamp: int,
    *,
    receive_a_token: bool = False,
    indexes: Indexes | None = None,
) -> LiquidationOutcome | None:
    """Tries every (collateral, debt) pair the user has at its largest useful size (`max_cover`: the
    request that seizes the whole collateral when the close factor allows it, else the close-factor
    maximum) and returns the outcome with the largest `bonus_value_base` (ties: the first in position
    order), carrying every valid pair's terms in `pairs`; None when the position is not liquidatable or
    no pair is valid. The outcome's `debt_to_cover` is the request to pass."""
    account = user_account_data(position, reserves, emode_categories, timestamp, indexes=indexes)
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
                    emode_categories,
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
