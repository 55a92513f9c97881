"""Block -> peg arbitrage bundle written to the relay, on the devnet, simulation included (issue 8).

    .venv/bin/python benchmarks/bench_peg_bundle.py            # 40 measured blocks + 8 crash-like blocks
    .venv/bin/python benchmarks/bench_peg_bundle.py --quick    # 12 measured blocks + 3 crash-like blocks
    .venv/bin/python benchmarks/bench_peg_bundle.py --reps 100 --crash-reps 0

Set-up: a devnet (`Devnet(block_time=None)`: blocks only when asked, built by the local relay's builder,
which runs in this process); a lender supplies WETH, USDC, USDT and DAI to Aave V3 (what the Pool can
flash-lend: `tests/integration/test_peg_keeper.supply_aave_liquidity`); the peg keeper built exactly as
`keeper run` builds it (`tests/integration/test_peg_keeper.peg_keeper`: Settings -> plan_run ->
RunServices -> `strategies.peg.wiring.build_keeper`), so the SQLite ledger is ON (WAL, synchronous=FULL,
temporary directory) and the executor is the shared bundle executor with the devnet relay as builder.
The devnet's four pegs: wstETH/WETH (target: the LST's getRate()), USDC/USDT, DAI/USDC, USDT/DAI (1:1),
on Uniswap V3 (0.01% pools), Uniswap V2 and the two Balancer stable pools.

Blocks reach the keeper over the devnet's websocket (a `BlockCollector` subscribed to `newHeads`); for each
block the driver does what the engine's tasks do, in order: `executor.on_block`, `strategy.process_event`,
then `executor.execute_group` with the block's actions. Latency = `NewBlock.received_at_ns` (monotonic
clock when the header was read off the socket) -> `executor.last_group["written_ns"]` (the LAST bundle of
the block accepted by the relay: eth_callBundle simulation and the fsynced ledger claims included).

1. One de-peg a block: a whale's swap on a V3 pool (as `run_depeg` / `v3_move_tx` do) moves it off the
   oracle's price, in a cycle: wstETH/WETH -`--lst-bps`, USDC/USDT (USDT) -`--stable-bps`, wstETH/WETH
   +`--lst-bps`, USDC/USDT +`--stable-bps`; the block holding the swap is the measured one; the next block
   lands our arbitrage (the relay's builder puts bundles first) and one more block settles it, both
   processed by the keeper, untimed. Nothing is reverted: the pools oscillate around the peg and the
   keeper trades each swing back. Target: p50 <= 15 ms.
2. Crash-like block: all four pegs off at once (LST pool -3%, USDC/USDT -1.5% on USDT, DAI/USDC -1% on
   DAI on Uniswap V3, and a USDT -> DAI swap on the Balancer USDC/USDT/DAI pool), replayed
   `--crash-reps` times from one snapshot (evm_snapshot, swaps, mine, measure, evm_revert, then two calm
   blocks processed so the next one targets a fresh block number).

Parts printed (p50 / p99): dispatch (socket read -> driver), executor.on_block, the strategy's refresh
(venues + targets + flash liquidity: its batched reads), detect (detection + sizing, pure), build (the
action builder: pricing, calldata), then the executor's execute_group split into prepare / sign /
simulate (eth_callBundle; with the in-process relay's handler and anvil's eth_simulateV1 inside it) /
claim / send, from `BundleExecutor.last_timings` (exact when a block sends one bundle; when several run
concurrently they share that dict, so the split is indicative only: the crash block says so).
Latency figures are over the blocks where a bundle was written; the others are listed with what the
strategy found and how many simulations failed, and every failed simulation of the run (measured
blocks and the untimed ones after them) is counted by round trip and reason at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from bench_bundle_latency import RelayProbe, git_state

from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import BlockCollector
from keeper.core.actions import SubmitBundle
from keeper.core.events import NewBlock
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import UINT256_MAX, fund_trader_txs, v3_move_tx
from keeper.devnet.scenarios.common import BulkSender, Tx, call_tx
from keeper.devnet.scenarios.crash import current_usd_prices
from keeper.devnet.scenarios.depeg import LST_POOL, STABLE_POOL
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.bundle_executor import BundleExecutor
from strategies.peg.detect import pool_prices, target_of
from strategies.peg.wiring import PegKeeper
from tests.integration.test_peg_keeper import executor_of, peg_keeper, supply_aave_liquidity

P50_TARGET = 0.015
DAI_POOL = "DAI/USDC/100"
BALANCER_STABLES = "USDC/USDT/DAI"
VAULT_SWAP = "swap((bytes32,uint8,address,address,uint256,bytes),(address,bool,address,bool),uint256,uint256)"
VAULT_SWAP_TYPES = [
    "(bytes32,uint8,address,address,uint256,bytes)",
    "(address,bool,address,bool)",
    "uint256",
    "uint256",
]
GIVEN_IN = 0


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def row(name: str, xs: list[float]) -> None:
    if xs:
        print(
            f"    {name:<56} p50 {ms(pct(xs, 50))}   p99 {ms(pct(xs, 99))}   mean {ms(statistics.mean(xs))}"
        )


@dataclass
class Trace:
    number: int
    received_ns: int
    handled_ns: int = 0
    executor_block: float = 0.0
    strategy_wall: float = 0.0
    strategy: dict[str, float] = field(default_factory=dict)
    opportunities: int = 0
    actions: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    group_wall: float = 0.0
    record_pack: float = 0.0
    """execute_group's start -> its first bundle's `_prepare` (ledger rows of the opportunities, packing)."""
    group_window: tuple[float, float] = (0.0, 0.0)
    executor: dict[str, float] = field(default_factory=dict)
    written_ns: int = 0
    transactions: int = 0
    items: int = 0
    sent: int = 0
    failed: int = 0
    below_minimum: int = 0
    deviations: dict[str, float] = field(default_factory=dict)
    """Peg name -> the largest |deviation| of its pools from the target, bps, at this block."""
    label: str = ""

    @property
    def latency(self) -> float:
        return (self.written_ns - self.received_ns) / 1e9


def deviations(keeper: PegKeeper) -> dict[str, float]:
    s = keeper.strategy
    out: dict[str, float] = {}
    for peg in s.pegs:
        target = target_of(peg, s.targets)
        if target is None:
            continue
        prices = pool_prices(peg, target, s.venues)
        out[peg.name] = max((abs(p.deviation_bps) for p in prices), default=0.0)
    return out


class Driver:
    """Runs the keeper on every block the websocket announces (what the engine's tasks do), timed."""

    def __init__(self, keeper: PegKeeper) -> None:
        self.keeper = keeper
        self.executor: BundleExecutor = executor_of(keeper)
        self.waiters: dict[int, asyncio.Future[Trace]] = {}
        self.errors: list[str] = []
        self.first_prepare = 0.0
        """perf_counter when the group's first bundle started `_prepare` (after record + pack)."""
        prepare = self.executor._prepare

        async def timed_prepare(*args: Any) -> Any:
            if not self.first_prepare:
                self.first_prepare = time.perf_counter()
            return await prepare(*args)

        self.executor._prepare = timed_prepare  # type: ignore[method-assign]
        self.failures: Counter[str] = Counter()
        """(peg, route, flash source, first line of the reason) of every failed simulation."""
        sim_failed = self.executor._sim_failed

        async def counted_sim_failed(action: SubmitBundle, reason: str) -> None:
            m = action.meta
            buy, sell = str(m.get("buy", "?")).split(":")[0], str(m.get("sell", "?")).split(":")[0]
            first = reason.splitlines()[0][:80]
            self.failures[f"{m.get('peg')} {buy} -> {sell}, {m.get('flash_source')} flash: {first}"] += 1
            await sim_failed(action, reason)

        self.executor._sim_failed = counted_sim_failed  # type: ignore[method-assign]

    def expect(self, number: int) -> asyncio.Future[Trace]:
        fut: asyncio.Future[Trace] = asyncio.get_running_loop().create_future()
        self.waiters[number] = fut
        return fut

    async def run(self, collector: BlockCollector) -> None:
        async with contextlib.aclosing(collector.events()) as events:
            async for block in events:
                try:
                    trace = await self.handle(block)
                except Exception as exc:  # reported; the waiting bench gives up on this block
                    self.errors.append(f"block {block.number}: {type(exc).__name__}: {exc}")
                    fut = self.waiters.pop(block.number, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                    continue
                fut = self.waiters.pop(block.number, None)
                if fut is not None and not fut.done():
                    fut.set_result(trace)

    async def handle(self, block: NewBlock) -> Trace:
        trace = Trace(block.number, block.received_at_ns, handled_ns=time.monotonic_ns())
        ex, strategy = self.executor, self.keeper.strategy
        t = time.perf_counter()
        await ex.on_block(block)
        trace.executor_block = time.perf_counter() - t
        t = time.perf_counter()
        actions = [a for a in await strategy.process_event(block) if isinstance(a, SubmitBundle)]
        trace.strategy_wall = time.perf_counter() - t
        trace.strategy = dict(strategy.last_timings)
        trace.opportunities = len(strategy.opportunities)
        trace.actions = len(actions)
        trace.skipped = dict(self.keeper.actions.skipped)
        if actions:
            s = ex.stats
            before = (s.sent, s.simulation_failed, s.below_minimum)
            ex.last_group, ex.last_timings = {}, {}
            self.first_prepare = 0.0
            t = time.perf_counter()
            await ex.execute_group(actions)
            end = time.perf_counter()
            trace.group_wall, trace.group_window = end - t, (t, end)
            trace.record_pack = (self.first_prepare - t) if self.first_prepare else 0.0
            trace.executor = dict(ex.last_timings)
            if ex.last_group.get("transactions"):
                trace.written_ns = int(ex.last_group["written_ns"])
                trace.transactions = int(ex.last_group["transactions"])
                trace.items = int(ex.last_group["items"])
            trace.sent = s.sent - before[0]
            trace.failed = s.simulation_failed - before[1]
            trace.below_minimum = s.below_minimum - before[2]
        # After the timed path: what the strategy saw (pure, on the venues it just read).
        trace.deviations = deviations(self.keeper)
        return trace


class Bench:
    def __init__(self, net: Devnet, driver: Driver, head: int) -> None:
        self.net = net
        self.driver = driver
        self.head = head
        self.after_actions = 0
        """Actions in the untimed blocks after a measured one (a spread left open by the arbitrage)."""

    async def mine_and_wait(self) -> Trace:
        fut = self.driver.expect(self.head + 1)
        self.head = await self.net.mine()
        return await asyncio.wait_for(fut, 60)

    async def follow(self, blocks: int) -> list[Trace]:
        out = [await self.mine_and_wait() for _ in range(blocks)]
        self.after_actions += sum(t.actions for t in out)
        return out


async def send(rpc: RpcClient, txs: list[Tx]) -> list[str]:
    return [str(await rpc.call("eth_sendTransaction", [tx.to_rpc()])) for tx in txs]


async def reverted(rpc: RpcClient, hashes: list[str]) -> int:
    """How many of the whale's mined swaps reverted (a block without the intended de-peg)."""
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    return sum(1 for r in receipts if not isinstance(r, dict) or r.get("status") != "0x1")


def moved(usd: dict[str, int], symbol: str, bps: int) -> dict[str, int]:
    out = dict(usd)
    out[symbol] = usd[symbol] * (10_000 + bps) // 10_000
    return out


def balancer_swap_tx(dep: DevnetDeployment, t_in: str, t_out: str, amount: int) -> Tx:
    pool = dep.balancer.pools[BALANCER_STABLES]
    single = (
        bytes.fromhex(pool.pool_id[2:]),
        GIVEN_IN,
        dep.tokens[t_in].address,
        dep.tokens[t_out].address,
        amount,
        b"",
    )
    funds = (WHALE, False, WHALE, False)
    return call_tx(
        WHALE, dep.balancer.vault, VAULT_SWAP, VAULT_SWAP_TYPES, [single, funds, 0, 2**40], 3_000_000
    )


async def one_depeg_part(
    args: argparse.Namespace, bench: Bench, usd: dict[str, int]
) -> tuple[list[Trace], str | None]:
    rpc, dep = bench.net.require()
    cycle = [
        (LST_POOL, "wstETH", -args.lst_bps),
        (STABLE_POOL, "USDT", -args.stable_bps),
        (LST_POOL, "wstETH", args.lst_bps),
        (STABLE_POOL, "USDT", args.stable_bps),
    ]
    print(
        f"\n1. One de-peg a block: {args.reps} measured blocks (+{args.warmup} warm-up), cycle "
        + ", ".join(f"{p} {s} {b:+d} bps" for p, s, b in cycle)
    )
    traces: list[Trace] = []
    no_swap = failed_swaps = 0
    for i in range(args.warmup + args.reps):
        pool, symbol, bps = cycle[i % len(cycle)]
        tx = await v3_move_tx(rpc, dep, pool, moved(usd, symbol, bps), WHALE)
        if tx is None:
            no_swap += 1
            continue
        hashes = await send(rpc, [tx])
        trace = await bench.mine_and_wait()
        trace.label = f"{pool} {bps:+d}"
        failed_swaps += await reverted(rpc, hashes)
        await bench.follow(2)  # our arbitrage lands, then a settled block
        if i >= args.warmup:
            traces.append(trace)
        if (i + 1) % 10 == 0:
            gc.collect()
    if no_swap:
        print(f"  ({no_swap} cycle steps found the pool already at the price: no swap, not measured)")
    if failed_swaps:
        print(f"  WARNING: {failed_swaps} of the whale's swaps reverted (those blocks had no de-peg)")
    return traces, report("one de-peg a block", traces, target=True)


async def crash_part(args: argparse.Namespace, bench: Bench, usd: dict[str, int]) -> list[Trace]:
    rpc, dep = bench.net.require()
    prices = [
        (LST_POOL, moved(usd, "wstETH", -300)),
        (STABLE_POOL, moved(usd, "USDT", -150)),
        (DAI_POOL, moved(usd, "DAI", -100)),
    ]
    usdt = dep.tokens["USDT"]
    bal_in = args.balancer_usdt * 10**usdt.decimals
    print(
        f"\n2. Crash-like block: all four pegs off at once, {args.crash_reps} replays of the same block: "
        f"{LST_POOL} wstETH -300 bps, {STABLE_POOL} USDT -150 bps, {DAI_POOL} DAI -100 bps (Uniswap V3), "
        f"{args.balancer_usdt:,} USDT -> DAI on Balancer {BALANCER_STABLES}"
    )

    failed_swaps = 0

    async def crash_txs() -> list[str]:
        txs = []
        for pool, p in prices:
            tx = await v3_move_tx(rpc, dep, pool, p, WHALE)
            if tx is not None:
                txs.append(tx)
        txs.append(balancer_swap_tx(dep, "USDT", "DAI", bal_in))
        return await send(rpc, txs)

    async def replay(reps: int) -> list[Trace]:
        nonlocal failed_swaps
        out = []
        for _ in range(reps):
            snap = await rpc.call("evm_snapshot")
            head = bench.head
            try:
                hashes = await crash_txs()
                out.append(await bench.mine_and_wait())
                failed_swaps += await reverted(rpc, hashes)
            finally:
                await rpc.call("evm_revert", [snap])
                bench.head = head
            await bench.follow(2)  # calm blocks: the reverted bundles settle, the next target is fresh
        return out

    await replay(1)  # warm-up
    gc.collect()
    traces = await replay(args.crash_reps)
    if failed_swaps:
        print(f"  WARNING: {failed_swaps} of the whale's swaps reverted")
    report("crash-like block", traces, target=False, concurrent=True)
    if traces:
        t = traces[-1]
        print(
            "    pegs' largest |deviation| in that block (bps): "
            + ", ".join(f"{k} {v:.0f}" for k, v in t.deviations.items())
        )
    return traces


PROBE: RelayProbe | None = None


def report(title: str, traces: list[Trace], *, target: bool, concurrent: bool = False) -> str | None:
    ok = [t for t in traces if t.written_ns]
    print(f"  {title}: {len(traces)} blocks, {len(ok)} with a bundle written")
    missed = [t for t in traces if not t.written_ns]
    if missed:
        why = Counter(
            f"{t.label or 'block'}: {t.opportunities} opportunities, {t.actions} actions, "
            f"{t.failed} failed simulations, {t.below_minimum} below minimum"
            for t in missed
        )
        for reason, n in why.most_common(5):
            print(f"    no bundle written in {n} blocks ({reason})")
    if not ok:
        return f"{title}: nothing written"
    lat = [t.latency for t in ok]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    verdict = ""
    if target:
        verdict = f"   [p50 <= {P50_TARGET * 1e3:.0f} ms] {'PASS' if p50 <= P50_TARGET else 'MISS'}"
    print(
        f"    {'newHeads read -> LAST bundle written':<56} p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(lat))}"
        + verdict
    )
    shape = Counter((t.opportunities, t.actions, t.transactions, t.items) for t in ok)
    (opps, actions, txs, items), n = shape.most_common(1)[0]
    print(
        f"    per block ({n} of {len(ok)} alike): {opps} opportunities, {actions} actions, "
        f"{items} items sent in {txs} transactions"
    )
    by_label = Counter[str]()
    for t in ok:
        by_label[t.label or "-"] += 1
    if len(by_label) > 1:
        for label in sorted(by_label):
            xs = [t.latency for t in ok if (t.label or "-") == label]
            print(f"      {label:<28} {len(xs):3d} blocks  p50 {ms(pct(xs, 50))}  max {ms(max(xs))}")
    print("    where the time goes (consecutive steps):")
    row(
        "dispatch (socket read -> driver, header decoded)", [(t.handled_ns - t.received_ns) / 1e9 for t in ok]
    )
    row("executor.on_block (inclusion, headers, nonce read start)", [t.executor_block for t in ok])
    row("strategy (process_event)", [t.strategy_wall for t in ok])
    row("  refresh: venues + targets + flash liquidity (reads)", [t.strategy.get("refresh", 0.0) for t in ok])
    row("  detect: detection + sizing (pure)", [t.strategy.get("detect", 0.0) for t in ok])
    row("  build: action building (pricing, calldata)", [t.strategy.get("build", 0.0) for t in ok])
    row(
        "executor: execute_group -> last bundle written",
        [t.latency - (t.handled_ns - t.received_ns) / 1e9 - t.executor_block - t.strategy_wall for t in ok],
    )
    row("  record (ledger rows) + pack", [t.record_pack for t in ok])
    note = " (several bundles share these timings: indicative)" if concurrent else ""
    row(f"  prepare (nonces read at block arrival){note}", [t.executor.get("prepare", 0.0) for t in ok])
    row("  sign", [t.executor.get("sign", 0.0) for t in ok])
    row("  simulate (eth_callBundle at the relay)", [t.executor.get("simulate", 0.0) for t in ok])
    if PROBE is not None:
        inside = [PROBE.inside(*t.group_window) for t in ok]
        row("    relay handler (in this process)", [h for h, _ in inside])
        row("      anvil eth_simulateV1", [a for _, a in inside])
    row(
        "  claim (ledger, fsynced; what is left after the simulation)",
        [t.executor.get("claim", 0.0) for t in ok],
    )
    row("  send (-> accepted by the relay)", [t.executor.get("send", 0.0) for t in ok])
    if target and p50 > P50_TARGET:
        return f"{title}: p50 {p50 * 1e3:.1f} ms (target {P50_TARGET * 1e3:.0f} ms)"
    return None


async def run(args: argparse.Namespace) -> int:
    print(f"code: {git_state()}")
    misses: list[str] = []
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        print(f"devnet up in {net.start_seconds:.2f} s ({net.http_url}, relay {net.relay_url})")
        t = time.perf_counter()
        await supply_aave_liquidity(net)
        sender = BulkSender(rpc, miner=DevnetMiner(net))
        await sender.impersonate_all(True)
        funding = fund_trader_txs(dep, WHALE, {"wstETH", "WETH", "USDC", "USDT", "DAI"})
        funding.append(
            call_tx(
                WHALE,
                dep.tokens["USDT"].address,
                "approve(address,uint256)",
                ["address", "uint256"],
                [dep.balancer.vault, UINT256_MAX],
                100_000,
            )
        )
        await sender.run(funding)
        print(f"Aave liquidity supplied, whale funded in {time.perf_counter() - t:.1f} s")
        usd = await current_usd_prices(rpc, dep)
        with tempfile.TemporaryDirectory(prefix="bench-peg-bundle-", dir=args.ledger_dir) as tmp:
            t = time.perf_counter()
            async with (
                peg_keeper(net, Path(tmp), peg_backruns=False) as keeper,
                RpcClient(net.http_url) as collector_rpc,
            ):
                executor = executor_of(keeper)
                s = keeper.strategy
                print(
                    f"peg keeper built and synced in {time.perf_counter() - t:.1f} s: {len(s.pegs)} pegs "
                    f"({', '.join(p.name for p in s.pegs)}), venues "
                    + ", ".join(
                        f"{v.name}:{sum(len(v.pools(*pair)) for pair in v.pairs())}" for v in s.venues
                    )
                    + f"; ledger {Path(tmp) / 'ledger.sqlite'}; {len(executor.signers)} senders; "
                    f"builder share {keeper.actions.config.builder_share_bps} bps"
                )
                driver = Driver(keeper)
                global PROBE
                PROBE = RelayProbe(net)
                collector = BlockCollector(net.ws_url, collector_rpc)
                task = asyncio.create_task(driver.run(collector), name="bench:driver")
                try:
                    await asyncio.sleep(0.3)  # subscribed
                    bench = Bench(net, driver, await rpc.block_number())
                    await bench.follow(3)
                    bench.after_actions = 0
                    _, miss = await one_depeg_part(args, bench, usd)
                    if miss:
                        misses.append(miss)
                    follow_actions = bench.after_actions
                    if args.crash_reps:
                        await crash_part(args, bench, usd)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if driver.errors:
                    print(f"driver errors: {len(driver.errors)}; first: {driver.errors[0]}")
                st = executor.stats
                print(
                    f"\nexecutor totals: {st.actions} actions, {st.simulated} simulations, "
                    f"{st.sent} items sent in {st.transactions_sent} transactions, {st.included} included, "
                    f"{st.simulation_failed} failed simulations, {st.below_minimum} below minimum, "
                    f"{st.duplicate} duplicates, {st.stale} stale"
                )
                print(
                    f"part 1: actions in the untimed blocks after a measured one (spread left by the "
                    f"arbitrage): {follow_actions}"
                )
                if driver.failures:
                    print("  failed simulations (all blocks, measured or not), by round trip:")
                    for what, n in driver.failures.most_common(8):
                        print(f"    {n:4d} x {what}")
    print("targets missed: " + ("; ".join(misses) if misses else "none"))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, help="measured blocks in part 1 (default 40, --quick 12)")
    ap.add_argument("--warmup", type=int, default=4, help="unmeasured de-peg blocks first (default 4)")
    ap.add_argument(
        "--crash-reps", type=int, help="replays of the crash-like block (default 8, --quick 3; 0 skips)"
    )
    ap.add_argument("--lst-bps", type=int, default=100, help="wstETH swing on its V3 pool, bps (default 100)")
    ap.add_argument(
        "--stable-bps", type=int, default=50, help="USDT swing on the USDC/USDT V3 pool (default 50)"
    )
    ap.add_argument(
        "--balancer-usdt",
        type=int,
        default=60_000_000,
        help="USDT sold into the Balancer USDC/USDT/DAI pool in the crash block (default 60M)",
    )
    ap.add_argument(
        "--ledger-dir", help="directory for the temporary ledger (default: the system's temp dir)"
    )
    ap.add_argument("--quick", action="store_true", help="12 measured blocks, 3 crash-like blocks")
    args = ap.parse_args()
    for name, full, quick in (("reps", 40, 12), ("crash_reps", 8, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    started = time.perf_counter()
    print(
        f"bench_peg_bundle: {args.reps} de-peg blocks, {args.crash_reps} crash-like blocks"
        + (" (--quick)" if args.quick else "")
    )
    code = uvloop.run(run(args))
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
