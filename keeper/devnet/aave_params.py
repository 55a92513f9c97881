"""Reserve parameters for the devnet Aave V3 and V2 markets (risk settings and rate curves).

Values are integers in the units the configurators take: risk settings in basis points (1e4 = 100%),
a liquidation bonus as 1e4 + bonus (10500 = 5%), rates in ray (1e27 = 100% per year).

They approximate the Ethereum mainnet markets (Aave V3 Ethereum and Aave V2, around 2023) and are
rounded; they are meant to make liquidations and health factors look like mainnet, not to track
governance. Simplifications, on purpose:
- V3: supply and borrow caps are 0 (no cap), no isolation mode and no siloed borrowing, stable-rate
  borrowing off everywhere (as on mainnet since 2023), flash loans on for every reserve, wstETH is
  collateral only (on mainnet it is also borrowable, with a cap), one e-mode category
  (1, "ETH correlated": LTV 90%, LT 93%, bonus 1%) holding WETH and wstETH.
- V2: USDT is borrow-only (LTV 0 as on mainnet V2); wstETH (not a V2 asset; stETH was) is
  collateral only with the stETH settings; stable-rate borrowing on for WETH, WBTC and the stables.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.units import RAY


def pct_ray(hundredths_of_percent: int) -> int:
    """A rate given in hundredths of a percent (bps) as a ray: pct_ray(380) = 3.8% = 0.038e27."""
    return hundredths_of_percent * RAY // 10_000


@dataclass(frozen=True)
class RateStrategyV3:
    """DefaultReserveInterestRateStrategy constructor arguments (all ray)."""

    optimal_usage_ratio: int
    base_variable_borrow_rate: int
    variable_rate_slope1: int
    variable_rate_slope2: int
    stable_rate_slope1: int = 0
    stable_rate_slope2: int = 0
    base_stable_rate_offset: int = pct_ray(100)
    stable_rate_excess_offset: int = pct_ray(800)
    optimal_stable_to_total_debt_ratio: int = pct_ray(2000)

    def args(self) -> tuple[int, ...]:
        return (
            self.optimal_usage_ratio,
            self.base_variable_borrow_rate,
            self.variable_rate_slope1,
            self.variable_rate_slope2,
            self.stable_rate_slope1,
            self.stable_rate_slope2,
            self.base_stable_rate_offset,
            self.stable_rate_excess_offset,
            self.optimal_stable_to_total_debt_ratio,
        )


@dataclass(frozen=True)
class ReserveParams:
    """One V3 reserve's configuration. Basis points unless said otherwise."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    """1e4 + bonus: 10500 = the liquidator gets 5% more collateral than the debt repaid."""
    reserve_factor: int
    liquidation_protocol_fee: int
    """Share of the liquidation bonus sent to the treasury as aTokens (1000 = 10% of the bonus)."""
    rates: RateStrategyV3
    borrowing_enabled: bool = True
    flash_loan_enabled: bool = True
    supply_cap: int = 0
    """Whole tokens; 0 = no cap."""
    borrow_cap: int = 0
    emode_category: int = 0


@dataclass(frozen=True)
class EModeCategory:
    category_id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    price_source: str = "0x0000000000000000000000000000000000000000"
    """0x0 = use each asset's own price (mainnet's ETH-correlated category does too)."""


ETH_CORRELATED = EModeCategory(1, 9000, 9300, 10100, "ETH correlated")

FLASHLOAN_PREMIUM_TOTAL = 5
"""0.05% of the amount, paid by the flash borrower (mainnet V3 Ethereum)."""
FLASHLOAN_PREMIUM_TO_PROTOCOL = 0
"""Share OF THE PREMIUM (bps of the premium, not of the amount) accrued to the treasury; the rest goes
to suppliers. 0 as at the V3 Ethereum launch; it changes only who gets the premium, never what a
flash borrower pays."""

_STABLE_RATES = RateStrategyV3(pct_ray(9000), 0, pct_ray(400), pct_ray(6000))

