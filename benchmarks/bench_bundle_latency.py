"""Block-to-bundle latency: newHeads notification read off the socket -> eth_sendBundle written to the relay.

    .venv/bin/python benchmarks/bench_bundle_latency.py [--borrowers 10000] [--blocks 60] [--quick]

Set-up: a devnet (`Devnet(block_time=None)`: blocks only when asked, built by the local relay's builder),
N borrowers (`create_borrowers`), and the real keeper from `build_devnet_keeper` (strategy + valuer +
action builder + bundle executor; signers dev accounts 2 and 5-9; builders = the relay, with a fresh
random Flashbots key), run by its own `Engine` with a `BlockCollector` on the devnet's websocket.

One liquidatable position per measured block: after the initial sync, a search on the synced state
(`detect(price_overrides=...)`, as benchmarks/bench_liquidations.py does) finds a single-feed price
window in which exactly one more position is liquidatable. Each measured block is then: evm_snapshot,
the oracle update into that window (a slightly different price every block, so that no two blocks are
identical), `net.mine()`, wait until the executor has sent the bundle (or given up), evm_revert. The
bundle (target: the next block) is never mined, so the same position is liquidatable again next time.

Two variants:
  A. steady: measured blocks back to back (the previous block the keeper saw had the opportunity too,
     so the venue state is read concurrently with the protocol refresh);
  B. first sighting: a calm block (prices back where they were, nothing liquidatable) is mined and
     processed before each measured block, so every measured block is the first one showing the
     opportunity (the keeper cannot know in advance that it needs the venues, unless a position is
     already within the prefetch margin).

Latency: NewBlock.received_at_ns (monotonic ns, set when the header is read off the socket) to the moment
the executor's BundleClient POSTs eth_sendBundle to the relay (wrapped `_post_once`), simulation at the
relay (eth_callBundle) included. Targets: p50 <= 40 ms, p99 <= 120 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from bench_liquidations import find_window, moved, overrides_for
from eth_account import Account

from keeper.chain.rpc import RpcClient
from keeper.chain.signer import TxSigner
from keeper.collectors.blocks import BlockCollector
from keeper.core.actions import Action, SubmitBundle
from keeper.core.events import Event, NewBlock
from keeper.devnet.anvil import DEV_ACCOUNTS
from keeper.devnet.deploy import DevnetDeployment
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import current_usd_prices, send_oracle_updates
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.bundles import MultiBuilderClient, SignedRequest
from strategies.liquidations.factory import LiquidationKeeper, build_devnet_keeper

P50_TARGET = 0.040
P99_TARGET = 0.120
KEEPER_ACCOUNTS = [DEV_ACCOUNTS[2], *DEV_ACCOUNTS[5:10]]


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


@dataclass
class BlockTrace:
    number: int
    received_ns: int = 0
    strategy_start_ns: int = 0
    strategy_end_ns: int = 0
    strategy: dict[str, float] = field(default_factory=dict)
    prefetched: bool = False
    actions: int = 0
    executor_start_ns: int = 0
    executor: dict[str, float] = field(default_factory=dict)
    send_ns: int = 0
    outcome: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Probe:
    """Wraps the keeper's strategy, executor and bundle client to time one block end to end."""

    def __init__(self, keeper: LiquidationKeeper, builders: MultiBuilderClient) -> None:
        self.keeper = keeper
        self.traces: dict[int, BlockTrace] = {}
        self._current_action_block: int | None = None
        strategy = keeper.strategy
        executor = keeper.executor
        process_event: Callable[[Event], Awaitable[list[Action]]] = strategy.process_event
        execute: Callable[[Action], Awaitable[None]] = executor.execute

        async def timed_process_event(event: Event) -> list[Action]:
            if not isinstance(event, NewBlock):
                return await process_event(event)
            trace = self.traces.setdefault(event.number, BlockTrace(event.number))
            trace.received_ns = event.received_at_ns
            trace.strategy_start_ns = time.monotonic_ns()
            actions = await process_event(event)
            trace.strategy_end_ns = time.monotonic_ns()
            trace.strategy = dict(strategy.last_timings)
            trace.prefetched = bool(getattr(strategy, "prefetched", False))
            trace.actions = len(actions)
            if not actions:
                trace.outcome = "no action"
                trace.done.set()
            return actions

        async def timed_execute(action: Action) -> None:
            if not isinstance(action, SubmitBundle):
                await execute(action)
                return
            trace = self.traces.setdefault(action.target_block - 1, BlockTrace(action.target_block - 1))
            trace.executor_start_ns = time.monotonic_ns()
            self._current_action_block = trace.number
            try:
                await execute(action)
            finally:
                self._current_action_block = None
                trace.executor = dict(getattr(executor, "last_timings", {}))
                if not trace.outcome:
                    trace.outcome = "sent" if trace.send_ns else "not sent"
                trace.done.set()

        strategy.process_event = timed_process_event  # type: ignore[method-assign]
        executor.execute = timed_execute  # type: ignore[method-assign]

        for client in builders.clients:
            post_once: Callable[[SignedRequest], Awaitable[Any]] = client._post_once

            async def timed_post(req: SignedRequest, _post: Any = post_once) -> Any:
                if req.method == "eth_sendBundle" and self._current_action_block is not None:
                    trace = self.traces.get(self._current_action_block)
                    if trace is not None and not trace.send_ns:
                        trace.send_ns = time.monotonic_ns()
                return await _post(req)

            client._post_once = timed_post  # type: ignore[method-assign]


