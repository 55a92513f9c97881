"""Helpers for the Aave deploy tests: mock tokens and feeds, user actions, and the protocols' liquidation
math mirrored in Python (exact integers) to check what the contracts do, to the wei.

Test-only. Feeds are @aave/core-v3's MockAggregator (no setter: the price lives in storage slot 0, which
we overwrite with anvil_setStorageAt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_utils.crypto import keccak

from keeper.chain.rpc import RpcClient
from keeper.chain.units import WAD, percent_div, percent_mul
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.artifacts import load_artifact
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_PRICES_USD, TokenInfo

MOCKS = "@aave/core-v3/artifacts/contracts/mocks"
DECIMALS = {"WETH": 18, "USDC": 6, "USDT": 6, "DAI": 18, "WBTC": 8, "wstETH": 18}
NAMES = {
    "USDC": "USD Coin",
    "USDT": "Tether USD",
    "DAI": "Dai Stablecoin",
    "WBTC": "Wrapped BTC",
    "wstETH": "Wrapped liquid staked Ether 2.0",
}
MAX_UINT = 2**256 - 1
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16  # 0.95e18, V3 LiquidationLogic
LIQUIDATION_CALL_TOPIC = (
    "0x" + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)


def user(i: int) -> str:
    return DEV_ACCOUNTS[i][0]


async def deploy_tokens(d: Deployer, symbols: tuple[str, ...] = tuple(DECIMALS)) -> dict[str, TokenInfo]:
    out: dict[str, TokenInfo] = {}
    for sym in symbols:
        if sym == "WETH":
            art = load_artifact(f"{MOCKS}/tokens/WETH9Mocked.sol/WETH9Mocked.json")
            addr = (await d.deploy(art)).address
        else:
            art = load_artifact(f"{MOCKS}/tokens/MintableERC20.sol/MintableERC20.json")
            addr = (await d.deploy(art, NAMES[sym], sym, DECIMALS[sym])).address
        out[sym] = TokenInfo(sym, addr, DECIMALS[sym])
    return out


async def deploy_feed(d: Deployer, answer: int) -> str:
    art = load_artifact(f"{MOCKS}/oracle/CLAggregators/MockAggregator.sol/MockAggregator.json")
    return (await d.deploy(art, answer)).address


async def deploy_usd_feeds(
    d: Deployer, tokens: Mapping[str, TokenInfo], prices: Mapping[str, int] = DEFAULT_PRICES_USD
) -> dict[str, str]:
    """symbol -> MockAggregator answering the USD price with 8 decimals."""
    return {s: await deploy_feed(d, prices[s]) for s in tokens}


def eth_price(symbol: str, prices_usd: Mapping[str, int] = DEFAULT_PRICES_USD) -> int:
    """The asset's price in ETH with 18 decimals (rounded down), from the USD prices."""
    return prices_usd[symbol] * WAD // prices_usd["WETH"]


async def deploy_eth_feeds(
    d: Deployer, tokens: Mapping[str, TokenInfo], prices_usd: Mapping[str, int] = DEFAULT_PRICES_USD
) -> dict[str, str]:
    """symbol -> MockAggregator answering the ETH price with 18 decimals; WETH gets none."""
    return {s: await deploy_feed(d, eth_price(s, prices_usd)) for s in tokens if s != "WETH"}


async def set_feed_answer(rpc: RpcClient, feed: str, answer: int) -> None:
    """Overwrites MockAggregator's `_latestAnswer` (slot 0); int256 two's complement."""
    word = (answer % 2**256).to_bytes(32, "big")
    await rpc.call("anvil_setStorageAt", [feed, "0x" + "00" * 32, "0x" + word.hex()])


async def freeze_time(rpc: RpcClient) -> None:
    """The next block gets the latest block's timestamp, so a view read now (interest accrued to the
    latest timestamp) sees exactly what the next transaction sees."""
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    await rpc.call("evm_setNextBlockTimestamp", [int(block["timestamp"], 16)])


async def advance_time(rpc: RpcClient, seconds: int) -> None:
    """Mines a block `seconds` later: interest accrues, indexes move off 1 ray."""
    await rpc.call("evm_increaseTime", [seconds])
    await rpc.call("evm_mine")


async def snapshot(rpc: RpcClient) -> str:
    return str(await rpc.call("evm_snapshot"))


async def revert(rpc: RpcClient, snap: str) -> None:
    assert await rpc.call("evm_revert", [snap]) is True


async def balance_of(d: Deployer, token: str, who: str) -> int:
    (bal,) = await d.call(token, "balanceOf(address)", ["address"], [who], ["uint256"])
    return int(bal)


