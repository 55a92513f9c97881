"""The action builder: what is sent, what is skipped, and the on-chain minimum written in the calldata."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from keeper.core.actions import SubmitBundle, TxIntent
from keeper.core.events import NewBlock
from keeper.executors.executor_contract import (
    LIQUIDATE_SUBSIDIZED_SELECTOR,
    V2Route,
    decode_liquidate,
    decode_liquidate_subsidized,
)
from strategies.liquidations.actions import ExecutionConfig, LiquidationActions
from strategies.liquidations.opportunity import Opportunity

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
EXECUTOR = "0x" + "ee" * 20
GWEI = 10**9


@dataclass
class FakeRoute:
    executor_route: Any


def opportunity(
    gross_usdc: int, builder: LiquidationActions | None = None, at: NewBlock | None = None
) -> Opportunity:
    """A WETH-collateral / USDC-debt position whose sale returns `gross_usdc` above the debt, valued as the
    valuer does it with the builder's costs for the block after `at` (ETH at $2000)."""
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
    costs = builder.costs(at) if builder is not None and at is not None else None
    return base.valued(
        swap_out=base.debt_to_cover + gross_usdc,
        route=FakeRoute(V2Route((WETH, USDC))),
        flash_premium=0,
        to_wei=(10**8 * 10**18, 10**6 * 2_000 * 10**8),
        gas_cost_wei=costs.gas_cost_wei if costs is not None else 0,
        builder_share_bps=costs.builder_share_bps if costs is not None else 0,
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


async def test_profitable_opportunity_becomes_a_batchable_call_with_the_minimums_on_chain() -> None:
    cfg = ExecutionConfig(
        executor=EXECUTOR, weth=WETH, builder_share_bps=0, min_profit_wei=10**15, swap_tolerance_bps=50
    )
    builder = LiquidationActions(strategy(), [], cfg)
    at = block(10 * GWEI)
    opp = opportunity(500 * 10**6, builder, at)
    actions = await builder([opp], at)
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, SubmitBundle)
    assert action.target_block == 101
    assert action.expected_profit_wei == 500 * 10**6 * 10**8 * 10**18 // (10**6 * 2_000 * 10**8)  # 0.25 ETH
    assert action.profit_to_wei == opp.to_wei
    intent = action.txs[0]
    assert isinstance(intent, TxIntent)
    assert intent.to == EXECUTOR
    assert intent.batchable
    assert intent.gas_estimate == cfg.gas_estimate
    params = decode_liquidate(intent.data)
    assert params.max_block == 101
    # minProfit (USDC units) covers the configured minimum plus the estimated gas at the next base fee,
    # rounded up: (1e15 + 1M gas * 10 gwei (the next base fee of a half-full block)) wei at $2000/ETH.
    costs = builder.costs(at)
    assert costs.base_fee == 10 * GWEI
    floor_wei = 10**15 + cfg.gas_estimate * costs.base_fee
    assert params.min_profit == -(-floor_wei * 10**6 * 2_000 * 10**8 // (10**8 * 10**18))
    # The sale's amountOutMinimum is the exact quote less the tolerance.
    assert opp.swap_out is not None
    assert params.min_out == opp.swap_out * 9_950 // 10_000
    assert params.debt_to_cover == 10_000 * 10**6
    assert action.meta["pool"] == opp.pool


async def test_costs_carry_the_gas_budget_less_the_batch_overhead() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=9_000, gas_budget=20_000_000)
    costs = LiquidationActions(strategy(), [], cfg).costs(block(GWEI))
    assert costs.builder_share_bps == 9_000
    assert costs.gas_per_liquidation == cfg.gas_estimate
    assert costs.gas_budget is not None
    assert 19_000_000 < costs.gas_budget < 20_000_000


