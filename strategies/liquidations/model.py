"""The state an Aave market keeps that a liquidator needs, held locally.

Plain frozen, slotted records; integers only. Split by how often things change:
- `ReserveConfig`: the reserve's configuration bitmap, decoded (changes on governance actions only).
- `ReserveState`: one reserve: its config, indexes and rates as of `last_update_timestamp`, token
  addresses, and the oracle price. A new block costs only `with_price` / `with_rates_and_indexes`
  (a `ReserveDataUpdated` log carries exactly those) on the reserves that changed; the interest
  accrued since `last_update_timestamp` is computed by the math modules from the block timestamp.
- `UserPosition`: one borrower: the user-configuration bitmap, e-mode category, and per reserve the
  SCALED balances only (aToken and variable debt) plus the stable-debt principal, rate and timestamp,
  so a position never needs re-reading when indexes or prices move.

Both markets use these records. Aave V2's configuration bitmap is a prefix of V3's (bits 60-63 are
reserved and 0 in V2, nothing above bit 79), so one decoder serves both; V3-only fields are 0 in V2.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

MAX_RESERVES_COUNT = 128
"""ReserveConfiguration.MAX_RESERVES_COUNT: the user bitmap has two bits for each of 128 reserve ids."""


def _bits(data: int, start: int, width: int) -> int:
    return (data >> start) & ((1 << width) - 1)


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """ReserveConfiguration's bitmap, decoded (same bit layout as ReserveConfiguration.sol, V3 1.19)."""

    data: int
    ltv: int
    """Basis points (1e4 = 100%)."""
    liquidation_threshold: int
    liquidation_bonus: int
    """1e4 + bonus: 10500 = 5%."""
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool
    borrowable_in_isolation: bool
    siloed_borrowing: bool
    flash_loan_enabled: bool
    reserve_factor: int
    borrow_cap: int
    """Whole tokens; 0 = no cap."""
    supply_cap: int
    liquidation_protocol_fee: int
    """Share of the liquidation bonus for the treasury, basis points (V3)."""
    emode_category: int
    unbacked_mint_cap: int
    debt_ceiling: int
    """Isolation-mode debt ceiling with 2 decimals; 0 = not an isolated asset (V3)."""

    @classmethod
    def from_bitmap(cls, data: int) -> ReserveConfig:
        """Decodes `getConfiguration(asset).data` / `getReserveData(asset).configuration`."""
        return cls(
            data=data,
            ltv=_bits(data, 0, 16),
            liquidation_threshold=_bits(data, 16, 16),
            liquidation_bonus=_bits(data, 32, 16),
            decimals=_bits(data, 48, 8),
            active=bool(_bits(data, 56, 1)),
            frozen=bool(_bits(data, 57, 1)),
            borrowing_enabled=bool(_bits(data, 58, 1)),
            stable_borrowing_enabled=bool(_bits(data, 59, 1)),
            paused=bool(_bits(data, 60, 1)),
            borrowable_in_isolation=bool(_bits(data, 61, 1)),
            siloed_borrowing=bool(_bits(data, 62, 1)),
            flash_loan_enabled=bool(_bits(data, 63, 1)),
            reserve_factor=_bits(data, 64, 16),
            borrow_cap=_bits(data, 80, 36),
            supply_cap=_bits(data, 116, 36),
            liquidation_protocol_fee=_bits(data, 152, 16),
            emode_category=_bits(data, 168, 8),
            unbacked_mint_cap=_bits(data, 176, 36),
            debt_ceiling=_bits(data, 212, 40),
        )


