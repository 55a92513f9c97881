"""Aave V2 on a fresh anvil: deploy, configure, and liquidate, checked against the protocol's own math."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from keeper.chain.rpc import RpcClient
from keeper.chain.units import WAD, percent_mul, ray_div, ray_mul, to_wei
from keeper.devnet.aave_params import V2_RESERVES
from keeper.devnet.aave_v2 import AaveV2Market, deploy_aave_v2
from keeper.devnet.anvil import Anvil, AnvilConfig
from keeper.devnet.deployer import Deployer
from keeper.devnet.model import TokenInfo
from keeper.errors import DevnetError
from tests.integration.aave_fixtures import (
    MAX_UINT,
    account_data,
    advance_time,
    balance_of,
    deploy_eth_feeds,
    deploy_tokens,
    eth_price,
    freeze_time,
    fund_and_approve,
    liquidation_event,
    revert,
    scaled_debt_and_index,
    set_feed_answer,
    snapshot,
    user,
    v2_liquidation,
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
    market: AaveV2Market


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with Anvil(AnvilConfig(gas_limit=60_000_000)) as node, RpcClient(node.http_url) as rpc:
        d = Deployer(rpc, user(0))
        tokens = await deploy_tokens(d)
        feeds = await deploy_eth_feeds(d, tokens)
        t0 = time.perf_counter()
        market = await deploy_aave_v2(d, tokens, feeds)
        took = time.perf_counter() - t0
        print(f"\nAave V2 cold deploy: {took:.2f} s, {market.deploy_txs} txs")
        e = Env(rpc, d, tokens, feeds, market)
        for sym, amount in (("USDC", "10000000"), ("WETH", "1000"), ("DAI", "10000000")):
            await deposit(e, 4, sym, to_wei(amount, tokens[sym].decimals))
        yield e


@pytest.fixture(autouse=True)
async def isolate(env: Env) -> AsyncIterator[None]:
    snap = await snapshot(env.rpc)
    yield
    await revert(env.rpc, snap)


async def deposit(e: Env, who: int, sym: str, amount: int) -> Deployer:
    d = await fund_and_approve(e.rpc, e.tokens[sym].address, user(who), e.market.lending_pool, amount)
    await d.transact(
        e.market.lending_pool,
        "deposit(address,uint256,address,uint16)",
        [ADDR, U256, ADDR, "uint16"],
        [e.tokens[sym].address, amount, user(who), 0],
    )
    return d


async def price(e: Env, sym: str) -> int:
    (p,) = await e.d.call(e.market.oracle, "getAssetPrice(address)", [ADDR], [e.tokens[sym].address], [U256])
    return int(p)


async def test_deployed_configuration(env: Env) -> None:
    m, d = env.market, env.d
    (reserves,) = await d.call(m.lending_pool, "getReservesList()", [], [], ["address[]"])
    assert {r.lower() for r in reserves} == {t.address.lower() for t in env.tokens.values()}
    (manager,) = await d.call(
        m.lending_pool_addresses_provider, "getLendingPoolCollateralManager()", [], [], [ADDR]
    )
    assert manager.lower() == m.collateral_manager.lower()
    (registered,) = await d.call(
        m.lending_pool_addresses_provider,
        "getAddress(bytes32)",
        ["bytes32"],
        [b"\x01" + b"\x00" * 31],
        [ADDR],
    )
    assert registered.lower() == m.data_provider.lower()
    (premium,) = await d.call(m.lending_pool, "FLASHLOAN_PREMIUM_TOTAL()", [], [], [U256])
    assert premium == 9
    assert await price(env, "WETH") == WAD
    assert await price(env, "USDC") == eth_price("USDC") == 5 * 10**14
    for sym, p in V2_RESERVES.items():
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
            p.liquidation_threshold > 0,
            p.borrowing_enabled,
            p.stable_borrowing_enabled,
            True,
            False,
        )
        (rate,) = await d.call(
            m.lending_rate_oracle, "getMarketBorrowRate(address)", [ADDR], [r.asset], [U256]
        )
        assert rate == p.market_borrow_rate
        (a_sym,) = await d.call(r.a_token, "symbol()", [], [], ["string"])
        (treasury,) = await d.call(r.a_token, "RESERVE_TREASURY_ADDRESS()", [], [], [ADDR])
        assert a_sym == f"a{sym}"
        assert treasury.lower() == m.treasury.lower()


async def test_json_round_trip(env: Env) -> None:
    data = env.market.to_json()
    assert AaveV2Market.from_json(orjson.loads(orjson.dumps(data))) == env.market
    assert data["reserves"]["WBTC"]["decimals"] == 8
    with pytest.raises(DevnetError):
        AaveV2Market.from_json({**data, "oracle": "0x1234"})


async def open_weth_usdc_position(e: Env, who: int) -> Deployer:
    """10 WETH (LT 82.5%) backing 15,000 USDC at $2000/ETH (7.5 ETH): HF 1.10."""
    d = await deposit(e, who, "WETH", to_wei(10))
    await d.transact(
        e.market.lending_pool,
        "borrow(address,uint256,uint256,uint16,address)",
        [ADDR, U256, U256, "uint16", ADDR],
        [e.tokens["USDC"].address, to_wei(15_000, 6), 2, 0, user(who)],
    )
    acct = await account_data(e.d, e.market.lending_pool, user(who))
    assert acct.total_collateral_base == to_wei(10)
    assert acct.total_debt_base == to_wei("7.5")
    assert acct.current_liquidation_threshold == 8250
    assert acct.health_factor == 11 * 10**17
    return d


async def liquidate_and_check(
    e: Env, borrower: str, *, usdc_eth: int, debt_to_cover: int
) -> tuple[int, int, int]:
    """ETH falls: USDC/ETH goes to `usdc_eth`; liquidationCall from account 3 repays USDC for WETH.
    Returns (health factor before, the user's debt before (interest included), the debt repaid)."""
    m = e.market
    await set_feed_answer(e.rpc, e.feeds["USDC"], usdc_eth)
    assert await price(e, "USDC") == usdc_eth
    c_res, d_res = m.reserves["WETH"], m.reserves["USDC"]
    liquidator = user(3)
    budget = 2 * await balance_of(e.d, d_res.variable_debt_token, borrower)
    ld = await fund_and_approve(e.rpc, d_res.asset, liquidator, m.lending_pool, budget)
    treasury_before = await balance_of(e.d, c_res.a_token, m.treasury)
    await freeze_time(e.rpc)  # no transaction until the liquidation, which gets this same timestamp
    acct = await account_data(e.d, m.lending_pool, borrower)
    assert acct.health_factor < WAD
    user_debt = await balance_of(e.d, d_res.variable_debt_token, borrower)
    scaled_debt, borrow_index = await scaled_debt_and_index(e.d, m.lending_pool, d_res, borrower)
    user_coll = await balance_of(e.d, c_res.a_token, borrower)
    expected = v2_liquidation(
        user_total_debt=user_debt,
        debt_to_cover=debt_to_cover,
        user_collateral=user_coll,
        debt_price=usdc_eth,
        collateral_price=WAD,
        debt_decimals=6,
        collateral_decimals=18,
        bonus=V2_RESERVES["WETH"].liquidation_bonus,
    )
    receipt = await ld.transact(
        m.lending_pool,
        "liquidationCall(address,address,address,uint256,bool)",
        [ADDR, ADDR, ADDR, U256, "bool"],
        [c_res.asset, d_res.asset, borrower, debt_to_cover, False],
    )
    print(f"  V2 liquidationCall gas {int(receipt['gasUsed'], 16)}")
    ev = liquidation_event(receipt)
    assert ev.debt_to_cover == expected.debt_repaid
    assert ev.liquidated_collateral_amount == expected.collateral_to_liquidator
    assert await balance_of(e.d, c_res.asset, liquidator) == expected.collateral_to_liquidator
    assert budget - await balance_of(e.d, d_res.asset, liquidator) == expected.debt_repaid
    # Debt tokens burn in scaled units: the new balance is (scaled - repaid / index) * index, in ray math.
    debt_after = ray_mul(scaled_debt - ray_div(expected.debt_repaid, borrow_index), borrow_index)
    assert await balance_of(e.d, d_res.variable_debt_token, borrower) == debt_after
    assert abs(debt_after - (user_debt - expected.debt_repaid)) <= 1
    assert await balance_of(e.d, c_res.a_token, m.treasury) == treasury_before  # no protocol fee in V2
    return acct.health_factor, user_debt, expected.debt_repaid


async def test_liquidation_close_factor_50(env: Env) -> None:
    await open_weth_usdc_position(env, 1)
    await advance_time(env.rpc, 30 * 86400)  # a month of interest: indexes are no longer 1 ray
    # ETH $2000 -> $1800: USDC/ETH 1/1800 ETH; HF ~0.99.
    hf, debt, repaid = await liquidate_and_check(env, user(1), usdc_eth=WAD // 1800, debt_to_cover=MAX_UINT)
    assert 95 * 10**16 < hf < WAD
    assert debt > to_wei(15_000, 6)
    assert repaid == percent_mul(debt, 5000)


async def test_liquidation_deep_still_50_percent(env: Env) -> None:
    await open_weth_usdc_position(env, 1)
    # ETH to $1400: HF ~0.77, yet V2 still caps the repayment at half the debt.
    hf, debt, repaid = await liquidate_and_check(env, user(1), usdc_eth=WAD // 1400, debt_to_cover=MAX_UINT)
    assert hf < 80 * 10**16
    assert repaid == percent_mul(debt, 5000)


async def test_liquidation_capped_by_collateral(env: Env) -> None:
    await open_weth_usdc_position(env, 1)
    # 20,000 DAI more collateral (a first deposit is enabled as collateral), 15,000 USDC more debt:
    # HF 1.08 at $2000. At ETH $800 the 10 WETH ($8,000) are worth less than half the debt ($15,000)
    # plus the bonus: all the WETH is seized and less than half the debt is repaid.
    d = await deposit(env, 1, "DAI", to_wei(20_000))
    await d.transact(
        env.market.lending_pool,
        "borrow(address,uint256,uint256,uint16,address)",
        [ADDR, U256, U256, "uint16", ADDR],
        [env.tokens["USDC"].address, to_wei(15_000, 6), 2, 0, user(1)],
    )
    dai_eth = WAD // 800  # DAI tracks USD: ETH at $800
    await set_feed_answer(env.rpc, env.feeds["DAI"], dai_eth)
    _, debt, repaid = await liquidate_and_check(env, user(1), usdc_eth=WAD // 800, debt_to_cover=MAX_UINT)
    assert repaid < percent_mul(debt, 5000)
    assert await balance_of(env.d, env.market.reserves["WETH"].a_token, user(1)) == 0
