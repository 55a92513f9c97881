"""Signing costs that unit tests used to time (tests no longer bound elapsed time; the figures live here).

    .venv/bin/python benchmarks/bench_signers.py [--runs 500]

1. A type-2 transaction signed by `keeper.chain.signer.TxSigner`: the coincurve path (`sign`) vs the
   eth_account reference (`sign_eth_account`); both produce the same bytes (checked).
2. The X-Flashbots-Signature header: `FlashbotsSigner.sign` over a request body, and the relay-side check
   `recover_signer` (what the devnet relay does per request).
Best-of-3 mean per operation; machine-dependent, nothing here fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_utils import keccak

from keeper.chain.flashbots_auth import FlashbotsSigner, recover_signer
from keeper.chain.signer import Eip1559Tx, TxSigner

KEY = "0x" + keccak(b"benchmark signer").hex()
BODY = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[{"txs":["0x02"],"blockNumber":"0x10"}]}'


def per_op(fn: Callable[[], object], n: int) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=500)
    n = parser.parse_args().runs

    signer = TxSigner.from_key(KEY)
    tx = Eip1559Tx(1, 42, 2 * 10**9, 60 * 10**9, 450_000, "0x" + "ab" * 20, 0, bytes(range(256)) * 2)
    assert signer.sign(tx) == signer.sign_eth_account(tx), "coincurve and eth_account paths disagree"
    fast = per_op(lambda: signer.sign(tx), n)
    ref = per_op(lambda: signer.sign_eth_account(tx), max(1, n // 2))
    print(
        f"sign type-2 tx: coincurve path {fast * 1e6:.0f} us, "
        f"eth_account {ref * 1e6:.0f} us ({ref / fast:.1f}x)"
    )

    fb = FlashbotsSigner(KEY)
    header = fb.sign(BODY)
    assert recover_signer(header, BODY) == fb.address
    sign_s = per_op(lambda: fb.sign(BODY), n)
    verify_s = per_op(lambda: recover_signer(header, BODY), n)
    print(
        f"X-Flashbots-Signature: sign {sign_s * 1e6:.0f} us/request, verify {verify_s * 1e6:.0f} us/request"
    )


if __name__ == "__main__":
    main()
