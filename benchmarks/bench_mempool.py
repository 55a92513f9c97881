"""Mempool ingestion: pending txs decoded and filtered per second on one core, and what a firehose of them
does to the block path's latency on the same event loop.

    .venv/bin/python benchmarks/bench_mempool.py            # 20,000 txs; 2,000 borrowers, 30 blocks a rate
    .venv/bin/python benchmarks/bench_mempool.py --quick    # 5,000 txs; 500 borrowers, 10 blocks a rate
    .venv/bin/python benchmarks/bench_mempool.py --rates 0,2000,5000,10000

1. Throughput (no I/O, one thread): a seeded, mainnet-like mix of JSON-RPC tx objects as
   `newPendingTransactions` delivers them with full objects (types 2/0/1 ~ 80/15/5%; ETH transfers,
   ERC-20 calls, router swaps, a few large calldatas, contract creations, access lists; `--watched-pct`
   (3%) are `transmit`s to the watched aggregators with OCR2 calldata of 31 observations, 0.5% other calls to
   them). Each object goes through what `PendingTxCollector` does: `decode_pending_tx`, the oracle filter
   (`OracleWatch.wants`, aggregators as the strategy would hold them), and `keeper.chain.rawtx.rebuild_raw`
   for the kept ones (keccak-checked against the hash). The objects carry valid hashes (keccak of the
   RLP of their fields) but random signatures: nothing on this path checks a signature. Prints tx/s (best
   and median of `--rounds`), the cost per tx of each step, and the same with the websocket's JSON parse of
   the notification (`orjson.loads`, as `keeper.chain.ws` does on the loop). Target: >= 5,000 tx/s.
2. Block path under a firehose: a devnet (on-demand blocks), N borrowers and the keeper built through the
   harness (`devnet_keeper`, ledger on). Blocks carry one oracle update each (ETH +-0.5% alternating:
   the refresh / screen / valuation work of a normal block, nothing liquidatable) and reach the keeper over
   the websocket (`BlockCollector`, `newHeads`); the driver runs the harness's `on_block` (executor,
   strategy, executor group). Latency = `NewBlock.received_at_ns` -> `on_block` returned. Meanwhile a task on
   the same event loop pushes pending txs (pre-serialized notifications: orjson.loads, decode, filter,
   rebuild for the kept ones) in slices of at most 16 txs between yields to the loop, the way a socket's
   frames arrive, at each of `--rates` tx/s in turn: the rates are interleaved block by block (the firehose
   runs 0.15 s at the block's rate before it is mined), so drifting machine load hits every rate alike.
   Prints the block path's p50/p99 per rate, the rate achieved and the share of the loop it took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
import rlp
import uvloop
from bench_bundle_latency import git_state
from bench_liquidations import moved
from eth_utils.crypto import keccak

from keeper.chain import ocr2
from keeper.chain.rawtx import rebuild_raw
from keeper.chain.rpc import RpcClient
from keeper.collectors.blocks import BlockCollector
from keeper.collectors.mempool import decode_pending_tx
from keeper.core.events import NewBlock, PendingTx
from keeper.devnet.scenarios.borrowers import create_borrowers
from keeper.devnet.scenarios.crash import current_usd_prices, send_oracle_updates
from keeper.devnet.stack import Devnet, DevnetMiner
from keeper.devnet.tokens import make_observations
from strategies.liquidations.oracle_watch import OracleWatch
from strategies.liquidations.wiring import LiquidationKeeper
from tests.integration.keeper_harness import bundle_executor, devnet_keeper, on_block, step

THROUGHPUT_TARGET = 5_000
CHAIN_ID = 1
SLICE = 16
WARM = 0.15


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


# ------------------------------------------------------------------------------------ the tx mix


def _hex(n: int) -> str:
    return hex(n)


def _addr(rng: random.Random) -> bytes:
    return rng.randbytes(20)


def _calldata(rng: random.Random, kind: str) -> bytes:
    if kind == "transfer":
        return b""
    if kind == "erc20":  # transfer / approve: selector + address + amount
        return (
            rng.choice([b"\xa9\x05\x9c\xbb", b"\x09\x5e\xa7\xb3"])
            + bytes(12)
            + _addr(rng)
            + rng.randbytes(32)
        )
    if kind == "swap":  # router calls: ~260 bytes to ~1 KB of ABI words
        return rng.randbytes(4) + rng.randbytes(32 * rng.randint(8, 32))
    if kind == "large":  # batch calls, NFT mints, L2 data: 2-10 KB
        return rng.randbytes(4) + rng.randbytes(32 * rng.randint(64, 320))
    if kind == "create":
        return rng.randbytes(rng.randint(2_000, 12_000))
    raise ValueError(kind)


def _transmit(rng: random.Random) -> bytes:
    answer = rng.randint(1_000, 4_000) * 10**8
    return ocr2.encode_transmit(
        make_observations(answer, 31),
        epoch_round=rng.randint(1, 2**32),
        observations_timestamp=1_780_000_000 + rng.randint(0, 10**6),
        config_digest=rng.randbytes(32),
        rs=[rng.randbytes(32) for _ in range(11)],
        ss=[rng.randbytes(32) for _ in range(11)],
    )


def tx_object(rng: random.Random, to: bytes | None, data: bytes, tx_type: int) -> dict[str, Any]:
    """A JSON-RPC tx object as a node announces it (pending: no block fields set), with a consistent hash
    (keccak of the signed RLP built from its fields) and a random signature."""
    nonce = rng.randint(0, 5_000)
    gas = rng.choice((21_000, 65_000, 180_000, 350_000, 1_200_000))
    value = rng.choice((0, 0, 0, rng.randint(1, 10**20)))
    r, s = rng.getrandbits(255) | 1, rng.getrandbits(254) | 1
    parity = rng.getrandbits(1)
    access_list: list[list[Any]] = []
    if tx_type == 1 or (tx_type == 2 and rng.random() < 0.1):
        access_list = [[_addr(rng), [rng.randbytes(32) for _ in range(rng.randint(0, 4))]] for _ in range(2)]
    tip = rng.randint(10**7, 3 * 10**9)
    max_fee = tip + rng.randint(10**9, 60 * 10**9)
    gas_price = rng.randint(10**9, 60 * 10**9)
    to_b = b"" if to is None else to
    obj: dict[str, Any] = {
        "blockHash": None,
        "blockNumber": None,
        "transactionIndex": None,
        "from": "0x" + _addr(rng).hex(),
        "to": None if to is None else "0x" + to.hex(),
        "gas": _hex(gas),
        "value": _hex(value),
        "nonce": _hex(nonce),
        "input": "0x" + data.hex(),
        "type": _hex(tx_type),
        "r": _hex(r),
        "s": _hex(s),
    }
    if tx_type == 0:
        v = CHAIN_ID * 2 + 35 + parity
        raw = rlp.encode([nonce, gas_price, gas, to_b, value, data, v, r, s])
        obj.update(gasPrice=_hex(gas_price), v=_hex(v), chainId=_hex(CHAIN_ID))
    else:
        json_al = [
            {"address": "0x" + a.hex(), "storageKeys": ["0x" + k.hex() for k in keys]}
            for a, keys in access_list
        ]
        if tx_type == 1:
            fields = [CHAIN_ID, nonce, gas_price, gas, to_b, value, data, access_list, parity, r, s]
            obj.update(gasPrice=_hex(gas_price))
        else:
            fields = [CHAIN_ID, nonce, tip, max_fee, gas, to_b, value, data, access_list, parity, r, s]
            obj.update(maxFeePerGas=_hex(max_fee), maxPriorityFeePerGas=_hex(tip), gasPrice=_hex(max_fee))
        raw = bytes([tx_type]) + rlp.encode(fields)
        obj.update(chainId=_hex(CHAIN_ID), accessList=json_al, v=_hex(parity), yParity=_hex(parity))
    obj["hash"] = "0x" + keccak(raw).hex()
    return obj


@dataclass
class Mix:
    objects: list[dict[str, Any]]
    messages: list[bytes]
    """The same objects as `eth_subscription` notifications (what the socket delivers)."""
    watch: OracleWatch
    counts: dict[str, int] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    mean_bytes: float = 0.0


def make_mix(n: int, seed: int, watched_pct: float) -> Mix:
    rng = random.Random(seed)
    aggregators = [_addr(rng) for _ in range(14)]  # V3 USD feeds and V2 ETH feeds of a few assets
    watch = OracleWatch()
    watch.aggregators = {"0x" + a.hex(): [("aave-v3", "0x" + _addr(rng).hex())] for a in aggregators}
    shares = [
        ("watched transmit", watched_pct),
        ("other call to a watched aggregator", 0.5),
        ("ETH transfer", 25.0),
        ("ERC-20 call", 30.0),
        ("router swap", 35.0),
        ("large calldata", 5.0),
        ("contract creation", 0.5),
    ]
    names, weights = zip(*shares, strict=True)
    counts = dict.fromkeys(names, 0)
    objects = []
    kinds: list[str] = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        counts[kind] += 1
        kinds.append(kind)
        tx_type = rng.choices((2, 0, 1), (80, 15, 5))[0]
        to: bytes | None = _addr(rng)
        if kind == "watched transmit":
            to, data = rng.choice(aggregators), _transmit(rng)
        elif kind == "other call to a watched aggregator":
            to, data = rng.choice(aggregators), rng.randbytes(4) + rng.randbytes(32)
        elif kind == "contract creation":
            to, data = None, _calldata(rng, "create")
        else:
            data = _calldata(
                rng,
                {"ETH transfer": "transfer", "ERC-20 call": "erc20", "router swap": "swap"}.get(
                    kind, "large"
                ),
            )
        objects.append(tx_object(rng, to, data, tx_type))
    sub = "0x" + rng.randbytes(16).hex()
    messages = [
        orjson.dumps(
            {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": o}}
        )
        for o in objects
    ]
    return Mix(objects, messages, watch, counts, kinds, statistics.mean(len(m) for m in messages))


def ingest(obj: Any, wants: Callable[[PendingTx], bool], now_ns: int) -> PendingTx | None:
    """What `PendingTxCollector.events` does with one object (its decode, filter, raw rebuild)."""
    tx = decode_pending_tx(obj, now_ns)
    if not wants(tx):
        return None
    raw = rebuild_raw(obj)
    return tx if raw is None else replace(tx, raw=raw)


def throughput(mix: Mix, rounds: int) -> dict[str, Any]:
    wants = mix.watch.wants
    objs, msgs = mix.objects, mix.messages
    n = len(objs)
    now = time.monotonic_ns

    def timed(fn: Callable[[], int]) -> tuple[list[float], int]:
        out, kept = [], 0
        for _ in range(rounds):
            gc.collect()
            t = time.perf_counter()
            kept = fn()
            out.append(time.perf_counter() - t)
        return out, kept

    def full() -> int:
        kept = 0
        for o in objs:
            if ingest(o, wants, now()) is not None:
                kept += 1
        return kept

    def with_json() -> int:
        kept = 0
        for m in msgs:
            if ingest(orjson.loads(m)["params"]["result"], wants, now()) is not None:
                kept += 1
        return kept

    def decode_only() -> int:
        for o in objs:
            decode_pending_tx(o, now())
        return 0

    def parse_only() -> int:
        for m in msgs:
            orjson.loads(m)
        return 0

    decoded = [decode_pending_tx(o) for o in objs]

    def filter_only() -> int:
        return sum(1 for tx in decoded if wants(tx))

    kept_objs = [o for o, tx in zip(objs, decoded, strict=True) if wants(tx)]

    def rebuild_only() -> int:
        return sum(1 for o in kept_objs if rebuild_raw(o) is not None)

    res: dict[str, Any] = {"n": n}
    res["full"], res["kept"] = timed(full)
    res["json"], _ = timed(with_json)
    res["decode"], _ = timed(decode_only)
    res["parse"], _ = timed(parse_only)
    res["filter"], _ = timed(filter_only)
    res["rebuild"], res["rebuilt"] = timed(rebuild_only)
    res["kept_n"] = len(kept_objs)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o, kind in zip(objs, mix.kinds, strict=True):
        by_kind.setdefault(kind, []).append(o)
    res["by_kind"] = {}
    for kind, group in by_kind.items():

        def decode_group(g: list[dict[str, Any]] = group) -> int:
            for o in g:
                decode_pending_tx(o, now())
            return 0

        best = min(timed(decode_group)[0])
        res["by_kind"][kind] = (best / len(group), statistics.mean(len(o["input"]) // 2 - 1 for o in group))
    return res


def print_throughput(mix: Mix, r: dict[str, Any], misses: list[str]) -> None:
    n = r["n"]
    print(
        f"\n1. Throughput, one core: {n:,} distinct tx objects "
        f"(mean notification {mix.mean_bytes:,.0f} bytes), {len(r['full'])} rounds"
    )
    print("   mix: " + "; ".join(f"{k} {v / n * 100:.1f}%" for k, v in mix.counts.items()))
    for label, key in (
        ("decode + filter + rebuild (the collector's work)", "full"),
        ("  + orjson.loads of the notification (the socket)", "json"),
    ):
        best, med = n / min(r[key]), n / statistics.median(r[key])
        verdict = "PASS" if med >= THROUGHPUT_TARGET else "MISS"
        print(
            f"    {label:<52} best {best:9,.0f} tx/s   median {med:9,.0f} tx/s   "
            f"[>= {THROUGHPUT_TARGET:,} tx/s] {verdict}"
        )
        if key == "full" and med < THROUGHPUT_TARGET:
            misses.append(f"throughput {med:,.0f} tx/s")
    print(f"    kept by the filter: {r['kept']} of {n} ({r['rebuilt']} rebuilt to their hash)")
    print("    cost per tx (median round):")
    for label, key, per in (
        ("orjson.loads (notification)", "parse", n),
        ("decode_pending_tx", "decode", n),
        ("OracleWatch.wants", "filter", n),
        ("rebuild_raw (per kept tx, keccak-checked)", "rebuild", max(r["kept_n"], 1)),
    ):
        print(f"      {label:<45} {statistics.median(r[key]) / per * 1e6:7.2f} us")
    print("    decode_pending_tx by kind (best round; mean calldata):")
    for kind, (seconds, size) in r["by_kind"].items():
        print(f"      {kind:<45} {seconds * 1e6:7.2f} us   ({size:,.0f} bytes)")


# ---------------------------------------------------------------------------------- the firehose


class Firehose:
    """Pushes `rate` notifications/s (changeable on the fly) through parse + decode + filter + rebuild on
    the running loop, in slices of at most SLICE between yields."""

    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        self.rate = 0
        self.done: dict[int, int] = {}
        """per rate: txs pushed"""
        self.seconds: dict[int, float] = {}
        """per rate: wall seconds at that rate"""
        self.busy: dict[int, float] = {}
        """per rate: seconds the firehose held the loop"""
        self.kept = 0

    async def run(self, stop: asyncio.Event) -> None:
        msgs, wants = self.mix.messages, self.mix.watch.wants
        n, i = len(msgs), 0
        rate, start, done = self.rate, time.perf_counter(), 0
        while not stop.is_set():
            now = time.perf_counter()
            if self.rate != rate:  # a new segment
                self.seconds[rate] = self.seconds.get(rate, 0.0) + now - start
                self.done[rate] = self.done.get(rate, 0) + done
                rate, start, done = self.rate, now, 0
            due = int((now - start) * rate) - done
            if due <= 0:
                # uvloop rounds timers to whole ms (0.5 ms would spin); rate 0: (almost) no wake-ups
                await asyncio.sleep(0.001 if rate else 0.01)
                continue
            for _ in range(min(due, SLICE)):
                obj = orjson.loads(msgs[i])["params"]["result"]
                if ingest(obj, wants, time.monotonic_ns()) is not None:
                    self.kept += 1
                i = (i + 1) % n
            done += min(due, SLICE)
            self.busy[rate] = self.busy.get(rate, 0.0) + time.perf_counter() - now
            await asyncio.sleep(0)
        self.seconds[rate] = self.seconds.get(rate, 0.0) + time.perf_counter() - start
        self.done[rate] = self.done.get(rate, 0) + done


@dataclass
class BlockSample:
    number: int
    latency: float
    dispatch: float
    timings: dict[str, float]


class Driver:
    def __init__(self, keeper: LiquidationKeeper) -> None:
        self.keeper = keeper
        self.samples: asyncio.Queue[BlockSample] = asyncio.Queue()
        self.errors: list[str] = []

    async def run(self, collector: BlockCollector) -> None:
        async with contextlib.aclosing(collector.events()) as events:
            async for block in events:
                try:
                    await self.samples.put(await self.handle(block))
                except Exception as exc:
                    self.errors.append(f"block {block.number}: {type(exc).__name__}: {exc}")

    async def handle(self, block: NewBlock) -> BlockSample:
        start = time.monotonic_ns()
        await on_block(self.keeper, block)
        done = time.monotonic_ns()
        received = block.received_at_ns or start
        return BlockSample(
            block.number,
            (done - received) / 1e9,
            (start - received) / 1e9,
            dict(self.keeper.strategy.last_timings),
        )


async def blocks_under(
    net: Devnet, driver: Driver, prices: dict[str, int], blocks: int, hose: Firehose, rates: list[int]
) -> dict[int, list[BlockSample]]:
    """`blocks` blocks per rate, the rates interleaved block by block (machine load drifts: each rate sees
    the same drift). Before each block the firehose runs at that block's rate for `WARM` seconds."""
    rpc, dep = net.require()
    out: dict[int, list[BlockSample]] = {r: [] for r in rates}
    stop = asyncio.Event()
    task = asyncio.create_task(hose.run(stop), name="bench:firehose")
    base = prices
    try:
        for i in range(len(rates) * (blocks + 1)):
            rate = rates[i % len(rates)]
            hose.rate = rate
            await asyncio.sleep(WARM)
            new = moved(base, "WETH", base["WETH"] * (1005 if i % 2 == 0 else 995) // 1000)
            if not await send_oracle_updates(rpc, dep, prices, new):
                raise RuntimeError("no oracle update to send")
            prices = new
            number = await net.mine()
            async with asyncio.timeout(60):
                while (sample := await driver.samples.get()).number != number:
                    pass
            if i >= len(rates):  # the first round warms up
                out[rate].append(sample)
    finally:
        stop.set()
        await task
    return out


def print_blocks(rates: list[int], samples: dict[int, list[BlockSample]], hose: Firehose) -> None:
    print(
        "    rate asked   achieved   loop busy   block path p50   p99        max       "
        "(refresh / detect / value p50)"
    )
    for rate in rates:
        xs = samples[rate]
        lat = [s.latency for s in xs]
        secs = hose.seconds.get(rate, 0.0)
        achieved = hose.done.get(rate, 0) / secs if secs else 0.0
        busy = hose.busy.get(rate, 0.0) / secs if secs else 0.0
        split = " / ".join(
            f"{pct([s.timings.get(k, 0.0) for s in xs], 50) * 1e3:.1f}"
            for k in ("refresh", "detect", "value")
        )
        print(
            f"    {rate:>6,} tx/s {achieved:>7,.0f}/s {busy * 100:8.0f}%   {ms(pct(lat, 50))}   "
            f"{ms(pct(lat, 99))}  {ms(max(lat))}   ({split} ms; "
            f"dispatch p50 {pct([s.dispatch for s in xs], 50) * 1e3:.2f} ms)"
        )
        if rate and achieved < 0.95 * rate:
            print(f"      (the firehose fell behind at {rate:,} tx/s: this process got too little CPU)")


async def block_part(args: argparse.Namespace, mix: Mix) -> None:
    rates = [int(x) for x in args.rates.split(",")]
    print(
        f"\n2. Block path under a firehose: {args.borrowers} borrowers, {args.blocks} blocks a rate "
        f"(ETH +-0.5% each), rates {', '.join(f'{r:,}' for r in rates)} tx/s"
    )
    async with Devnet(block_time=None) as net:
        rpc, dep = net.require()
        t = time.perf_counter()
        made = await create_borrowers(rpc, dep, args.borrowers, seed=1, miner=DevnetMiner(net))
        print(f"    created {len(made.borrowers)} borrowers in {time.perf_counter() - t:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-mempool-") as tmp:
            async with devnet_keeper(net, Path(tmp)) as keeper, RpcClient(net.http_url) as collector_rpc:
                for _ in range(5):  # anything liquidatable at the start is dealt with
                    await step(net, keeper)
                driver = Driver(keeper)
                task = asyncio.create_task(driver.run(BlockCollector(net.ws_url, collector_rpc)))
                hose = Firehose(mix)
                try:
                    await asyncio.sleep(0.3)
                    prices = await current_usd_prices(rpc, dep)
                    gc.collect()
                    samples = await blocks_under(net, driver, prices, args.blocks, hose, rates)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                tracked = sum(len(p.positions) for p in keeper.strategy.protocols)
                print(
                    f"    {tracked} positions tracked; latency = newHeads read -> on_block returned "
                    "(executor, strategy, group); loop busy = the firehose's share of wall time"
                )
                print_blocks(rates, samples, hose)
                if driver.errors:
                    print(f"    driver errors: {len(driver.errors)}; first: {driver.errors[0]}")
                sent = bundle_executor(keeper).stats.sent
                if sent:
                    print(f"    NOTE: the executor sent {sent} items during the part")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, help="distinct tx objects (default 20,000; --quick 5,000)")
    ap.add_argument("--rounds", type=int, default=5, help="passes over the objects in part 1")
    ap.add_argument("--watched-pct", type=float, default=3.0, help="%% of transmits to watched aggregators")
    ap.add_argument("--borrowers", type=int, help="part 2 (default 2,000; --quick 500)")
    ap.add_argument("--blocks", type=int, help="measured blocks per rate (default 30; --quick 10)")
    ap.add_argument("--rates", default="0,2000,5000", help="firehose rates in tx/s, comma-separated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-blocks", action="store_true", help="part 1 only (no devnet)")
    ap.add_argument("--quick", action="store_true", help="5,000 txs, 500 borrowers, 10 blocks a rate")
    args = ap.parse_args()
    defaults = (
        {"txs": 5_000, "borrowers": 500, "blocks": 10}
        if args.quick
        else {"txs": 20_000, "borrowers": 2_000, "blocks": 30}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    started = time.perf_counter()
    print(
        f"bench_mempool: {args.txs:,} txs; {args.borrowers} borrowers, {args.blocks} blocks a rate"
        + (" (--quick: smaller than the full run's 20,000 / 2,000 / 30)" if args.quick else "")
    )
    print(f"code: {git_state()}")
    print("load average (1/5/15 min, 2 cores shared): " + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    t = time.perf_counter()
    mix = make_mix(args.txs, args.seed, args.watched_pct)
    print(f"(mix generated in {time.perf_counter() - t:.1f} s)")
    misses: list[str] = []
    print_throughput(mix, throughput(mix, args.rounds), misses)
    if not args.no_blocks:
        uvloop.run(block_part(args, mix))
    print("targets missed: " + ("; ".join(misses) if misses else "none"))
    print(
        f"(benchmark wall time {time.perf_counter() - started:.0f} s; load average at the end "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + ")"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