def on_event(reasons: dict[str, int]) -> Callable[[str, dict[str, Any]], None]:
    def record(kind: str, data: dict[str, Any]) -> None:
        if kind in ("simulation_failed", "below_minimum"):
            key = f"{kind}: {data.get('reason', data.get('net_wei', ''))}"[:160]
            reasons[key] = reasons.get(key, 0) + 1

    return record


async def measure(
    net: Devnet,
    dep: DevnetDeployment,
    probe: Probe,
    base: dict[str, int],
    symbol: str,
    prices: list[int],
    *,
    calm_before: bool,
) -> list[BlockTrace]:
    rpc, _ = net.require()
    out: list[BlockTrace] = []
    for price in prices:
        if calm_before:  # a calm block first: the measured one is the first to show the opportunity
            calm = await net.mine()
            await asyncio.wait_for(probe.traces.setdefault(calm, BlockTrace(calm)).done.wait(), 60)
        snap = await rpc.call("evm_snapshot")
        try:
            new = moved(base, symbol, price)
            if not await send_oracle_updates(rpc, dep, base, new):
                raise RuntimeError("no oracle update to send")
            number = await net.mine()
            trace = probe.traces.setdefault(number, BlockTrace(number))
            await asyncio.wait_for(trace.done.wait(), 60)
            out.append(trace)
        finally:
            await rpc.call("evm_revert", [snap])
        del probe.traces[number]  # the next measured block has the same number (after the revert)
    return out


def report(title: str, traces: list[BlockTrace]) -> bool:
    sent = [t for t in traces if t.send_ns and t.received_ns]
    outcomes: dict[str, int] = {}
    for t in traces:
        outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1
    print(f"  {title}: {len(traces)} blocks; outcomes: {outcomes}")
    if not sent:
        print("    no bundle sent: no latency figure")
        return False
    lat = [(t.send_ns - t.received_ns) / 1e9 for t in sent]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    ok = p50 <= P50_TARGET and p99 <= P99_TARGET
    print(
        f"    newHeads read -> eth_sendBundle written   p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(lat))}   "
        f"[p50 <= {P50_TARGET * 1e3:.0f} ms, p99 <= {P99_TARGET * 1e3:.0f} ms] {'PASS' if ok else 'MISS'}"
    )
    rows: list[tuple[str, list[float]]] = [
        ("dispatch (socket read -> strategy)", [(t.strategy_start_ns - t.received_ns) / 1e9 for t in sent]),
        ("detect: refresh (logs + market, 1 round trip)", [t.strategy["refresh"] for t in sent]),
        ("detect: screen + exact math", [t.strategy["detect"] for t in sent]),
        ("detect: value (venues + routes)", [t.strategy["value"] for t in sent]),
        ("build (SubmitBundle, calldata)", [t.strategy.get("build", 0.0) for t in sent]),
        ("queue (strategy -> executor)", [(t.executor_start_ns - t.strategy_end_ns) / 1e9 for t in sent]),
        ("executor: nonce + head (1 round trip)", [t.executor.get("prepare", 0.0) for t in sent]),
        ("executor: sign", [t.executor.get("sign", 0.0) for t in sent]),
        ("simulate (eth_callBundle at the relay)", [t.executor.get("simulate", 0.0) for t in sent]),
        (
            "send (simulated -> request written)",
            [
                (t.send_ns - t.executor_start_ns) / 1e9
                - t.executor.get("prepare", 0.0)
                - t.executor.get("sign", 0.0)
                - t.executor.get("simulate", 0.0)
                for t in sent
            ],
        ),
        ("  (send to every builder, answer included)", [t.executor.get("send", 0.0) for t in sent]),
    ]
    for name, xs in rows:
        print(
            f"    {name:<46} p50 {ms(pct(xs, 50))}   p99 {ms(pct(xs, 99))}   mean {ms(statistics.mean(xs))}"
        )
    print(f"    venue state read ahead (prefetch) in {sum(t.prefetched for t in sent)} of {len(sent)} blocks")
    return ok


