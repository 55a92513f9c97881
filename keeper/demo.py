"""`keeper demo`: the whole loop on the embedded devnet, start to finish, leaving nothing running.

1. The devnet starts in-process from the cached state: anvil with the real Aave/Uniswap bytecode and the
   local bundle relay, which builds a block every `block_time` seconds.
2. Borrowers are created on both Aave markets.
3. The keeper runs exactly as `keeper run` does, through the same settings, plan and wiring
   (KEEPER_STRATEGIES=liquidations, KEEPER_DEVNET=true, the builder share and minimum profit of the
   defaults, the executor's operator check): websocket block collector -> liquidation strategy (exact
   health factors, venue quotes) -> bundle executor (batches packed to the block's gas budget, simulated
   at the relay, sent, tracked), with a SQLite ledger.
4. ETH crashes: oracle updates are sent as pending transactions; the devnet's background arbitrageur
   moves the AMM pools back toward the oracle every block, as CEX-DEX arbitrage does on mainnet.
5. The keeper liquidates what is profitable until nothing more lands.
6. A de-peg: large swaps push wstETH and USDT off their pegs on Uniswap V3 (the `depeg` scenario). The
   peg strategy (running alongside, KEEPER_STRATEGIES=liquidations,peg, through the same executor)
   arbitrages the pools back toward their targets with flash-loan-funded round trips.
7. A summary (liquidations: how many landed in the first block after they became profitable, the debt
   left liquidatable; arbitrages: how many landed, the pools' distance to their pegs before and after;
   P&L of each) and the ledger's report are printed. Exit code 0.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_account import Account
from rich.console import Console
from rich.table import Table

from keeper.chain.units import WAD, format_units
from keeper.config import Settings
from keeper.core.actions import Action
from keeper.core.events import Event, NewBlock
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import wait_blocks
from keeper.devnet.scenarios.crash import CrashStep, current_usd_prices, run_crash
from keeper.devnet.scenarios.depeg import run_depeg
from keeper.devnet.stack import Devnet, DevnetMiner, write_deployments_file
from keeper.executors.bundle_executor import BundleExecutor
from keeper.ledger.cli import load_report, render
from keeper.runner import plan_run, run_keeper
from keeper.strategies_registry import Components
from strategies.liquidations.strategy import LiquidationStrategy
from strategies.peg.detect import pool_prices, target_of
from strategies.peg.strategy import PegStrategy


@dataclass
class DemoView:
    console: Console
    events: Counter[str] = field(default_factory=Counter)
    block_events: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    eth_usd: int = 0
    strategy: LiquidationStrategy | None = None
    executor: BundleExecutor | None = None
    first_target: dict[str, int] = field(default_factory=dict)
    """Opportunity (without its episode suffix) -> the first block it was sent for."""
    landed_blocks_after: Counter[int] = field(default_factory=Counter)
    """How many blocks after its first target block each liquidation landed (0 = in the first)."""
    received_ns: dict[int, int] = field(default_factory=dict)
    backruns_landed: int = 0
    """Liquidations included in the same block as the price update they backran."""
    landed: Counter[str] = field(default_factory=Counter)
    """"liquidations" / "arbitrages" -> how many landed."""
    profit_wei: Counter[str] = field(default_factory=Counter)
    """"liquidations" / "arbitrages" -> realized profit valued in wei (owner's, after the builder)."""
    builder_wei: Counter[str] = field(default_factory=Counter)
    peg: PegStrategy | None = None
    peg_gap_bps: dict[str, tuple[float, float]] = field(default_factory=dict)
    """De-pegged pool -> (how far the scenario pushed it off its peg, how far it is at the end), bps."""

    def attach(self, components: Components) -> None:
        for s in components.strategies:
            if isinstance(s, LiquidationStrategy):
                self.strategy = s
            if isinstance(s, PegStrategy):
                self.peg = s
        for e in components.executors:
            if isinstance(e, BundleExecutor):
                self.executor = e

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        self.events[kind] += 1
        self.block_events[kind] += 1
        base_id = str(data.get("id", "")).split("#", 1)[0]
        if kind == "sent":
            self.first_target.setdefault(base_id, int(data["block"]))
        if kind == "included" and data.get("success") and base_id in self.first_target:
            self.landed_blocks_after[int(data["block"]) - self.first_target.pop(base_id)] += 1
        what = "arbitrages" if base_id.startswith("peg:") else "liquidations"
        if kind == "included" and data.get("success"):
            self.landed[what] += 1
            self.profit_wei[what] += int(data.get("profit_wei", 0))
            self.builder_wei[what] += int(data.get("builder_paid_wei", 0))
        if kind == "included" and data.get("success") and data.get("backrun") and what == "liquidations":
            self.backruns_landed += 1
        if kind == "included":
            ok = "landed" if data.get("success") else "reverted"
            how = " (same block as its price update)" if data.get("backrun") else ""
            self.console.print(
                f"    [green]{ok}[/]{how} {str(data['id'])[:60]}… in block {data['block']}: "
                f"profit {format_units(int(data['profit_wei']), 18, 4)} ETH, "
                f"builder {format_units(int(data['builder_paid_wei']), 18, 4)} ETH"
            )
        elif kind in ("simulation_failed", "abandoned", "failed_in_batch"):
            self.missed[f"{kind}: {data.get('reason', '')}"[:90]] += 1

    def block_line(self, block: NewBlock) -> None:
        self.received_ns[block.number] = block.received_at_ns
        opps = len(self.strategy.opportunities) if self.strategy is not None else 0
        e = self.block_events
        latency = ""
        group = self.executor.last_group if self.executor is not None else {}
        parent_ns = self.received_ns.get(int(group.get("target_block", 0)) - 1)
        if group.get("written_ns") and parent_ns and int(group["target_block"]) == block.number:
            ms = (int(group["written_ns"]) - parent_ns) / 1e6
            latency = f"  ({ms:.1f} ms from block to the last of {int(group['transactions'])} bundles)"
        self.console.print(
            f"block {block.number:>5}  ETH ${format_units(self.eth_usd, 8, 2):>8}  liquidatable {opps:>4}  "
            f"sent {e['sent']:>3}  landed {e['included']:>3}  not included {e['not_included']:>3}  "
            f"failed in batch {e['failed_in_batch']:>3}  sim failed {e['simulation_failed']:>3}{latency}"
        )
        self.block_events.clear()

    def liquidatable_debt_usd(self) -> int:
        """Debt (USD, 8 decimals) of positions still below health factor 1, in the keeper's exact state."""
        total = 0
        if self.strategy is None:
            return 0
        for p in self.strategy.protocols:
            indexes = p.indexes()
            for user in p.positions:
                account = p.account(user, indexes=indexes)
                if account.health_factor < WAD:
                    debt = account.total_debt_base
                    total += debt if p.kind == "aave-v3" else debt * self.eth_usd // 10**18
        return total

    def peg_gaps(self) -> dict[str, float]:
        """Pool -> its distance to its peg's target in bps (the largest over the pegs it trades), at the
        peg strategy's last read."""
        out: dict[str, float] = {}
        s = self.peg
        if s is None:
            return out
        for peg in s.pegs:
            target = target_of(peg, s.targets)
            if target is None:
                continue
            for p in pool_prices(peg, target, s.venues):
                key = f"{peg.name} {p.venue.name}"
                out[key] = max(out.get(key, 0.0), abs(p.deviation_bps))
        return out


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
    ledger_path: Path | None = None,
    max_blocks_after: int = 30,
    arbitrageur: bool = True,
    depeg: bool = True,
) -> DemoView:
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze lines and tables into 80 columns
        console = Console(width=160)
    view = DemoView(console)
    started = time.perf_counter()
    workdir = tempfile.TemporaryDirectory(prefix="keeper-demo-")
    path = ledger_path or Path(workdir.name) / "ledger.sqlite"
    try:
        async with Devnet(block_time=block_time, arbitrageur=arbitrageur) as net:
            rpc, dep = net.require()
            assert net.relay_url is not None
            console.print(
                f"[bold]devnet[/] up in {net.start_seconds:.2f} s: anvil {net.http_url}, bundle relay "
                f"{net.relay_url}, a block every {block_time:g} s"
                + (", background arbitrageur on" if arbitrageur else "")
            )
            made = await create_borrowers(rpc, dep, borrowers, seed=1, miner=DevnetMiner(net))
            console.print(
                f"[bold]borrowers[/]: {len(made.borrowers)} positions "
                f"({', '.join(f'{k} {v}' for k, v in sorted(made.counts.items()))}) in {made.seconds:.1f} s"
            )
            devnet_file = write_deployments_file(net.describe(), Path(workdir.name) / "devnet.json")
            settings = Settings(
                rpc_http_url=net.http_url,
                rpc_ws_url=net.ws_url,
                private_key=DEV_ACCOUNTS[2][1],  # the devnet's keeper account (owner of the executor)
                flashbots_signer_key=Account.create().key.hex(),  # relay identity: holds no funds
                strategies=["liquidations", "peg"] if depeg else ["liquidations"],
                devnet=True,
                devnet_file=devnet_file,
                ledger_path=path,
                metrics_port=0,
            )
            plan = replace(plan_run(settings), event_sink=view.on_event)
            console.print(
                f"[bold]keeper[/]: {len(plan.signers)} sender keys, builder share "
                f"{settings.builder_share_bps / 100:g}%, relays {len(plan.relay_urls)}"
            )
            sync_started = time.perf_counter()
            running = asyncio.Event()

            async def on_step(step: CrashStep) -> None:
                view.eth_usd = step.eth_usd

            async with asyncio.TaskGroup() as tg:
                keeper_task = tg.create_task(
                    run_keeper(
                        plan,
                        started=running,
                        extra_strategies=[BlockPrinter(view)],
                        on_components=view.attach,
                    ),
                    name="demo:keeper",
                )
                async with asyncio.timeout(120):
                    await running.wait()  # built, synced from logs, reconciled
                strategy, executor = view.strategy, view.executor
                assert strategy is not None
                assert executor is not None
                tracked = sum(len(p.positions) for p in strategy.protocols)
                console.print(
                    f"[bold]keeper[/] synced {tracked} positions from logs in "
                    f"{time.perf_counter() - sync_started:.2f} s; gas budget {executor.slots.gas_budget:,} "
                    "per block; watching blocks"
                )
                view.eth_usd = (await current_usd_prices(rpc, dep))["WETH"]
                console.print(f"[bold]crash[/]: ETH -{drop_bps / 100:g}% over {crash_blocks} blocks")
                await run_crash(rpc, dep, drop_bps=drop_bps, blocks=crash_blocks, on_step=on_step)
                await _until_quiet(rpc, view, executor, max_blocks_after)
                if depeg:
                    console.print("[bold]de-peg[/]: wstETH -3% and USDT -1.5% on their Uniswap V3 pools")
                    moved = await run_depeg(
                        rpc, dep, lst_discount_bps=300, stable_discount_bps=150, miner=DevnetMiner(net)
                    )
                    await _until_quiet(rpc, view, executor, max_blocks_after)
                    gaps = view.peg_gaps()
                    for pool, bps in moved.pools.items():  # "wstETH/WETH/100": the V3 pool it moved
                        peg_name = "/".join(pool.split("/")[:2])
                        view.peg_gap_bps[f"{peg_name} uniswap_v3"] = (
                            float(bps),
                            gaps.get(f"{peg_name} uniswap_v3", float("nan")),
                        )
                keeper_task.cancel()
        _summary(console, view, time.perf_counter() - started)
        render(load_report(path), console)
        if ledger_path is None:
            console.print("(the demo's ledger was temporary; `keeper report --ledger PATH` reads a kept one)")
    finally:
        workdir.cleanup()
    return view


