"""The peg keeper end to end on the devnet: a de-peg -> spreads sized on the exact venue math -> one
`arbitrage` bundle per spread -> included -> the ledger matches the chain, to the wei.

Built through the same wiring as `keeper run` (strategies/peg/wiring.py) and driven block by block as
the engine does (the executor sees each block first, then the strategy, then the executor gets the
strategy's actions as one group)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.collectors.mempool import PendingTxCollector
from keeper.core.actions import SubmitBundle
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs, v3_move_tx
from keeper.devnet.scenarios.common import BulkSender, call_tx
from keeper.devnet.scenarios.crash import current_usd_prices
from keeper.devnet.scenarios.depeg import LST_POOL, STABLE_POOL, run_depeg
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.executor_contract import arbitraged_events
from keeper.ledger.store import LedgerReader
from keeper.runner import RunServices, plan_run
from keeper.strategies_registry import StrategyContext
from strategies.peg.detect import pool_prices, target_of
from strategies.peg.pending import PendingSwaps
from strategies.peg.wiring import PegKeeper, build_keeper
from tests.integration.keeper_harness import devnet_settings, latest_block

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


@asynccontextmanager
async def peg_keeper(net: Devnet, tmp_path: Path, **overrides: Any) -> AsyncIterator[PegKeeper]:
    rpc, dep = net.require()
    settings = devnet_settings(net, tmp_path, strategies=["peg"], **overrides)
    services = RunServices(plan_run(settings), rpc, dep.chain_id)
    try:
        keeper = await build_keeper(StrategyContext(settings=settings, rpc=rpc, services=services))
        await keeper.strategy.sync_state()
        yield keeper
    finally:
        await services.aclose()


def executor_of(keeper: PegKeeper) -> BundleExecutor:
    assert isinstance(keeper.executor, BundleExecutor)
    return keeper.executor


async def step(net: Devnet, keeper: PegKeeper, log: list[SubmitBundle]) -> None:
    await net.mine()
    block = await latest_block(net)
    executor = executor_of(keeper)
    await executor.on_block(block)
    actions = [a for a in await keeper.strategy.process_event(block) if isinstance(a, SubmitBundle)]
    if actions:
        await executor.execute_group(actions)
    log.extend(actions)


async def supply_aave_liquidity(
    net: Devnet, symbols: tuple[str, ...] = ("WETH", "USDC", "USDT", "DAI")
) -> None:
    """A lender supplies each token to the Aave V3 Pool, as mainnet's depositors do: what the Pool can
    flash-lend (a fresh devnet's reserves hold nothing until someone supplies)."""
    rpc, dep = net.require()
    lender = WHALE
    pool = dep.aave_v3.pool
    sender = BulkSender(rpc, miner=DevnetMiner(net))
    txs = []
    for symbol in symbols:
        tok = dep.tokens[symbol]
        amount = 10 ** (tok.decimals + 7)  # 10M tokens
        txs += [
            call_tx(
                lender,
                tok.address,
                "mint(address,uint256)",
                ["address", "uint256"],
                [lender, amount],
                200_000,
            ),
            call_tx(
                lender,
                tok.address,
                "approve(address,uint256)",
                ["address", "uint256"],
                [pool, amount],
                100_000,
            ),
            call_tx(
                lender,
                pool,
                "supply(address,uint256,address,uint16)",
                ["address", "uint256", "address", "uint16"],
                [tok.address, amount, lender, 0],
                500_000,
            ),
        ]
    await sender.impersonate_all(True)
    try:
        await sender.run(txs)
    finally:
        await sender.impersonate_all(False)


async def _balances(rpc: RpcClient, dep: DevnetDeployment, owner: str) -> dict[str, int]:
    out = {}
    for token in dep.tokens.values():
        raw = await rpc.eth_call(token.address, encode_call("balanceOf(address)", ["address"], [owner]))
        out[token.address] = int(decode(["uint256"], raw)[0])
    return out


def _deviations(keeper: PegKeeper) -> dict[str, float]:
    """Pool address -> |deviation from its peg's target| in bps, at the strategy's last read."""
    s = keeper.strategy
    out: dict[str, float] = {}
    for peg in s.pegs:
        target = target_of(peg, s.targets)
        if target is None:
            continue
        for p in pool_prices(peg, target, s.venues):
            out[p.pool.lower()] = max(out.get(p.pool.lower(), 0.0), abs(p.deviation_bps))
    return out


async def test_depeg_is_arbitraged_back_and_the_ledger_matches_the_chain(
    fresh: Devnet, tmp_path: Path
) -> None:
    net = fresh
    rpc, dep = net.require()
    owner = dep.accounts["keeper"]
    sent: list[SubmitBundle] = []
    await supply_aave_liquidity(net)
    async with peg_keeper(net, tmp_path, builder_share_bps=5_000, peg_backruns=False) as keeper:
        executor = executor_of(keeper)
        before = await _balances(rpc, dep, owner)
        await run_depeg(rpc, dep, lst_discount_bps=300, stable_discount_bps=150, miner=DevnetMiner(net))
        await keeper.strategy.refresh(await rpc.block_number())
        lst_pool = dep.uniswap_v3.pools[LST_POOL].lower()
        stable_pool = dep.uniswap_v3.pools[STABLE_POOL].lower()
        depegged = _deviations(keeper)
        assert depegged[lst_pool] > 200 and depegged[stable_pool] > 100, depegged
        quiet = 0
        for _ in range(12):  # until two blocks in a row send nothing
            count = len(sent)
            await step(net, keeper, sent)
            quiet = quiet + 1 if len(sent) == count and not executor.pending else 0
            if quiet == 2:
                break
        stats = executor.stats
        after_dev = _deviations(keeper)
    assert sent, f"nothing sent: {keeper.actions.skipped}"
    assert stats.included >= 2, (stats, keeper.actions.skipped)
    assert quiet == 2, "the keeper kept finding spreads"
    assert stats.simulation_failed == 0 and stats.failed_in_batch == 0, stats.reasons
    # The spreads were closed: the de-pegged pools traded back toward the target until no round trip
    # between any two pools pays its fees and gas. With the devnet's deep stable pools as anchors, that
    # leaves them within a few bps of the target (the round trip's fees: 1 bp per pool and Aave's 5 bp
    # flash premium when the route swaps on Balancer, whose Vault then cannot lend).
    print(
        f"\nde-pegged {depegged[lst_pool]:.1f} / {depegged[stable_pool]:.1f} bps, after "
        f"{after_dev[lst_pool]:.1f} / {after_dev[stable_pool]:.1f} bps; included {stats.included}"
    )
    assert after_dev[lst_pool] <= 15
    assert after_dev[stable_pool] <= 10
    # Each included arbitrage did exactly what was predicted, to the wei: its route's output and the
    # profit paid to the owner (after the builder's share) in the borrowed token.
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    try:
        data = reader.report_data()
    finally:
        reader.close()
    assert {o.strategy for o in data.opportunities} <= {"peg", "peg-backrun"}
    by_tag = {a.meta["tag"]: a for a in sent}
    realized: dict[str, int] = {}
    checked = 0
    for inc in data.inclusions:
        assert inc.success
        realized[inc.realized_profit_asset] = realized.get(inc.realized_profit_asset, 0) + inc.realized_profit
    for tx_hash in {inc.tx_hash for inc in data.inclusions}:
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        for event in arbitraged_events(receipt):
            action = by_tag[event.tag_hex]
            assert event.amount_in == action.meta["amount_in"]
            assert event.amount_out == action.meta["amount_out"]
            assert event.gross_profit == action.meta["gross_profit"]
            checked += 1
    assert checked == len(data.inclusions)
    after = await _balances(rpc, dep, owner)
    for token, amount in before.items():
        assert after[token] - amount == realized.get(token, 0), token
    assert any(v > 0 for v in realized.values())


async def test_a_peg_whose_rate_source_reverts_is_named_at_start(fresh: Devnet, tmp_path: Path) -> None:
    from keeper.errors import ConfigError

    net = fresh
    usdc = net.require()[1].tokens["USDC"].address
    bad = {
        "name": "bad",
        "token_a": "USDC",
        "token_b": "WETH",
        "target": {"rate": usdc, "method": "getRate()", "scale": "1e18"},  # USDC has no getRate()
    }
    with pytest.raises(ConfigError) as info:
        async with peg_keeper(net, tmp_path, peg=[bad]):
            pass
    assert any("'bad'" in p for p in info.value.problems), info.value.problems


async def test_a_pending_depeg_swap_is_backrun_in_its_own_block(fresh: Devnet, tmp_path: Path) -> None:
    """A whale's pending swap that pushes the LST pool off its peg: the keeper decodes it, applies it to
    its venues, and sends [their swap, our arbitrage] for the next block; both land there, in order."""
    net = fresh
    rpc, dep = net.require()
    await supply_aave_liquidity(net)
    sender = BulkSender(rpc, miner=DevnetMiner(net))
    await sender.impersonate_all(True)
    try:
        await sender.run(fund_trader_txs(dep, WHALE, {"wstETH", "WETH"}))
    finally:
        await sender.impersonate_all(False)
    sent: list[SubmitBundle] = []
    async with peg_keeper(net, tmp_path, builder_share_bps=5_000) as keeper:
        executor = executor_of(keeper)
        pending_swaps = keeper.strategy.pending
        assert isinstance(pending_swaps, PendingSwaps)
        await step(net, keeper, sent)  # the keeper has seen a block
        assert not sent  # the pegs hold
        usd = await current_usd_prices(rpc, dep)
        usd["wstETH"] = usd["wstETH"] * 9_700 // 10_000
        swap = await v3_move_tx(rpc, dep, LST_POOL, usd, WHALE)
        assert swap is not None
        collector = PendingTxCollector(net.ws_url, name="test-swaps", filter=pending_swaps.filter)
        events = collector.events()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)  # subscribed
        tx_hash = await rpc.call("eth_sendTransaction", [swap.to_rpc()])
        async with asyncio.timeout(30):
            pending = await first
        await events.aclose()
        assert "0x" + pending.hash.hex() == tx_hash and pending.raw is not None
        head = await latest_block(net)
        actions = [a for a in await keeper.strategy.process_event(pending) if isinstance(a, SubmitBundle)]
        assert actions, keeper.actions.skipped
        assert all(a.strategy == "peg-backrun" and a.target_block == head.number + 1 for a in actions)
        await executor.execute_group(actions)
        await step(net, keeper, sent)
        stats = executor.stats
    block = await rpc.call("eth_getBlockByNumber", [hex(head.number + 1), False])
    txs = [str(h).lower() for h in block["transactions"]]
    assert txs[0] == tx_hash.lower()  # their swap first...
    receipt = await rpc.call("eth_getTransactionReceipt", [txs[1]])
    events_ = arbitraged_events(receipt)  # ...our arbitrage right after it
    assert {e.tag_hex for e in events_} == {a.meta["tag"] for a in actions}
    for event in events_:
        action = next(a for a in actions if a.meta["tag"] == event.tag_hex)
        assert event.amount_out == action.meta["amount_out"]  # valued on the state their swap leaves
    assert stats.included == len(actions)


async def test_liquidations_and_pegs_share_one_executor(fresh: Devnet, tmp_path: Path) -> None:
    """KEEPER_STRATEGIES=liquidations,peg: both strategies send through one executor (one nonce tracker
    per key, one packing of the block's calls), and each brings its own mempool filter."""
    from keeper.strategies_registry import build_components

    net = fresh
    rpc, dep = net.require()
    settings = devnet_settings(net, tmp_path, strategies=["liquidations", "peg"])
    services = RunServices(plan_run(settings), rpc, dep.chain_id)
    try:
        components = await build_components(
            settings.strategies, StrategyContext(settings=settings, rpc=rpc, services=services)
        )
    finally:
        await services.aclose()
    assert [s.name for s in components.strategies] == ["liquidations", "peg"]
    assert len(components.executors) == 1 and isinstance(components.executors[0], BundleExecutor)
    assert {c.name for c in components.collectors} >= {"oracle-updates", "peg-swaps"}
