"""Ledger throughput and event-loop stall.

    .venv/bin/python benchmarks/bench_ledger.py [--rows 20000] [--dir /path/on/the/real/disk]

Prints, for synchronous=FULL (what the ledger uses):
- fire-and-forget rows/s (queued from the loop, committed in group transactions by the writer thread),
- awaited rows/s with 1 and with 50 concurrent writers (each waits for its own commit: fsync-bound),
- claim_send latency (p50/p99/max: the extra time before a bundle can be signed),
- the longest gap of a 1 ms heartbeat task on the loop during each phase,
- for comparison: the same rows written synchronously on the loop thread, one commit each (what a
  naive "just call sqlite from the coroutine" ledger would stall the loop for).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.ledger import Ledger, Opportunity, Simulation

BIG = 10**30


class Heartbeat:
    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.005)
        self.max_gap = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def phase(name: str, rows: int, body: Callable[[], Awaitable[None]], ledger: Ledger) -> None:
    batches = ledger.batches
    async with Heartbeat() as hb:
        started = time.perf_counter()
        await body()
        await ledger.flush()
        elapsed = time.perf_counter() - started
    commits = ledger.batches - batches
    print(
        f"{name:<34} {rows:>7} rows {elapsed * 1000:>8.0f} ms {rows / elapsed:>9.0f} rows/s "
        f"{commits:>6} commits   loop max gap {hb.max_gap * 1000:6.1f} ms"
    )


def sim(i: int, ok: bool = True) -> Simulation:
    return Simulation("bench", i, ok, simulated_profit_wei=BIG + i, gas_used=300_000, net_profit_wei=BIG)


async def main(rows: int, directory: Path) -> None:
    path = directory / "bench.sqlite"
    print(f"ledger file {path} (sqlite {sqlite3.sqlite_version}, synchronous=FULL, WAL)")
    async with Ledger.open(path) as ledger:
        await ledger.record_opportunity(
            Opportunity("bench", "bench", "bench", 1, 1_700_000_000, BIG), wait=True
        )
        counter = iter(range(10**9))

        async def fire_and_forget() -> None:
            for i in range(rows):
                await ledger.record_simulation(sim(next(counter)))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # a producer that lets the loop run, as strategies do

        async def awaited(writers: int, n: int) -> None:
            async def one() -> None:
                for _ in range(n // writers):
                    await ledger.record_simulation(sim(next(counter)), wait=True)

            await asyncio.gather(*(one() for _ in range(writers)))

        await phase("fire-and-forget", rows, fire_and_forget, ledger)
        n_serial = min(rows, 2000)
        await phase("awaited, 1 writer", n_serial, lambda: awaited(1, n_serial), ledger)
        await phase("awaited, 50 concurrent writers", rows, lambda: awaited(50, rows), ledger)

        latencies = []
        async with Heartbeat() as hb:
            for block in range(500):
                t0 = time.perf_counter()
                assert await ledger.claim_send("bench", block)
                latencies.append(time.perf_counter() - t0)
        latencies.sort()
        print(
            f"claim_send latency (500 claims)    p50 {statistics.median(latencies) * 1000:.2f} ms  "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms  max {latencies[-1] * 1000:.2f} ms"
            f"   loop max gap {hb.max_gap * 1000:.1f} ms"
        )

    # Baseline: writes on the loop thread, one commit per row (a blocking ledger).
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    n_block = min(rows, 2000)
    worst = 0.0
    started = time.perf_counter()
    for i in range(n_block):
        t0 = time.perf_counter()
        conn.execute(
            "INSERT INTO simulations (opportunity_id, target_block, ok, simulated_profit_wei, "
            "simulated_at_ms) VALUES ('bench', ?, 1, ?, 0)",
            (10**8 + i, str(BIG)),
        )
        worst = max(worst, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    conn.close()
    print(
        f"{'baseline: blocking, commit per row':<34} {n_block:>7} rows {elapsed * 1000:>8.0f} ms "
        f"{n_block / elapsed:>9.0f} rows/s   each write blocks the loop: max {worst * 1000:.1f} ms, "
        f"total {elapsed * 1000:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="directory for the file (default: a temp dir)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(args.rows, args.dir))
    else:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(main(args.rows, Path(d)))