async def _until_quiet(rpc: Any, view: DemoView, executor: BundleExecutor, max_blocks: int) -> None:
    """Waits block by block until three pass with nothing sent or included and nothing pending."""
    quiet = 0
    for _ in range(max_blocks):
        before = view.events["sent"] + view.events["included"]
        await wait_blocks(rpc, 1)
        quiet = quiet + 1 if view.events["sent"] + view.events["included"] == before else 0
        if quiet >= 3 and not executor.pending:
            return


def _summary(console: Console, view: DemoView, seconds: float) -> None:
    executor, strategy = view.executor, view.strategy
    assert executor is not None
    assert strategy is not None
    s = executor.stats
    table = Table(title="demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("liquidations landed", str(view.landed["liquidations"]))
    landed = sum(view.landed_blocks_after.values())
    first = view.landed_blocks_after.get(0, 0)
    worst = max(view.landed_blocks_after, default=0)
    table.add_row(
        "  landed in the first block they were sent for",
        f"{first} of {landed}" + (f" (latest: {worst} blocks after)" if worst else ""),
    )
    table.add_row(
        "  backruns: landed in the same block as the price update, right after it", str(view.backruns_landed)
    )
    table.add_row("transactions sent (several liquidations each)", str(s.transactions_sent))
    table.add_row("  not included in their target block (retried)", str(s.not_included))
    table.add_row("  failed inside an included batch (taken first by someone else)", str(s.failed_in_batch))
    table.add_row("simulations at the relay", str(s.simulated))
    table.add_row("  failed (nothing sent)", str(s.simulation_failed))
    table.add_row("  below the minimum profit (nothing sent)", str(s.below_minimum))
    table.add_row("left for a later block (gas budget, senders)", str(s.not_packed))
    table.add_row(
        "realized profit of the liquidations (owner, valued in ETH)",
        f"{format_units(view.profit_wei['liquidations'], 18, 6)} ETH",
    )
    if view.peg is not None:
        table.add_row("arbitrages landed (de-peg)", str(view.landed["arbitrages"]))
        table.add_row(
            "realized profit of the arbitrages (owner, valued in ETH)",
            f"{format_units(view.profit_wei['arbitrages'], 18, 6)} ETH",
        )
        for pool, (before, after) in sorted(view.peg_gap_bps.items()):
            table.add_row(
                f"  {pool}: off its peg, de-pegged -> at the end", f"{before:.0f} bps -> {after:.1f} bps"
            )
    table.add_row(
        "realized profit in all (owner, valued in ETH)", f"{format_units(s.realized_profit_wei, 18, 6)} ETH"
    )
    # The devnet's blocks are nearly empty, so EIP-1559 walks its base fee down to a few wei: gas is
    # real here but almost free. Mainnet pricing is exercised by the executor's min-profit checks.
    table.add_row("gas paid (devnet base fee is a few wei)", f"{format_units(s.gas_spent_wei, 18, 9)} ETH")
    table.add_row("paid to builders", f"{format_units(s.builder_paid_wei, 18, 6)} ETH")
    table.add_row("opportunities gone (no longer liquidatable)", str(s.gone))
    table.add_row(
        "debt still liquidatable at the end", f"${format_units(view.liquidatable_debt_usd(), 8, 2)}"
    )
    skipped = Counter(getattr(strategy.action_builder, "skipped", {}).values())
    for reason, n in (skipped + view.missed).most_common(6):
        table.add_row(f"missed: {reason[:70]}", str(n))
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)
