"""`keeper demo`: the whole loop on the embedded devnet, start to finish, leaving nothing running.

1. The devnet starts in-process from the cached state: anvil with the real Aave/Uniswap bytecode and the
   local bundle relay, which builds a block every `block_time` seconds.
2. Borrowers are created on both Aave markets.
3. The keeper runs exactly as `keeper run` would: websocket block collector -> liquidation strategy
   (exact health factors, venue quotes) -> bundle executor (simulate at the relay, send, track), with a
   SQLite ledger.
4. ETH crashes: oracle updates are sent as pending transactions, arbitrage swaps move the pools.
5. The keeper liquidates what is profitable; when nothing more lands, a summary and the ledger's
   report are printed. Exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from rich.console import Console
from rich.table import Table

from keeper.chain.signer import TxSigner
from keeper.chain.units import format_units
from keeper.collectors.blocks import BlockCollector
from keeper.core.actions import Action
from keeper.core.engine import Supervised
from keeper.core.events import Event, NewBlock
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import wait_blocks
from keeper.devnet.scenarios.crash import CrashStep, current_usd_prices, run_crash
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.bundles import MultiBuilderClient
from keeper.ledger import Ledger
from keeper.ledger.cli import load_report, render
from strategies.liquidations.factory import LiquidationKeeper, build_devnet_keeper


@dataclass
class DemoView:
    console: Console
    events: Counter[str] = field(default_factory=Counter)
    block_events: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    eth_usd: int = 0
    keeper: LiquidationKeeper | None = None

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        self.events[kind] += 1
        self.block_events[kind] += 1
        if kind == "included":
            ok = "landed" if data.get("success") else "reverted"
            self.console.print(
                f"    [green]{ok}[/] {str(data['id'])[:60]}… in block {data['block']}: "
                f"profit {format_units(int(data['profit_wei']), 18, 4)} ETH, "
                f"builder {format_units(int(data['builder_paid_wei']), 18, 4)} ETH"
            )
        elif kind in ("simulation_failed", "abandoned"):
            self.missed[f"{kind}: {data.get('reason', '')}"[:90]] += 1

    def block_line(self, block: NewBlock) -> None:
        k = self.keeper
        opps = len(k.strategy.opportunities) if k is not None else 0
        ms = k.strategy.last_timings.get("total", 0.0) * 1000 if k is not None else 0.0
        e = self.block_events
        self.console.print(
            f"block {block.number:>5}  ETH ${format_units(self.eth_usd, 8, 2):>8}  liquidatable {opps:>4}  "
            f"sent {e['sent']:>3}  landed {e['included']:>3}  not included {e['not_included']:>3}  "
            f"sim failed {e['simulation_failed']:>3}  ({ms:.1f} ms from block to bundles)"
        )
        self.block_events.clear()


class BlockPrinter:
    """A strategy that only prints one line per block (what the keeper did with the previous one)."""

    name = "demo-view"

    def __init__(self, view: DemoView) -> None:
        self.view = view

    async def sync_state(self) -> None:
        return None

    async def process_event(self, event: Event) -> Sequence[Action]:
        if isinstance(event, NewBlock):
            self.view.block_line(event)
        return []


async def run_demo(
    *,
    borrowers: int = 500,
    block_time: float = 1.0,
    drop_bps: int = 2_500,
    crash_blocks: int = 10,
    builder_share_bps: int = 5_000,
    ledger_path: Path | None = None,
    max_blocks_after: int = 30,
) -> DemoView:
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze lines and tables into 80 columns
        console = Console(width=150)
    view = DemoView(console)
    started = time.perf_counter()
    workdir = tempfile.TemporaryDirectory(prefix="keeper-demo-")
    path = ledger_path or Path(workdir.name) / "ledger.sqlite"
    try:
        async with Devnet(block_time=block_time) as net:
            rpc, dep = net.require()
            assert net.relay_url is not None
            console.print(
                f"[bold]devnet[/] up in {net.start_seconds:.2f} s: anvil {net.http_url}, bundle relay "
                f"{net.relay_url}, a block every {block_time:g} s"
            )
            made = await create_borrowers(rpc, dep, borrowers, seed=1, miner=DevnetMiner(net))
            console.print(
                f"[bold]borrowers[/]: {len(made.borrowers)} positions "
                f"({', '.join(f'{k} {v}' for k, v in sorted(made.counts.items()))}) in {made.seconds:.1f} s"
            )
            keeper_accounts = [DEV_ACCOUNTS[2], *DEV_ACCOUNTS[5:10]]
            signers = [TxSigner.from_key(key) for _, key in keeper_accounts]
            identity = Account.create().key  # Flashbots reputation key: holds no funds
            async with Ledger.open(path) as ledger, MultiBuilderClient([net.relay_url], identity) as builders:
                keeper = await build_devnet_keeper(
                    rpc,
                    dep.to_json(),
                    signers=signers,
                    builders=builders,
                    ledger=ledger,
                    builder_share_bps=builder_share_bps,
                    on_event=view.on_event,
                )
                view.keeper = keeper
                engine = keeper.engine(
                    [Supervised(BlockCollector(net.ws_url, rpc))], extra_strategies=[BlockPrinter(view)]
                )
                sync_started = time.perf_counter()

                async def on_step(step: CrashStep) -> None:
                    view.eth_usd = step.eth_usd

                async with asyncio.TaskGroup() as tg:
                    engine_task = tg.create_task(engine.run(), name="demo:engine")
                    async with asyncio.timeout(120):
                        await keeper.strategy.synced.wait()  # the initial sync from logs
                    tracked = sum(len(p.positions) for p in keeper.strategy.protocols)
                    console.print(
                        f"[bold]keeper[/] synced {tracked} positions from logs in "
                        f"{time.perf_counter() - sync_started:.2f} s; watching blocks"
                    )
                    view.eth_usd = (await current_usd_prices(rpc, dep))["WETH"]
                    console.print(f"[bold]crash[/]: ETH -{drop_bps / 100:g}% over {crash_blocks} blocks")
                    await run_crash(rpc, dep, drop_bps=drop_bps, blocks=crash_blocks, on_step=on_step)
                    quiet = 0
                    for _ in range(max_blocks_after):
                        before = view.events["sent"] + view.events["included"]
                        await wait_blocks(rpc, 1)
                        quiet = quiet + 1 if view.events["sent"] + view.events["included"] == before else 0
                        if quiet >= 3 and not keeper.executor.pending:
                            break
                    engine_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await engine_task
        _summary(console, view, keeper, time.perf_counter() - started)
        render(load_report(path), console)
        if ledger_path is None:
            console.print("(the demo's ledger was temporary; `keeper report --ledger PATH` reads a kept one)")
    finally:
        workdir.cleanup()
    return view


def _summary(console: Console, view: DemoView, keeper: LiquidationKeeper, seconds: float) -> None:
    s = keeper.executor.stats
    table = Table(title="demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("liquidations landed (bundles included)", str(s.included))
    table.add_row("bundles sent", str(s.sent))
    table.add_row("  not included in their target block (retried)", str(s.not_included))
    table.add_row("simulations at the relay", str(s.simulated))
    table.add_row("  failed (nothing sent)", str(s.simulation_failed))
    table.add_row("  below the minimum profit (nothing sent)", str(s.below_minimum))
    table.add_row(
        "realized profit (owner, valued in ETH)", f"{format_units(s.realized_profit_wei, 18, 6)} ETH"
    )
    # The devnet's blocks are nearly empty, so EIP-1559 walks its base fee down to a few wei: gas is
    # real here but almost free. Mainnet pricing is exercised by the executor's min-profit checks.
    table.add_row("gas paid (devnet base fee is a few wei)", f"{format_units(s.gas_spent_wei, 18, 9)} ETH")
    table.add_row("paid to builders", f"{format_units(s.builder_paid_wei, 18, 6)} ETH")
    table.add_row("opportunities gone (no longer liquidatable)", str(s.gone))
    skipped = Counter(keeper.actions.skipped.values())
    for reason, n in (skipped + view.missed).most_common(6):
        table.add_row(f"missed: {reason[:70]}", str(n))
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)