async def test_base_fee_times_twenty_skips_what_gas_would_eat() -> None:
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=0, min_profit_wei=0)
    builder = LiquidationActions(strategy(), [], cfg)
    calm, spike = block(10 * GWEI), block(200 * GWEI)
    # $30 = 0.015 ETH gross; gas ~0.01 ETH at 10 gwei: still worth it; x20: gas ~0.2 ETH.
    assert len(await builder([opportunity(30 * 10**6, builder, calm)], calm)) == 1
    opp = opportunity(30 * 10**6, builder, spike)
    assert await builder([opp], spike) == []
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
    at = block(10 * GWEI)
    # $30 gross, 99% to the builder -> $0.30 for us, less than ~$20 of gas at 10 gwei: skipped.
    opp = opportunity(30 * 10**6, builder, at)
    assert await builder([opp], at) == []
    assert builder.skipped[opp.id].startswith("below minimum")


async def test_protocol_mode_sends_at_a_loss_within_the_daily_budget() -> None:
    from strategies.liquidations.subsidy import SubsidyBudget

    spent_reads: list[tuple[int, int]] = []

    async def spent(since: int, until: int) -> int:
        spent_reads.append((since, until))
        return 0

    budget = SubsidyBudget(3 * 10**15, spent)
    cfg = ExecutionConfig(executor=EXECUTOR, weth=WETH, builder_share_bps=0, subsidy=budget)
    builder = LiquidationActions(strategy(), [], cfg)
    cheap = block(GWEI)  # gas ~0.001 ETH per liquidation (1M gas at 1 gwei)
    # $1 gross (0.0005 ETH) - 0.001 ETH gas: a loss of ~0.0005 ETH each.
    opps = [replace(opportunity(10**6, builder, cheap), id=f"opp-{i}") for i in range(8)]
    actions = await builder(opps, cheap)
    assert spent_reads == [(0, 86_400)]  # the block's UTC day, read once per block
    loss = -opps[0].net_profit_wei  # type: ignore[operator]
    assert loss > 0
    assert len(actions) == 3 * 10**15 // loss  # as many as the budget covers, then none
    for action in actions:
        assert isinstance(action, SubmitBundle)
        assert action.min_profit_wei == -loss  # the executor accepts exactly the budgeted loss
        assert isinstance(action.txs[0], TxIntent)
        assert decode_liquidate(action.txs[0].data).min_profit == 0  # the loan must still be repaid
    assert builder.skipped["opp-7"].startswith("subsidy budget for today spent")
    assert budget.reserved_wei == len(actions) * loss
    # The valuer may keep what the budget left (as of the last block the builder saw).
    assert builder.costs(cheap).min_profit_wei == -budget.remaining_wei
    # A loss on the sale itself is sent subsidized when the budget covers it: none left here.
    losing = replace(opportunity(-5 * 10**6, builder, cheap), id="losing")
    assert await builder([losing], replace(cheap, number=101)) == []
    assert builder.skipped["losing"].startswith("subsidy budget for today spent")
    # A new day starts with a fresh budget; reservations expire after their target block.
    await budget.update(200, 86_400 + 5)
    assert budget.reserved_wei == 0 and budget.remaining_wei == 3 * 10**15


