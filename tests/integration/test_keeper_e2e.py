"""The keeper end to end on the devnet: crash -> detection -> bundles -> inclusion -> ledger.

The keeper is built through the same wiring as `keeper run` and driven block by block (the engine's job
in `keeper run` / `keeper demo`), so that every step is deterministic: see tests/integration/keeper_harness.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_abi.abi import decode
from eth_hash.auto import keccak

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.chain.signer import TxSigner
from keeper.core.actions import SubmitBundle
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import move_all_txs
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.competitor import run_competitor
from keeper.devnet.scenarios.crash import current_usd_prices, run_crash
from keeper.devnet.scenarios.positions import discover, read_health_factors
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.executor_contract import encode_approve, subsidized_events
from keeper.ledger import Ledger
from keeper.ledger.store import LedgerReader
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import (
    KEEPER_ACCOUNTS,
    bundle_executor,
    collateral_base,
    devnet_keeper,
    latest_block,
    run_until_quiet,
    step,
)

pytestmark = pytest.mark.integration

WAD = 10**18


async def _balances(rpc: RpcClient, dep: DevnetDeployment, owner: str) -> dict[str, int]:
    out = {}
    for token in dep.tokens.values():
        raw = await rpc.eth_call(token.address, encode_call("balanceOf(address)", ["address"], [owner]))
        out[token.address] = int(decode(["uint256"], raw)[0])
    return out


async def _eth(rpc: RpcClient, addresses: list[str]) -> int:
    return sum([await rpc.get_balance(a) for a in addresses])


async def executor_ledger(keeper: LiquidationKeeper) -> Ledger:
    ledger = bundle_executor(keeper).ledger
    assert ledger is not None
    return ledger


@pytest.fixture
async def fresh(devnet: Devnet) -> AsyncIterator[Devnet]:
    rpc, _ = devnet.require()
    snap = await rpc.call("evm_snapshot")
    yield devnet
    await rpc.call("evm_revert", [snap])


async def test_crash_is_liquidated_through_bundles_and_the_ledger_matches_the_chain(
    fresh: Devnet, tmp_path: Path
) -> None:
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 250, seed=5, miner=miner)
    owner = dep.accounts["keeper"]
    signers = [TxSigner.from_key(k) for _, k in KEEPER_ACCOUNTS]
    before_tokens = await _balances(rpc, dep, owner)
    before_eth = await _eth(rpc, [s.address for s in signers])
    assert net.relay is not None and net.relay_url is not None
    path = tmp_path / "ledger.sqlite"
    actions: list[SubmitBundle] = []
    async with devnet_keeper(net, tmp_path, builder_share_bps=5_000, stuck_alert_blocks=3) as keeper:
        executor = bundle_executor(keeper)
        await run_crash(rpc, dep, drop_bps=2_500, blocks=5, mine=True, miner=miner)
        await run_until_quiet(net, keeper, max_blocks=40, log=actions)
        stats = executor.stats
        remaining = list(keeper.strategy.liquidatable)
        dropped = dict(keeper.strategy.dropped)
        skipped = dict(keeper.actions.skipped)
        stuck = list(keeper.strategy.stuck_watch.stuck)
    assert stats.included > 10
    # What stays liquidatable (3+ quiet blocks after the crash) is reported, each with why it is not sent.
    assert remaining
    assert {(s.market, s.user) for s in stuck} == {(o.protocol, o.user) for o in remaining}
    assert all(s.blocks >= 3 and s.reason for s in stuck)
    assert stats.simulation_failed == 0 or all("Expired" not in r for r in stats.reasons)

    # 1. Both markets were liquidated through bundles.
    reader = LedgerReader(path)
    try:
        data = reader.report_data()
    finally:
        reader.close()
    by_protocol = {o.protocol for o in data.opportunities if o.status.value == "included"}
    assert by_protocol == {"aave-v3", "aave-v2"}

    # 2. Each included bundle is atomic and at the top of its block, as the relay's builder recorded.
    included_txs = {inc.tx_hash for inc in data.inclusions}
    assert len(data.inclusions) == stats.included
    assert len(included_txs) < stats.included  # several liquidations shared a transaction
    for inc in data.inclusions:
        bundle = "0x" + keccak(bytes.fromhex(inc.tx_hash[2:])).hex()
        assert bundle in net.relay.included[inc.block_number]
        block = await rpc.call("eth_getBlockByNumber", [hex(inc.block_number), False])
        top = block["transactions"][: len(net.relay.included[inc.block_number])]
        assert inc.tx_hash in top
        assert inc.success

    # 3. Realized profit in the ledger == the owner's on-chain token gains, to the wei, per token.
    after_tokens = await _balances(rpc, dep, owner)
    realized: dict[str, int] = {}
    for inc in data.inclusions:
        realized[inc.realized_profit_asset] = realized.get(inc.realized_profit_asset, 0) + inc.realized_profit
    for token, before in before_tokens.items():
        assert after_tokens[token] - before == realized.get(token, 0), token
    # ... and gas was spent only by the included transactions.
    gas = sum(inc.gas_cost_wei for inc in data.inclusions)
    assert before_eth - await _eth(rpc, [s.address for s in signers]) == gas

    # 4. Nothing unprofitable was sent: every submission had a successful simulation with net >= minimum.
    for sub in data.submissions:
        assert sub.ok
    assert data.simulations_ok >= len({(s.opportunity_id, s.target_block) for s in data.submissions})
    # 5. What is still liquidatable the valuer found not worth sending (each with its reason), or the
    # executor gave up on it after failed simulations.
    given_up = {o.id.split("#")[0] for o in data.opportunities if o.status.value in ("abandoned", "gone")}
    for opp in remaining:
        assert opp.id in dropped or opp.id in skipped or opp.id.split("#")[0] in given_up, opp
    truth = list((await discover(rpc, dep)).values())
    await read_health_factors(rpc, dep, truth)
    still = {(b.market, b.user) for b in truth if b.health_factor is not None and b.health_factor < WAD}
    tracked = {(o.protocol, o.user) for o in remaining}
    assert tracked <= still
    for market, user in still - tracked:  # whole collateral seized: bad debt, nothing left to liquidate
        assert await collateral_base(rpc, dep, market, user) == 0


async def test_competitor_takes_positions_first_and_we_spend_nothing_on_them(
    fresh: Devnet, tmp_path: Path
) -> None:
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 150, seed=9, miner=miner)
    signers = [TxSigner.from_key(k) for _, k in KEEPER_ACCOUNTS]
    assert net.relay_url is not None
    async with devnet_keeper(net, tmp_path) as keeper:
        executor = bundle_executor(keeper)
        ledger = await executor_ledger(keeper)
        await run_crash(rpc, dep, drop_bps=2_500, blocks=3, mine=True, miner=miner)
        # The keeper sees the crashed block and builds its bundles for the next block...
        block = await latest_block(net)
        await executor.on_block(block)
        actions = [a for a in await keeper.strategy.process_event(block) if isinstance(a, SubmitBundle)]
        assert actions
        # ...but a competitor is faster: it liquidates every liquidatable position, and that block is
        # mined before our bundles are simulated.
        eth_before = await _eth(rpc, [s.address for s in signers])
        taken = await run_competitor(rpc, dep, share_pct=100, seed=1, miner=miner)
        assert taken.taken
        await executor.execute_group(actions)
        stats = executor.stats
        # Every stale action is dropped before it is sent: nothing is sent, no gas is spent.
        assert stats.sent == 0
        assert stats.stale == len(actions)
        assert await _eth(rpc, [s.address for s in signers]) == eth_before
        # Positions the competitor left healthy: we must never touch them. (Those it left liquidatable,
        # because of the close factor, we may liquidate legitimately at the new state.)
        truth = list((await discover(rpc, dep)).values())
        await read_health_factors(rpc, dep, truth)
        healthy = {
            (b.market, b.user) for b in truth if b.health_factor is not None and b.health_factor >= WAD
        }
        resolved = {(b.market, b.user) for b in taken.taken} & healthy
        assert resolved
        for _ in range(4):
            await step(net, keeper)
        for opp_id in {a.opportunity_id for a in actions}:
            protocol, user = opp_id.split(":")[:2]
            if (protocol, user) in resolved:
                assert await ledger.inclusions(opp_id) == []
                assert await ledger.submissions(opp_id) == []
        # Those we had acted on (stale actions) end as "gone" in the ledger once no longer re-detected.
        for opp_id in {a.opportunity_id for a in actions}:
            protocol, user = opp_id.split(":")[:2]
            if (protocol, user) in resolved:
                record = await ledger.opportunity(opp_id)
                assert record is not None
                assert record.status.value == "gone"


async def test_protocol_mode_liquidates_at_a_loss_within_the_daily_budget(
    fresh: Devnet, tmp_path: Path
) -> None:
    """KEEPER_MODE=protocol: positions whose liquidation costs more gas than it earns (an expensive block
    and a 95% builder share) are liquidated all the same, until the day's subsidy budget is spent; the
    ledger shows the subsidy, within the budget."""
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 80, seed=11, miner=miner)
    budget = 5 * 10**16  # 0.05 ETH a day
    path = tmp_path / "ledger.sqlite"
    async with devnet_keeper(
        net,
        tmp_path,
        mode="protocol",
        subsidy_budget_wei=budget,
        builder_share_bps=9_500,
        oracle_backruns=False,
        stuck_alert_blocks=3,
    ) as keeper:
        executor = bundle_executor(keeper)
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(40 * 10**9)])
        await run_crash(rpc, dep, drop_bps=2_500, blocks=3, mine=True, miner=miner)
        await run_until_quiet(net, keeper, max_blocks=30)
        stats = executor.stats
        skipped = dict(keeper.actions.skipped)
        remaining = list(keeper.strategy.liquidatable)
        stuck = list(keeper.strategy.stuck_watch.stuck)
    reader = LedgerReader(path)
    try:
        data = reader.report_data()
    finally:
        reader.close()
    from keeper.ledger.report import build_report

    report = build_report(data)
    print(
        f"\nprotocol mode: included {stats.included}, subsidy {report.total.subsidy_wei} wei of {budget}, "
        f"net {report.total.net_wei} wei, still liquidatable {len(remaining)}"
    )
    assert stats.included > 0
    # Requests are sized within what the flash pool holds: none fails for want of its liquidity.
    assert not any("exceeds balance" in r for r in stats.reasons), stats.reasons
    losses = [inc for inc in data.inclusions if inc.gas_cost_wei > (inc.realized_profit_wei or 0)]
    assert losses, "no loss-making liquidation was sent"
    assert 0 < report.total.subsidy_wei <= budget
    # What is left is left for a reason the keeper states: the budget, or a sale that cannot repay.
    for reason in skipped.values():
        assert reason.startswith(
            ("subsidy budget for today spent", "unprofitable before gas", "subsidy cannot be pulled")
        ), reason
    # Every position left is reported as stuck, with why: the budget, a sale that cannot repay the
    # loan, or a liquidation that fails in simulation (e.g. the collateral reserve lacks the liquidity to
    # pay out the seized collateral).
    assert {(s.market, s.user) for s in stuck} == {(o.protocol, o.user) for o in remaining}
    for entry in stuck:  # a reason may start with "after the sales ranked before it: "
        reason = entry.reason.removeprefix("after the sales ranked before it: ")
        assert reason.startswith(
            (
                "loss beyond the subsidy budget",
                "subsidy budget",
                "unprofitable",
                "sent, but not landed",
                "subsidy cannot be pulled",  # no owner approval in this test: a shortfall cannot be paid
            )
        ), entry.reason


async def test_protocol_mode_subsidizes_sales_that_cannot_repay_the_loan(
    fresh: Devnet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KEEPER_MODE=protocol after a steep crash into thin markets: every WETH pool and pair stays 8% below
    the oracle (nobody re-aligns them), beyond the liquidation bonus, so selling the seized WETH cannot
    repay the flash loan. Without the owner's approval the keeper warns at start; with it, such positions
    are liquidated through liquidateSubsidized, the owner paying each shortfall (Subsidized events), within
    the day's budget; the ledger equals the owner's balances to the wei and the report shows the subsidy."""
    net = fresh
    rpc, dep = net.require()
    miner = DevnetMiner(net)
    await create_borrowers(rpc, dep, 40, seed=11, miner=miner)
    budget = 2 * 10**18
    path = tmp_path / "ledger.sqlite"
    owner = dep.accounts["keeper"]
    with caplog.at_level(logging.WARNING, logger="strategies.liquidations"):
        async with devnet_keeper(
            net,
            tmp_path,
            mode="protocol",
            subsidy_budget_wei=budget,
            oracle_backruns=False,
            stuck_alert_blocks=3,
        ) as keeper:
            warned = [r for r in caplog.records if "cannot be subsidized" in r.getMessage()]
            assert warned, caplog.text
            executor = bundle_executor(keeper)
            executor_address = keeper.actions.config.executor
            await run_crash(rpc, dep, drop_bps=2_500, blocks=3, mine=True, miner=miner)
            # The crash's last price, but every WETH venue 8% below it.
            usd = dict(await current_usd_prices(rpc, dep))
            low = dict(usd)
            for symbol in ("WETH", "wstETH"):
                low[symbol] = usd[symbol] * 92 // 100
            await rpc.call("anvil_impersonateAccount", [WHALE])
            for tx in await move_all_txs(rpc, dep, low, WHALE, only_symbols={"WETH", "wstETH"}):
                await rpc.call("eth_sendTransaction", [tx.to_rpc()])
            await rpc.call("anvil_stopImpersonatingAccount", [WHALE])
            # The owner holds the debt assets and approves the executor for them (its own cap).
            for token in dep.tokens.values():
                mint = encode_call(
                    "mint(address,uint256)", ["address", "uint256"], [owner, 10 ** (token.decimals + 8)]
                )
                await rpc.call(
                    "eth_sendTransaction", [{"from": owner, "to": token.address, "data": "0x" + mint.hex()}]
                )
                approve = encode_approve(executor_address, 2**256 - 1)
                await rpc.call(
                    "eth_sendTransaction",
                    [{"from": owner, "to": token.address, "data": "0x" + approve.hex()}],
                )
            await net.mine()
            before_tokens = await _balances(rpc, dep, owner)
            await run_until_quiet(net, keeper, max_blocks=30)
            stats = executor.stats
    reader = LedgerReader(path)
    try:
        data = reader.report_data()
    finally:
        reader.close()
    from keeper.ledger.report import build_report

    report = build_report(data)
    subsidized = [inc for inc in data.inclusions if inc.success and inc.realized_profit < 0]
    print(
        f"\nprotocol mode, thin markets: included {stats.included}, subsidized {len(subsidized)}, subsidy "
        f"{report.total.subsidy_wei} wei of {budget}"
    )
    assert subsidized, "no subsidized liquidation landed"
    # Each one's Subsidized event (after its Liquidated) says what the owner paid: -realized profit.
    users = {o.id: o.user for o in data.opportunities}
    for inc in subsidized:
        receipt = await rpc.call("eth_getTransactionReceipt", [inc.tx_hash])
        subs = [
            s
            for s in subsidized_events(receipt, executor_address)
            if s.user.lower() == users[inc.opportunity_id].lower()
        ]
        assert [s.shortfall for s in subs] == [-inc.realized_profit]
        assert inc.realized_profit_wei is not None and inc.realized_profit_wei < 0
        assert inc.builder_payment_wei == 0  # no share of a loss
    # The ledger equals the owner's token balances, subsidies included, to the wei.
    after_tokens = await _balances(rpc, dep, owner)
    realized: dict[str, int] = {}
    for inc in data.inclusions:
        realized[inc.realized_profit_asset] = realized.get(inc.realized_profit_asset, 0) + inc.realized_profit
    for token, before in before_tokens.items():
        assert after_tokens[token] - before == realized.get(token, 0), token
    # The report's subsidy counts the shortfalls (in wei) and the gas of the loss-making ones, within budget.
    shortfalls_wei = sum(-(inc.realized_profit_wei or 0) for inc in subsidized)
    assert shortfalls_wei < report.total.subsidy_wei <= budget