@dataclass(frozen=True, slots=True)
class ReserveState:
    """One reserve as the Pool stores it (`getReserveData`), plus its oracle price.

    `price` is what the market's oracle answers for `asset` (`getAssetPrice`), in the base currency:
    USD with 8 decimals on V3 Ethereum, ETH with 18 decimals on V2.
    """

    asset: str
    id: int
    """Position in the Pool's reserves list: the reserve's bit pair in the user bitmap."""
    config: ReserveConfig
    liquidity_index: int
    """Ray, as of `last_update_timestamp`."""
    variable_borrow_index: int
    current_liquidity_rate: int
    """Ray per year."""
    current_variable_borrow_rate: int
    current_stable_borrow_rate: int
    last_update_timestamp: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    interest_rate_strategy: str = ZERO_ADDRESS
    price: int = 0
    accrued_to_treasury: int = 0
    """Scaled (V3)."""
    unbacked: int = 0
    isolation_mode_total_debt: int = 0

    @property
    def decimals(self) -> int:
        return self.config.decimals

    @property
    def unit(self) -> int:
        """10 ** decimals: one whole token in base units."""
        return int(10**self.config.decimals)

    def with_price(self, price: int) -> ReserveState:
        return replace(self, price=price)

    def with_rates_and_indexes(
        self,
        *,
        liquidity_rate: int,
        stable_borrow_rate: int,
        variable_borrow_rate: int,
        liquidity_index: int,
        variable_borrow_index: int,
        timestamp: int,
    ) -> ReserveState:
        """The state after a `ReserveDataUpdated` event emitted in a block with `timestamp`."""
        return replace(
            self,
            current_liquidity_rate=liquidity_rate,
            current_stable_borrow_rate=stable_borrow_rate,
            current_variable_borrow_rate=variable_borrow_rate,
            liquidity_index=liquidity_index,
            variable_borrow_index=variable_borrow_index,
            last_update_timestamp=timestamp,
        )

    def with_config(self, data: int) -> ReserveState:
        return replace(self, config=ReserveConfig.from_bitmap(data))


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """V3 `getEModeCategoryData(id)`, plus the oracle price of `price_source` when it is set."""

    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str = ZERO_ADDRESS
    label: str = ""
    price: int = 0
    """`getAssetPrice(price_source)`; 0 when `price_source` is the zero address (no category oracle)."""

    @property
    def has_price_source(self) -> bool:
        return int(self.price_source, 16) != 0

    def with_price(self, price: int) -> EModeCategory:
        return replace(self, price=price)


@dataclass(frozen=True, slots=True)
class UserReserve:
    """A user's balances in one reserve, as the tokens store them (no interest applied)."""

    scaled_a_token_balance: int = 0
    """`aToken.scaledBalanceOf(user)`."""
    scaled_variable_debt: int = 0
    """`variableDebtToken.scaledBalanceOf(user)`."""
    stable_debt_principal: int = 0
    """`stableDebtToken.principalBalanceOf(user)`."""
    stable_rate: int = 0
    """`stableDebtToken.getUserStableRate(user)`, ray per year."""
    stable_last_update: int = 0
    """`stableDebtToken.getUserLastUpdated(user)`."""


EMPTY_USER_RESERVE = UserReserve()


@dataclass(frozen=True, slots=True)
class UserPosition:
    """One user: `getUserConfiguration(user).data`, `getUserEMode(user)`, and balances by asset.

    `reserves` needs an entry for every reserve whose bits are set in `config`; a missing entry counts
    as all-zero balances. Entries for reserves whose bits are clear are ignored (as the Pool does).
    """

    user: str
    config: int
    """Two bits per reserve id: bit 2*id = borrowing, bit 2*id+1 = using as collateral."""
    emode_category: int = 0
    reserves: Mapping[str, UserReserve] = field(default_factory=dict)

    def is_borrowing(self, reserve_id: int) -> bool:
        return (self.config >> (reserve_id << 1)) & 1 != 0

    def is_using_as_collateral(self, reserve_id: int) -> bool:
        return (self.config >> ((reserve_id << 1) + 1)) & 1 != 0

    def is_using_as_collateral_or_borrowing(self, reserve_id: int) -> bool:
        return (self.config >> (reserve_id << 1)) & 3 != 0

    def balances(self, asset: str) -> UserReserve:
        return self.reserves.get(asset, EMPTY_USER_RESERVE)

    def with_reserve(self, asset: str, balances: UserReserve) -> UserPosition:
        return replace(self, reserves={**self.reserves, asset: balances})


def reserve_ids_in(config: int) -> Iterator[int]:
    """Ids whose bit pair is non-zero in a user bitmap, ascending."""
    i = 0
    while config:
        if config & 3:
            yield i
        config >>= 2
        i += 1


def reserves_by_id(reserves: Mapping[str, ReserveState]) -> dict[int, ReserveState]:
    return {r.id: r for r in reserves.values()}


@dataclass(frozen=True, slots=True)
class MarketState:
    """A market's reserves and e-mode categories as read at one block."""

    reserves: Mapping[str, ReserveState]
    """asset (checksummed, as the reader returns it) -> reserve."""
    emode_categories: Mapping[int, EModeCategory] = field(default_factory=dict)
    block_number: int = 0
    timestamp: int = 0
    """The block's timestamp: what view calls at that block use as block.timestamp."""

    def by_id(self) -> dict[int, ReserveState]:
        return reserves_by_id(self.reserves)
