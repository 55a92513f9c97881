"""Backtest replay speed: devnet-sized blocks (~50 transactions) with the liquidation strategy on.

1. Records a demo-like run with busy blocks (`record_demo(filler_per_block=...)`: borrowers, the live
   keeper, an ETH crash, a competitor backrunning the oracle updates, plain transfers filling each block
   to ~50 transactions) -- or reuses `--recording FILE`.
2. One worker: replays it (`Replayer`) with the pending set shown (as `keeper backtest` does by
   default: the strategy's oracle backruns run on every pending update) and with blocks only
   (`--no-mempool`); prints blocks/s of the block loop (target >= 50), the node start + keeper
   build/sync time, and the per-block decision latency (p50/p99).
3. A sweep of 8 parameter sets (builder shares, blocks only) on 1, 2 and 4 local worker processes: wall
   time and the speed-up over one worker (this machine has `os.cpu_count()` cores, shared with anvil).

    .venv/bin/python benchmarks/bench_backtest.py [--quick] [--recording FILE] [--blocks N] [--fill N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from keeper.backtest.recording import read_recording
from keeper.backtest.replay import Replayer
from keeper.backtest.sources import RecordingSource
from keeper.backtest.sweep import RunSpec, SourceSpec, run_local
from keeper.devnet.recorder import record_demo

TARGET_BLOCKS_PER_S = 50


async def make_recording(path: Path, blocks: int, fill: int, borrowers: int) -> None:
    crash = max(blocks // 3, 2)
    rec = await record_demo(
        path,
        path.parent,
        borrowers=borrowers,
        crash_blocks=crash,
        tail_blocks=blocks - crash - 1,
        filler_per_block=fill,
    )
    taken = len(rec.competitor_liquidations)
    print(f"recorded blocks {rec.first_block}-{rec.last_block} ({taken} competitor liquidations)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recording", type=Path)
    ap.add_argument("--blocks", type=int, default=60)
    ap.add_argument("--fill", type=int, default=40, help="plain transfers added to each block")
    ap.add_argument("--borrowers", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="20 blocks, sweep on 1 and 2 workers only")
    args = ap.parse_args()
    if args.quick:
        args.blocks = 20
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        path = args.recording
        if path is None:
            path = Path(tmp) / "bench.rec.gz"
            t0 = time.perf_counter()
            asyncio.run(make_recording(path, args.blocks, args.fill, args.borrowers))
            print(f"recording made in {time.perf_counter() - t0:.1f} s")
        rec = read_recording(path)
        txs = [len(b.txs) for b in rec.blocks]
        print(
            f"recording: {len(rec.blocks)} blocks, {sum(txs)} transactions "
            f"(mean {statistics.mean(txs):.1f}, max {max(txs)} per block)"
        )

        # -- one worker --------------------------------------------------------------------------
        for mempool in (True, False):
            result = asyncio.run(Replayer(RecordingSource(rec), mempool=mempool).run())
            assert result.stopped is None, result.stopped
            n = len(result.blocks)
            bps = n / result.loop_seconds
            ms = sorted(b.decision_ms for b in result.blocks)
            verdict = "PASS" if bps >= TARGET_BLOCKS_PER_S else "MISS"
            shown = "pending set shown (the default)" if mempool else "blocks only (--no-mempool)"
            print(
                f"one worker, {shown}: {n} blocks in {result.loop_seconds:.2f} s = {bps:.1f} blocks/s "
                f"(target >= {TARGET_BLOCKS_PER_S}: {verdict}); start (node, keeper build, sync) "
                f"{result.seconds - result.loop_seconds:.2f} s"
            )
            p50, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, int(0.99 * len(ms)))]
            print(
                f"  per block: decisions p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                f"{len(result.attempts)} simulated items, {len(result.liquidations)} liquidations on chain"
            )
            per_block = ", ".join(f"{k} {v * 1000 / n:.1f}" for k, v in result.phase_seconds.items())
            print(f"  ms per block: {per_block}")
            quiet = sorted(b.total_ms for b in result.blocks if not b.attempts and not b.liquidations)
            busy = sorted(b.total_ms for b in result.blocks if b.attempts or b.liquidations)
            for label, values in (("quiet blocks (no bundle, no liquidation)", quiet), ("busy blocks", busy)):
                if values:
                    med = values[len(values) // 2]
                    print(
                        f"  {label}: {len(values)}, median {med:.1f} ms per block = {1000 / med:.0f} blocks/s"
                    )

        # -- sweep of 8 parameter sets ----------------------------------------------------------------
        source = SourceSpec("recording", path=str(path))
        shares = [str(s) for s in range(2_000, 10_000, 1_000)]  # 8 builder shares
        specs = [RunSpec(source, ("liquidations",), (("builder_share_bps", s),), False) for s in shares]
        workers = [1, 2] if args.quick else [1, 2, 4]
        base = 0.0
        print(
            f"sweep of {len(specs)} parameter sets (builder_share_bps {shares[0]}..{shares[-1]}), "
            f"cores: {os.cpu_count()}"
        )
        for w in workers:
            t0 = time.perf_counter()
            outcomes = run_local(specs, w)
            wall = time.perf_counter() - t0
            errors = [o.error for o in outcomes if o.error]
            assert not errors, errors
            base = base or wall
            print(f"  {w} worker{'s' if w > 1 else ' '}: {wall:6.1f} s  speed-up x{base / wall:.2f}")


if __name__ == "__main__":
    main()
