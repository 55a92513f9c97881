"""Builds the liquidation keeper for a devnet test through the same path as `keeper run` and `keeper demo`
(Settings -> plan_run -> RunServices -> strategies.liquidations.wiring.build_keeper), and drives it block
by block: for each block the executor sees it first (inclusion, headers), then the strategy, then the
executor gets the strategy's actions as one group, exactly what the engine's tasks usually do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from eth_abi.abi import decode
from eth_account import Account

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import decode_header
from keeper.config import Settings
from keeper.core.actions import SubmitBundle
from keeper.core.events import NewBlock
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.stack import Devnet, write_deployments_file
from keeper.executors.bundle_executor import BundleExecutor
from keeper.runner import RunServices, plan_run
from keeper.strategies_registry import StrategyContext
from strategies.liquidations.wiring import LiquidationKeeper, build_keeper

KEEPER_ACCOUNTS = [DEV_ACCOUNTS[2], *DEV_ACCOUNTS[5:10]]
"""The keeper account (owner of the devnet's executor) and the executor's operators."""


def devnet_settings(net: Devnet, tmp_path: Path, **overrides: Any) -> Settings:
    devnet_file = write_deployments_file(net.describe(), tmp_path / "devnet.json")
    values: dict[str, Any] = {
        "rpc_http_url": net.http_url,
        "rpc_ws_url": net.ws_url,
        "private_key": DEV_ACCOUNTS[2][1],
        "flashbots_signer_key": Account.create().key.hex(),
        "strategies": ["liquidations"],
        "devnet": True,
        "devnet_file": devnet_file,
        "ledger_path": tmp_path / "ledger.sqlite",
        "metrics_port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def devnet_keeper(
    net: Devnet,
    tmp_path: Path,
    *,
    event_sink: Callable[[str, dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[LiquidationKeeper]:
    rpc, dep = net.require()
    settings = devnet_settings(net, tmp_path, **overrides)
    plan = replace(plan_run(settings), event_sink=event_sink)
    services = RunServices(plan, rpc, dep.chain_id)
    try:
        keeper = await build_keeper(StrategyContext(settings=settings, rpc=rpc, services=services))
        await keeper.strategy.sync_state()
        yield keeper
    finally:
        await services.aclose()


def bundle_executor(keeper: LiquidationKeeper) -> BundleExecutor:
    assert isinstance(keeper.executor, BundleExecutor)
    return keeper.executor


async def latest_block(net: Devnet) -> NewBlock:
    rpc, _ = net.require()
    return decode_header(await rpc.call("eth_getBlockByNumber", ["latest", False]))


async def on_block(keeper: LiquidationKeeper, block: NewBlock) -> list[SubmitBundle]:
    """The executor sees the block, then the strategy's actions for it go to the executor as a group."""
    await keeper.executor.on_block(block)
    actions = [a for a in await keeper.strategy.process_event(block) if isinstance(a, SubmitBundle)]
    if actions:
        await bundle_executor(keeper).execute_group(actions)
    return actions


async def step(net: Devnet, keeper: LiquidationKeeper, log: list[SubmitBundle] | None = None) -> NewBlock:
    """Mines one block (the relay's builder) and runs the keeper on it."""
    await net.mine()
    block = await latest_block(net)
    actions = await on_block(keeper, block)
    if log is not None:
        log.extend(actions)
    return block


async def collateral_base(rpc: RpcClient, dep: DevnetDeployment, market: str, user: str) -> int:
    """getUserAccountData's totalCollateralBase: 0 for a position whose whole collateral was seized (bad
    debt: liquidatable by the health factor, but nothing is left to liquidate)."""
    pool = dep.aave_v3.pool if market == "aave-v3" else dep.aave_v2.lending_pool
    raw = await rpc.eth_call(pool, encode_call("getUserAccountData(address)", ["address"], [user]))
    return int(decode(["uint256"] * 6, raw)[0])


async def run_until_quiet(
    net: Devnet,
    keeper: LiquidationKeeper,
    *,
    max_blocks: int,
    quiet_blocks: int = 3,
    log: list[SubmitBundle] | None = None,
) -> bool:
    """Steps block by block until `quiet_blocks` pass with nothing sent and nothing pending; False when
    `max_blocks` ran out first."""
    executor = bundle_executor(keeper)
    quiet = 0
    for _ in range(max_blocks):
        sent = executor.stats.sent
        await step(net, keeper, log)
        quiet = quiet + 1 if executor.stats.sent == sent and not executor.pending else 0
        if quiet >= quiet_blocks:
            return True
    return False
