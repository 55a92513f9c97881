"""Pending swap decoding: pending txs pre-filtered and decoded per second on one core.

    .venv/bin/python benchmarks/bench_swap_decode.py            # 50,000 txs, 5 rounds
    .venv/bin/python benchmarks/bench_swap_decode.py --quick    # 10,000 txs, 3 rounds

A seeded, mainnet-like mix of JSON-RPC tx objects (ETH transfers, ERC-20 calls, other contract calls,
swaps through routers nobody watches (aggregators, the Universal Router), large calldata; and ~19% sent to
the watched Uniswap V2 Router02, V3 SwapRouter and Balancer Vault: real swap calldata of every supported
kind (multicalls included), a few non-swap calls to them and a few corrupted swaps). Measured, no I/O,
one thread:

1. `SwapDecoder.tx_filter()` + `decode_pending` on already decoded `PendingTx`s (what a mempool strategy
   adds to the collector's work): tx/s over the whole mix, and the cost of one decode per call kind;
2. the collector's `decode_pending_tx` of each object first, then the same (the whole path for a tx);
3. that plus `orjson.loads` of the `eth_subscription` notification (what the socket delivers).

Target (issue 8): >= 5,000 pending tx/s decoded and filtered on one core.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from eth_abi.abi import decode, encode

from keeper.chain.swaps import SELECTORS, SwapDecodeError, SwapDecoder
from keeper.collectors.mempool import decode_pending_tx
from keeper.core.events import PendingTx

TARGET_TX_S = 5_000
V2_ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
V3_ROUTER = "0xe592427a0aece92de3edee1f18e0157c05861564"
VAULT = "0xba12222222228d8ba445958a75a0704d566bf2c8"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
TOKENS = [WETH] + ["0x" + bytes([i]).hex() * 20 for i in range(1, 9)]
V2_ARGS5 = ["uint256", "uint256", "address[]", "address", "uint256"]
V2_ARGS4 = ["uint256", "address[]", "address", "uint256"]
V3_SINGLE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
V3_PATH = "(bytes,address,uint256,uint256,uint256)"
SINGLE_SWAP = "(bytes32,uint8,address,address,uint256,bytes)"
FUNDS = "(address,bool,address,bool)"
STEP = "(bytes32,uint256,uint256,uint256,bytes)"


def _addr(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _path(rng: random.Random, n: int) -> list[str]:
    tokens = rng.sample(TOKENS[1:], n - 1)
    return [WETH, *tokens] if rng.random() < 0.5 else [*tokens, WETH]


def _v3_packed(tokens: list[str], rng: random.Random) -> bytes:
    out = bytes.fromhex(tokens[0][2:])
    for t in tokens[1:]:
        out += rng.choice((100, 500, 3000, 10000)).to_bytes(3, "big") + bytes.fromhex(t[2:])
    return out


def v2_call(rng: random.Random) -> tuple[bytes, int, str]:
    me, deadline, n = _addr(rng), 1_900_000_000, rng.choice((2, 2, 2, 3))
    amount = rng.randint(10**15, 10**22)
    r = rng.random()
    if r < 0.35:
        return (
            SELECTORS["swapExactTokensForTokens"]
            + encode(V2_ARGS5, [amount, 1, _path(rng, n), me, deadline]),
            0,
            "v2",
        )
    if r < 0.5:
        path = [WETH, *rng.sample(TOKENS[1:], n - 1)]
        return SELECTORS["swapExactETHForTokens"] + encode(V2_ARGS4, [1, path, me, deadline]), amount, "v2"
    if r < 0.65:
        path = [*rng.sample(TOKENS[1:], n - 1), WETH]
        return SELECTORS["swapExactTokensForETH"] + encode(V2_ARGS5, [amount, 1, path, me, deadline]), 0, "v2"
    if r < 0.8:
        name = "swapExactTokensForTokensSupportingFeeOnTransferTokens"
        return SELECTORS[name] + encode(V2_ARGS5, [amount, 1, _path(rng, n), me, deadline]), 0, "v2"
    if r < 0.9:
        path = [WETH, *rng.sample(TOKENS[1:], n - 1)]
        return (
            SELECTORS["swapETHForExactTokens"] + encode(V2_ARGS4, [amount, path, me, deadline]),
            amount * 2,
            "v2",
        )
    data = SELECTORS["swapTokensForExactTokens"] + encode(
        V2_ARGS5, [amount, amount * 2, _path(rng, n), me, deadline]
    )
    return data, 0, "v2"


def v3_call(rng: random.Random) -> tuple[bytes, int, str]:
    me, deadline = _addr(rng), 1_900_000_000
    amount = rng.randint(10**15, 10**22)
    a, b = rng.sample(TOKENS, 2)
    r = rng.random()
    if r < 0.4:
        params = (a, b, rng.choice((100, 500, 3000)), me, deadline, amount, 1, 0)
        return SELECTORS["exactInputSingle"] + encode([V3_SINGLE], [params]), 0, "v3 single"
    if r < 0.55:
        path = _v3_packed(_path(rng, 3), rng)
        return SELECTORS["exactInput"] + encode([V3_PATH], [(path, me, deadline, amount, 1)]), 0, "v3 path"
    if r < 0.65:
        params = (a, b, 500, me, deadline, amount, amount * 2, 0)
        return SELECTORS["exactOutputSingle"] + encode([V3_SINGLE], [params]), 0, "v3 single"
    if r < 0.7:
        path = _v3_packed(_path(rng, 3), rng)
        return (
            SELECTORS["exactOutput"] + encode([V3_PATH], [(path, me, deadline, amount, amount * 2)]),
            0,
            "v3 path",
        )
    # the interface's shape: multicall([swap to the router, unwrapWETH9 / refundETH])
    params = (rng.choice(TOKENS[1:]), WETH, 500, "0x" + "00" * 20, deadline, amount, 1, 0)
    inner = SELECTORS["exactInputSingle"] + encode([V3_SINGLE], [params])
    unwrap = bytes.fromhex("49404b7c") + encode(["uint256", "address"], [1, me])
    return SELECTORS["multicall"] + encode(["bytes[]"], [[inner, unwrap]]), 0, "v3 multicall"


def vault_call(rng: random.Random) -> tuple[bytes, int, str]:
    me, deadline = _addr(rng), 1_900_000_000
    amount = rng.randint(10**15, 10**22)
    pid = rng.randbytes(20) + bytes(12)
    funds = (me, False, me, False)
    a, b, c = rng.sample(TOKENS, 3)
    if rng.random() < 0.7:
        single = (pid, rng.randint(0, 1), a, b, amount, b"")
        data = SELECTORS["swap"] + encode(
            [SINGLE_SWAP, FUNDS, "uint256", "uint256"], [single, funds, 1, deadline]
        )
        return data, 0, "balancer swap"
    steps = [(pid, 0, 1, amount, b""), (rng.randbytes(20) + bytes(12), 1, 2, 0, b"")]
    data = SELECTORS["batchSwap"] + encode(
        ["uint8", f"{STEP}[]", "address[]", FUNDS, "int256[]", "uint256"],
        [0, steps, [a, b, c], funds, [amount, 0, -1], deadline],
    )
    return data, 0, "balancer batchSwap"


def tx_object(rng: random.Random, to: str | None, data: bytes, value: int) -> dict[str, Any]:
    return {
        "blockHash": None,
        "blockNumber": None,
        "transactionIndex": None,
        "hash": "0x" + rng.randbytes(32).hex(),
        "from": _addr(rng),
        "to": to,
        "gas": hex(rng.choice((21_000, 65_000, 180_000, 350_000))),
        "value": hex(value),
        "nonce": hex(rng.randint(0, 5000)),
        "input": "0x" + data.hex(),
        "type": "0x2",
        "maxFeePerGas": hex(rng.randint(10**9, 60 * 10**9)),
        "maxPriorityFeePerGas": hex(rng.randint(10**7, 3 * 10**9)),
        "chainId": "0x1",
        "accessList": [],
        "v": "0x0",
        "r": hex(rng.getrandbits(255)),
        "s": hex(rng.getrandbits(254)),
    }


SHARES = [
    ("ETH transfer", 24.0),
    ("ERC-20 call", 30.0),
    ("other contract call", 14.0),
    ("swap via an unwatched router", 8.0),
    ("Uniswap V2 Router02 swap", 8.0),
    ("Uniswap V3 SwapRouter swap", 8.0),
    ("Balancer Vault swap", 2.0),
    ("watched router, not a swap", 1.0),
    ("corrupted swap to a watched router", 0.5),
    ("large calldata", 4.5),
]


def make_mix(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, list[PendingTx]]]:
    rng = random.Random(seed)
    names, weights = zip(*SHARES, strict=True)
    counts = dict.fromkeys(names, 0)
    by_call: dict[str, list[PendingTx]] = {}
    objects = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        counts[kind] += 1
        to: str | None = _addr(rng)
        value = 0
        call_kind = ""
        if kind == "ETH transfer":
            data, value = b"", rng.randint(1, 10**19)
        elif kind == "ERC-20 call":
            data = rng.choice([b"\xa9\x05\x9c\xbb", b"\x09\x5e\xa7\xb3"]) + bytes(12) + rng.randbytes(52)
        elif kind in ("other contract call", "swap via an unwatched router"):
            data = rng.randbytes(4) + rng.randbytes(32 * rng.randint(2, 24))
        elif kind == "large calldata":
            data = rng.randbytes(4) + rng.randbytes(32 * rng.randint(64, 320))
        elif kind == "Uniswap V2 Router02 swap":
            to = V2_ROUTER
            data, value, call_kind = v2_call(rng)
        elif kind == "Uniswap V3 SwapRouter swap":
            to = V3_ROUTER
            data, value, call_kind = v3_call(rng)
        elif kind == "Balancer Vault swap":
            to = VAULT
            data, value, call_kind = vault_call(rng)
        elif kind == "watched router, not a swap":
            to = rng.choice((V2_ROUTER, V3_ROUTER, VAULT))
            data = rng.randbytes(4) + rng.randbytes(32 * rng.randint(2, 10))
        else:
            to = rng.choice((V2_ROUTER, V3_ROUTER))
            data, value, _ = v2_call(rng) if to == V2_ROUTER else v3_call(rng)
            cut = bytearray(data[: rng.randint(4, len(data))])
            for _ in range(rng.randint(0, 3)):
                if len(cut) > 4:
                    cut[rng.randrange(4, len(cut))] = rng.randrange(256)
            data = bytes(cut)
        obj = tx_object(rng, to, data, value)
        objects.append(obj)
        if call_kind:
            by_call.setdefault(call_kind, []).append(decode_pending_tx(obj))
    return objects, counts, by_call


def best_of(rounds: int, fn: Callable[[], int]) -> tuple[list[float], int]:
    times, result = [], 0
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--txs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.txs, args.rounds = 10_000, 3
    objects, counts, by_call = make_mix(args.txs, args.seed)
    n = len(objects)
    decoder = SwapDecoder({V2_ROUTER: "uniswap_v2", V3_ROUTER: "uniswap_v3", VAULT: "balancer_v2"}, weth=WETH)
    keep = decoder.tx_filter()
    txs = [decode_pending_tx(o) for o in objects]
    sub = "0x" + "ab" * 16
    messages = [
        orjson.dumps(
            {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": o}}
        )
        for o in objects
    ]
    tally = {"kept": 0, "decoded": 0, "malformed": 0, "not one swap": 0}

    def strategy_part(tx: PendingTx) -> None:
        if not keep(tx):
            return
        tally["kept"] += 1
        try:
            swap = decoder.decode_pending(tx)
        except SwapDecodeError:
            tally["malformed"] += 1
            return
        tally["decoded" if swap is not None else "not one swap"] += 1

    def on_txs() -> int:
        for tx in txs:
            strategy_part(tx)
        return 0

    def on_objects() -> int:
        for o in objects:
            strategy_part(decode_pending_tx(o))
        return 0

    def on_messages() -> int:
        for m in messages:
            strategy_part(decode_pending_tx(orjson.loads(m)["params"]["result"]))
        return 0

    def filter_only() -> int:
        return sum(1 for tx in txs if keep(tx))

    print(f"Pending swap decoding, one core: {n:,} tx objects, best / median of {args.rounds} rounds")
    print("  mix: " + "; ".join(f"{k} {v / n * 100:.1f}%" for k, v in counts.items()))
    results = []
    for label, fn in (
        ("pre-filter only (tx_filter)", filter_only),
        ("pre-filter + SwapDecoder.decode_pending", on_txs),
        ("collector decode_pending_tx + the above", on_objects),
        ("  + orjson.loads of the notification", on_messages),
    ):
        for k in tally:
            tally[k] = 0
        times, _ = best_of(args.rounds, fn)
        best, med = n / min(times), n / statistics.median(times)
        results.append((label, best))
        us = min(times) / n * 1e6
        print(f"  {label:<45} {best:>12,.0f} tx/s best  {med:>12,.0f} median  ({us:.2f} us/tx)")
    per_round = {k: v // args.rounds for k, v in tally.items()}
    print(
        f"  per round: {per_round['kept']:,} passed the pre-filter, {per_round['decoded']:,} decoded to a "
        f"swap, {per_round['not one swap']:,} not one swap (None), {per_round['malformed']:,} malformed"
    )
    print("  one decode by call kind (best of rounds, us):")
    for kind, group in sorted(by_call.items()):

        def run(g: list[PendingTx] = group) -> int:
            for tx in g:
                decoder.decode_pending(tx)
            return 0

        times, _ = best_of(args.rounds, run)
        print(f"    {kind:<22} {min(times) / len(group) * 1e6:7.2f} us  ({len(group):,} txs)")
    sample = next(tx for tx in by_call["v2"] if tx.input[:4] == SELECTORS["swapExactTokensForTokens"])
    t = time.perf_counter()
    for _ in range(2000):
        decode(V2_ARGS5, sample.input[4:])
    eth_abi_us = (time.perf_counter() - t) / 2000 * 1e6
    t = time.perf_counter()
    for _ in range(2000):
        decoder.decode_pending(sample)
    ours_us = (time.perf_counter() - t) / 2000 * 1e6
    print(
        f"  for scale: eth_abi.decode of a swapExactTokensForTokens {eth_abi_us:.1f} us, "
        f"SwapDecoder {ours_us:.1f} us"
    )
    full = results[2][1]
    verdict = "PASS" if full >= TARGET_TX_S else "MISS"
    print(
        f"swap-decode throughput (collector decode + pre-filter + decode): {full:,.0f} tx/s; "
        f"target >= {TARGET_TX_S:,} [{verdict}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
