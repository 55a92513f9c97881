"""Assemble the liquidation keeper: strategy -> actions -> bundle executor, plus inclusion tracking."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keeper.chain.rpc import RpcClient
from keeper.chain.signer import TxSigner
from keeper.core.engine import Engine
from keeper.core.interfaces import Collector, Strategy
from keeper.executors.bundle_executor import BundleExecutor, InclusionTracker
from keeper.executors.bundles import MultiBuilderClient
from keeper.ledger import Ledger
from strategies.liquidations.actions import ExecutionConfig, LiquidationActions
from strategies.liquidations.markets import MarketConfig, build_adapters, devnet_markets
from strategies.liquidations.strategy import LiquidationStrategy
from strategies.liquidations.valuation import build_valuer


@dataclass
class LiquidationKeeper:
    strategy: LiquidationStrategy
    actions: LiquidationActions
    executor: BundleExecutor
    tracker: InclusionTracker

    def engine(self, collectors: Sequence[Collector], *, extra_strategies: Sequence[Strategy] = ()) -> Engine:
        # Blocks are not coalesced: the inclusion tracker must see every block.
        return Engine(
            collectors,
            [self.strategy, self.tracker, *extra_strategies],
            [self.executor],
            coalesce_blocks=False,
        )


async def build_keeper(
    rpc: RpcClient,
    *,
    markets: Sequence[MarketConfig],
    v3_pools: Sequence[str],
    v2_pairs: Sequence[str],
    connectors: Sequence[str],
    flash_pool: str,
    execution: ExecutionConfig,
    signers: Sequence[TxSigner],
    builders: MultiBuilderClient,
    chain_id: int,
    ledger: Ledger | None = None,
    dry_run: bool = False,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> LiquidationKeeper:
    valuer = await build_valuer(
        rpc, v3_pools=v3_pools, v2_pairs=v2_pairs, connectors=connectors, flash_pool=flash_pool
    )
    # One sender per bundle in a block: more bundles than senders would collide on a nonce.
    execution = replace(execution, max_per_block=min(execution.max_per_block, len(signers)))
    strategy = LiquidationStrategy(build_adapters(rpc, list(markets)), valuer=valuer)
    actions = LiquidationActions(strategy, valuer.venues, execution)
    strategy.action_builder = actions
    executor = BundleExecutor(
        rpc,
        signers,
        builders,
        chain_id=chain_id,
        min_profit_wei=execution.min_profit_wei,
        ledger=ledger,
        dry_run=dry_run,
        on_event=on_event,
    )
    return LiquidationKeeper(strategy, actions, executor, InclusionTracker(executor))


async def build_devnet_keeper(
    rpc: RpcClient,
    deployment: Mapping[str, Any],
    *,
    signers: Sequence[TxSigner],
    builders: MultiBuilderClient,
    ledger: Ledger | None = None,
    min_profit_wei: int = 0,
    builder_share_bps: int = 5_000,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> LiquidationKeeper:
    """The keeper for a devnet deployment record (`deployments/devnet.json`'s "deployment")."""
    tokens = deployment["tokens"]
    weth, usdc = str(tokens["WETH"]["address"]), str(tokens["USDC"]["address"])
    return await build_keeper(
        rpc,
        markets=devnet_markets(deployment),
        v3_pools=list(deployment["uniswap_v3"]["pools"].values()),
        v2_pairs=list(deployment["uniswap_v2"]["pairs"].values()),
        connectors=[weth, usdc],
        flash_pool=str(deployment["aave_v3"]["pool"]),
        execution=ExecutionConfig(
            executor=str(deployment["executor"]),
            weth=weth,
            builder_share_bps=builder_share_bps,
            min_profit_wei=min_profit_wei,
            connectors=(usdc,),
        ),
        signers=signers,
        builders=builders,
        chain_id=int(deployment["chain_id"]),
        ledger=ledger,
        on_event=on_event,
    )