V3_RESERVES: dict[str, ReserveParams] = {
    "WETH": ReserveParams(
        ltv=8050,
        liquidation_threshold=8300,
        liquidation_bonus=10500,
        reserve_factor=1500,
        liquidation_protocol_fee=1000,
        rates=RateStrategyV3(pct_ray(8000), 0, pct_ray(380), pct_ray(8000)),
        emode_category=1,
    ),
    "wstETH": ReserveParams(
        ltv=7850,
        liquidation_threshold=8100,
        liquidation_bonus=10600,
        reserve_factor=1500,
        liquidation_protocol_fee=1000,
        rates=RateStrategyV3(pct_ray(4500), pct_ray(25), pct_ray(450), pct_ray(8000)),
        borrowing_enabled=False,
        emode_category=1,
    ),
    "WBTC": ReserveParams(
        ltv=7300,
        liquidation_threshold=7800,
        liquidation_bonus=10500,
        reserve_factor=2000,
        liquidation_protocol_fee=1000,
        rates=RateStrategyV3(pct_ray(4500), 0, pct_ray(400), pct_ray(30000)),
    ),
    "USDC": ReserveParams(
        ltv=7700,
        liquidation_threshold=7900,
        liquidation_bonus=10450,
        reserve_factor=1000,
        liquidation_protocol_fee=1000,
        rates=_STABLE_RATES,
    ),
    "USDT": ReserveParams(
        ltv=7400,
        liquidation_threshold=7600,
        liquidation_bonus=10450,
        reserve_factor=1000,
        liquidation_protocol_fee=1000,
        rates=_STABLE_RATES,
    ),
    "DAI": ReserveParams(
        ltv=7500,
        liquidation_threshold=8000,
        liquidation_bonus=10500,
        reserve_factor=1000,
        liquidation_protocol_fee=1000,
        rates=RateStrategyV3(pct_ray(9000), 0, pct_ray(400), pct_ray(7500)),
    ),
}


@dataclass(frozen=True)
class RateStrategyV2:
    """V2 DefaultReserveInterestRateStrategy constructor arguments (all ray)."""

    optimal_utilization_rate: int
    base_variable_borrow_rate: int
    variable_rate_slope1: int
    variable_rate_slope2: int
    stable_rate_slope1: int
    stable_rate_slope2: int

    def args(self) -> tuple[int, ...]:
        return (
            self.optimal_utilization_rate,
            self.base_variable_borrow_rate,
            self.variable_rate_slope1,
            self.variable_rate_slope2,
            self.stable_rate_slope1,
            self.stable_rate_slope2,
        )


@dataclass(frozen=True)
class ReserveParamsV2:
    """One V2 reserve's configuration (no protocol fee, no e-mode, no caps in V2)."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    reserve_factor: int
    rates: RateStrategyV2
    market_borrow_rate: int
    """LendingRateOracle's market borrow rate (ray): the base of the stable rate."""
    borrowing_enabled: bool = True
    stable_borrowing_enabled: bool = True


V2_FLASHLOAN_PREMIUM_TOTAL = 9
"""A constant in this LendingPool version (0.09%), not configurable."""
V2_CLOSE_FACTOR = 5000
"""LendingPoolCollateralManager's constant: at most 50% of the debt per liquidation, whatever the HF."""

_V2_STABLE = RateStrategyV2(pct_ray(9000), 0, pct_ray(400), pct_ray(6000), pct_ray(200), pct_ray(6000))
_V2_VOLATILE = RateStrategyV2(pct_ray(6500), 0, pct_ray(800), pct_ray(10000), pct_ray(1000), pct_ray(10000))

V2_RESERVES: dict[str, ReserveParamsV2] = {
    "WETH": ReserveParamsV2(8000, 8250, 10500, 1000, _V2_VOLATILE, pct_ray(300)),
    "USDC": ReserveParamsV2(8000, 8500, 10500, 1000, _V2_STABLE, pct_ray(350)),
    "USDT": ReserveParamsV2(0, 0, 0, 1000, _V2_STABLE, pct_ray(350)),
    "DAI": ReserveParamsV2(
        7500,
        8000,
        10500,
        1000,
        RateStrategyV2(pct_ray(8000), 0, pct_ray(400), pct_ray(7500), pct_ray(200), pct_ray(7500)),
        pct_ray(350),
    ),
    "WBTC": ReserveParamsV2(
        7000,
        7500,
        11000,
        2000,
        RateStrategyV2(pct_ray(6500), 0, pct_ray(800), pct_ray(30000), pct_ray(1000), pct_ray(30000)),
        pct_ray(300),
    ),
    "wstETH": ReserveParamsV2(
        7000,
        7500,
        10750,
        1000,
        _V2_VOLATILE,
        pct_ray(300),
        borrowing_enabled=False,
        stable_borrowing_enabled=False,
    ),
}
