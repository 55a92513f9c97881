"""`keeper demo`: the whole loop on the embedded devnet, start to finish, leaving nothing running.

Starts the devnet in-process from the cached state (anvil with the real Aave/Uniswap bytecode, the local
bundle relay producing a block every `block_time` seconds), creates borrowers, runs the keeper's engine
(the same collectors and engine as `keeper run`) while an ETH crash is sent as pending oracle
transactions, shows what the keeper sees block by block, and ends with a summary.

Until the liquidation strategy and executor land, the strategy shown is `MarketWatch`: it reads every
tracked position's health factor from the protocol itself (one batched Multicall3 read per block).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_abi.abi import decode
from rich.console import Console
from rich.table import Table

from keeper.chain.multicall import multicall
from keeper.chain.rpc import RpcClient
from keeper.chain.units import format_units
from keeper.collectors.blocks import BlockCollector
from keeper.core.actions import Action
from keeper.core.engine import Engine
from keeper.core.events import Event, NewBlock
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.deployer import encode_call
from keeper.devnet.scenarios.borrowers import AAVE_V3, create_borrowers
from keeper.devnet.scenarios.common import wait_blocks
from keeper.devnet.scenarios.crash import CrashStep, run_crash
from keeper.devnet.stack import Devnet, DevnetMiner

WAD = 10**18


@dataclass
class BlockView:
    number: int
    eth_usd: int
    liquidatable: dict[str, int]
    seen_ms: float


@dataclass
class DemoState:
    blocks: list[BlockView] = field(default_factory=list)
    oracle_updates: int = 0


class MarketWatch:
    """Each block: every tracked position's health factor from `getUserAccountData`, batched."""

    name = "market-watch"

    def __init__(
        self,
        rpc: RpcClient,
        dep: DevnetDeployment,
        users: Sequence[tuple[str, str]],
        state: DemoState,
        console: Console,
    ) -> None:
        self.rpc = rpc
        self.dep = dep
        self.users = list(users)
        self.state = state
        self.console = console

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        if not isinstance(event, NewBlock):
            return []
        calls = [
            (
                self.dep.aave_v3.pool if market == AAVE_V3 else self.dep.aave_v2.lending_pool,
                encode_call("getUserAccountData(address)", ["address"], [user]),
            )
            for market, user in self.users
        ]
        calls.append((self.dep.feeds.usd["WETH"], encode_call("latestAnswer()", [], [])))
        results = await multicall(self.rpc, self.dep.multicall3, calls, block=event.number)
        liquidatable = {"aave-v3": 0, "aave-v2": 0}
        for (market, _), (ok, data) in zip(self.users, results, strict=False):
            if ok and int(decode(["uint256"] * 6, data)[5]) < WAD:
                liquidatable[market] += 1
        eth = int(decode(["int256"], results[-1][1])[0])
        seen_ms = (time.monotonic_ns() - event.received_at_ns) / 1e6 if event.received_at_ns else 0.0
        view = BlockView(event.number, eth, liquidatable, seen_ms)
        self.state.blocks.append(view)
        self.console.print(
            f"block {view.number:>5}  ETH ${format_units(eth, 8, 2):>8}  liquidatable: "
            f"aave-v3 {liquidatable['aave-v3']:>4}  aave-v2 {liquidatable['aave-v2']:>4}  "
            f"({len(self.users)} positions read in {seen_ms:.1f} ms)"
        )
        return []


async def run_demo(
    *, borrowers: int = 500, block_time: float = 1.0, drop_bps: int = 2_500, crash_blocks: int = 10
) -> DemoState:
    console = Console()
    state = DemoState()
    started = time.perf_counter()
    async with Devnet(block_time=block_time) as net:
        rpc, dep = net.require()
        console.print(
            f"[bold]devnet[/] up in {net.start_seconds:.2f} s: anvil {net.http_url}, relay {net.relay_url}, "
            f"a block every {block_time:g} s"
        )
        made = await create_borrowers(rpc, dep, borrowers, seed=1, miner=DevnetMiner(net))
        console.print(
            f"[bold]borrowers[/]: {len(made.borrowers)} positions "
            f"({', '.join(f'{k} {v}' for k, v in sorted(made.counts.items()))}) in {made.seconds:.1f} s"
        )
        users = [(b.market, b.address) for b in made.borrowers]
        watch = MarketWatch(rpc, dep, users, state, console)
        engine = Engine([BlockCollector(net.ws_url, rpc)], [watch], [])

        async def on_step(step: CrashStep) -> None:
            state.oracle_updates += len(step.oracle_txs)

        async with asyncio.TaskGroup() as tg:
            engine_task = tg.create_task(engine.run(), name="demo:engine")
            await wait_blocks(rpc, 1)
            console.print(
                f"[bold]crash[/]: ETH -{drop_bps / 100:g}% over {crash_blocks} blocks (pending oracle txs)"
            )
            await run_crash(rpc, dep, drop_bps=drop_bps, blocks=crash_blocks, on_step=on_step)
            await wait_blocks(rpc, 2)
            engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine_task
    _summary(console, state, time.perf_counter() - started, engine.stats)
    return state


def _summary(console: Console, state: DemoState, seconds: float, stats: dict[str, int]) -> None:
    table = Table(title="demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    if state.blocks:
        first, last = state.blocks[0], state.blocks[-1]
        table.add_row("blocks seen", str(len(state.blocks)))
        table.add_row(
            "ETH price", f"${format_units(first.eth_usd, 8, 2)} -> ${format_units(last.eth_usd, 8, 2)}"
        )
        for market in ("aave-v3", "aave-v2"):
            table.add_row(
                f"liquidatable on {market}", f"{first.liquidatable[market]} -> {last.liquidatable[market]}"
            )
    table.add_row("oracle updates (pending txs)", str(state.oracle_updates))
    table.add_row("strategy errors", str(stats["strategy_errors"]))
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)
