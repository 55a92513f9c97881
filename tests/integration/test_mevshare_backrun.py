"""Backruns of private price updates seen only as MEV-Share hints (the Chainlink SVR path).

The price update goes to the devnet relay privately, with hints (calldata, contract address, selector,
hash); the keeper (built through the run path) reads the relay's hint stream with its collector,
recognises the update, and sends `mev_sendBundle` [{hash}, our liquidations]. The relay auctions the
backrun: the highest refund-adjusted bid wins; a loser is not included and pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keeper.chain.mevshare import MevShareHint
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import Eip1559Tx, TxSigner
from keeper.collectors.mevshare import MevShareCollector
from keeper.core.actions import HintedTx, SubmitBundle
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import PrivateOracleSender, current_usd_prices
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.devnet.tokens import latest_block_timestamp, next_epoch_round, price_update_tx
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.executor_contract import LIQUIDATED_TOPIC
from keeper.executors.relay_types import MevBundle, MevHash, MevTx
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import KEEPER_ACCOUNTS, bundle_executor, devnet_keeper, step

pytestmark = pytest.mark.integration

RIVAL_ADDR, RIVAL_KEY = DEV_ACCOUNTS[3]
SINK = "0x" + "5e" * 20


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def _hinted_update(net: Devnet, dep: DevnetDeployment, eth_usd: int) -> MevShareHint:
    """Sends a private WETH/USD update with hints and returns the hint the keeper's collector reads."""
    [hint] = await _hinted_updates(net, dep, [eth_usd])
    return hint


async def _hinted_updates(net: Devnet, dep: DevnetDeployment, prices: list[int]) -> list[MevShareHint]:
    """Sends private WETH/USD updates from the transmitter, one after the other (consecutive nonces and
    rounds, as `crash --private` does within a step), and returns their hints in order."""
    rpc, _ = net.require()
    assert net.relay is not None and net.relay_url is not None
    collector = MevShareCollector(net.relay.stream_url, name="test-hints")
    hints: asyncio.Queue[MevShareHint] = asyncio.Queue()

    async def pump() -> None:
        async for hint in collector.events():
            await hints.put(hint)

    task = asyncio.create_task(pump())
    sender = PrivateOracleSender(rpc, net.relay_url, dep.feeds.transmitter)
    try:
        while collector.connects < 1 or net.relay.mevshare.subscribers < 1:
            await asyncio.sleep(0.01)
        await sender.start_step()
        feed = dep.feeds.usd["WETH"]
        first_round = await next_epoch_round(rpc, feed)
        sent = []
        for i, price in enumerate(prices):
            tx = price_update_tx(
                feed,
                price,
                transmitter=dep.feeds.transmitter,
                epoch_round=first_round + i,
                observations_timestamp=await latest_block_timestamp(rpc),
            )
            sent.append(await sender.send(tx))
        out = []
        async with asyncio.timeout(30):
            for _ in prices:
                out.append(await hints.get())
    finally:
        await sender.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [h.hash_hex for h in out] == sent
    return out


async def _backrun(keeper: LiquidationKeeper, hint: MevShareHint) -> list[SubmitBundle]:
    actions = [a for a in await keeper.strategy.process_event(hint) if isinstance(a, SubmitBundle)]
    if actions:
        await bundle_executor(keeper).execute_group(actions)
    return actions


async def _our_eth(rpc: RpcClient) -> int:
    return sum([await rpc.get_balance(a) for a, _ in KEEPER_ACCOUNTS])


