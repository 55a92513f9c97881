"""Bundle client costs: X-Flashbots-Signature signing, and per-request overhead against a local server.

    .venv/bin/python benchmarks/bench_bundle_signing.py [--requests 1000] [--uvloop]

1. Signing one eth_sendBundle body (2 txs, and 100 txs): eth_account (`Account.sign_message` over
   `encode_defunct(text="0x" + keccak(body).hex())`) vs keeper.chain.flashbots_auth.FlashbotsSigner
   (coincurve). Both produce the same header (checked).
2. Sequential requests to a trivial fake builder running in a separate process (so its CPU does not
   share our event loop): a bare aiohttp POST of a pre-built body (the floor), BundleClient.send_bundle
   (build params + orjson + sign + POST + retry wrapper + parse + metrics), and a MultiBuilderClient
   fan-out to 3 builders. p50/p99 per request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from keeper.chain.flashbots_auth import HEADER, FlashbotsSigner
from keeper.executors.builder_client import BundleClient
from keeper.executors.builders import MultiBuilderClient
from keeper.executors.relay_types import Bundle

KEY = "0x" + keccak(b"benchmark identity").hex()
TX = (
    "0x02f8b1827a6980843b9aca00850ba43b7400830186a094"
    + "ab" * 20
    + "80b844"
    + "cd" * 68
    + "c080a0"
    + "11" * 32
    + "a0"
    + "22" * 32
)
RESULT = {"bundleHash": "0x" + "be" * 32}


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def report(name: str, samples_s: list[float], unit: str = "us") -> None:
    k, d = (1e6, 1) if unit == "us" else (1e3, 3)
    print(
        f"  {name:<48} p50 {pct(samples_s, 50) * k:8.{d}f} {unit}"
        f"   p99 {pct(samples_s, 99) * k:8.{d}f} {unit}"
        f"   mean {statistics.fmean(samples_s) * k:8.{d}f} {unit}"
    )


def body_for(n_txs: int) -> bytes:
    params = Bundle.build([TX] * n_txs, 0x1234567).to_params()
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle", "params": [params]})


def bench_signing(n: int) -> None:
    print(f"signing X-Flashbots-Signature ({n} runs each)")
    signer = FlashbotsSigner(KEY)
    account = Account.from_key(KEY)
    for n_txs in (2, 100):
        body = body_for(n_txs)
        want = signer.sign(body)

        def with_eth_account(body: bytes = body) -> str:
            msg = encode_defunct(text="0x" + keccak(body).hex())
            return f"{account.address}:0x{bytes(account.sign_message(msg).signature).hex()}"

        assert with_eth_account() == want, "eth_account and flashbots_auth disagree"
        for name, fn in (
            (f"eth_account sign_message, {len(body)} B body", with_eth_account),
            (f"FlashbotsSigner.sign (coincurve), {len(body)} B", lambda body=body: signer.sign(body)),
        ):
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            report(name, samples)


def serve(ports: list[int], ready: Any) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        req = orjson.loads(await request.read())
        reply = orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": RESULT})
        return web.Response(body=reply, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for p in ports:
            await web.TCPSite(runner, "127.0.0.1", p).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> list[float]:
    for i in range(20):  # warm-up: connections open, caches hot
        await fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - t0)
    return samples


async def bench_requests(n: int, ports: list[int]) -> None:
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    print(f"requests to a local fake builder in another process ({n} sequential requests each)")
    body = body_for(2)
    header = FlashbotsSigner(KEY).sign(body)
    async with aiohttp.ClientSession() as session:

        async def bare(_: int) -> Any:
            headers = {"Content-Type": "application/json", HEADER: header}
            async with session.post(urls[0], data=body, headers=headers) as r:
                return orjson.loads(await r.read())

        report("bare aiohttp POST, pre-signed body", await timed(n, bare), "ms")
    async with BundleClient(urls[0], KEY) as client:
        report(
            "BundleClient.send_bundle (sign + POST + parse)",
            await timed(n, lambda i: client.send_bundle(Bundle.build([TX, TX], 1000 + i))),
            "ms",
        )
    async with MultiBuilderClient(urls, KEY) as multi:
        report(
            f"MultiBuilderClient.send_bundle to {len(urls)} builders",
            await timed(n, lambda i: multi.send_bundle(Bundle.build([TX, TX], 1000 + i))),
            "ms",
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--sign-runs", type=int, default=2000)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    bench_signing(args.sign_runs)
    import socket

    ports = []
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        socks.append(s)
    for s in socks:
        s.close()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(ports, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise SystemExit("fake builder did not start")
        if args.uvloop:
            import uvloop

            uvloop.install()
        asyncio.run(bench_requests(args.requests, ports))
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
