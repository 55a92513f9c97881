"""Small builders for the liquidation math tests: reserves with an encoded configuration bitmap."""

from __future__ import annotations

from keeper.chain.units import RAY
from strategies.liquidations.model import ReserveConfig, ReserveState, UserPosition, UserReserve

T0 = 1_700_000_000
WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
WBTC = "0x" + "33" * 20
DAI = "0x" + "44" * 20


def config_bitmap(
    *,
    ltv: int = 0,
    lt: int = 0,
    bonus: int = 0,
    decimals: int = 18,
    active: bool = True,
    frozen: bool = False,
    borrowing: bool = True,
    stable: bool = False,
    paused: bool = False,
    reserve_factor: int = 1000,
    fee: int = 0,
    emode: int = 0,
    debt_ceiling: int = 0,
) -> int:
    """ReserveConfiguration's layout (V3 1.19), built field by field."""
    return (
        ltv
        | lt << 16
        | bonus << 32
        | decimals << 48
        | int(active) << 56
        | int(frozen) << 57
        | int(borrowing) << 58
        | int(stable) << 59
        | int(paused) << 60
        | reserve_factor << 64
        | fee << 152
        | emode << 168
        | debt_ceiling << 212
    )


def make_reserve(
    asset: str,
    rid: int,
    *,
    price: int,
    decimals: int = 18,
    ltv: int = 8000,
    lt: int = 8250,
    bonus: int = 10500,
    fee: int = 0,
    emode: int = 0,
    liquidity_rate: int = 0,
    variable_rate: int = 0,
    liquidity_index: int = RAY,
    variable_index: int = RAY,
    last_update: int = T0,
    active: bool = True,
    paused: bool = False,
) -> ReserveState:
    cfg = config_bitmap(
        ltv=ltv, lt=lt, bonus=bonus, decimals=decimals, fee=fee, emode=emode, active=active, paused=paused
    )
    return ReserveState(
        asset=asset,
        id=rid,
        config=ReserveConfig.from_bitmap(cfg),
        liquidity_index=liquidity_index,
        variable_borrow_index=variable_index,
        current_liquidity_rate=liquidity_rate,
        current_variable_borrow_rate=variable_rate,
        current_stable_borrow_rate=0,
        last_update_timestamp=last_update,
        a_token="0x" + "a0" * 20,
        stable_debt_token="0x" + "b0" * 20,
        variable_debt_token="0x" + "c0" * 20,
        price=price,
    )


def bits(*, collateral: tuple[int, ...] = (), borrowing: tuple[int, ...] = ()) -> int:
    out = 0
    for i in collateral:
        out |= 1 << (2 * i + 1)
    for i in borrowing:
        out |= 1 << (2 * i)
    return out


def position(
    reserves: dict[str, UserReserve],
    *,
    collateral: tuple[int, ...] = (),
    borrowing: tuple[int, ...] = (),
    emode: int = 0,
) -> UserPosition:
    return UserPosition(
        user="0x" + "99" * 20,
        config=bits(collateral=collateral, borrowing=borrowing),
        emode_category=emode,
        reserves=reserves,
    )