async def test_a_hinted_price_update_is_backrun_by_hash_right_after_it(fresh: Devnet, tmp_path: Path) -> None:
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=41, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        assert executor.mevshare_builders == ("devnet",)
        before = await step(net, keeper)
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        hint = await _hinted_update(net, dep, eth * 80 // 100)
        actions = await _backrun(keeper, hint)
        assert len(actions) >= 2, keeper.strategy.backrun_stats
        assert all(isinstance(a.txs[0], HintedTx) for a in actions)
        block = await step(net, keeper)
        stats = executor.stats
    assert block.number == before.number + 1
    header = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
    txs = [str(h).lower() for h in header["transactions"]]
    assert txs[0] == hint.hash_hex  # the hinted update, then our liquidations right after it
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
    assert {str(entry["transactionHash"]).lower() for entry in logs} == set(
        txs[1 : 1 + stats.transactions_sent]
    )
    assert stats.included == len(actions) == len(logs)
    assert net.relay is not None
    auction = net.relay.mevshare.auctions[block.number][-1]  # (a reverted snapshot reuses numbers)
    assert auction.winner is not None


async def _rival_backrun(net: Devnet, hint: MevShareHint, bid_wei: int) -> str:
    """A competing backrun by hash whose transaction pays the builder `bid_wei` (21,000 gas x its tip)."""
    rpc, dep = net.require()
    assert net.relay_url is not None
    tip = bid_wei // 21_000
    await rpc.call("anvil_setBalance", [RIVAL_ADDR, hex(10**24)])
    nonce = int(await rpc.call("eth_getTransactionCount", [RIVAL_ADDR, "latest"]), 16)
    signed = TxSigner.from_key(RIVAL_KEY).sign(
        Eip1559Tx(
            chain_id=dep.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=tip + 10**9,
            gas=21_000,
            to=SINK,
            value=1,
            data=b"",
        )
    )
    head = await rpc.block_number()
    async with MultiBuilderClient([net.relay_url], "0x" + "cd" * 32) as rival:
        client = rival.clients[0]
        await client.send_mev_bundle(
            MevBundle(block=head + 1, body=(MevHash(hint.hash_hex), MevTx(signed.raw)))
        )
    return signed.hash_hex


@pytest.mark.parametrize("rival_bids_more", [False, True])
async def test_against_a_competing_backrunner_the_higher_bid_wins_and_a_loser_spends_nothing(
    fresh: Devnet, tmp_path: Path, rival_bids_more: bool
) -> None:
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=41, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        await step(net, keeper)
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        hint = await _hinted_update(net, dep, eth * 80 // 100)
        actions = await _backrun(keeper, hint)
        assert actions
        # What we bid: the builder's share our liquidations pay (each action's expected gross in wei
        # times the share); the rival bids far above or far below it.
        ours = sum(a.expected_profit_wei for a in actions) * keeper.actions.config.builder_share_bps // 10_000
        rival_bid = ours * 10 if rival_bids_more else ours // 1_000
        rival_tx = await _rival_backrun(net, hint, rival_bid)
        eth_before = await _our_eth(rpc)
        block = await step(net, keeper)
        stats = executor.stats
    header = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
    txs = [str(h).lower() for h in header["transactions"]]
    assert txs[0] == hint.hash_hex
    assert net.relay is not None
    auction = net.relay.mevshare.auctions[block.number][-1]  # (a reverted snapshot reuses numbers)
    assert len(auction.bids) == 2
    if rival_bids_more:
        assert txs[1] == rival_tx.lower()
        assert stats.included == 0
        assert await _our_eth(rpc) == eth_before  # we lost and spent nothing
    else:
        assert rival_tx.lower() not in txs
        assert stats.included == len(actions)


async def test_several_hinted_updates_of_one_transmitter_are_each_backrun_in_nonce_order(
    fresh: Devnet, tmp_path: Path
) -> None:
    """`crash --private` sends a step's updates from one transmitter with consecutive nonces: each one's
    backrun lands right after it, [update n, our liquidations, update n+1, our liquidations]."""
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=41, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        await step(net, keeper)
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        # 2 positions liquidatable at -4%, 12 at -6%: both backruns fit in the block's gas budget.
        first, second = await _hinted_updates(net, dep, [eth * 96 // 100, eth * 94 // 100])
        actions_first = await _backrun(keeper, first)
        actions_second = await _backrun(keeper, second)
        assert actions_first, keeper.strategy.backrun_stats
        assert actions_second, keeper.strategy.backrun_stats
        block = await step(net, keeper)
        stats = executor.stats
    header = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
    txs = [str(h).lower() for h in header["transactions"]]
    assert first.hash_hex in txs
    assert second.hash_hex in txs
    at_first, at_second = txs.index(first.hash_hex), txs.index(second.hash_hex)
    assert at_first == 0
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
    # Our transactions of the first backrun sit between the two updates, those of the second after it.
    assert ours & set(txs[at_first + 1 : at_second])
    assert net.relay is not None
    built = net.relay.builder.blocks[block.number]
    auctions = net.relay.mevshare.auctions[block.number]
    assert ours & set(txs[at_second + 1 :]), (txs, built.skipped, auctions)
    assert stats.included == len(actions_first) + len(actions_second) == len(logs)


async def test_a_later_hinted_update_gets_what_is_left_of_the_blocks_gas_budget(
    fresh: Devnet, tmp_path: Path
) -> None:
    """Two deep hinted updates: the first one's backrun fills the block's gas budget, so the second is
    valued within what is left (after the first one's sales) and nothing is built that cannot be packed."""
    net = fresh
    rpc, dep = net.require()
    await create_borrowers(rpc, dep, 400, seed=41, miner=DevnetMiner(net))
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        await step(net, keeper)
        eth = (await current_usd_prices(rpc, dep))["WETH"]
        first, second = await _hinted_updates(net, dep, [eth * 85 // 100, eth * 75 // 100])
        actions_first = await _backrun(keeper, first)
        actions_second = await _backrun(keeper, second)
        block = await step(net, keeper)
        stats = executor.stats
    assert actions_first
    assert stats.not_packed == 0, stats.reasons
    assert stats.included == len(actions_first) + len(actions_second)
    header = await rpc.call("eth_getBlockByNumber", [hex(block.number), False])
    assert str(header["transactions"][0]).lower() == first.hash_hex
