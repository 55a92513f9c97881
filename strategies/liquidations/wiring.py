"""The liquidation keeper's wiring: the one place that builds it (`KEEPER_STRATEGIES=liquidations`).

    settings (+ the devnet record when KEEPER_DEVNET) -> LiquidationSetup (markets, venues, executor)
        -> strategy (adapters + valuer + action builder)
        -> executor for KEEPER_SUBMIT: BundleExecutor (bundle) or SingleTxExecutor (public / private)

`keeper run`, `keeper demo`, the tests and the benchmarks all build it here. Before anything runs, the
executor contract must have code and every signer must be its owner or an operator (one clear error line
otherwise: a liquidation from any other sender reverts with NotOperator). The bundle executor then
settles what an earlier run left open in the ledger (`reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode

from keeper.chain.abi import encode_call
from keeper.chain.rpc import RpcClient
from keeper.collectors.mempool import PendingTxCollector
from keeper.collectors.mevshare import MevShareCollector
from keeper.config import Settings, env_name
from keeper.core.interfaces import Collector, Executor
from keeper.errors import ConfigError
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.executor_contract import encode_allowance
from keeper.executors.single_tx import SingleTxExecutor
from keeper.executors.submission import (
    MISSING_EXECUTOR,
    block_gas_budget,
    check_executor_access,
    devnet_executor,
    submit_executor,
)
from keeper.logs import kv
from keeper.strategies_registry import Components, Services, StrategyContext
from strategies.liquidations.actions import ExecutionConfig, LiquidationActions, OwnerFunds
from strategies.liquidations.markets import MarketConfig, build_adapters, devnet_markets, presets
from strategies.liquidations.strategy import LiquidationStrategy
from strategies.liquidations.subsidy import SubsidyBudget
from strategies.liquidations.valuation import build_valuer, devnet_balancer

log = logging.getLogger("strategies.liquidations")


@dataclass(frozen=True)
class LiquidationSetup:
    """Addresses and venues of the liquidation keeper, from the devnet record or the settings."""

    markets: list[MarketConfig]
    v3_pools: list[str]
    v2_pairs: list[str]
    connectors: list[str]
    flash_pool: str
    executor: str
    weth: str
    balancer_vault: str | None = None
    balancer_pools: list[str] = field(default_factory=list)
    """Balancer V2 ComposableStablePools the sales may use (with the Vault they belong to)."""


def liquidation_setup(settings: Settings, devnet: Mapping[str, Any] | None) -> LiquidationSetup:
    if devnet is not None:
        tokens = devnet["tokens"]
        weth, usdc = str(tokens["WETH"]["address"]), str(tokens["USDC"]["address"])
        executor = devnet_executor(devnet)
        balancer_vault, balancer_pools = devnet_balancer(devnet)
        return LiquidationSetup(
            markets=devnet_markets(devnet),
            v3_pools=[str(a) for a in devnet["uniswap_v3"]["pools"].values()],
            v2_pairs=[str(a) for a in devnet["uniswap_v2"]["pairs"].values()],
            connectors=[weth, usdc],
            flash_pool=str(devnet["aave_v3"]["pool"]),
            executor=executor,
            weth=weth,
            balancer_vault=balancer_vault,
            balancer_pools=balancer_pools,
        )
    problems = []
    if not settings.markets:
        problems.append(
            f"{env_name('markets')}: missing (the liquidations strategy needs markets); "
            "e.g. KEEPER_MARKETS=aave-v3-ethereum,spark-ethereum"
        )
    if not settings.v3_pools and not settings.v2_pairs:
        problems.append(
            f"{env_name('v3_pools')} / {env_name('v2_pairs')}: missing (venues to sell collateral on); "
            "e.g. KEEPER_V3_POOLS=0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
        )
    if settings.executor_address is None:
        problems.append(MISSING_EXECUTOR)
    if problems:
        raise ConfigError(problems)
    assert settings.executor_address is not None
    return LiquidationSetup(
        markets=presets(settings.markets),
        v3_pools=list(settings.v3_pools),
        v2_pairs=list(settings.v2_pairs),
        connectors=list(settings.connectors) or [settings.weth_address],
        flash_pool=settings.flash_pool,
        executor=settings.executor_address,
        weth=settings.weth_address,
        balancer_vault=settings.balancer_vault if settings.balancer_pools else None,
        balancer_pools=list(settings.balancer_pools),
    )


def oracle_pricer(
    rpc: RpcClient, market: MarketConfig, weth: str
) -> Callable[[str], Awaitable[tuple[int, int]]]:
    """(num, den) valuing a token's base units in wei at the market's oracle, read now (used to value
    profits found on chain after a restart). Aave V3 prices in USD (1e8): token / WETH; Aave V2 prices
    in ETH wei per whole token."""

    async def to_wei(token: str) -> tuple[int, int]:
        price_call = encode_call("getAssetPrice(address)", ["address"], [token])
        calls: list[tuple[str, Any]] = [
            ("eth_call", [{"to": market.oracle, "data": "0x" + price_call.hex()}, "latest"]),
            ("eth_call", [{"to": token, "data": "0x" + encode_call("decimals()", [], []).hex()}, "latest"]),
        ]
        if market.kind == "aave-v3":
            weth_call = encode_call("getAssetPrice(address)", ["address"], [weth])
            calls.append(("eth_call", [{"to": market.oracle, "data": "0x" + weth_call.hex()}, "latest"]))
        replies = await rpc.batch(calls)
        price, decimals = (int(decode(["uint256"], bytes.fromhex(r[2:]))[0]) for r in replies[:2])
        if market.kind == "aave-v3":
            weth_price = int(decode(["uint256"], bytes.fromhex(replies[2][2:]))[0])
            return price * 10**18, weth_price * 10**decimals
        return price, 10**decimals

    return to_wei


@dataclass
class LiquidationKeeper:
    """What the wiring built: the demo and the tests look inside."""

    strategy: LiquidationStrategy
    actions: LiquidationActions
    executor: BundleExecutor | SingleTxExecutor
    setup: LiquidationSetup

    collectors: list[Collector] = field(default_factory=list)

    def components(self) -> Components:
        executors: list[Executor] = [self.executor]
        return Components([self.strategy], executors, list(self.collectors))


async def subsidy_allowances(
    rpc: RpcClient, executor: str, markets: Sequence[MarketConfig]
) -> dict[str, int]:
    """Protocol mode: the executor owner's ERC-20 allowance to the executor for every reserve (possible
    debt asset) of the markets (the pools' `getReservesList()`): what `liquidateSubsidized` may pull."""
    raw = await rpc.eth_call(executor, encode_call("owner()", [], []))
    owner = str(decode(["address"], raw)[0])
    lists = await rpc.batch(
        [
            ("eth_call", [{"to": m.pool, "data": "0x" + encode_call("getReservesList()").hex()}, "latest"])
            for m in markets
        ]
    )
    assets: list[str] = []
    for result in lists:
        for a in decode(["address[]"], bytes.fromhex(str(result)[2:]))[0]:
            if str(a).lower() not in {x.lower() for x in assets}:
                assets.append(str(a))
    if not assets:
        return {}
    data = "0x" + encode_allowance(owner, executor).hex()
    results = await rpc.batch([("eth_call", [{"to": a, "data": data}, "latest"]) for a in assets])
    return {
        a: int(decode(["uint256"], bytes.fromhex(str(r)[2:]))[0])
        for a, r in zip(assets, results, strict=True)
    }


def owner_funds_reader(rpc: RpcClient, executor: str) -> OwnerFunds:
    """What `liquidateSubsidized` can pull from the owner now, per debt token: the lower of the owner's
    allowance to the executor and its balance (one batched read per token; the owner read once)."""
    owner: list[str] = []

    async def funds(token: str) -> int:
        if not owner:
            raw = await rpc.eth_call(executor, encode_call("owner()", [], []))
            owner.append(str(decode(["address"], raw)[0]))
        calls: list[tuple[str, Any]] = [
            (
                "eth_call",
                [{"to": token, "data": "0x" + encode_allowance(owner[0], executor).hex()}, "latest"],
            ),
            (
                "eth_call",
                [
                    {
                        "to": token,
                        "data": "0x" + encode_call("balanceOf(address)", ["address"], [owner[0]]).hex(),
                    },
                    "latest",
                ],
            ),
        ]
        allowance, balance = (
            int(decode(["uint256"], bytes.fromhex(str(r)[2:]))[0]) for r in await rpc.batch(calls)
        )
        return min(allowance, balance)

    return funds


async def warn_without_subsidy_allowance(
    rpc: RpcClient, executor: str, markets: Sequence[MarketConfig]
) -> list[str]:
    """A WARNING at start naming the markets' debt assets the owner has not approved the executor for
    (`keeper contracts approve-subsidy`): their loss-making sales cannot be subsidized (they revert).
    Returns those assets; a failed read is logged, never fatal."""
    try:
        allowances = await subsidy_allowances(rpc, executor, markets)
    except Exception as exc:  # a warning about warnings: the keeper runs anyway
        log.warning("cannot read the owner's subsidy allowances", extra=kv(error=str(exc)[:200]))
        return []
    missing = [a for a, v in allowances.items() if v == 0]
    if missing:
        log.warning(
            "protocol mode: the executor's owner has not approved it for these debt assets: loss-making "
            "sales cannot be subsidized (approve with `keeper contracts approve-subsidy --token T "
            "--amount A`)",
            extra=kv(executor=executor, tokens=",".join(missing)),
        )
    return missing


async def build_strategy(
    rpc: RpcClient, setup: LiquidationSetup, execution: ExecutionConfig, *, stuck_after_blocks: int = 10
) -> tuple[LiquidationStrategy, LiquidationActions]:
    valuer = await build_valuer(
        rpc,
        v3_pools=setup.v3_pools,
        v2_pairs=setup.v2_pairs,
        connectors=setup.connectors,
        flash_pool=setup.flash_pool,
        weth=setup.weth,
        balancer_vault=setup.balancer_vault,
        balancer_pools=setup.balancer_pools,
    )
    strategy = LiquidationStrategy(
        build_adapters(rpc, list(setup.markets)), valuer=valuer, stuck_after_blocks=stuck_after_blocks
    )
    actions = LiquidationActions(strategy, valuer.venues, execution)
    strategy.action_builder = actions
    strategy.costs = actions.costs
    return strategy, actions


async def build_keeper(ctx: StrategyContext) -> LiquidationKeeper:
    """The whole liquidation keeper for `ctx` (settings + services of `keeper run` or `keeper demo`)."""
    services: Services | None = ctx.services
    if services is None:
        raise ConfigError(["KEEPER_STRATEGIES: liquidations runs only under `keeper run`"])
    settings, rpc = ctx.settings, ctx.rpc
    setup = liquidation_setup(settings, services.devnet)
    signers = services.signers()
    await check_executor_access(rpc, setup.executor, signers, builder_share_bps=settings.builder_share_bps)
    gas_budget = await block_gas_budget(rpc, settings.block_gas_budget)
    subsidy: SubsidyBudget | None = None
    if settings.mode == "protocol":
        subsidy = SubsidyBudget(settings.subsidy_budget_wei, (await services.ledger()).subsidy_spent)
        await warn_without_subsidy_allowance(rpc, setup.executor, setup.markets)
    execution = ExecutionConfig(
        executor=setup.executor,
        weth=setup.weth,
        builder_share_bps=settings.builder_share_bps,
        min_profit_wei=settings.min_profit_wei,
        connectors=tuple(c for c in setup.connectors if c.lower() != setup.weth.lower()),
        gas_budget=gas_budget,
        swap_tolerance_bps=settings.swap_tolerance_bps,
        subsidy=subsidy,
        owner_funds=owner_funds_reader(rpc, setup.executor) if subsidy is not None else None,
    )
    strategy, actions = await build_strategy(
        rpc, setup, execution, stuck_after_blocks=settings.stuck_alert_blocks
    )
    log.info(
        "liquidations",
        extra=kv(
            markets=",".join(m.name for m in setup.markets),
            v3_pools=len(setup.v3_pools),
            v2_pairs=len(setup.v2_pairs),
            balancer_pools=len(setup.balancer_pools),
            executor=setup.executor,
            builder_share_bps=settings.builder_share_bps,
            min_profit_wei=settings.min_profit_wei,
            mode=settings.mode,
            subsidy_budget_wei=settings.subsidy_budget_wei,
            gas_budget=gas_budget,
            senders=len(signers),
        ),
    )
    executor = await submit_executor(
        ctx,
        executor_address=setup.executor,
        gas_budget=gas_budget,
        token_to_wei=oracle_pricer(rpc, setup.markets[0], setup.weth),
    )
    collectors: list[Collector] = []
    if settings.oracle_backruns and settings.submit == "bundle":
        # Pending price updates of the tracked markets (the filter reads the watch live).
        collectors.append(
            PendingTxCollector(settings.ws_url, name="oracle-updates", filter=strategy.oracle_watch.wants)
        )
        stream, mevshare_builders = services.mevshare
        if stream is not None and mevshare_builders:
            # Private price updates (Chainlink SVR) seen as MEV-Share hints: backrun by hash.
            collectors.append(MevShareCollector(stream, name="mevshare"))
    return LiquidationKeeper(strategy, actions, executor, setup, collectors)


async def create(ctx: StrategyContext) -> Components:
    """The `liquidations` registry entry."""
    return (await build_keeper(ctx)).components()
