"""Aave V3 on a fresh anvil: deploy, configure, and liquidate, checked against the protocol's own math."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from keeper.chain.rpc import RpcClient
from keeper.chain.units import RAY, percent_mul, ray_div, ray_mul, to_wei
from keeper.devnet.aave_params import ETH_CORRELATED, V3_RESERVES
from keeper.devnet.aave_v3 import AaveV3Market, deploy_aave_v3
from keeper.devnet.anvil import Anvil, AnvilConfig
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import DEFAULT_PRICES_USD, TokenInfo
from keeper.errors import DevnetError
from tests.integration.aave_fixtures import (
    MAX_UINT,
    account_data,
    advance_time,
    balance_of,
    deploy_tokens,
    deploy_usd_feeds,
    freeze_time,
    fund_and_approve,
    liquidation_event,
    revert,
    scaled_debt_and_index,
    set_feed_answer,
    snapshot,
    user,
    v3_liquidation,
)

pytestmark = pytest.mark.integration

ADDR = "address"
U256 = "uint256"


@dataclass
class Env:
    rpc: RpcClient
    d: Deployer
    tokens: dict[str, TokenInfo]
    feeds: dict[str, str]
    market: AaveV3Market


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Anvil(AnvilConfig(gas_limit=60_000_000)) as node, RpcClient(node.http_url) as rpc:
        d = Deployer(rpc, user(0))
        tokens = await deploy_tokens(d)
        feeds = await deploy_usd_feeds(d, tokens)
        t0 = time.perf_counter()
        market = await deploy_aave_v3(d, tokens, feeds)
        took = time.perf_counter() - t0
        print(f"\nAave V3 cold deploy: {took:.2f} s, {market.deploy_txs} txs")
        e = Env(rpc, d, tokens, feeds, market)
        # Liquidity for borrowers: a supplier (account 4) brings stables and WETH.
        for sym, amount in (("USDC", "10000000"), ("WETH", "1000"), ("DAI", "10000000")):
            await supply(e, 4, sym, to_wei(amount, tokens[sym].decimals))
        yield e


@pytest.fixture(autouse=True)
async def isolate(env: Env) -> AsyncIterator[None]:
    snap = await snapshot(env.rpc)
    yield
    await revert(env.rpc, snap)


async def supply(e: Env, who: int, sym: str, amount: int) -> Deployer:
    d = await fund_and_approve(e.rpc, e.tokens[sym].address, user(who), e.market.pool, amount)
    await d.transact(
        e.market.pool,
        "supply(address,uint256,address,uint16)",
        [ADDR, U256, ADDR, "uint16"],
        [e.tokens[sym].address, amount, user(who), 0],
    )
    return d


async def borrow(d: Deployer, e: Env, sym: str, amount: int) -> None:
    await d.transact(
        e.market.pool,
        "borrow(address,uint256,uint256,uint16,address)",
        [ADDR, U256, U256, "uint16", ADDR],
        [e.tokens[sym].address, amount, 2, 0, d.sender],
    )


async def set_price(e: Env, sym: str, usd_8dec: int) -> None:
    await set_feed_answer(e.rpc, e.feeds[sym], usd_8dec)
    (price,) = await e.d.call(
        e.market.oracle, "getAssetPrice(address)", [ADDR], [e.tokens[sym].address], [U256]
    )
    assert price == usd_8dec


@dataclass(frozen=True)
class Outcome:
    health_factor: int
    """Before the liquidation."""
    user_debt: int
    """Before the liquidation, interest included."""
    repaid: int


async def liquidate_and_check(
    e: Env, borrower: str, coll: str, debt: str, *, debt_to_cover: int, bonus: int
) -> Outcome:
    """Runs liquidationCall from account 3 and checks every amount against `v3_liquidation`."""
    m = e.market
    c_res, d_res = m.reserves[coll], m.reserves[debt]
    liquidator = user(3)
    budget = 2 * await balance_of(e.d, d_res.variable_debt_token, borrower)
    ld = await fund_and_approve(e.rpc, d_res.asset, liquidator, m.pool, budget)
    coll_before = await balance_of(e.d, c_res.asset, liquidator)
    treasury_before = await balance_of(e.d, c_res.a_token, m.treasury)
    # From here on no transaction until the liquidation, which gets the latest block's timestamp: the
    # views below (interest accrued to that timestamp) see exactly what liquidationCall will see.
    await freeze_time(e.rpc)
    acct = await account_data(e.d, m.pool, borrower)
    assert acct.health_factor < 10**18
    user_debt = await balance_of(e.d, d_res.variable_debt_token, borrower)
    scaled_debt, borrow_index = await scaled_debt_and_index(e.d, m.pool, d_res, borrower)
    user_coll = await balance_of(e.d, c_res.a_token, borrower)
    (c_price,) = await e.d.call(m.oracle, "getAssetPrice(address)", [ADDR], [c_res.asset], [U256])
    (d_price,) = await e.d.call(m.oracle, "getAssetPrice(address)", [ADDR], [d_res.asset], [U256])
    expected = v3_liquidation(
        health_factor=acct.health_factor,
        user_total_debt=user_debt,
        debt_to_cover=debt_to_cover,
        user_collateral=user_coll,
        debt_price=d_price,
        collateral_price=c_price,
        debt_decimals=d_res.decimals,
        collateral_decimals=c_res.decimals,
        bonus=bonus,
        protocol_fee=V3_RESERVES[coll].liquidation_protocol_fee,
    )
    assert expected.protocol_fee > 0

    receipt = await ld.transact(
        m.pool,
        "liquidationCall(address,address,address,uint256,bool)",
        [ADDR, ADDR, ADDR, U256, "bool"],
        [c_res.asset, d_res.asset, borrower, debt_to_cover, False],
    )
    print(f"  liquidationCall gas {int(receipt['gasUsed'], 16)}")
    ev = liquidation_event(receipt)
    assert ev.debt_to_cover == expected.debt_repaid
    assert ev.liquidated_collateral_amount == expected.collateral_to_liquidator
    # The liquidator got exactly the collateral and spent exactly the debt repaid.
    assert await balance_of(e.d, c_res.asset, liquidator) - coll_before == expected.collateral_to_liquidator
    assert budget - await balance_of(e.d, d_res.asset, liquidator) == expected.debt_repaid
    # Debt tokens burn in scaled units: the new balance is (scaled - repaid / index) * index, in ray math.
    debt_after = ray_mul(scaled_debt - ray_div(expected.debt_repaid, borrow_index), borrow_index)
    assert await balance_of(e.d, d_res.variable_debt_token, borrower) == debt_after
    assert abs(debt_after - (user_debt - expected.debt_repaid)) <= 1
    # The protocol fee went to the treasury as aTokens (scaled transfer: rayDiv then rayMul by the index).
    (index,) = await e.d.call(m.pool, "getReserveNormalizedIncome(address)", [ADDR], [c_res.asset], [U256])
    fee_received = await balance_of(e.d, c_res.a_token, m.treasury) - treasury_before
    assert fee_received == ray_mul(ray_div(expected.protocol_fee, index), index)
    return Outcome(acct.health_factor, user_debt, expected.debt_repaid)


async def test_deployed_configuration(env: Env) -> None:
    m, d = env.market, env.d
    assert set(m.reserves) == set(env.tokens)
    (reserves,) = await d.call(m.pool, "getReservesList()", [], [], ["address[]"])
    assert {r.lower() for r in reserves} == {t.address.lower() for t in env.tokens.values()}
    (total,) = await d.call(m.pool, "FLASHLOAN_PREMIUM_TOTAL()", [], [], ["uint128"])
    assert total == 5
    for sym, p in V3_RESERVES.items():
        r = m.reserves[sym]
        cfg = await d.call(
            m.data_provider,
            "getReserveConfigurationData(address)",
            [ADDR],
            [r.asset],
            [U256] * 5 + ["bool"] * 5,
        )
        decimals, ltv, lt, bonus, rf, coll_enabled, borrowing, stable, active, frozen = cfg
        assert (decimals, ltv, lt, bonus, rf) == (
            r.decimals,
            p.ltv,
            p.liquidation_threshold,
            p.liquidation_bonus,
            p.reserve_factor,
        )
        assert (coll_enabled, borrowing, stable, active, frozen) == (
            True,
            p.borrowing_enabled,
            False,
            True,
            False,
        )
        (fee,) = await d.call(
            m.data_provider, "getLiquidationProtocolFee(address)", [ADDR], [r.asset], [U256]
        )
        (flash,) = await d.call(m.data_provider, "getFlashLoanEnabled(address)", [ADDR], [r.asset], ["bool"])
        (cat,) = await d.call(m.data_provider, "getReserveEModeCategory(address)", [ADDR], [r.asset], [U256])
        assert (fee, flash, cat) == (1000, True, p.emode_category)
        (a_sym,) = await d.call(r.a_token, "symbol()", [], [], ["string"])
        (treasury,) = await d.call(r.a_token, "RESERVE_TREASURY_ADDRESS()", [], [], [ADDR])
        assert a_sym == f"aEth{sym}"
        assert treasury.lower() == m.treasury.lower()
    (price,) = await d.call(m.oracle, "getAssetPrice(address)", [ADDR], [m.reserves["WBTC"].asset], [U256])
    assert price == DEFAULT_PRICES_USD["WBTC"]


async def test_json_round_trip(env: Env) -> None:
    data = env.market.to_json()
    assert AaveV3Market.from_json(orjson.loads(orjson.dumps(data))) == env.market
    assert data["reserves"]["USDC"]["decimals"] == 6
    with pytest.raises(DevnetError):
        AaveV3Market.from_json({"pool": env.market.pool})
    lowered = {**data, "pool": data["pool"].lower()}
    assert AaveV3Market.from_json(lowered).pool == env.market.pool


async def open_weth_usdc_position(e: Env, who: int) -> str:
    """10 WETH at $2000 (LT 83%) backing 15,090 USDC: HF ~1.10."""
    d = await supply(e, who, "WETH", to_wei(10))
    await borrow(d, e, "USDC", to_wei(15_090, 6))
    acct = await account_data(e.d, e.market.pool, user(who))
    assert 1_099 * 10**15 < acct.health_factor < 1_101 * 10**15
    assert acct.current_liquidation_threshold == 8300
    return user(who)


async def test_liquidation_close_factor_50(env: Env) -> None:
    borrower = await open_weth_usdc_position(env, 1)
    await advance_time(env.rpc, 30 * 86400)  # a month of interest: indexes are no longer 1 ray
    await set_price(env, "WETH", 1_800_00000000)  # HF ~0.99: above 0.95, close factor 50%
    out = await liquidate_and_check(env, borrower, "WETH", "USDC", debt_to_cover=MAX_UINT, bonus=10500)
    assert 95 * 10**16 < out.health_factor < 10**18
    assert out.user_debt > to_wei(15_090, 6)  # plus a month of interest
    assert out.repaid == percent_mul(out.user_debt, 5000)


async def test_liquidation_close_factor_100(env: Env) -> None:
    borrower = await open_weth_usdc_position(env, 1)
    await set_price(env, "WETH", 1_700_00000000)  # HF ~0.935: 100% of the debt may be repaid
    out = await liquidate_and_check(env, borrower, "WETH", "USDC", debt_to_cover=MAX_UINT, bonus=10500)
    assert out.health_factor <= 95 * 10**16
    assert out.repaid == out.user_debt
    assert await balance_of(env.d, env.market.reserves["USDC"].variable_debt_token, borrower) == 0


async def test_liquidation_capped_by_collateral(env: Env) -> None:
    borrower = await open_weth_usdc_position(env, 1)
    await set_price(env, "WETH", 1_500_00000000)  # debt * bonus > collateral: all WETH is seized
    out = await liquidate_and_check(env, borrower, "WETH", "USDC", debt_to_cover=MAX_UINT, bonus=10500)
    assert out.health_factor <= 95 * 10**16
    assert out.repaid < out.user_debt
    assert await balance_of(env.d, env.market.reserves["WETH"].a_token, borrower) == 0


async def test_liquidation_partial_cover(env: Env) -> None:
    borrower = await open_weth_usdc_position(env, 1)
    await set_price(env, "WETH", 1_800_00000000)
    out = await liquidate_and_check(
        env, borrower, "WETH", "USDC", debt_to_cover=to_wei("1234.567891", 6), bonus=10500
    )
    assert out.repaid == to_wei("1234.567891", 6)


async def test_emode_threshold_and_liquidation(env: Env) -> None:
    m = env.market
    # Same collateral, one user in e-mode 1 and one not: LT 93% vs wstETH's own 81%.
    d = await supply(env, 1, "wstETH", to_wei(10))
    await supply(env, 2, "wstETH", to_wei(10))
    await d.transact(m.pool, "setUserEMode(uint8)", ["uint8"], [ETH_CORRELATED.category_id])
    (mode,) = await d.call(m.pool, "getUserEMode(address)", [ADDR], [user(1)], [U256])
    assert mode == 1
    in_emode = await account_data(env.d, m.pool, user(1))
    outside = await account_data(env.d, m.pool, user(2))
    assert (in_emode.current_liquidation_threshold, in_emode.ltv) == (9300, 9000)
    assert (outside.current_liquidation_threshold, outside.ltv) == (8100, 7850)
    assert (
        in_emode.total_collateral_base == outside.total_collateral_base == 10 * DEFAULT_PRICES_USD["wstETH"]
    )
    # Borrow 10.6 WETH ($21,200) against $23,600: within the e-mode LTV (90%: $21,240) but far above
    # what wstETH's own LTV allows (78.5%: $18,526); HF = 23,600 * 0.93 / 21,200 = 1.035.
    await borrow(d, env, "WETH", to_wei("10.6"))
    hf = (await account_data(env.d, m.pool, user(1))).health_factor
    assert 1_035 * 10**15 < hf < 1_036 * 10**15
    # wstETH -4%: HF ~0.994, liquidated with the e-mode bonus (1%) and wstETH's protocol fee.
    await advance_time(env.rpc, 7 * 86400)  # WETH borrow index > 1 ray
    await set_price(env, "wstETH", DEFAULT_PRICES_USD["wstETH"] * 96 // 100)
    await liquidate_and_check(
        env, user(1), "wstETH", "WETH", debt_to_cover=MAX_UINT, bonus=ETH_CORRELATED.liquidation_bonus
    )


async def test_borrow_index_starts_at_one_ray(env: Env) -> None:
    data = await env.d.call(
        env.market.data_provider,
        "getReserveData(address)",
        [ADDR],
        [env.market.reserves["USDT"].asset],
        [U256] * 11 + ["uint40"],
    )
    liquidity_index, variable_borrow_index = data[9], data[10]
    assert liquidity_index == variable_borrow_index == RAY
