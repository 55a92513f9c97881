"""Backruns of pending price updates: liquidate in the same block as the update, right after it.

The keeper is built through the run path (tests/integration/keeper_harness.py); the real mempool
collector subscribes to the devnet's websocket with the strategy's oracle filter, and its events go to
the strategy and then to the bundle executor, as the engine does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.collectors.mempool import PendingTxCollector
from keeper.core.actions import SubmitBundle
from keeper.core.events import PendingTx
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import current_usd_prices
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.devnet.tokens import send_price_update
from keeper.executors.bundle_executor import ledger_opportunity
from keeper.executors.executor_contract import LIQUIDATED_TOPIC, decode_liquidated
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import KEEPER_ACCOUNTS, bundle_executor, devnet_keeper, step

pytestmark = pytest.mark.integration

WAD = 10**18


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def _health_factor(rpc: RpcClient, pool: str, user: str, block: str) -> int:
    raw = await rpc.call(
        "eth_call",
        [
            {
                "to": pool,
                "data": "0x" + encode_call("getUserAccountData(address)", ["address"], [user]).hex(),
            },
            block,
        ],
    )
    return int(decode(["uint256"] * 6, bytes.fromhex(raw[2:]))[5])


async def _pending_update(
    net: Devnet,
    keeper: LiquidationKeeper,
    dep: DevnetDeployment,
    eth_usd: int,
    before_execute: Callable[[list[SubmitBundle]], Awaitable[None]] | None = None,
) -> tuple[str, PendingTx, list[SubmitBundle]]:
    """Sends a WETH/USD price update (pending), waits for the mempool collector to see it, and runs it
    through the strategy and the executor (`before_execute` first, given the actions). Returns (tx hash,
    the pending tx, the backrun actions)."""
    rpc, _ = net.require()
    collector = PendingTxCollector(net.ws_url, name="test-oracle", filter=keeper.strategy.oracle_watch.wants)
    seen: asyncio.Queue[PendingTx] = asyncio.Queue()

    async def pump() -> None:
        async for tx in collector.events():
            await seen.put(tx)

    task = asyncio.create_task(pump())
    try:
        await asyncio.sleep(0.3)  # subscribed
        feed = dep.feeds.usd["WETH"]
        tx_hash = await send_price_update(rpc, feed, eth_usd, transmitter=dep.feeds.transmitter)
        async with asyncio.timeout(30):
            pending = await seen.get()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "0x" + pending.hash.hex() == tx_hash
    assert pending.raw is not None  # rebuilt from the node's fields and checked against the hash
    actions = [a for a in await keeper.strategy.process_event(pending) if isinstance(a, SubmitBundle)]
    if before_execute is not None:
        await before_execute(actions)
    if actions:
        await bundle_executor(keeper).execute_group(actions)
    return tx_hash, pending, actions


async def test_a_pending_price_update_is_backrun_in_its_own_block(fresh: Devnet, tmp_path: Path) -> None:
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=31, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        before = await step(net, keeper)  # the keeper has seen a block: it knows what is liquidatable now
        assert keeper.strategy.oracle_watch.addresses()
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        tx_hash, _pending, actions = await _pending_update(net, keeper, dep, eth * 80 // 100)
        assert len(actions) >= 2, keeper.strategy.backrun_stats
        assert all(a.target_block == before.number + 1 for a in actions)
        block = await step(net, keeper)
        stats = executor.stats
    # The update and our liquidations landed in the same block, ours right after it.
    assert block.number == before.number + 1
    header = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
    txs = [str(h).lower() for h in header["transactions"]]
    assert txs[0] == tx_hash.lower()
    logs = await rpc.call(
        "eth_getLogs",
        [
            {
                "address": dep.executor,
                "topics": [LIQUIDATED_TOPIC],
                "fromBlock": hex(block.number),
                "toBlock": hex(block.number),
            }
        ],
    )
    ours = {str(entry["transactionHash"]).lower() for entry in logs}
    assert ours == set(txs[1 : 1 + stats.transactions_sent])  # right after the update
    # Every backrun the keeper valued as profitable was included...
    assert stats.included == len(actions) == len(logs)
    # ...and each was made liquidatable by the update: healthy at the block before it.
    for entry in logs:
        event = decode_liquidated(entry)
        assert await _health_factor(rpc, event.lending_pool, event.user, hex(before.number)) >= WAD


async def test_an_update_that_never_lands_leads_to_nothing_spent(fresh: Devnet, tmp_path: Path) -> None:
    """The transmitter replaces its pending update (same nonce, a no-op that pays more) and the no-op is
    mined: a backrun of the update can never land. The keeper, hearing of the update late, simulates
    [update, ours], which the relay refuses: nothing is sent, no gas is spent."""
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=31, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        await step(net, keeper)
        eth_before = sum([await rpc.get_balance(a) for a, _ in KEEPER_ACCOUNTS])
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        collector = PendingTxCollector(net.ws_url, name="late", filter=keeper.strategy.oracle_watch.wants)
        events = collector.events()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)  # subscribed
        tx_hash = await send_price_update(
            rpc, dep.feeds.usd["WETH"], eth * 80 // 100, transmitter=dep.feeds.transmitter
        )
        async with asyncio.timeout(30):
            pending = await first
        await events.aclose()
        original = await rpc.call("eth_getTransactionByHash", [tx_hash])
        await rpc.call(
            "eth_sendTransaction",
            [
                {
                    "from": dep.feeds.transmitter,
                    "to": dep.feeds.transmitter,
                    "nonce": original["nonce"],
                    "gas": hex(21_000),
                    "maxFeePerGas": hex(int(original["maxFeePerGas"], 16) * 3 + 2 * 10**9),
                    "maxPriorityFeePerGas": hex(int(original["maxPriorityFeePerGas"], 16) * 3 + 10**9),
                }
            ],
        )
        block = await step(net, keeper)  # the no-op is mined; the update is gone for good
        assert await rpc.call("eth_getTransactionReceipt", [tx_hash]) is None
        actions = [a for a in await keeper.strategy.process_event(pending) if isinstance(a, SubmitBundle)]
        assert actions  # the update would make positions liquidatable...
        assert all(a.target_block == block.number + 1 for a in actions)
        await executor.execute_group(actions)
        stats = executor.stats
        await step(net, keeper)
    # ...but the bundle carrying it is refused at simulation: nothing sent, nothing spent.
    assert stats.sent == 0
    assert stats.simulation_failed == len(actions)
    assert any(reason.startswith("simulation failed: bundle refused") for reason in stats.reasons)
    assert sum([await rpc.get_balance(a) for a, _ in KEEPER_ACCOUNTS]) == eth_before


async def test_a_backrun_claimed_before_by_another_run_is_not_sent(fresh: Devnet, tmp_path: Path) -> None:
    """The ledger claims run alongside the simulation, but a claim that fails (the same opportunity and
    block claimed by an earlier run, e.g. before a restart) still stops the send: at most once."""
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=31, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        before = await step(net, keeper)
        eth = (await current_usd_prices(rpc, dep))["WETH"]

        async def claimed_elsewhere(actions: list[SubmitBundle]) -> None:
            assert executor.ledger is not None
            for a in actions:
                await executor.ledger.record_opportunity(ledger_opportunity(a.opportunity_id, a))
                assert await executor.ledger.claim_send(a.opportunity_id, a.target_block)

        _, _, actions = await _pending_update(net, keeper, dep, eth * 80 // 100, claimed_elsewhere)
        stats = executor.stats
    assert actions
    assert executor.simulated_by  # simulated alongside the claims, then not sent
    assert stats.duplicate >= len(actions)
    assert stats.sent == 0
    assert net.relay is not None
    assert net.relay.builder.pending_bundles(before.number + 1) == []