async def mint(d: Deployer, token: str, to: str, amount: int) -> None:
    await d.transact(token, "mint(address,uint256)", ["address", "uint256"], [to, amount])


async def fund_and_approve(rpc: RpcClient, token: str, who: str, spender: str, amount: int) -> Deployer:
    """Mints `amount` to `who` (mint is unrestricted on the mocks) and approves `spender`."""
    d = Deployer(rpc, who)
    await mint(d, token, who, amount)
    await d.transact(token, "approve(address,uint256)", ["address", "uint256"], [spender, MAX_UINT])
    return d


async def scaled_debt_and_index(d: Deployer, pool: str, reserve: Any, who: str) -> tuple[int, int]:
    """The user's scaled variable debt and the reserve's current variable borrow index (ray);
    `reserve` has `.variable_debt_token` and `.asset` (V2 and V3 ReserveTokens)."""
    (scaled,) = await d.call(
        reserve.variable_debt_token, "scaledBalanceOf(address)", ["address"], [who], ["uint256"]
    )
    (index,) = await d.call(
        pool, "getReserveNormalizedVariableDebt(address)", ["address"], [reserve.asset], ["uint256"]
    )
    return int(scaled), int(index)


@dataclass(frozen=True)
class AccountData:
    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int


async def account_data(d: Deployer, pool: str, who: str) -> AccountData:
    out = await d.call(pool, "getUserAccountData(address)", ["address"], [who], ["uint256"] * 6)
    return AccountData(*(int(x) for x in out))


@dataclass(frozen=True)
class LiquidationEvent:
    debt_to_cover: int
    liquidated_collateral_amount: int
    liquidator: str
    receive_a_token: bool


def liquidation_event(receipt: Mapping[str, Any]) -> LiquidationEvent:
    for log in receipt["logs"]:
        if log["topics"] and log["topics"][0] == LIQUIDATION_CALL_TOPIC:
            debt, coll, liquidator, receive = decode(
                ["uint256", "uint256", "address", "bool"], bytes.fromhex(log["data"][2:])
            )
            return LiquidationEvent(int(debt), int(coll), str(liquidator), bool(receive))
    raise AssertionError("no LiquidationCall event in the receipt")


@dataclass(frozen=True)
class Liquidation:
    debt_repaid: int
    collateral_to_liquidator: int
    protocol_fee: int


def v3_liquidation(
    *,
    health_factor: int,
    user_total_debt: int,
    debt_to_cover: int,
    user_collateral: int,
    debt_price: int,
    collateral_price: int,
    debt_decimals: int,
    collateral_decimals: int,
    bonus: int,
    protocol_fee: int,
) -> Liquidation:
    """LiquidationLogic (core-v3 1.19): _calculateDebt + _calculateAvailableCollateralToLiquidate."""
    close_factor = 5000 if health_factor > CLOSE_FACTOR_HF_THRESHOLD else 10000
    debt = min(debt_to_cover, percent_mul(user_total_debt, close_factor))
    c_unit, d_unit = 10**collateral_decimals, 10**debt_decimals
    base_collateral = debt_price * debt * c_unit // (collateral_price * d_unit)
    max_collateral = percent_mul(base_collateral, bonus)
    if max_collateral > user_collateral:
        collateral = user_collateral
        debt = percent_div(collateral_price * collateral * d_unit // (debt_price * c_unit), bonus)
    else:
        collateral = max_collateral
    fee = 0
    if protocol_fee:
        bonus_collateral = collateral - percent_div(collateral, bonus)
        fee = percent_mul(bonus_collateral, protocol_fee)
    return Liquidation(debt, collateral - fee, fee)


def v2_liquidation(
    *,
    user_total_debt: int,
    debt_to_cover: int,
    user_collateral: int,
    debt_price: int,
    collateral_price: int,
    debt_decimals: int,
    collateral_decimals: int,
    bonus: int,
) -> Liquidation:
    """LendingPoolCollateralManager (protocol-v2 1.0.1): a flat 50% close factor, the bonus applied
    before the division, no protocol fee."""
    debt = min(debt_to_cover, percent_mul(user_total_debt, 5000))
    c_unit, d_unit = 10**collateral_decimals, 10**debt_decimals
    max_collateral = percent_mul(debt_price * debt * c_unit, bonus) // (collateral_price * d_unit)
    if max_collateral > user_collateral:
        collateral = user_collateral
        needed = percent_div(collateral_price * collateral * d_unit // (debt_price * c_unit), bonus)
        debt = min(debt, needed)
    else:
        collateral = max_collateral
    return Liquidation(debt, collateral, 0)
