"""Peg arbitrage: detection + sizing latency per block, and sizing accuracy against brute force.

    .venv/bin/python benchmarks/bench_peg.py [--blocks 300] [--cases 1000] [--quick] [--seed 1]

No node: synthetic exact pool states (tests/unit/peg/cases.py), the venues' own integer math.

1. Per-block latency: 10 pegs on 50 pools (each peg on a Uniswap V2 pair, a V2 fork's pair, Uniswap V3
   pools at 0.01% and 0.05%, a Balancer stable pool; 1:1 pegs at 6/18 decimals and LST-like pegs with
   a rate target) on four venues. Each block applies one random swap (up to 0.3% of depth) to 5 of
   the pools, then times `best_opportunities(..., changed_pools=those 5)`: prices of the touched pegs'
   pools, spreads, sizing of every spread that beats the fees. Also the same block evaluated in full
   (every peg; changed_pools=None) for reference. Targets: p50 <= 5 ms, p99 <= 15 ms (5-of-50 case).
2. Sizing accuracy: `--cases` random two-pool states (V2-V2, V2-V3, V3-V3, V3-Balancer,
   Balancer-V3, V2-Balancer, Balancer-Balancer; 6/18 decimals; -4% .. +4% apart; thin to deep), both
   directions (borrow B, borrow A): the profit of the size chosen against the best of a brute force
   (sizes doubled to past the peak, 200 evenly spread below it, then 100 around the best, twice, then
   every size). Printed: how many are within 0.1% of brute force, and within max(0.1%, two units of the
   coarser token): a USDC unit bought with DAI is 10**12 DAI units, so a DAI-denominated profit below
   ~10**15 can only be met to a unit of USDC (dust: 10**-6 USD).
Nothing here asserts: figures are printed with PASS / MISS next to the targets.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strategies.peg import sizing
from strategies.peg.detect import find_spreads
from strategies.peg.sizing import best_opportunities, size_spread
from tests.unit.peg.cases import brute_force, market, random_case, random_swaps, round_trip

KINDS = (
    ("v2", "v2"),
    ("v2", "v3"),
    ("v3", "v3"),
    ("v3", "balancer"),
    ("balancer", "v3"),
    ("v2", "balancer"),
    ("balancer", "balancer"),
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def latency(blocks: int, seed: int) -> None:
    rng = random.Random(seed)
    mk = market(rng, 10)
    print(f"1. detection + sizing per block: {len(mk.pegs)} pegs, {len(mk.pools)} pools, 5 changed per block")
    changed_ms: list[float] = []
    full_ms: list[float] = []
    sized: list[int] = []
    found: list[int] = []
    for _ in range(blocks):
        venues, changed = random_swaps(rng, mk, 5)
        sized.append(len(find_spreads(mk.pegs, mk.targets, venues, changed_pools=changed)))
        t0 = time.perf_counter()
        opps = best_opportunities(mk.pegs, mk.targets, venues, changed_pools=changed)
        changed_ms.append((time.perf_counter() - t0) * 1e3)
        found.append(len(opps))
        t0 = time.perf_counter()
        best_opportunities(mk.pegs, mk.targets, venues)
        full_ms.append((time.perf_counter() - t0) * 1e3)
    p50, p99 = pct(changed_ms, 0.5), pct(changed_ms, 0.99)
    print(
        f"   5 changed pools: p50 {p50:.2f} ms [{verdict(p50 <= 5)} <= 5], "
        f"p99 {p99:.2f} ms [{verdict(p99 <= 15)} <= 15], max {max(changed_ms):.2f} ms over {blocks} blocks"
    )
    print(
        f"   spreads beating the fees per block: mean {statistics.mean(sized):.1f}, max {max(sized)}; "
        f"opportunities: mean {statistics.mean(found):.1f}, max {max(found)}"
    )
    print(
        f"   every peg (changed_pools=None), same blocks: p50 {pct(full_ms, 0.5):.2f} ms, "
        f"p99 {pct(full_ms, 0.99):.2f} ms (reference)"
    )


def accuracy(cases: int, seed: int) -> None:
    rng = random.Random(seed)
    evals = 0
    real_at = sizing._Trip.at

    def counting_at(self: sizing._Trip, x: int) -> sizing._Point | None:
        nonlocal evals
        if x not in self.seen:
            evals += 1
        return real_at(self, x)

    sizing._Trip.at = counting_at  # type: ignore[method-assign]
    compared = strict = tolerant = none_both = 0
    material = material_strict = 0
    worst: tuple[float, str] = (1.0, "")
    per_kind: dict[tuple[str, str], list[int]] = {k: [0, 0, 0] for k in KINDS}
    times: list[float] = []
    slowest: list[tuple[float, int, str]] = []
    sizings = 0
    states = 0
    while states < cases:
        kinds = KINDS[states % len(KINDS)]
        case = random_case(rng, kinds)
        spread = case.spread()
        states += 1
        if spread is None:
            continue
        peg = case.peg
        num, den = case.target
        for borrow_b in (True, False):
            if borrow_b:
                t, m = peg.token_b, peg.token_a
                first, second = spread.cheap, spread.rich
                unit = max(1, -(-num // den))
            else:
                t, m = peg.token_a, peg.token_b
                first, second = spread.rich, spread.cheap
                unit = max(1, -(-den // num))
            t0 = time.perf_counter()
            before = evals
            opp = size_spread(spread, case.target, token_in=t)
            elapsed = (time.perf_counter() - t0) * 1e3
            times.append(elapsed)
            slowest.append((elapsed, evals - before, f"{case.label}, borrow {'B' if borrow_b else 'A'}"))
            sizings += 1
            sizing._Trip.at = real_at  # type: ignore[method-assign]
            best = brute_force(round_trip(first.venue, first.pool, second.venue, second.pool, t, m, 0))
            sizing._Trip.at = counting_at  # type: ignore[method-assign]
            ours = opp.profit if opp is not None else 0
            if best is None or best[1] <= 0:
                none_both += ours <= 0
                if ours > 0:
                    compared += 1
                    strict += 1
                    tolerant += 1
                continue
            compared += 1
            row = per_kind[kinds]
            row[0] += 1
            if ours >= best[1] - best[1] // 1000:
                strict += 1
                row[1] += 1
            if best[1] >= 1000 * (unit + 1):
                material += 1
                material_strict += ours >= best[1] - best[1] // 1000
            if ours >= best[1] - max(best[1] // 1000, 2 * unit + 2):
                tolerant += 1
                row[2] += 1
            ratio = ours / best[1]
            if ratio < worst[0]:
                worst = (ratio, f"{case.label}, borrow {'B' if borrow_b else 'A'}: {ours} vs {best[1]}")
    sizing._Trip.at = real_at  # type: ignore[method-assign]
    print(f"2. sizing accuracy: {states} random states, {sizings} sizings (both directions)")
    print(
        f"   profitable by brute force: {compared}; "
        f"within 0.1%: {strict} ({100 * strict / max(1, compared):.2f}%); "
        f"within max(0.1%, 2 coarse units): {tolerant} [{verdict(tolerant == compared)}]; "
        f"no profit for either: {none_both}"
    )
    print(
        f"   profit of at least 1000 units of the token bought: {material}; within 0.1%: {material_strict} "
        f"[{verdict(material_strict == material)}]"
    )
    print("   per pair (profitable, within 0.1%, within the dust allowance):")
    for kinds, (n, s, tol) in per_kind.items():
        print(f"     {kinds[0]:>8}-{kinds[1]:<8} {n:5d} {s:5d} {tol:5d}")
    print(f"   worst ratio: {worst[0]:.6f} ({worst[1]})")
    print(
        f"   per sizing: {evals / max(1, sizings):.1f} round trips quoted on average; "
        f"time p50 {pct(times, 0.5):.3f} ms, p99 {pct(times, 0.99):.3f} ms"
    )
    for elapsed, n, label in sorted(slowest, reverse=True)[:3]:
        print(f"     slow: {elapsed:.2f} ms, {n} round trips: {label}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 blocks, 140 states")
    args = parser.parse_args()
    if args.quick:
        args.blocks, args.cases = 100, 140
    latency(args.blocks, args.seed)
    accuracy(args.cases, args.seed)


if __name__ == "__main__":
    main()