async def run(args: argparse.Namespace) -> int:
    misses: list[str] = []
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        assert net.relay_url is not None
        print(f"devnet up in {net.start_seconds:.2f} s ({net.http_url}, relay {net.relay_url})")
        t = time.perf_counter()
        made = await create_borrowers(rpc, dep, args.borrowers, seed=1, miner=DevnetMiner(net))
        print(
            f"created {len(made.borrowers)} borrowers "
            f"({', '.join(f'{k} {v}' for k, v in sorted(made.counts.items()))}) in "
            f"{time.perf_counter() - t:.1f} s"
        )
        signers = [TxSigner.from_key(k) for _, k in KEEPER_ACCOUNTS]
        reasons: dict[str, int] = {}
        async with (
            RpcClient(net.http_url) as krpc,
            MultiBuilderClient([net.relay_url], Account.create().key) as builders,
        ):
            keeper = await build_devnet_keeper(
                krpc, dep.to_json(), signers=signers, builders=builders, on_event=on_event(reasons)
            )
            strategy = keeper.strategy
            t = time.perf_counter()
            await strategy.sync_state()
            tracked = sum(len(p.positions) for p in strategy.protocols)
            print(f"keeper synced {tracked} positions in {time.perf_counter() - t:.1f} s")

            base = await current_usd_prices(rpc, dep)
            k = len(strategy.detect(price_overrides=overrides_for(dep, strategy, base)))
            tried: list[str] = []
            window = find_window(dep, strategy, base, k, tried)
            print("  price search: " + "; ".join(tried))
            if window is None:
                raise RuntimeError("no single-feed price move makes one more position liquidatable")
            if window.extra != 1:
                print(f"  NOTE: the best move makes {window.extra} positions liquidatable at once")
            lo, hi = sorted((window.pa, window.pb))
            n = args.blocks
            prices = [lo + (hi - lo) * i // max(n, 1) for i in range(n)]
            print(
                f"  -> {window.label}: {window.symbol} in ${lo / 1e8:,.4f} .. ${hi / 1e8:,.4f} "
                f"({k} liquidatable before, {k + window.extra} in the window)"
            )

            async def no_sync() -> None:
                return None

            strategy.sync_state = no_sync  # type: ignore[method-assign,assignment]  # synced above
            probe = Probe(keeper, builders)
            engine = keeper.engine([BlockCollector(net.ws_url, krpc)])
            task = asyncio.create_task(engine.run(), name="bench:engine")
            try:
                head = await rpc.block_number()
                await asyncio.wait_for(probe.traces.setdefault(head, BlockTrace(head)).done.wait(), 30)
                warm = await measure(net, dep, probe, base, window.symbol, prices[:5], calm_before=False)
                print(f"  warm-up: {len(warm)} blocks ({sum(1 for t in warm if t.send_ns)} bundles sent)")
                gc.collect()
                steady = await measure(net, dep, probe, base, window.symbol, prices, calm_before=False)
                if not report("A. steady (every block liquidatable)", steady):
                    misses.append("A")
                if not args.skip_first:
                    first = await measure(net, dep, probe, base, window.symbol, prices, calm_before=True)
                    if not report("B. first sighting (a calm block before each)", first):
                        misses.append("B")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stats = keeper.executor.stats
            print(
                f"  executor: {stats.actions} actions, {stats.simulated} simulated, {stats.sent} sent, "
                f"{stats.simulation_failed} failed simulations, {stats.below_minimum} below minimum"
            )
            for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
                print(f"    {count} x {reason}")
    print("targets missed: " + (", ".join(misses) if misses else "none"))
    return 1 if misses else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, default=10_000)
    ap.add_argument("--blocks", type=int, default=60, help="measured blocks per variant (>= 50)")
    ap.add_argument("--skip-first", action="store_true", help="only the steady variant")
    ap.add_argument("--quick", action="store_true", help="300 borrowers, 10 blocks: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.borrowers, args.blocks = 300, 10
    started = time.perf_counter()
    print(f"bench_bundle_latency: {args.borrowers} borrowers, {args.blocks} measured blocks per variant")
    code = uvloop.run(run(args))
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