async def test_protocol_mode_sends_a_sale_that_cannot_repay_the_loan_subsidized() -> None:
    """gross_profit <= 0 in protocol mode: liquidateSubsidized with maxSubsidy = the predicted shortfall
    plus the sale's tolerance, no builder share, the whole loss (shortfall in wei + gas) taken from the
    budget and accepted by the executor's minimum; beyond the budget it waits; searcher mode never."""
    from strategies.liquidations.subsidy import SubsidyBudget

    budget = SubsidyBudget(10**16)
    cfg = ExecutionConfig(
        executor=EXECUTOR, weth=WETH, builder_share_bps=5_000, subsidy=budget, swap_tolerance_bps=50
    )
    builder = LiquidationActions(strategy(), [], cfg)
    at = block(GWEI)
    costs = builder.costs(at)
    assert costs.loss_making_sales
    # The sale returns $5 less than the debt repaid: 0.0025 ETH of shortfall, plus ~0.001 ETH of gas.
    losing = opportunity(-5 * 10**6, builder, at)
    assert losing.net_profit_wei is not None and losing.swap_out is not None
    loss = -losing.net_profit_wei
    assert loss == 5 * 10**6 * 10**18 // (2_000 * 10**6) + costs.gas_cost_wei
    actions = await builder([losing], at)
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, SubmitBundle) and isinstance(action.txs[0], TxIntent)
    data = action.txs[0].data
    assert data[:4] == LIQUIDATE_SUBSIDIZED_SELECTOR
    params, max_subsidy = decode_liquidate_subsidized(data)
    min_out = losing.swap_out * 9_950 // 10_000
    assert params.min_out == min_out
    assert max_subsidy == 5 * 10**6 + (losing.swap_out - min_out)
    assert params.min_profit == 0 and params.coinbase_bps == 0 and params.coinbase_route is None
    assert action.txs[0].batchable
    assert action.min_profit_wei == -loss  # the executor's simulation must show no more loss than this
    assert action.meta["subsidy"] == 5 * 10**6 and action.meta["max_subsidy"] == max_subsidy
    assert budget.reserved_wei == loss
    # A second one the budget cannot cover waits.
    big = replace(opportunity(-40 * 10**6, builder, at), id="big")  # 0.02 ETH shortfall
    assert await builder([big], replace(at, number=101)) == []
    assert builder.skipped["big"].startswith("subsidy budget for today spent")
    # A profitable one in protocol mode is still a plain liquidate with the builder's share, which needs a
    # route to pay the builder in ETH (none here; the subsidized one above needed none).
    fine = replace(opportunity(500 * 10**6, builder, at), id="fine")
    assert await builder([fine], replace(at, number=102)) == []
    assert builder.skipped["fine"] == "no Uniswap V3 route to pay the builder in ETH"
    # Searcher mode: never sent, never subsidized.
    searcher = LiquidationActions(strategy(), [], replace(cfg, subsidy=None))
    assert not searcher.costs(at).loss_making_sales
    assert await searcher([losing], at) == []
    assert searcher.skipped[losing.id].startswith("unprofitable before gas")


async def test_protocol_mode_sends_subsidized_sales_only_as_far_as_the_owner_lets_the_executor_pull() -> None:
    """The owner's allowance and balance (read once per block for the debt tokens that need a subsidy) cap
    what liquidateSubsidized may pull: beyond it a sale waits with a reason instead of failing in
    simulation; each one sent lowers what is left for the next in the block."""
    from strategies.liquidations.subsidy import SubsidyBudget

    reads: list[str] = []
    owner_has = 0

    async def owner_funds(token: str) -> int:
        reads.append(token)
        return owner_has

    cfg = ExecutionConfig(
        executor=EXECUTOR,
        weth=WETH,
        builder_share_bps=0,
        subsidy=SubsidyBudget(10**18),
        owner_funds=owner_funds,
    )
    builder = LiquidationActions(strategy(), [], cfg)
    at = block(GWEI)
    first = replace(opportunity(-5 * 10**6, builder, at), id="first")
    second = replace(opportunity(-5 * 10**6, builder, at), id="second")
    # Nothing approved: both wait, with the reason (and no budget is reserved for them).
    assert await builder([first, second], at) == []
    assert reads == [USDC]
    assert builder.skipped["first"].startswith("subsidy cannot be pulled: the owner lets the executor take 0")
    assert cfg.subsidy is not None and cfg.subsidy.reserved_wei == 0
    # Enough for one: the first goes, the second waits for what the first may take.
    assert first.swap_out is not None
    max_subsidy = 5 * 10**6 + (first.swap_out - first.swap_out * 9_950 // 10_000)
    owner_has = max_subsidy + max_subsidy // 2
    actions = await builder([first, second], replace(at, number=102))
    assert [a.opportunity_id for a in actions] == ["first"]
    assert decode_liquidate_subsidized(actions[0].txs[0].data)[1] == max_subsidy  # type: ignore[union-attr]
    assert builder.skipped["second"].startswith("subsidy cannot be pulled")
