"""Block -> LAST bundle written, on the day that matters: a crash block with 100+ liquidations at once.

    .venv/bin/python benchmarks/bench_bundle_latency.py            # 10,000 borrowers, ~100 s (30-55 s set-up)
    .venv/bin/python benchmarks/bench_bundle_latency.py --quick    # 2,000 borrowers, fewer repetitions
    .venv/bin/python benchmarks/bench_bundle_latency.py --profile crash   # + cProfile (crash or single)

Set-up: a devnet (`Devnet(block_time=None)`: blocks only when asked, built by the local relay's builder,
which runs in this process), N borrowers (`create_borrowers`, ~20 s for 10,000; not cached: `--quick`
makes fewer), and the keeper built exactly as `keeper run` builds it, through the tests' harness
(`tests/integration/keeper_harness.devnet_keeper`: Settings -> plan_run -> RunServices ->
`strategies.liquidations.wiring.build_keeper`), so the SQLite ledger is ON (WAL, synchronous=FULL, in a
temporary directory on the same disk as the repository), the gas budget is the wiring's default (a third
of the 60M block) and the senders are the keeper account and its five operators.

Blocks reach the keeper over the devnet's websocket: a `BlockCollector` subscribed to `newHeads`; for each
block the driver does what the engine's tasks do, in order (the harness's `on_block`): the executor sees the
block (`on_block`: inclusion of what it sent), then the strategy (`process_event`), then its actions go to
the executor as ONE group (`execute_group`). Latency = `NewBlock.received_at_ns` (monotonic clock when the
header was read off the socket) -> `executor.last_group["written_ns"]` (the moment the LAST transaction of
the block was accepted by the relay), simulation at the relay (eth_callBundle) and the durable ledger
claims included.

Repetitions replay the same block: evm_snapshot, the block's transactions (swaps + oracle updates), mine,
measure, evm_revert; then two empty ("calm") blocks are mined and processed, so the executor has settled the
reverted block's bundles (not included) before the next measured block and each measured block targets a
fresh block number (ledger claims are per opportunity and target block). The bundles are never mined.

Parts:
1. crash block: ETH (and wstETH) down by the smallest multiple of 1% that makes >= `--at-once` (100)
   positions liquidatable at once, the Uniswap pools moved with it in the same block (as the crash
   scenario does). Targets: p50 <= 40 ms, p99 <= 100 ms.
2. one-position block: a single-feed price window in which exactly one more position is liquidatable
   (the search of benchmarks/bench_liquidations.py). Target: p50 <= 12 ms.
3. one-at-a-time (the previous behaviour, for comparison): the crash block's actions executed one by one
   through `execute` (one transaction per opportunity, so at most one per sender: 6 a block).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import gc
import io
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from bench_liquidations import find_window, moved, overrides_for

from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import BlockCollector
from keeper.core.actions import SubmitBundle
from keeper.core.events import NewBlock
from keeper.devnet.deploy import WHALE, DevnetDeployment
from keeper.devnet.scenarios.amm import fund_trader_txs, move_all_txs
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.common import BulkSender
from keeper.devnet.scenarios.crash import ETH_SYMBOLS, current_usd_prices, send_oracle_updates
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.executors.bundle_executor import BundleExecutor
from keeper.executors.packing import OVER_BUDGET
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import bundle_executor, devnet_keeper

CRASH_P50, CRASH_P99 = 0.040, 0.100
CURRENT_TX: contextvars.ContextVar[TxTrace | None] = contextvars.ContextVar("bench_tx", default=None)
SINGLE_P50 = 0.012


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


@dataclass
class TxTrace:
    """One bundle of a block's group (one transaction of ours, or several sharing a simulation and a
    send), on the perf_counter clock."""

    prepare: tuple[float, float] = (0.0, 0.0)
    sign: float = 0.0
    simulate: float = 0.0
    simulations: int = 0
    sims: list[tuple[float, float]] = field(default_factory=list)
    claim: tuple[float, float] = (0.0, 0.0)
    send_start: float = 0.0
    written: float = 0.0


@dataclass
class BlockTrace:
    number: int
    received_ns: int = 0
    handled_ns: int = 0
    """When the driver took the block (after the collector's header handling)."""
    executor_block: float = 0.0
    strategy_start: float = 0.0
    strategy_wall: float = 0.0
    prefetched: bool = False
    venue_reads: list[tuple[float, float]] = field(default_factory=list)
    """The valuer's venue state reads started for this block (prefetch or on demand), perf_counter."""
    strategy: dict[str, float] = field(default_factory=dict)
    liquidatable: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Why the valuer and the action builder left liquidatable positions out (reason, up to its figures)."""
    group_start: float = 0.0
    group_start_ns: int = 0
    written_ns: int = 0
    actions: int = 0
    items: int = 0
    transactions: int = 0
    sent: int = 0
    over_budget: int = 0
    not_packed: int = 0
    below_minimum: int = 0
    simulation_failed: int = 0
    txs: list[TxTrace] = field(default_factory=list)
    """Per bundle sent (each bundle of a group runs in its own task: prepare, sign, simulate, claim, send)."""
    tx_items: list[int] = field(default_factory=list)
    """Items of each transaction sent for the next block."""

    @property
    def latency(self) -> float:
        return (self.written_ns - self.received_ns) / 1e9


class Driver:
    """Runs the keeper on every block the websocket announces; times the blocks the bench asks for."""

    def __init__(self, keeper: LiquidationKeeper) -> None:
        self.keeper = keeper
        self.executor: BundleExecutor = bundle_executor(keeper)
        self.one_by_one = False
        self.waiters: dict[int, asyncio.Future[BlockTrace]] = {}
        self.errors: list[str] = []
        self._current: BlockTrace | None = None
        self._block: BlockTrace | None = None
        self._instrument()
        self._instrument_venues()

    def _instrument_venues(self) -> None:
        """Times the valuer's venue state reads (one batched read of every pool, prefetched at block arrival
        when the strategy expects to need it, else when valuing)."""
        valuer = self.keeper.strategy.valuer
        refresh = getattr(valuer, "_refresh", None)
        if refresh is None:
            return

        async def timed_refresh(block: int) -> None:
            trace = self._block
            t = time.perf_counter()
            try:
                await refresh(block)
            finally:
                if trace is not None:
                    trace.venue_reads.append((t, time.perf_counter()))

        valuer._refresh = timed_refresh  # type: ignore[union-attr]

    def _trace(self) -> TxTrace:
        """The trace of the transaction being prepared in this task (set by `_prepare`, which runs first in
        each transaction's task; the ledger claims run in child tasks, which inherit the context)."""
        tr = CURRENT_TX.get()
        if tr is None:
            tr = TxTrace()
            CURRENT_TX.set(tr)
            if self._current is not None:
                self._current.txs.append(tr)
        return tr

    def _instrument(self) -> None:
        """Wraps the executor's steps (each transaction of a group runs in its own task)."""
        ex = self.executor
        prepare, sign, simulate, send = ex._prepare, ex._sign, ex._simulate, ex._send
        assert ex.ledger is not None, "the ledger must be on"
        claim_send = ex.ledger.claim_send

        # Signature-agnostic wrappers (the executor's private steps change shape as it evolves): each
        # bundle of a group runs in its own task and starts with `_prepare`; `_send` gets `written` last.
        async def timed_prepare(*args: Any) -> Any:
            CURRENT_TX.set(None)
            tr = self._trace()
            t = time.perf_counter()
            try:
                return await prepare(*args)
            finally:
                tr.prepare = (t, time.perf_counter())

        def timed_sign(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return sign(*args)
            finally:
                self._trace().sign += time.perf_counter() - t

        async def timed_simulate(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return await simulate(*args)
            finally:
                tr = self._trace()
                tr.sims.append((t, time.perf_counter()))
                tr.simulate += time.perf_counter() - t
                tr.simulations += 1

        async def timed_claim(opportunity_id: str, target_block: int) -> bool:
            tr = self._trace()
            t = time.perf_counter()
            try:
                return await claim_send(opportunity_id, target_block)
            finally:
                start = tr.claim[0] or t
                tr.claim = (start, time.perf_counter())

        class Written(list[float]):
            def __init__(self, inner: list[float], tr: TxTrace) -> None:
                super().__init__()
                self.inner, self.tr = inner, tr

            def append(self, value: float) -> None:
                self.tr.written = value
                self.inner.append(value)

        async def timed_send(*args: Any, **kwargs: Any) -> None:
            tr = self._trace()
            tr.send_start = time.perf_counter()
            *rest, written = args
            await send(*rest, Written(written, tr), **kwargs)

        ex._prepare = timed_prepare  # type: ignore[method-assign]
        ex._sign = timed_sign  # type: ignore[method-assign]
        ex._simulate = timed_simulate  # type: ignore[method-assign]
        ex._send = timed_send  # type: ignore[method-assign]
        ex.ledger.claim_send = timed_claim  # type: ignore[method-assign]

    def expect(self, number: int) -> asyncio.Future[BlockTrace]:
        fut: asyncio.Future[BlockTrace] = asyncio.get_running_loop().create_future()
        self.waiters[number] = fut
        return fut

    async def run(self, collector: BlockCollector) -> None:
        async with contextlib.aclosing(collector.events()) as events:
            async for block in events:
                try:
                    trace = await self.handle(block)
                except Exception as exc:  # reported, and the waiting bench gives up on this block
                    self.errors.append(f"block {block.number}: {type(exc).__name__}: {exc}")
                    fut = self.waiters.pop(block.number, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                    continue
                fut = self.waiters.pop(block.number, None)
                if fut is not None and not fut.done():
                    fut.set_result(trace)

    async def handle(self, block: NewBlock) -> BlockTrace:
        trace = BlockTrace(block.number, received_ns=block.received_at_ns, handled_ns=time.monotonic_ns())
        ex, strategy = self.executor, self.keeper.strategy
        t = time.perf_counter()
        await ex.on_block(block)
        trace.executor_block = time.perf_counter() - t
        t = trace.strategy_start = time.perf_counter()
        self._block = trace
        try:
            actions = [a for a in await strategy.process_event(block) if isinstance(a, SubmitBundle)]
        finally:
            self._block = None
        trace.strategy_wall = time.perf_counter() - t
        trace.prefetched = bool(getattr(strategy, "prefetched", False))
        trace.strategy = dict(strategy.last_timings)
        trace.liquidatable = len(getattr(strategy, "liquidatable", strategy.opportunities))
        reasons = [*getattr(strategy, "dropped", {}).values(), *self.keeper.actions.skipped.values()]
        trace.dropped = Counter(short_reason(r) for r in reasons)
        trace.actions = len(actions)
        if not actions:
            return trace
        s = ex.stats
        before = (s.sent, s.transactions_sent, s.not_packed, s.below_minimum, s.simulation_failed)
        over_before = s.reasons.get(f"not packed: {OVER_BUDGET}", 0)
        self._current = trace
        trace.group_start, trace.group_start_ns = time.perf_counter(), time.monotonic_ns()
        try:
            if self.one_by_one:
                for a in actions:
                    ex.last_group = {}
                    await ex.execute(a)
                    if ex.last_group.get("transactions"):
                        trace.written_ns = int(ex.last_group["written_ns"])
            else:
                ex.last_group = {}
                await ex.execute_group(actions)
                if ex.last_group.get("transactions"):
                    trace.written_ns = int(ex.last_group["written_ns"])
                    trace.items = int(ex.last_group["items"])
        finally:
            self._current = None
        trace.sent = s.sent - before[0]
        trace.transactions = s.transactions_sent - before[1]
        trace.not_packed = s.not_packed - before[2]
        trace.below_minimum = s.below_minimum - before[3]
        trace.simulation_failed = s.simulation_failed - before[4]
        trace.over_budget = s.reasons.get(f"not packed: {OVER_BUDGET}", 0) - over_before
        if self.one_by_one:
            trace.items = trace.sent
        target = block.number + 1
        trace.tx_items = [len(p.items) for p in ex.pending.values() if p.target_block == target]
        return trace


def short_reason(reason: object) -> str:
    """A drop reason without its figures: "beyond the block's gas budget (19 of 20 M gas used)" -> "beyond the
    block's gas budget"."""
    text = str(reason)
    for sep in (" (", ": ", " ~", " -"):
        head, found, _ = text.partition(sep)
        if found and len(head) >= 12:
            text = head
    return text[:80]


class RelayProbe:
    """Times the in-process relay's eth_callBundle handler and, inside it, anvil's eth_simulateV1."""

    def __init__(self, net: Devnet) -> None:
        relay = net.relay
        assert relay is not None
        self.calls: list[tuple[float, float, float]] = []
        """(start, end, seconds in eth_simulateV1) per eth_callBundle, on the perf_counter clock."""
        handler = relay._methods["eth_callBundle"]
        rpc = relay.builder.rpc
        rpc_call = rpc.call
        anvil_seconds: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
            "anvil", default=None
        )

        async def timed_call(method: str, params: Any = None) -> Any:
            acc = anvil_seconds.get()
            t = time.perf_counter()
            try:
                return await rpc_call(method, params)
            finally:
                if acc is not None and method == "eth_simulateV1":
                    acc[0] += time.perf_counter() - t

        async def timed_handler(params: Any, signer: str) -> Any:
            acc = [0.0]
            anvil_seconds.set(acc)
            t = time.perf_counter()
            try:
                return await handler(params, signer)
            finally:
                self.calls.append((t, time.perf_counter(), acc[0]))

        rpc.call = timed_call  # type: ignore[method-assign]
        relay._methods["eth_callBundle"] = timed_handler

    def inside(self, start: float, end: float) -> tuple[float, float]:
        """(relay handler seconds, anvil eth_simulateV1 seconds) of the call answering a request made in
        [start, end]: the one inside it that ended last (other transactions' calls may overlap)."""
        calls = [(b, b - a, sim) for a, b, sim in self.calls if start <= a and b <= end]
        if not calls:
            return 0.0, 0.0
        _, handler, anvil = max(calls)
        return handler, anvil


PROBE: RelayProbe | None = None


class Bench:
    def __init__(self, net: Devnet, driver: Driver, head: int) -> None:
        self.net = net
        self.driver = driver
        self.head = head
        self.calm_with_actions = 0

    async def mine_and_wait(self) -> BlockTrace:
        fut = self.driver.expect(self.head + 1)
        self.head = await self.net.mine()
        return await asyncio.wait_for(fut, 60)

    async def calm(self, blocks: int = 2) -> None:
        for _ in range(blocks):
            if (await self.mine_and_wait()).actions:
                self.calm_with_actions += 1

    async def settle(self, max_blocks: int = 40) -> int:
        """Mines until three blocks in a row bring no action and nothing is pending (positions already
        liquidatable before the measurements get liquidated here)."""
        quiet = 0
        for i in range(max_blocks):
            trace = await self.mine_and_wait()
            quiet = quiet + 1 if not trace.actions and not self.driver.executor.pending else 0
            if quiet >= 3:
                return i + 1
        return max_blocks

    async def replay(
        self, send_block_txs: Callable[[], Awaitable[None]], reps: int, *, one_by_one: bool = False
    ) -> list[BlockTrace]:
        rpc, _ = self.net.require()
        out: list[BlockTrace] = []
        self.driver.one_by_one = one_by_one
        try:
            for _ in range(reps):
                snap = await rpc.call("evm_snapshot")
                head = self.head
                try:
                    await send_block_txs()
                    out.append(await self.mine_and_wait())
                finally:
                    await rpc.call("evm_revert", [snap])
                    self.head = head
                await self.calm()
        finally:
            self.driver.one_by_one = False
        return out


def row(name: str, xs: list[float]) -> None:
    print(f"    {name:<52} p50 {ms(pct(xs, 50))}   p99 {ms(pct(xs, 99))}   mean {ms(statistics.mean(xs))}")


def critical(t: BlockTrace) -> TxTrace | None:
    """The bundle written last (the one the block's latency ends with)."""
    written = [x for x in t.txs if x.written]
    return max(written, key=lambda x: x.written) if written else None


def report(
    title: str,
    traces: list[BlockTrace],
    p50_target: float,
    p99_target: float | None,
    *,
    one_by_one: bool = False,
) -> str | None:
    ok_traces = [t for t in traces if t.written_ns]
    print(f"  {title}: {len(traces)} blocks, {len(ok_traces)} with bundles written")
    if not ok_traces:
        return f"{title}: nothing written"
    lat = [t.latency for t in ok_traces]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    ok = p50 <= p50_target and (p99_target is None or p99 <= p99_target)
    target = f"p50 <= {p50_target * 1e3:.0f} ms" + (
        f", p99 <= {p99_target * 1e3:.0f} ms" if p99_target else ""
    )
    print(
        f"    newHeads read -> LAST bundle written      p50 {ms(p50)}   p99 {ms(p99)}   max {ms(max(lat))}"
        f"   [{target}] {'PASS' if ok else 'MISS'}"
    )
    c = Counter((t.actions, t.items, t.transactions, t.over_budget, t.not_packed) for t in ok_traces)
    (actions, items, txs, over, not_packed), n = c.most_common(1)[0]
    print(
        f"    per block ({n} of {len(ok_traces)} alike): {actions} actions from the strategy, {items} items "
        f"sent "
        f"in {txs} transactions; left for the next block: {over} by the gas budget"
        + (f", {not_packed - over} for lack of a free sender" if not_packed > over else "")
    )
    below = sum(t.below_minimum for t in ok_traces)
    failed = sum(t.simulation_failed for t in ok_traces)
    if below or failed:
        print(f"    dropped after simulation over all blocks: {below} below minimum, {failed} failed")
    liq = Counter(t.liquidatable for t in ok_traces).most_common(1)[0][0]
    dropped = Counter[str]()
    for t in ok_traces:
        dropped.update(t.dropped)
    if dropped:
        n_blocks = len(ok_traces)
        print(
            f"    {liq} liquidatable; left out by the valuer / action builder (per block): "
            + "; ".join(f"{n / n_blocks:.0f} {r}" for r, n in dropped.most_common(4))
        )
    print(
        "    where the time goes (consecutive steps; the executor's are those of the bundle written last, "
        "the block's bundles run concurrently):"
    )
    row(
        "dispatch (socket read -> driver, header decoded)",
        [(t.handled_ns - t.received_ns) / 1e9 for t in ok_traces],
    )
    row("executor.on_block (inclusion of earlier bundles)", [t.executor_block for t in ok_traces])
    row("strategy (process_event)", [t.strategy_wall for t in ok_traces])
    for k in ("refresh", "detect", "value", "build"):
        row(f"  {k}", [t.strategy.get(k, 0.0) for t in ok_traces])
        if k == "value":
            waits, reads = [], []
            for t in ok_traces:
                if t.venue_reads:
                    a, b = t.venue_reads[0]
                    reads.append(b - a)
                    value_start = (
                        t.strategy_start + t.strategy.get("refresh", 0.0) + t.strategy.get("detect", 0.0)
                    )
                    waits.append(max(0.0, b - value_start))
            if reads:
                row("    waiting for the venue state read", waits)
                row("    (venue state read: one batch, all pools)", reads)
            print(
                f"    (venue state read ahead at block arrival in {sum(t.prefetched for t in ok_traces)} "
                f"of {len(ok_traces)} blocks)"
            )
    crit = [(t, critical(t)) for t in ok_traces]
    crit = [(t, x) for t, x in crit if x is not None]
    if crit:
        first = "earlier actions one by one, then record + pack" if one_by_one else "record + pack"
        row(f"executor: {first}", [x.prepare[0] - t.group_start for t, x in crit])
        row("executor: prepare (nonce + head, 1 round trip)", [x.prepare[1] - x.prepare[0] for _, x in crit])
        row("executor: sign", [x.sign for _, x in crit])
        row("executor: simulate (eth_callBundle at the relay)", [x.simulate for _, x in crit])
        if PROBE is not None:
            inside = [[PROBE.inside(a, b) for a, b in x.sims] for _, x in crit]
            row("  relay handler (same process)", [sum(h for h, _ in xs) for xs in inside])
            row("    anvil eth_simulateV1", [sum(a for _, a in xs) for xs in inside])
        row("executor: claim (ledger, fsynced)", [x.claim[1] - x.claim[0] for _, x in crit])
        row("executor: send (-> accepted by the relay)", [x.written - x.send_start for _, x in crit])
        gaps = []
        for t, x in crit:
            steps = (t.handled_ns - t.received_ns) / 1e9 + t.executor_block + t.strategy_wall
            steps += x.written - t.group_start
            gaps.append(t.latency - steps)
        row("between steps (driver, event loop)", gaps)
        resim = sum(x.simulations > 1 for _, x in crit)
        if resim:
            print(f"    re-simulated (items dropped) in {resim} of {len(crit)} blocks")
        sims = [max((x.simulate for x in t.txs), default=0.0) for t, _ in crit]
        row("slowest simulation of the block", sims)
        per_tx = Counter(n for t in ok_traces for n in t.tx_items)
        print(f"    items per transaction (count over all blocks): {sorted(per_tx.items())}")
    return None if ok else f"{title}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms ({target})"


def print_profile(profile: cProfile.Profile) -> None:
    """Includes the devnet's own work in this process (relay, builder, mining) and the calm blocks."""
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(45)
    print(out.getvalue())


def crash_drop(
    dep: DevnetDeployment, keeper: LiquidationKeeper, base: dict[str, int], at_once: int
) -> tuple[int, int, int]:
    """(drop in bps, liquidatable before, liquidatable after): the smallest 1% step adding `at_once`."""
    strategy = keeper.strategy
    before = len(strategy.detect(price_overrides=overrides_for(dep, strategy, base)))
    for drop in range(100, 6_000, 100):
        new = moved(base, "WETH", base["WETH"] * (10_000 - drop) // 10_000)
        after = len(strategy.detect(price_overrides=overrides_for(dep, strategy, new)))
        if after - before >= at_once:
            return drop, before, after
    raise RuntimeError(f"no ETH drop up to 60% makes {at_once} positions liquidatable")


def git_state() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = [line[3:] for line in dirty if line.strip() and not line[3:].startswith("benchmarks/")]
    return f"commit {head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


async def run(args: argparse.Namespace) -> int:
    misses: list[str] = []
    print(f"code: {git_state()}")
    events: Counter[str] = Counter()
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        print(f"devnet up in {net.start_seconds:.2f} s ({net.http_url}, relay {net.relay_url})")
        miner = DevnetMiner(net)
        t = time.perf_counter()
        made = await create_borrowers(rpc, dep, args.borrowers, seed=1, miner=miner)
        print(f"created {len(made.borrowers)} borrowers in {time.perf_counter() - t:.1f} s")
        # The whale that moves the pools in the crash block: funded once, before any snapshot.
        sender = BulkSender(rpc, miner=miner)
        await sender.impersonate_all(True)
        await sender.run(fund_trader_txs(dep, WHALE, set(dep.tokens)))
        with tempfile.TemporaryDirectory(prefix="bench-bundle-latency-", dir=args.ledger_dir) as tmp:
            t = time.perf_counter()
            async with (
                devnet_keeper(net, Path(tmp), event_sink=lambda kind, _data: events.update([kind])) as keeper,
                RpcClient(net.http_url) as collector_rpc,
            ):
                executor = bundle_executor(keeper)
                tracked = sum(len(p.positions) for p in keeper.strategy.protocols)
                print(
                    f"keeper built and synced ({tracked} positions) in {time.perf_counter() - t:.1f} s; "
                    f"ledger {Path(tmp) / 'ledger.sqlite'}; "
                    f"gas budget {executor.slots.gas_budget:,} a block, "
                    f"{len(executor.signers)} senders"
                )
                driver = Driver(keeper)
                global PROBE
                PROBE = RelayProbe(net)
                collector = BlockCollector(net.ws_url, collector_rpc)
                task = asyncio.create_task(driver.run(collector), name="bench:driver")
                try:
                    await asyncio.sleep(0.3)  # subscribed; the collector announces the head it finds
                    bench = Bench(net, driver, await rpc.block_number())
                    settled = await bench.settle()
                    left = len(keeper.strategy.opportunities)
                    print(
                        f"settled in {settled} blocks ({executor.stats.included} liquidations landed; "
                        f"{left} liquidatable positions not worth sending)"
                    )
                    base = await current_usd_prices(rpc, dep)
                    await crash_part(args, dep, keeper, bench, base, misses)
                    await single_part(args, dep, keeper, bench, base, misses)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if driver.errors:
                    print(f"driver errors: {len(driver.errors)}; first: {driver.errors[0]}")
                if bench.calm_with_actions:
                    print(f"NOTE: {bench.calm_with_actions} calm blocks had actions")
                s = executor.stats
                print(
                    f"executor totals: {s.actions} actions, {s.simulated} simulations, {s.sent} items sent "
                    f"in "
                    f"{s.transactions_sent} transactions, {s.simulation_failed} failed simulations, "
                    f"{s.below_minimum} below minimum, {s.duplicate} duplicates, {s.stale} stale"
                )
                top = sorted(s.reasons.items(), key=lambda kv: -kv[1])[:4]
                print("  reasons: " + "; ".join(f"{n} x {r}" for r, n in top))
    print("targets missed: " + ("; ".join(misses) if misses else "none"))
    return 0


async def crash_part(
    args: argparse.Namespace,
    dep: DevnetDeployment,
    keeper: LiquidationKeeper,
    bench: Bench,
    base: dict[str, int],
    misses: list[str],
) -> None:
    rpc, _ = bench.net.require()
    drop, before, after = crash_drop(dep, keeper, base, args.at_once)
    crashed = moved(base, "WETH", base["WETH"] * (10_000 - drop) // 10_000)
    print(
        f"\n1. Crash block: ETH ${base['WETH'] / 1e8:,.2f} -> ${crashed['WETH'] / 1e8:,.2f} "
        f"(-{drop / 100:.0f}%), "
        f"pools moved in the same block; liquidatable {before} -> {after} (+{after - before} at once)"
    )

    async def crash_txs() -> None:
        for tx in await move_all_txs(rpc, dep, crashed, WHALE, only_symbols=set(ETH_SYMBOLS)):
            await rpc.call("eth_sendTransaction", [tx.to_rpc()])
        if not await send_oracle_updates(rpc, dep, base, crashed):
            raise RuntimeError("no oracle update to send")

    warm = await bench.replay(crash_txs, 3)
    print(f"  warm-up: {len(warm)} blocks ({sum(1 for t in warm if t.written_ns)} with bundles written)")
    gc.collect()
    profile = cProfile.Profile() if args.profile == "crash" else None
    if profile is not None:
        profile.enable()
    traces = await bench.replay(crash_txs, args.reps)
    if profile is not None:
        profile.disable()
    miss = report("group (execute_group)", traces, CRASH_P50, CRASH_P99)
    if miss:
        misses.append("crash " + miss)
    if profile is not None:
        print_profile(profile)
    if args.one_at_a_time:
        gc.collect()
        print(
            "\n3. The same crash block, one action at a time (`execute` per action: the previous behaviour)"
        )
        old = await bench.replay(crash_txs, args.one_at_a_time, one_by_one=True)
        report("one at a time (execute)", old, CRASH_P50, CRASH_P99, one_by_one=True)
        new_ok = [t for t in traces if t.written_ns]
        old_ok = [t for t in old if t.written_ns]
        if new_ok and old_ok:
            n_items = pct([float(t.items) for t in new_ok], 50)
            o_items = pct([float(t.items) for t in old_ok], 50)
            n_lat = pct([t.latency for t in new_ok], 50)
            o_lat = pct([t.latency for t in old_ok], 50)
            print(
                f"    -> crash block, p50: grouped {n_items:.0f} items written in {ms(n_lat).strip()}; "
                f"one at a time {o_items:.0f} items in {ms(o_lat).strip()}, the other "
                f"{n_items - o_items:.0f} wait for later blocks ({n_items / max(o_items, 1):.1f}x the items "
                f"in {n_lat / o_lat:.2f}x the time)"
            )


async def single_part(
    args: argparse.Namespace,
    dep: DevnetDeployment,
    keeper: LiquidationKeeper,
    bench: Bench,
    base: dict[str, int],
    misses: list[str],
) -> None:
    rpc, _ = bench.net.require()
    strategy = keeper.strategy
    k = len(strategy.detect(price_overrides=overrides_for(dep, strategy, base)))
    tried: list[str] = []
    window = find_window(dep, strategy, base, k, tried)
    print(f"\n2. One-position block: price search: {'; '.join(tried)}")
    if window is None:
        misses.append("one-position block: no single-feed price window found")
        return
    lo, hi = sorted((window.pa, window.pb))
    print(
        f"  -> {window.label}: {window.symbol} in ${lo / 1e8:,.4f} .. ${hi / 1e8:,.4f} "
        f"({k} liquidatable before, {k + window.extra} in the window)"
    )
    reps = args.reps
    prices = [lo + (hi - lo) * i // max(reps, 1) for i in range(reps)]
    it = iter([prices[0]] * 3 + prices)

    async def single_txs() -> None:
        if not await send_oracle_updates(rpc, dep, base, moved(base, window.symbol, next(it))):
            raise RuntimeError("no oracle update to send")

    await bench.replay(single_txs, 3)
    gc.collect()
    profile = cProfile.Profile() if args.profile == "single" else None
    if profile is not None:
        profile.enable()
    traces = await bench.replay(single_txs, reps)
    if profile is not None:
        profile.disable()
        print_profile(profile)
    miss = report("one position (execute_group)", traces, SINGLE_P50, None)
    if miss:
        misses.append(miss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--borrowers", type=int, help="default 10,000 (--quick: 2,000)")
    ap.add_argument("--reps", type=int, help="measured blocks in parts 1 and 2 (default 50, --quick 20)")
    ap.add_argument("--at-once", type=int, default=100, help="positions the crash makes liquidatable at once")
    ap.add_argument("--one-at-a-time", type=int, help="blocks for part 3 (default 10, --quick 5; 0: skip)")
    ap.add_argument("--profile", choices=["crash", "single"], help="cProfile the measured blocks of a part")
    ap.add_argument(
        "--ledger-dir", help="directory for the temporary ledger (default: the system's temp dir)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="2,000 borrowers, 20 blocks per part, 5 one at a time"
    )
    args = ap.parse_args()
    quick = {"borrowers": 2_000, "reps": 20, "one_at_a_time": 5}
    full = {"borrowers": 10_000, "reps": 50, "one_at_a_time": 10}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    started = time.perf_counter()
    print(
        f"bench_bundle_latency: {args.borrowers} borrowers, {args.reps} measured blocks per part"
        + (" (--quick: fewer borrowers and blocks)" if args.quick else "")
    )
    code = uvloop.run(run(args))
    print(f"(benchmark wall time {time.perf_counter() - started:.0f} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
