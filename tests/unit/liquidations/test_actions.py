"""The action builder: what is sent, what is skipped, and the on-chain minimum written in the calldata."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from keeper.core.actions import SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.executors.executor_contract import V2Route, decode_liquidate
from strategies.liquidations.actions import ExecutionConfig, LiquidationActions
from strategies.liquidations.opportunity import Opportunity

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
EXECUTOR = "0x" + "ee" * 20
GWEI = 10**9


@dataclass
class FakeRoute:
    executor_route: Any


def opportunity(gross_usdc: int) -> Opportunity:
    base = Opportunity(
        id="aave-v3:user:weth:usdc",
        protocol="aave-v3",
        pool="0x" + "aa" * 20,
        user="0x" + "99" * 20,
        collateral_asset=WETH,
        debt_asset=USDC,
        debt_to_cover=10_000 * 10**6,
        collateral_out=5_500 * 10**15,
        protocol_fee=0,
        liquidation_bonus=10_500,
        close_factor=5_000,
        health_factor=98 * 10**16,
        collateral_value_base=0,
        debt_value_base=0,
        bonus_value_base=0,
        block_number=100,
        timestamp=1_700_000_000,
        debt_price=100_000_000,  # $1.00 (8 decimals)
        debt_unit=10**6,
    )
    return base.valued(
        swap_out=base.debt_to_cover + gross_usdc, route=FakeRoute(V2Route((WETH, USDC))), flash_premium=0
    )


def strategy(eth_usd: int = 2_000 * 10**8) -> Any:
    market = SimpleNamespace(reserves={WETH: SimpleNamespace(price=eth_usd)})
    return SimpleNamespace(name="liquidations", protocol=lambda _name: SimpleNamespace(market=market))


def block(base_fee: int) -> NewBlock:
    return NewBlock(
        number=100,
        hash=b"\x01" * 32,
        parent_hash=b"",
        timestamp=1,
        base_fee_per_gas=base_fee,
        gas_limit=30_000_000,
        gas_used=15_000_000,
    )


async def test_profitable_opportunity_becomes_a_bundle_with_the_minimum_on_chain() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=0, min_profit_wei=10**15)
    actions = await LiquidationActions(strategy(), [], cfg)([opportunity(500 * 10**6)], block(10 * GWEI))
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, SubmitBundle)
    assert action.target_block == 101
    assert action.expected_profit_wei == 500 * 10**6 * 10**8 * 10**18 // (10**6 * 2_000 * 10**8)  # 0.25 ETH
    intent = action.txs[0]
    assert isinstance(intent, TxIntent)
    assert intent.to == EXECUTOR
    params = decode_liquidate(intent.data)
    assert params.max_block == 101
    # minProfit (USDC units) covers the configured minimum plus the estimated gas at the next base fee,
    # rounded up: (1e15 + 1.1M gas * 10 gwei) wei at $2000/ETH = $24 -> 24_000_000 USDC units.
    assert params.min_profit == 24_000_000
    assert params.debt_to_cover == 10_000 * 10**6


async def test_base_fee_times_twenty_skips_what_gas_would_eat() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=0, min_profit_wei=0)
    builder = LiquidationActions(strategy(), [], cfg)
    opp = opportunity(30 * 10**6)  # $30 = 0.015 ETH gross
    assert len(await builder([opp], block(10 * GWEI))) == 1  # gas ~0.011 ETH: still worth it
    assert await builder([opp], block(200 * GWEI)) == []  # x20: gas ~0.22 ETH
    assert builder.skipped[opp.id].startswith("below minimum")


async def test_unprofitable_or_unrouted_opportunities_are_never_sent() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=0)
    builder = LiquidationActions(strategy(), [], cfg)
    losing = opportunity(-5 * 10**6)
    unrouted = replace(opportunity(500 * 10**6), route=None, id="other")
    assert await builder([losing, unrouted], block(GWEI)) == []
    assert builder.skipped[losing.id].startswith("unprofitable before gas")
    assert builder.skipped["other"] == "no route to sell the collateral"


async def test_builder_share_lowers_what_the_owner_keeps() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=9_900, min_profit_wei=0)
    builder = LiquidationActions(strategy(), [], cfg)
    # $30 gross, 99% to the builder -> $0.30 for us, less than ~$22 of gas at 10 gwei: skipped.
    opp = opportunity(30 * 10**6)
    assert await builder([opp], block(10 * GWEI)) == []
    assert builder.skipped[opp.id].startswith("below minimum")
