"""Price update -> backrun bundle written: the oracle-backrun paths of the liquidation strategy, from the
public mempool (a pending `transmit`) and from a MEV-Share hint (a private `transmit`, Chainlink SVR).

    .venv/bin/python benchmarks/bench_backrun.py            # 10,000 borrowers, 50 measured updates a path
    .venv/bin/python benchmarks/bench_backrun.py --quick    # 2,000 borrowers, 15 measured updates a path
    .venv/bin/python benchmarks/bench_backrun.py --path hint --profile out.prof   # one path, cProfiled

Set-up: a devnet (`Devnet(block_time=None)`: blocks only when asked, built by the local relay's builder
in this process), N borrowers (`create_borrowers`, the borrowers scenario) and the keeper built exactly
as `keeper run` builds it, through the tests' harness (`tests/integration/keeper_harness.devnet_keeper`),
so the SQLite ledger is ON (WAL, synchronous=FULL, temporary directory). Blocks are mined and handed to
the keeper with the harness (`step`: executor.on_block, strategy.process_event, execute_group), until
nothing is left to do ("settled").

The pending update: a WETH/USD `transmit` sent by the feed's transmitter
(`keeper.devnet.tokens.send_price_update`, as in tests/integration/test_oracle_backrun.py), at the
smallest ETH drop (0.1% steps) that makes `--target` (3) positions liquidatable that were not at the last
block (one to ten; the drop is printed with the count). It is read off the devnet's websocket by the real
`PendingTxCollector` with the strategy's filter (`OracleWatch.wants`; the collector decodes, filters and
rebuilds the signed bytes), and the consumer does what the engine does with a PendingTx: the strategy's
`process_event` (on_pending: detect under the new prices, value, build), then `execute_group` with the
backrun actions.

Latency = `PendingTx.received_at_ns` (monotonic clock when the notification was read off the socket)
-> `executor.last_group["written_ns"]` (the LAST backrun transaction accepted by the relay: simulated with
eth_callBundle, claimed in the fsynced ledger, sent). Target: p50 <= 10 ms, p99 <= 30 ms.

The hint path (`--path hint`, or `both`, the default): the same update signed by the transmitter and sent
to the devnet relay privately with hints (`keeper.devnet.scenarios.crash.PrivateOracleSender`, as
`crash --private` does); the relay publishes the hint on its SSE stream, the real `MevShareCollector`
reads it, the strategy's `process_event` (on_hint: match, detect, value, build) and `execute_group`
send `mev_sendBundle` [{hash}, our transactions] to the relay. Latency = `MevShareHint.received_at_ns`
(the SSE chunk read off the socket) -> the LAST `mev_sendBundle` accepted (claimed in the ledger
first; no eth_callBundle: nobody but the matchmaker has the hinted transaction's bytes). Target: p50
<= 10 ms. After mining, the block must start with the update and carry our liquidations (the relay's
auction merged our backrun).

Each repetition: evm_snapshot, a short pause after the last block (the block's own reads are done, as
when an update arrives mid-slot), the update, the backrun, then the block is mined (not shown to the
keeper) to check that the update and the backrun landed together (update first), evm_revert, and two
empty blocks processed by the keeper so the next update targets a fresh block number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from bench_bundle_latency import RelayProbe, git_state

from keeper.chain.mevshare import MevShareHint
from keeper.collectors.mempool import PendingTxCollector
from keeper.collectors.mevshare import MevShareCollector
from keeper.core.actions import SubmitBundle
from keeper.core.events import PendingTx
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import PrivateOracleSender, current_usd_prices
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.devnet.tokens import latest_block_timestamp, next_epoch_round, price_update_tx, send_price_update
from keeper.executors.executor_contract import LIQUIDATED_TOPIC
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import bundle_executor, devnet_keeper, step

P50_TARGET, P99_TARGET = 0.010, 0.030


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def row(name: str, xs: list[float]) -> None:
    if not xs:
        return
    print(f"    {name:<50} p50 {ms(pct(xs, 50))}   p99 {ms(pct(xs, 99))}   mean {ms(statistics.mean(xs))}")


@dataclass
class Sample:
    tx_hash: str
    received_ns: int
    handled_ns: int = 0
    """When the consumer got the PendingTx (after the collector's decode, filter and raw rebuild)."""
    strategy_wall: float = 0.0
    group_wall: float = 0.0
    group_start_ns: int = 0
    group_window: tuple[float, float] = (0.0, 0.0)
    """execute_group's start and end on the perf_counter clock (for the relay probe)."""
    written_ns: int = 0
    actions: int = 0
    items: int = 0
    transactions: int = 0
    strategy: dict[str, float] = field(default_factory=dict)
    executor: dict[str, float] = field(default_factory=dict)
    landed_first: bool = False
    landed_liquidations: int = 0

    @property
    def latency(self) -> float:
        return (self.written_ns - self.received_ns) / 1e9


class Source(Protocol):
    def events(self) -> AsyncGenerator[PendingTx | MevShareHint, None]: ...


class Consumer:
    """The engine's job for pending txs and hints: collector events -> strategy -> executor, timed."""

    def __init__(self, keeper: LiquidationKeeper, collector: Source) -> None:
        self.keeper = keeper
        self.collector = collector
        self.samples: asyncio.Queue[Sample] = asyncio.Queue()
        self.errors: list[str] = []
        self.stale = 0

    async def run(self) -> None:
        async with contextlib.aclosing(self.collector.events()) as events:
            async for tx in events:
                try:
                    await self.samples.put(await self.handle(tx))
                except Exception as exc:  # reported; the waiting bench times out on this update
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    async def handle(self, tx: PendingTx | MevShareHint) -> Sample:
        sample = Sample("0x" + tx.hash.hex(), tx.received_at_ns, handled_ns=time.monotonic_ns())
        strategy, executor = self.keeper.strategy, bundle_executor(self.keeper)
        strategy.backrun_timings = {}
        t = time.perf_counter()
        actions = [a for a in await strategy.process_event(tx) if isinstance(a, SubmitBundle)]
        sample.strategy_wall = time.perf_counter() - t
        sample.strategy = dict(strategy.backrun_timings)
        sample.actions = len(actions)
        if not actions:
            return sample
        executor.last_group = {}
        executor.last_timings = {}
        sample.group_start_ns = time.monotonic_ns()
        t = time.perf_counter()
        await executor.execute_group(actions)
        sample.group_wall = time.perf_counter() - t
        sample.group_window = (t, t + sample.group_wall)
        sample.executor = dict(executor.last_timings)
        if executor.last_group.get("transactions"):
            sample.written_ns = int(executor.last_group["written_ns"])
            sample.items = int(executor.last_group["items"])
            sample.transactions = int(executor.last_group["transactions"])
        return sample


def watched_overrides(keeper: LiquidationKeeper, feed: str, price: int) -> dict[str, dict[str, int]]:
    """What the strategy will derive from a transmit of `price` to `feed` (its OracleWatch mapping)."""
    out: dict[str, dict[str, int]] = {}
    for market, asset in keeper.strategy.oracle_watch.aggregators.get(feed.lower(), []):
        out.setdefault(market, {})[asset] = price
    return out


def choose_price(keeper: LiquidationKeeper, feed: str, eth: int, target: int) -> tuple[int, int, list[str]]:
    """(new ETH price, positions it newly makes liquidatable, search log): the smallest drop in 0.1% steps
    reaching `target` new positions without passing 10; else the first drop giving 1..10."""
    strategy = keeper.strategy
    already = {(o.protocol, o.user) for o in strategy.liquidatable}
    first_any: tuple[int, int] | None = None
    tried: list[str] = []
    for step_bps in range(10, 3_000, 10):
        price = eth * (10_000 - step_bps) // 10_000
        found = strategy.detect(price_overrides=watched_overrides(keeper, feed, price))
        new = sum((o.protocol, o.user) not in already for o in found)
        if new and (not tried or not tried[-1].endswith(f": {new}")):
            tried.append(f"-{step_bps / 100:.1f}%: {new}")
        if 1 <= new <= 10 and first_any is None:
            first_any = (price, new)
        if target <= new <= 10:
            return price, new, tried
        if new > 10:
            break
    if first_any is None:
        raise RuntimeError("no ETH drop up to 30% makes one to ten positions liquidatable")
    return first_any[0], first_any[1], tried


async def settle(net: Devnet, keeper: LiquidationKeeper, max_blocks: int = 40) -> int:
    executor = bundle_executor(keeper)
    quiet = 0
    for i in range(max_blocks):
        log: list[SubmitBundle] = []
        await step(net, keeper, log)
        quiet = quiet + 1 if not log and not executor.pending else 0
        if quiet >= 3:
            return i + 1
    return max_blocks


UpdateSender = Callable[[int], Awaitable[str]]
"""Sends a WETH/USD price update (publicly or privately) and returns its hash."""


def public_update(net: Devnet) -> UpdateSender:
    rpc, dep = net.require()

    async def send(price: int) -> str:
        return await send_price_update(rpc, dep.feeds.usd["WETH"], price, transmitter=dep.feeds.transmitter)

    return send


def private_update(net: Devnet, sender: PrivateOracleSender) -> UpdateSender:
    """As `crash --private`: signed by the transmitter, sent to the relay with hints (Chainlink SVR)."""
    rpc, dep = net.require()
    feed = dep.feeds.usd["WETH"]

    async def send(price: int) -> str:
        await sender.start_step()
        tx = price_update_tx(
            feed,
            price,
            transmitter=dep.feeds.transmitter,
            epoch_round=await next_epoch_round(rpc, feed),
            observations_timestamp=await latest_block_timestamp(rpc),
        )
        return await sender.send(tx)

    return send


async def measure(
    net: Devnet,
    keeper: LiquidationKeeper,
    consumer: Consumer,
    send: UpdateSender,
    price: int,
    reps: int,
    pause: float,
) -> list[Sample]:
    rpc, dep = net.require()
    out: list[Sample] = []
    for _ in range(reps):
        snap = await rpc.call("evm_snapshot")
        try:
            await asyncio.sleep(pause)
            tx_hash = await send(price)
            async with asyncio.timeout(30):
                # The relay's builder hands the mined bundle's transactions to anvil, which announces them
                # again: skip those (the last repetition's update; the strategy ignores it, no bundle).
                while (sample := await consumer.samples.get()).tx_hash != tx_hash.lower():
                    consumer.stale += 1
            number = await net.mine()  # the relay builds it: our bundle first if it is valid
            block = await rpc.call("eth_getBlockByNumber", [hex(number), False])
            txs = [str(h).lower() for h in block["transactions"]]
            sample.landed_first = bool(txs) and txs[0] == tx_hash.lower()
            logs = await rpc.call(
                "eth_getLogs",
                [
                    {
                        "address": dep.executor,
                        "topics": [LIQUIDATED_TOPIC],
                        "fromBlock": hex(number),
                        "toBlock": hex(number),
                    }
                ],
            )
            sample.landed_liquidations = len(logs)
            out.append(sample)
        finally:
            await rpc.call("evm_revert", [snap])
        for _ in range(2):  # fresh target block for the next update; the executor settles the last one
            await step(net, keeper)
    return out


def report(samples: list[Sample], probe: RelayProbe, hint: bool = False) -> str | None:
    ok = [s for s in samples if s.written_ns]
    print(f"  {len(samples)} updates, {len(ok)} with a backrun written")
    if not ok:
        return "nothing written"
    lat = [s.latency for s in ok]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    p99_target = None if hint else P99_TARGET  # the issue sets only a p50 target for the hint path
    passed = p50 <= P50_TARGET and (p99_target is None or p99 <= p99_target)
    what = "hint read -> LAST mev_sendBundle written" if hint else "pending tx read -> LAST backrun written"
    targets = f"p50 <= {P50_TARGET * 1e3:.0f} ms" + (
        f", p99 <= {p99_target * 1e3:.0f} ms" if p99_target is not None else ""
    )
    print(
        f"    {what}   p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(lat))}   "
        f"[{targets}] {'PASS' if passed else 'MISS'}"
    )
    shape = Counter((s.actions, s.items, s.transactions) for s in ok)
    (actions, items, txs), n = shape.most_common(1)[0]
    print(
        f"    per update ({n} of {len(ok)} alike): {actions} backrun actions, {items} items "
        f"in {txs} transactions"
    )
    landed = Counter((s.landed_first, s.landed_liquidations) for s in ok)
    print(
        "    mined right after (then reverted): "
        + "; ".join(
            f"{k} x {'update first' if first else 'update NOT first'}, {liq} liquidations"
            for (first, liq), k in landed.most_common()
        )
    )
    print("    where the time goes (the executor's steps are those of the transaction prepared last):")
    row(
        "dispatch (socket read -> consumer: "
        + ("SSE parse, hint decode)" if hint else "decode, filter, raw)"),
        [(s.handled_ns - s.received_ns) / 1e9 for s in ok],
    )
    row(f"strategy.process_event ({'on_hint' if hint else 'on_pending'})", [s.strategy_wall for s in ok])
    for k in ("detect", "value", "build"):
        row(f"  {k}", [s.strategy.get(k, 0.0) for s in ok])
    to_written = [(s.written_ns - s.group_start_ns) / 1e9 for s in ok]
    row("executor.execute_group, until the last backrun written", to_written)
    steps = ("prepare", "sign", "simulate", "claim", "send")
    for k in steps:
        if hint and k == "simulate":
            continue  # a backrun by hash is not simulated (see the docstring)
        row(f"  {k}", [s.executor.get(k, 0.0) for s in ok])
        if k == "simulate":
            inside = [probe.inside(*s.group_window) for s in ok]
            row("    the relay's eth_callBundle handler (this process)", [h for h, _ in inside])
            row("      of which anvil's eth_simulateV1", [a for _, a in inside])
    row(
        "  record + pack + between steps",
        [w - sum(s.executor.get(k, 0.0) for k in steps) for s, w in zip(ok, to_written, strict=True)],
    )
    row(
        "between (consumer, event loop)",
        [
            s.latency - (s.handled_ns - s.received_ns) / 1e9 - s.strategy_wall - w
            for s, w in zip(ok, to_written, strict=True)
        ],
    )
    return (
        None if passed else f"{'hint' if hint else 'public'}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"
    )


async def measure_path(
    net: Devnet,
    keeper: LiquidationKeeper,
    path: str,
    price: int,
    args: argparse.Namespace,
    probe: RelayProbe,
    tracked: int,
) -> str | None:
    """Warm-up, then `args.reps` measured updates through `path` ("public" or "hint"); prints the report
    and returns what missed its target (None: met)."""
    assert net.relay is not None
    assert net.relay_url is not None
    rpc, dep = net.require()
    hint = path == "hint"
    sender: PrivateOracleSender | None = None
    collector: PendingTxCollector | MevShareCollector
    if hint:
        collector = MevShareCollector(net.relay.stream_url, name="bench-hints")
        sender = PrivateOracleSender(rpc, net.relay_url, dep.feeds.transmitter)
        send = private_update(net, sender)
    else:
        collector = PendingTxCollector(
            net.ws_url, name="bench-backrun", filter=keeper.strategy.oracle_watch.wants
        )
        send = public_update(net)
    consumer = Consumer(keeper, collector)
    task = asyncio.create_task(consumer.run(), name=f"bench:{path}")
    profiler = cProfile.Profile() if args.profile else None
    try:
        await asyncio.sleep(0.3)  # subscribed
        if hint and net.relay.mevshare.subscribers < 1:
            raise RuntimeError("the hint collector did not subscribe to the relay's stream")
        warm = await measure(net, keeper, consumer, send, price, 3, args.pause)
        print(f"\n{path}: warm-up: {len(warm)} updates ({sum(1 for s in warm if s.written_ns)} backrun)")
        gc.collect()
        if profiler is not None:
            profiler.enable()
        samples = await measure(net, keeper, consumer, send, price, args.reps, args.pause)
    finally:
        if profiler is not None:
            profiler.disable()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if sender is not None:
            await sender.close()
    title = "Hinted (MEV-Share) update -> mev_sendBundle" if hint else "Pending update -> backrun bundle"
    print(f"{title} ({args.reps} updates, {tracked} positions)")
    miss = report(samples, probe, hint=hint)
    if consumer.errors:
        print(f"consumer errors: {len(consumer.errors)}; first: {consumer.errors[0]}")
    if isinstance(collector, MevShareCollector):
        counts = f"{collector.hints} hints, {collector.malformed} malformed"
    else:
        counts = (
            f"{collector.decoded} decoded, {collector.filtered} filtered out, {collector.malformed} malformed"
        )
    print(
        f"collector: {counts} ({consumer.stale} other events skipped); "
        f"strategy backrun stats {keeper.strategy.backrun_stats}"
    )
    if profiler is not None:
        out = f"{args.profile}.{path}" if args.path == "both" else args.profile
        profiler.dump_stats(out)
        print(f"cProfile of the measured updates written to {out}")
    return miss


async def run(args: argparse.Namespace) -> int:
    print(f"code: {git_state()}")
    print("load average (1/5/15 min, 2 cores shared): " + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        print(f"devnet up in {net.start_seconds:.2f} s ({net.http_url}, relay {net.relay_url})")
        t = time.perf_counter()
        made = await create_borrowers(rpc, dep, args.borrowers, seed=1, miner=DevnetMiner(net))
        print(f"created {len(made.borrowers)} borrowers in {time.perf_counter() - t:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-backrun-", dir=args.ledger_dir) as tmp:
            t = time.perf_counter()
            async with devnet_keeper(net, Path(tmp)) as keeper:
                executor = bundle_executor(keeper)
                tracked = sum(len(p.positions) for p in keeper.strategy.protocols)
                print(
                    f"keeper built and synced ({tracked} positions tracked) in "
                    f"{time.perf_counter() - t:.1f} s; "
                    f"ledger {'on' if executor.ledger is not None else 'OFF'}, "
                    f"{len(executor.signers)} senders"
                )
                blocks = await settle(net, keeper)
                print(
                    f"settled in {blocks} blocks ({executor.stats.included} liquidations landed; "
                    f"{len(keeper.strategy.liquidatable)} liquidatable positions left, not worth sending)"
                )
                feed = dep.feeds.usd["WETH"]
                eth = (await current_usd_prices(rpc, dep))["WETH"]
                price, new, tried = choose_price(keeper, feed, eth, args.target)
                print(f"price search (ETH drop: positions newly liquidatable): {'; '.join(tried)}")
                print(
                    f"pending WETH/USD update: ${eth / 1e8:,.2f} -> ${price / 1e8:,.2f} "
                    f"(-{(eth - price) / eth * 100:.1f}%): {new} positions newly liquidatable"
                )
                probe = RelayProbe(net)
                misses: list[str] = []
                for path in ("public", "hint") if args.path == "both" else (args.path,):
                    miss = await measure_path(net, keeper, path, price, args, probe, tracked)
                    if miss:
                        misses.append(miss)
                s = executor.stats
                top = sorted(s.reasons.items(), key=lambda kv: -kv[1])[:4]
                print(
                    f"\nexecutor totals: {s.actions} actions, {s.sent} items sent in {s.transactions_sent} "
                    f"transactions, {s.simulation_failed} failed simulations"
                    + ("; reasons: " + "; ".join(f"{n} x {r}" for r, n in top) if top else "")
                )
    print("targets missed: " + ("; ".join(misses) or "none"))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, help="default 10,000 (--quick: 2,000)")
    ap.add_argument("--reps", type=int, help="measured updates (default 50, --quick 15)")
    ap.add_argument(
        "--target", type=int, default=3, help="positions the update should make liquidatable (1-10)"
    )
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between the last block and the update")
    ap.add_argument(
        "--ledger-dir", help="directory for the temporary ledger (default: the system's temp dir)"
    )
    ap.add_argument("--quick", action="store_true", help="2,000 borrowers, 15 measured updates")
    ap.add_argument(
        "--path", choices=("public", "hint", "both"), default="both", help="which backrun path to measure"
    )
    ap.add_argument("--profile", help="write a cProfile of the measured updates to this file (.public/.hint)")
    args = ap.parse_args()
    if not 1 <= args.target <= 10:
        ap.error("--target must be 1..10")
    defaults = {"borrowers": 2_000, "reps": 15} if args.quick else {"borrowers": 10_000, "reps": 50}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    started = time.perf_counter()
    print(
        f"bench_backrun: {args.borrowers} borrowers, {args.reps} measured updates"
        + (" (--quick: fewer borrowers and updates than the full run's 10,000 and 50)" if args.quick else "")
    )
    code = uvloop.run(run(args))
    print(
        f"(benchmark wall time {time.perf_counter() - started:.0f} s; load average at the end "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + ")"
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
