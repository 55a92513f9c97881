"""Conformance suite every LendingProtocol adapter must pass, on the real devnet.

Parametrized over the adapters; each test builds its own state inside an evm_snapshot and reverts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient, hex_to_bytes
from keeper.devnet.deploy import COMPETITOR, DevnetDeployment
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import BulkSender, Tx, call_tx
from keeper.devnet.scenarios.crash import current_usd_prices, run_crash, send_oracle_updates
from keeper.devnet.scenarios.positions import discover, read_health_factors
from keeper.devnet.stack import Devnet, DevnetMiner
from strategies.liquidations.protocols.aave_common import AaveAdapter
from strategies.liquidations.protocols.aave_v2 import AaveV2
from strategies.liquidations.protocols.aave_v3 import AaveV3
from strategies.liquidations.strategy import LiquidationStrategy

pytestmark = pytest.mark.integration

WAD = 10**18
UINT256_MAX = 2**256 - 1


def _v3(rpc: RpcClient, dep: DevnetDeployment) -> AaveAdapter:
    return AaveV3(rpc, dep.aave_v3.pool, dep.aave_v3.oracle, start_block=dep.aave_v3.start_block)


def _v2(rpc: RpcClient, dep: DevnetDeployment) -> AaveAdapter:
    return AaveV2(rpc, dep.aave_v2.lending_pool, dep.aave_v2.oracle, start_block=dep.aave_v2.start_block)


ADAPTERS: dict[str, Callable[[RpcClient, DevnetDeployment], AaveAdapter]] = {"aave-v3": _v3, "aave-v2": _v2}


@pytest.fixture(scope="module")
async def crashed(devnet: Devnet) -> AsyncIterator[Devnet]:
    """400 borrowers, then ETH -25%: a book with liquidatable positions on both markets."""
    rpc, dep = devnet.require()
    miner = DevnetMiner(devnet)
    snap = await rpc.call("evm_snapshot")
    await create_borrowers(rpc, dep, 400, seed=21, miner=miner)
    await run_crash(rpc, dep, drop_bps=2_500, blocks=4, mine=True, miner=miner)
    yield devnet
    await rpc.call("evm_revert", [snap])


@pytest.fixture(params=sorted(ADAPTERS))
async def adapter(request: pytest.FixtureRequest, crashed: Devnet) -> AaveAdapter:
    rpc, dep = crashed.require()
    protocol = ADAPTERS[request.param](rpc, dep)
    await protocol.initial_sync(await rpc.block_number())
    return protocol


def _competitor_funds(token: str, spender: str) -> list[Tx]:
    """Debt tokens for the competitor account (open mint on the devnet) and an approval for `spender`."""
    return [
        call_tx(
            COMPETITOR, token, "mint(address,uint256)", ["address", "uint256"], [COMPETITOR, 10**40], 200_000
        ),
        call_tx(
            COMPETITOR,
            token,
            "approve(address,uint256)",
            ["address", "uint256"],
            [spender, UINT256_MAX],
            100_000,
        ),
    ]


async def _account_data(rpc: RpcClient, pool: str, user: str) -> tuple[int, ...]:
    raw = await rpc.eth_call(pool, encode_call("getUserAccountData(address)", ["address"], [user]))
    return tuple(int(x) for x in decode(["uint256"] * 6, raw))


async def test_initial_sync_finds_every_borrower(adapter: AaveAdapter, crashed: Devnet) -> None:
    rpc, dep = crashed.require()
    expected = {user for (market, user) in await discover(rpc, dep) if market == adapter.name}
    assert expected
    assert set(adapter.positions) == expected


async def test_account_data_equals_the_protocol_to_the_wei(adapter: AaveAdapter, crashed: Devnet) -> None:
    rpc, _ = crashed.require()
    indexes = adapter.indexes()
    users = sorted(adapter.positions)
    liquidatable = 0
    for user in users:
        ours = adapter.account(user, indexes=indexes).as_tuple()
        theirs = await _account_data(rpc, adapter.pool, user)
        assert ours == theirs, user
        liquidatable += ours[5] < WAD
    assert liquidatable > 0


async def test_predicted_liquidation_equals_execution(adapter: AaveAdapter, crashed: Devnet) -> None:
    rpc, dep = crashed.require()
    assert adapter.market is not None
    users = [u for u in sorted(adapter.positions) if adapter.account(u).health_factor < WAD][:4]
    assert users
    sender = BulkSender(rpc, miner=DevnetMiner(crashed))
    for user in users:
        snap = await rpc.call("evm_snapshot")
        try:
            await sender.impersonate_all(True)
            best = adapter.best_liquidation(user)
            assert best is not None
            debt_token = best.debt_asset
            setup = [
                *_competitor_funds(debt_token, adapter.pool),
            ]
            await sender.run(setup)
            # Predict at the exact timestamp the liquidation block will have.
            head = await rpc.call("eth_getBlockByNumber", ["latest", False])
            ts = int(head["timestamp"], 16) + 1
            await adapter.refresh(int(head["number"], 16), head["hash"])
            market = adapter.market
            assert market is not None
            from dataclasses import replace

            predicted = adapter.best_liquidation(user, replace(market, timestamp=ts))
            assert predicted is not None
            await rpc.call("evm_setNextBlockTimestamp", [ts])
            hashes = await sender.run(
                [
                    call_tx(
                        COMPETITOR,
                        adapter.pool,
                        "liquidationCall(address,address,address,uint256,bool)",
                        ["address", "address", "address", "uint256", "bool"],
                        # The request detection says to pass (the whole collateral when the close
                        # factor allows it), not uint256.max: what we send is what was predicted.
                        [
                            predicted.collateral_asset,
                            predicted.debt_asset,
                            user,
                            predicted.debt_to_cover,
                            False,
                        ],
                        1_500_000,
                    )
                ]
            )
            receipt = await rpc.call("eth_getTransactionReceipt", [hashes[0]])
            topic = "0xe413a321e8681d831f4dbccbca790d2952b56f977908e45be37335533e005286"
            events = [lg for lg in receipt["logs"] if lg["topics"][0] == topic]
            assert len(events) == 1
            debt_covered, collateral_out, _liquidator, _receive = decode(
                ["uint256", "uint256", "address", "bool"], hex_to_bytes(events[0]["data"])
            )
            assert debt_covered == predicted.actual_debt_to_cover
            assert collateral_out == predicted.collateral_to_liquidator
        finally:
            await sender.impersonate_all(False)
            await rpc.call("evm_revert", [snap])


async def test_refresh_follows_the_block_logs(adapter: AaveAdapter, crashed: Devnet) -> None:
    """A repay by a tracked user shows up after the next block's refresh, exactly."""
    rpc, dep = crashed.require()
    snap = await rpc.call("evm_snapshot")
    sender = BulkSender(rpc, miner=DevnetMiner(crashed))
    try:
        user = sorted(adapter.positions)[0]
        position = adapter.positions[user]
        assert adapter.market is not None
        debt_asset = next(
            a for a, b in position.reserves.items() if b.scaled_variable_debt and a in adapter.market.reserves
        )
        repay_sig = "repay(address,uint256,uint256,address)"
        await sender.impersonate_all(True)
        await sender.run(
            [
                *_competitor_funds(debt_asset, adapter.pool),
                call_tx(
                    COMPETITOR,
                    adapter.pool,
                    repay_sig,
                    ["address", "uint256", "uint256", "address"],
                    [debt_asset, position.reserves[debt_asset].scaled_variable_debt // 3, 2, user],
                    800_000,
                ),
            ]
        )
        head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        touched = await adapter.refresh(int(head["number"], 16), head["hash"])
        assert user in touched
        assert adapter.positions[user] != position
        assert adapter.account(user).as_tuple() == await _account_data(rpc, adapter.pool, user)
    finally:
        await sender.impersonate_all(False)
        await rpc.call("evm_revert", [snap])


async def test_bad_logs_are_skipped(adapter: AaveAdapter) -> None:
    garbage: list[dict[str, object]] = [
        {},
        {"address": adapter.pool, "topics": []},
        {"address": adapter.pool, "topics": ["0xnothex"]},
        {"address": adapter.pool, "topics": ["0x" + "ab" * 32, "0x12"]},
        {"address": "0x" + "11" * 20, "topics": ["0x" + "ab" * 32, "0x" + "00" * 12 + "22" * 20]},
        {"address": adapter.pool, "topics": None},
    ]
    assert adapter.touched_users(garbage) == set()  # type: ignore[arg-type]
    assert adapter.stats["bad_logs"] >= 1


async def test_pending_price_update_predicts_the_next_block(crashed: Devnet) -> None:
    """detect(price_overrides=...) on the current state equals detect() after the oracle tx is mined."""
    rpc, dep = crashed.require()
    snap = await rpc.call("evm_snapshot")
    try:
        strategy = LiquidationStrategy([_v3(rpc, dep), _v2(rpc, dep)])
        await strategy.sync_state()
        old = await current_usd_prices(rpc, dep)
        new = dict(old)
        new["WETH"] = old["WETH"] * 95 // 100
        weth = dep.tokens["WETH"].address
        # Aave V2 prices in ETH: every asset/ETH feed's answer changes when ETH moves.
        answers = dep.feeds.answers(new)
        v2_prices = {dep.tokens[symbol].address: answers[feed] for symbol, feed in dep.feeds.eth.items()}
        overrides = {"aave-v3": {weth: new["WETH"]}, "aave-v2": v2_prices}
        predicted = {(o.protocol, o.user) for o in strategy.detect(price_overrides=overrides)}
        await send_oracle_updates(rpc, dep, old, new)
        await crashed.mine()
        head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        from keeper.collectors.blocks import decode_header

        await strategy.on_block(decode_header(head))
        actual = {(o.protocol, o.user) for o in strategy.opportunities}
        assert predicted == actual
        truth = list((await discover(rpc, dep)).values())
        await read_health_factors(rpc, dep, truth)
        assert actual == {
            (b.market, b.user) for b in truth if b.health_factor is not None and b.health_factor < WAD
        }
    finally:
        await rpc.call("evm_revert", [snap])


async def test_reorg_rereads_the_users_the_replaced_block_touched(crashed: Devnet) -> None:
    """A repay lands in block N and the strategy takes it in; a reorg replaces N with an empty block;
    the strategy, told the new N is a reorg, must re-read that user: its state equals the chain's."""
    rpc, dep = crashed.require()
    snap = await rpc.call("evm_snapshot")
    sender = BulkSender(rpc, miner=DevnetMiner(crashed))
    try:
        from keeper.collectors.blocks import decode_header

        strategy = LiquidationStrategy([_v3(rpc, dep)])
        await strategy.sync_state()
        adapter = strategy.protocols[0]
        assert adapter.market is not None
        user = sorted(adapter.positions)[0]
        position = adapter.positions[user]
        debt_asset = next(a for a, b in position.reserves.items() if b.scaled_variable_debt)
        await sender.impersonate_all(True)
        await sender.run(
            [
                *_competitor_funds(debt_asset, adapter.pool),
            ]
        )
        for _ in range(2):  # the strategy follows the chain up to here
            await crashed.mine()
            await strategy.on_block(decode_header(await rpc.call("eth_getBlockByNumber", ["latest", False])))
        await rpc.call(
            "eth_sendTransaction",
            [
                call_tx(
                    COMPETITOR,
                    adapter.pool,
                    "repay(address,uint256,uint256,address)",
                    ["address", "uint256", "uint256", "address"],
                    [debt_asset, position.reserves[debt_asset].scaled_variable_debt // 2, 2, user],
                    800_000,
                ).to_rpc()
            ],
        )
        await crashed.mine()
        repaid_block = decode_header(await rpc.call("eth_getBlockByNumber", ["latest", False]))
        await strategy.on_block(repaid_block)
        assert adapter.positions[user] != position  # the repay was taken in
        await rpc.call("anvil_dropAllTransactions")
        await rpc.call("anvil_reorg", [1, []])  # block N replaced by an empty one: the repay is undone
        replaced = await rpc.call("eth_getBlockByNumber", ["latest", False])
        assert int(replaced["number"], 16) == repaid_block.number
        assert bytes.fromhex(replaced["hash"][2:]) != repaid_block.hash
        from dataclasses import replace as dc_replace

        await strategy.on_block(dc_replace(decode_header(replaced), reorged=True))
        assert adapter.account(user).as_tuple() == await _account_data(rpc, adapter.pool, user)
        assert adapter.positions[user] == position
    finally:
        await sender.impersonate_all(False)
        await rpc.call("evm_revert", [snap])


async def test_refresh_after_skipped_blocks_reads_their_logs(adapter: AaveAdapter, crashed: Devnet) -> None:
    """A repay lands in a block the adapter never sees; the next refresh must still take it in."""
    rpc, dep = crashed.require()
    snap = await rpc.call("evm_snapshot")
    sender = BulkSender(rpc, miner=DevnetMiner(crashed))
    try:
        head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        await adapter.refresh(int(head["number"], 16), head["hash"])
        user = sorted(adapter.positions)[0]
        position = adapter.positions[user]
        debt_asset = next(a for a, b in position.reserves.items() if b.scaled_variable_debt)
        await sender.impersonate_all(True)
        await sender.run(
            [
                *_competitor_funds(debt_asset, adapter.pool),
            ]
        )
        await sender.run(
            [
                call_tx(
                    COMPETITOR,
                    adapter.pool,
                    "repay(address,uint256,uint256,address)",
                    ["address", "uint256", "uint256", "address"],
                    [debt_asset, position.reserves[debt_asset].scaled_variable_debt // 3, 2, user],
                    800_000,
                )
            ]
        )
        await crashed.mine(2)  # two more blocks after the repay's, all unseen by the adapter
        head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        touched = await adapter.refresh(int(head["number"], 16), head["hash"])
        assert user in touched
        assert adapter.account(user).as_tuple() == await _account_data(rpc, adapter.pool, user)
    finally:
        await sender.impersonate_all(False)
        await rpc.call("evm_revert", [snap])
